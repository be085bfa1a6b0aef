"""What every benchmark shares: a scratch PostgreSQL database, a Redis database, the broker's
processes (Celery worker and beat, gunicorn) started with production settings, and the tables.

The scratch database ``broker_bench_<name>_<pid>`` is created on the server of
``BENCH_DATABASE_URL`` (default ``postgresql://postgres@127.0.0.1:5432/postgres``, a user that may
create databases) and dropped at the end, whatever happens. The Redis database of
``BENCH_REDIS_URL`` (default ``redis://127.0.0.1:6379/7``) is emptied at the start and at the
end: give the benchmarks one of their own.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

ROOT = Path(__file__).resolve().parents[1]
PYTHON = sys.executable
ADMIN_URL = os.environ.get("BENCH_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
REDIS_URL = os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/7")


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    return ordered[min(len(ordered) - 1, round(p / 100 * (len(ordered) - 1)))]


def table(headers: list[str], rows: list[list]) -> str:
    """A plain-text table (also valid Markdown), every cell right-aligned but the first."""
    cells = [[str(h) for h in headers]] + [[_fmt(c) for c in row] for row in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(headers))]

    def line(row):
        return (
            "| "
            + " | ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(row, widths, strict=True)))
            + " |"
        )

    rule = "| " + " | ".join("-" * w for w in widths) + " |"
    return "\n".join([line(cells[0]), rule, *(line(r) for r in cells[1:])])


def _fmt(value) -> str:
    if isinstance(value, float):
        if value != value:  # NaN
            return "-"
        return f"{value:,.3f}" if abs(value) < 100 else f"{value:,.0f}"
    return str(value)


def machine() -> str:
    cpu = "unknown CPU"
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    mem = ""
    with contextlib.suppress(OSError):
        kb = int(Path("/proc/meminfo").read_text().split()[1])
        mem = f", {kb / 1024 / 1024:.0f} GiB RAM"
    load = os.getloadavg()[0]
    return f"{os.cpu_count()} cores ({cpu}){mem}, load {load:.1f} at start, Python {sys.version.split()[0]}"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Stack:
    """A scratch database and Redis, Django set up on them in this process, and the broker's processes."""

    def __init__(self, name: str):
        self.name = name
        self.dbname = f"broker_bench_{name}_{os.getpid()}"
        parts = urlsplit(ADMIN_URL)
        self.database_url = urlunsplit(parts._replace(path="/" + self.dbname))
        self.scratch = Path(tempfile.mkdtemp(prefix=f"broker-bench-{name}-"))
        self.queue = f"bench-{name}-{os.getpid()}"
        self.env = {
            **os.environ,
            "DATABASE_URL": self.database_url,
            "CELERY_BROKER_URL": REDIS_URL,
            "CELERY_TASK_DEFAULT_QUEUE": self.queue,
            "CELERY_NOTIFICATIONS_QUEUE": self.queue + "-notifications",
            "DEBUG": "0",
            "SECRET_KEY": "bench-only-not-a-secret-" + "x" * 32,
            "AUDIT_KEY": "bench-only-audit-key-" + "y" * 32,
            "ALLOWED_HOSTS": "127.0.0.1,localhost",
            "HTTPS": "0",
            "LOG_LEVEL": "WARNING",
            "EMAIL_BACKEND": "django.core.mail.backends.dummy.EmailBackend",
            "BROKER_VAR_DIR": str(self.scratch / "var"),
            "DJANGO_SETTINGS_MODULE": "broker.settings",
            "PYTHONPATH": str(ROOT),
        }
        self.procs: list[subprocess.Popen] = []

    # --- Setup and teardown ---------------------------------------------------------------------------

    def __enter__(self) -> Stack:
        import psycopg
        import redis

        with psycopg.connect(ADMIN_URL, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{self.dbname}"')
            conn.execute(f'CREATE DATABASE "{self.dbname}"')
        redis.Redis.from_url(REDIS_URL).flushdb()
        os.environ.update(self.env)
        import django

        django.setup()
        from django.core.management import call_command

        call_command("migrate", verbosity=0)
        return self

    def __exit__(self, *exc) -> None:
        for proc in self.procs:
            stop(proc)
        import psycopg
        import redis
        from django.db import connections

        connections.close_all()
        with contextlib.suppress(Exception):
            redis.Redis.from_url(REDIS_URL).flushdb()
        with psycopg.connect(ADMIN_URL, autocommit=True) as conn:
            conn.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s AND pid <> pg_backend_pid()",
                [self.dbname],
            )
            conn.execute(f'DROP DATABASE IF EXISTS "{self.dbname}"')

    def purge(self) -> None:
        """Empty Redis (queues, the tasks a stopped worker gave back, cache): scenarios start clean."""
        import redis

        redis.Redis.from_url(REDIS_URL).flushdb()

    # --- Processes ------------------------------------------------------------------------------------

    def start(
        self, command: list[str], *, name: str, ready: str | None = None, env: dict | None = None
    ) -> subprocess.Popen:
        log = self.scratch / f"{name}-{len(self.procs)}.log"
        out = log.open("w")
        proc = subprocess.Popen(
            command,
            cwd=ROOT,
            env={**self.env, **(env or {})},
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        proc.log = log  # type: ignore[attr-defined]
        self.procs.append(proc)
        if ready:
            deadline = time.monotonic() + 90
            while ready not in log.read_text():
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"{name} did not start:\n{log.read_text()[-3000:]}")
                time.sleep(0.1)
        return proc

    def worker(
        self, *, concurrency: int = 2, beat: bool = True, pool: str = "prefork", env: dict | None = None,
        queues: str = "both",
    ) -> subprocess.Popen:  # fmt: skip
        """A Celery worker; ``queues``: "both" (as `make run`), "broker" (activations and removals
        only, as production runs it beside a notifications worker) or "notifications"."""
        command = [PYTHON, "-m", "celery", "-A", "broker", "worker", "--loglevel", "INFO", "--pool", pool,
                   "--concurrency", str(concurrency), "--hostname", f"bench-{len(self.procs)}@%h"]  # fmt: skip
        if queues == "broker":
            command += ["-Q", self.queue]
        elif queues == "notifications":
            command += ["-Q", self.queue + "-notifications"]
        if beat:
            command += ["--beat", "--schedule", str(self.scratch / f"beat-{len(self.procs)}")]
        return self.start(command, name="worker", ready=" ready.", env=env)

    def gunicorn(self, *, workers: int = 2, port: int | None = None) -> tuple[subprocess.Popen, str]:
        port = port or free_port()
        command = [PYTHON, "-m", "gunicorn", "broker.wsgi", "-b", f"127.0.0.1:{port}", "-w", str(workers),
                   "--log-level", "warning"]  # fmt: skip
        proc = self.start(command, name="gunicorn")
        base = f"http://127.0.0.1:{port}"
        wait_http(base + "/healthz")
        return proc, base


