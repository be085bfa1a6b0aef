"""Live PostgreSQL, Redis and a real Celery worker with beat, started as a subprocess.

These tests run only when DATABASE_URL (PostgreSQL) and CELERY_BROKER_URL (Redis) are set; the
unit suite stays on SQLite and eager tasks.
"""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from urllib.parse import quote

import pytest
from django.conf import settings
from django.db import connection

from broker.celery import app as celery_app

ROOT = Path(__file__).resolve().parents[2]
LIVE = bool(os.environ.get("DATABASE_URL")) and bool(os.environ.get("CELERY_BROKER_URL"))


def pytest_collection_modifyitems(config, items):
    for item in items:
        if "tests/integration/" in str(item.path).replace(os.sep, "/"):
            item.add_marker(pytest.mark.integration)
            if not LIVE:
                item.add_marker(
                    pytest.mark.skip(reason="needs DATABASE_URL (PostgreSQL) and CELERY_BROKER_URL (Redis)")
                )


@pytest.fixture(autouse=True)
def _real_tasks():
    """Tasks go to Redis and the worker, not eagerly into this process."""
    if not LIVE:
        yield
        return
    assert connection.vendor == "postgresql", "integration tests need DATABASE_URL to point at PostgreSQL"
    celery_app.conf.task_always_eager = False
    yield
    celery_app.conf.task_always_eager = True


def database_url() -> str:
    """The URL of the test database pytest-django created (test_<name>), for the worker."""
    db = connection.settings_dict
    auth = quote(db["USER"] or "", safe="")
    if db.get("PASSWORD"):
        auth += ":" + quote(db["PASSWORD"], safe="")
    return f"postgresql://{auth}@{db['HOST'] or 'localhost'}:{db['PORT'] or 5432}/{db['NAME']}"


class Worker:
    """`celery -A broker worker --beat` in its own process group, with its log in a file."""

    def __init__(self, tmp_path: Path, sweep_interval: str):
        self.tmp_path = tmp_path
        self.env = {
            **os.environ,
            "DJANGO_SETTINGS_MODULE": "broker.settings",
            "DATABASE_URL": database_url(),
            "CELERY_TASK_DEFAULT_QUEUE": settings.CELERY_TASK_DEFAULT_QUEUE,
            "SWEEP_INTERVAL": sweep_interval,
            "SECRET_KEY": settings.SECRET_KEY,
            "ALLOWED_HOSTS": "localhost",
            "BROKER_VAR_DIR": str(tmp_path / "var"),
        }
        self.proc: subprocess.Popen | None = None
        self.starts = 0

    def start(self) -> None:
        self.starts += 1
        self.log = self.tmp_path / f"worker-{self.starts}.log"
        command = [
            sys.executable, "-m", "celery", "-A", "broker", "worker", "--beat",
            "--loglevel", "INFO", "--pool", "threads", "--concurrency", "4",
            "--hostname", f"test-{self.starts}@%h",
            "--schedule", str(self.tmp_path / f"beat-{self.starts}"),
        ]  # fmt: skip
        with self.log.open("w") as out:
            self.proc = subprocess.Popen(
                command, cwd=ROOT, env=self.env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
            )
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"worker exited early:\n{self.log.read_text()}")
            if " ready." in self.log.read_text():
                return
            time.sleep(0.1)
        raise RuntimeError(f"worker did not become ready:\n{self.log.read_text()}")

    def kill(self) -> None:
        """SIGKILL the worker and its beat, as a crash or an OOM kill would."""
        if self.proc and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(timeout=10)

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.kill()

    def logs(self) -> str:
        return "\n".join(p.read_text() for p in sorted(self.tmp_path.glob("worker-*.log")))


@pytest.fixture
def worker(transactional_db, tmp_path):
    w = Worker(tmp_path, sweep_interval="1s")
    w.start()
    yield w
    w.stop()
    if os.environ.get("SHOW_WORKER_LOG"):
        print(w.logs())


@pytest.fixture
def start_worker(transactional_db, tmp_path):
    """Start a worker once the test has set up its targets (their secrets are in os.environ by then)."""
    workers = []

    def start(sweep_interval: str = "1s") -> Worker:
        w = Worker(tmp_path / f"w{len(workers)}", sweep_interval=sweep_interval)
        w.tmp_path.mkdir()
        workers.append(w)
        w.start()
        return w

    yield start
    for w in workers:
        w.stop()
        if os.environ.get("SHOW_WORKER_LOG"):
            print(w.logs())


@pytest.fixture(scope="session", autouse=True)
def _drop_test_queue():
    yield
    if LIVE:
        import redis

        client = redis.Redis.from_url(settings.CELERY_BROKER_URL)
        client.delete(settings.CELERY_TASK_DEFAULT_QUEUE)


def wait_for(predicate, *, timeout: float, interval: float = 0.05, what: str = "condition"):
    """Poll until predicate() is truthy; these tests prove real timing, so they really wait."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


# --- A target PostgreSQL server: the one DATABASE_URL names, with throwaway roles ---------------------


class PgTarget:
    """Throwaway roles on the machine's PostgreSQL for the postgres_role connector; dropped afterwards."""

    def __init__(self):
        import uuid

        db = connection.settings_dict
        self.dsn = f"host={db['HOST'] or 'localhost'} port={db['PORT'] or 5432} dbname=postgres user={db['USER']}"
        if db.get("PASSWORD"):
            self.dsn += f" password={db['PASSWORD']}"
        self.prefix = f"t{uuid.uuid4().hex[:8]}"
        self.role = f"{self.prefix}_reporting"
        self.roles: list[str] = []
        self.execute("CREATE ROLE {} NOLOGIN", self.role)

    def execute(self, statement: str, *names: str, params=None) -> list[tuple]:
        """Run one statement as the server's admin; identifiers (`{}`) quoted with sql.Identifier."""
        import psycopg
        from psycopg import sql

        if statement.startswith("CREATE ROLE"):
            self.roles += list(names)
        with psycopg.connect(self.dsn, autocommit=True) as conn:
            cursor = conn.execute(sql.SQL(statement).format(*map(sql.Identifier, names)), params)
            return cursor.fetchall() if cursor.description else []

    def create_login(self, name: str) -> str:
        self.execute("CREATE ROLE {} LOGIN", name)
        return name

    def connect_as(self, login: str):
        import psycopg

        db = connection.settings_dict
        return psycopg.connect(
            host=db["HOST"] or "localhost", port=db["PORT"] or 5432, dbname="postgres", user=login, autocommit=True
        )

    def is_member(self, login: str, role: str | None = None) -> bool:
        rows = self.execute(
            "SELECT 1 FROM pg_auth_members m JOIN pg_roles r ON r.oid = m.roleid JOIN pg_roles u ON u.oid = m.member"
            " WHERE r.rolname = %s AND u.rolname = %s",
            params=[role or self.role, login],
        )
        return bool(rows)

    def drop(self):
        for name in reversed(self.roles):
            self.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = %s", params=[name])
            self.execute("DROP ROLE IF EXISTS {}", name)


@pytest.fixture
def pg_target(monkeypatch):
    """A target role on the machine's PostgreSQL, its DSN in TARGET_PG_DSN (as a deployment would set it)."""
    if not LIVE:
        pytest.skip("needs DATABASE_URL (PostgreSQL)")
    target = PgTarget()
    monkeypatch.setenv("TARGET_PG_DSN", target.dsn)
    yield target
    target.drop()
