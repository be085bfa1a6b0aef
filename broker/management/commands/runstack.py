"""Run the web server, a Celery worker and the scheduler together, for development and the demo.

Ctrl-C stops all of them. If one of them dies, the others are stopped too, so a half-running
broker (a portal whose grants never expire) is never left behind.
"""

import signal
import subprocess
import sys
import time

from django.conf import settings
from django.core.management.base import BaseCommand


class Command(BaseCommand):
    help = "Run the web server, a Celery worker and the beat scheduler together; Ctrl-C stops all."

    def add_arguments(self, parser):
        parser.add_argument("addrport", nargs="?", default="127.0.0.1:8000", help="where the web server listens")

    def handle(self, *args, addrport, **options):
        python = sys.executable
        commands = {
            "web": [python, "manage.py", "runserver", addrport, "--noreload"],
            "worker": [
                python, "-m", "celery", "-A", "broker", "worker", "--beat",
                "--loglevel", "INFO", "--pool", "threads", "--concurrency", "4",
                "--schedule", settings.CELERY_BEAT_SCHEDULE_FILENAME,
            ],
        }  # fmt: skip
        procs = {name: subprocess.Popen(cmd, cwd=settings.BASE_DIR) for name, cmd in commands.items()}  # noqa: S603
        self.stdout.write(
            self.style.SUCCESS(
                f"broker running: portal at http://{addrport}/ (admin at /admin/) — Ctrl-C stops everything"
            )
        )

        stopping = False

        def stop(signum, frame):
            nonlocal stopping
            stopping = True

        signal.signal(signal.SIGINT, stop)
        signal.signal(signal.SIGTERM, stop)
        exit_code = 0
        try:
            while not stopping:
                for name, proc in procs.items():
                    if proc.poll() is not None:
                        self.stderr.write(f"{name} exited with status {proc.returncode}; stopping the rest")
                        exit_code = proc.returncode or 1
                        stopping = True
                time.sleep(0.3)
        finally:
            for proc in procs.values():
                if proc.poll() is None:
                    proc.send_signal(signal.SIGTERM)
            deadline = time.monotonic() + 10
            for proc in procs.values():
                try:
                    proc.wait(timeout=max(0.1, deadline - time.monotonic()))
                except subprocess.TimeoutExpired:
                    proc.kill()
        sys.exit(exit_code)