def stop(proc: subprocess.Popen, sig: int = signal.SIGTERM) -> None:
    """SIGTERM to the main process (a warm shutdown: it stops its children); SIGKILL to the group
    (a crash: the children die with it), and after 20 s whatever is left."""
    if proc.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            if sig == signal.SIGKILL:
                os.killpg(proc.pid, sig)
            else:
                proc.send_signal(sig)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=10)
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)  # any child left behind


def wait_http(url: str, timeout: float = 60) -> None:
    import urllib.request

    deadline = time.monotonic() + timeout
    while True:
        try:
            with urllib.request.urlopen(url, timeout=2) as answer:  # noqa: S310 - loopback only
                if answer.status == 200:
                    return
        except OSError:
            pass
        if time.monotonic() > deadline:
            raise RuntimeError(f"{url} did not answer")
        time.sleep(0.2)


def rss_of_tree(pid: int) -> int:
    """Resident memory of a process and all its descendants, in bytes."""
    total = 0
    for p in [pid, *descendants(pid)]:
        with contextlib.suppress(OSError):
            for line in Path(f"/proc/{p}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1]) * 1024
    return total


def descendants(pid: int) -> list[int]:
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with contextlib.suppress(OSError):
                ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
                children.setdefault(ppid, []).append(int(entry.name))
    found, todo = [], [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            found.append(child)
            todo.append(child)
    return found


def summary(values: list[float]) -> dict[str, float]:
    return {
        "p50": percentile(values, 50),
        "p90": percentile(values, 90),
        "p99": percentile(values, 99),
        "max": max(values) if values else float("nan"),
        "mean": statistics.fmean(values) if values else float("nan"),
    }


@contextlib.contextmanager
def timed() -> Iterator[list[float]]:
    box: list[float] = []
    start = time.perf_counter()
    yield box
    box.append(time.perf_counter() - start)
