"""Run the web server, a Celery worker and the scheduler together, for development and the demo.

Beside them runs the demo's webhook receiver (`webhook_receiver`), which prints the signed events of
the demo's webhook role. When the broker's database is PostgreSQL, the worker gets the demo's
target server in DEMO_TARGET_PG_DSN (unless it is set already).

Ctrl-C stops all of them. If one of them dies, the others are stopped too, so a half-running
broker (a portal whose grants never expire) is never left behind.
"""

import os
import signal
import subprocess
import sys
import time

from django.conf import settings
from django.core.management.base import BaseCommand

from broker.management import demo


class Command(BaseCommand):
    help = "Run the web server, a Celery worker and the beat scheduler together; Ctrl-C stops all."

    def add_arguments(self, parser):
        parser.add_argument("addrport", nargs="?", default="127.0.0.1:8000", help="where the web server listens")
        parser.add_argument(
            "--receiver", default=demo.WEBHOOK_RECEIVER, help="where the demo's webhook receiver listens ('' for none)"
        )

    def handle(self, *args, addrport, receiver, **options):
        python = sys.executable
        env = dict(os.environ)
        dsn = demo.postgres_dsn()
        if dsn:
            env.setdefault(demo.PG_DSN_ENV, dsn)
        commands = {
            "web": [python, "manage.py", "runserver", addrport, "--noreload"],
            "worker": [
                python, "-m", "celery", "-A", "broker", "worker", "--beat",
                "--loglevel", "INFO", "--pool", "threads", "--concurrency", "4",
                "--schedule", settings.CELERY_BEAT_SCHEDULE_FILENAME,
            ],
        }  # fmt: skip
        if receiver:
            commands["webhook-receiver"] = [
                python, "manage.py", "webhook_receiver", receiver, "--secret-file", str(demo.webhook_secret()),
            ]  # fmt: skip
        procs = {name: subprocess.Popen(cmd, cwd=settings.BASE_DIR, env=env) for name, cmd in commands.items()}  # noqa: S603
        self.stdout.write(
            self.style.SUCCESS(
                f"broker running: portal at http://{addrport}/ (admin at /admin/)"
                + (f", webhook receiver at http://{receiver}/" if receiver else "")
                + " — Ctrl-C stops everything"
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
