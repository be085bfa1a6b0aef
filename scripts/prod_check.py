#!/usr/bin/env python3
"""`make prod-check`: start the production stack as production runs it, prove the lifecycle, stop.

With DATABASE_URL (PostgreSQL) and CELERY_BROKER_URL (Redis) set, it

1. creates a throwaway database on that PostgreSQL server (dropped at the end; the one in
   DATABASE_URL is only used to connect) and a queue of its own on that Redis;
2. migrates, collects the static files, applies a small policy and creates two API tokens;
3. starts gunicorn (gunicorn.conf.py, two workers), a Celery worker and beat, with DEBUG off,
   JSON logs, a metrics token and one multiprocess metrics folder, plus a local chat receiver;
4. waits for /readyz, then through the API: an auto-approved grant that expires by itself, a
   request that an approver approves and the holder relinquishes; then /metrics (the expired grant
   in the lag histogram, nothing overdue, the API answers counted across both web processes, the
   worker's connector calls), the request id in the worker's log, the chat message, audit_verify,
   and no token or key in any log line;
5. stops everything and drops the database, whatever happened.

It prints what it does and exits 0 only if every step passed.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

ROOT = Path(__file__).resolve().parent.parent
PYTHON = sys.executable
BIN = Path(PYTHON).parent

POLICY = """\
roles:
  - slug: prodcheck-auto
    name: Prod-check sandbox
    max_duration: 1h
    requires_justification: false
    approval: {auto_approve: true}
    target: {connector: django_group, config: {group: prodcheck-auto}}
  - slug: prodcheck-approve
    name: Prod-check approved role
    max_duration: 1h
    approval:
      stages:
        - approvers: {users: [carol]}
    target: {connector: django_group, config: {group: prodcheck-approve}}
eligibility:
  - {role: prodcheck-auto, users: [alice]}
  - {role: prodcheck-approve, users: [alice]}
"""


class Failed(Exception):
    pass


def step(text: str) -> None:
    print(f"== {text}", flush=True)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class ChatReceiver:
    """A Slack-compatible incoming webhook on 127.0.0.1 that keeps what it receives."""

    def __init__(self) -> None:
        self.received: list[dict] = []
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                receiver.received.append(json.loads(body))
                self.send_response(200)
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"ok")

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/services/T0/B0/prodcheck"


class Stack:
    def __init__(self, tmp: Path, env: dict, port: int) -> None:
        self.tmp, self.env, self.port = tmp, env, port
        self.procs: dict[str, subprocess.Popen] = {}
        self.base = f"http://127.0.0.1:{port}"
        self.api_calls = 0

    def manage(self, *args: str, capture: bool = False) -> str:
        result = subprocess.run(  # noqa: S603 - our own manage.py
            [PYTHON, "manage.py", *args], cwd=ROOT, env=self.env, capture_output=True, text=True, timeout=300
        )
        if result.returncode != 0:
            raise Failed(f"manage.py {' '.join(args)} failed:\n{result.stdout}\n{result.stderr}")
        return result.stdout if capture else ""

    def start(self) -> None:
        commands = {
            "web": [str(BIN / "gunicorn"), "-c", "gunicorn.conf.py", "broker.wsgi"],
            "worker": [
                PYTHON, "-m", "celery", "-A", "broker", "worker", "--loglevel", "INFO", "--concurrency", "2",
                "--without-gossip", "--without-mingle", "--hostname", f"prodcheck-{self.port}@%h",
            ],
            "beat": [
                PYTHON, "-m", "celery", "-A", "broker", "beat", "--loglevel", "INFO",
                "--schedule", str(self.tmp / "beat-schedule"),
            ],
        }  # fmt: skip
        for name, command in commands.items():
            log = (self.tmp / f"{name}.log").open("w")
            self.procs[name] = subprocess.Popen(  # noqa: S603 - our own stack
                command, cwd=ROOT, env=self.env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
            )
            print(f"   {name}: {' '.join(command[:4])} ... (pid {self.procs[name].pid}, log {log.name})")

    def stop(self) -> None:
        for proc in self.procs.values():
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)  # the main process: a warm shutdown of its children
        for name, proc in self.procs.items():
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                print(f"   {name} did not stop in 20 s: killed")

    def check_alive(self) -> None:
        for name, proc in self.procs.items():
            if proc.poll() is not None:
                raise Failed(f"{name} exited with {proc.returncode}:\n{self.log(name)[-3000:]}")

    def log(self, name: str) -> str:
        return (self.tmp / f"{name}.log").read_text(errors="replace")

    def http(self, method: str, path: str, *, token: str | None = None, body: dict | None = None, headers=None):
        request = urllib.request.Request(self.base + path, method=method, headers=dict(headers or {}))  # noqa: S310
        if token:
            request.add_header("Authorization", f"Bearer {token}")
        if body is not None:
            request.data = json.dumps(body).encode()
            request.add_header("Content-Type", "application/json")
        if path.startswith("/api/"):
            self.api_calls += 1
        try:
            with urllib.request.urlopen(request, timeout=10) as response:  # noqa: S310 - our own server
                return response.status, response.read().decode(), dict(response.headers)
        except urllib.error.HTTPError as exc:
            return exc.code, exc.read().decode(), dict(exc.headers)

    def api(self, method: str, path: str, token: str, body: dict | None = None, expect: int = 200, headers=None):
        status, text, _ = self.http(method, "/api/v1/" + path, token=token, body=body, headers=headers)
        if status != expect:
            raise Failed(f"{method} /api/v1/{path}: expected {expect}, got {status}: {text[:500]}")
        return json.loads(text)

    def wait(self, what: str, condition, timeout: float):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self.check_alive()
            value = condition()
            if value:
                return value
            time.sleep(0.2)
        raise Failed(f"timed out after {timeout:.0f} s waiting for {what}")


def metrics(stack: Stack, token: str) -> dict:
    status, text, _ = stack.http("GET", "/metrics", token=token)
    if status != 200:
        raise Failed(f"/metrics answered {status}")
    found: dict = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            name_labels, _, value = line.rpartition(" ")
            found[name_labels] = float(value)
    return found


def total(found: dict, prefix: str, *labels: str) -> float:
    return sum(v for k, v in found.items() if k.startswith(prefix) and all(label in k for label in labels))


def lifecycle(stack: Stack, tokens: dict, chat: ChatReceiver, metrics_token: str, rid: str) -> list[str]:
    alice, carol = tokens["alice"], tokens["carol"]
    report = []

    step("the lifecycle through the API")
    started = time.monotonic()
    req = stack.api(
        "POST", "requests/", alice, {"role": "prodcheck-auto", "duration_seconds": 5}, expect=201,
        headers={"X-Request-ID": rid},
    )  # fmt: skip
    grant_id = req["grant"]
    stack.wait("the auto-approved grant to become effective", lambda: stack.api(
        "GET", "check/?role=prodcheck-auto", alice)["allowed"], 15)  # fmt: skip
    report.append(f"auto-approved request #{req['id']}: effective after {time.monotonic() - started:.2f} s")
    grant = stack.wait(
        "the grant to expire by itself",
        lambda: (g := stack.api("GET", f"grants/{grant_id}/", alice))["status"] == "expired" and g,
        30,
    )
    from datetime import datetime

    lag = (datetime.fromisoformat(grant["ended_at"]) - datetime.fromisoformat(grant["expires_at"])).total_seconds()
    report.append(f"grant #{grant_id} expired by itself; removal confirmed {lag:.3f} s after expires_at")
    if stack.api("GET", "check/?role=prodcheck-auto", alice)["allowed"]:
        raise Failed("check/ still allows an expired grant")

    req = stack.api(
        "POST", "requests/", alice,
        {"role": "prodcheck-approve", "duration_seconds": 600, "justification": "prod-check"}, expect=201,
    )  # fmt: skip
    if req["status"] != "pending":
        raise Failed(f"the request to approve is {req['status']}, not pending")
    # Before approving: the chat message asks for a decision only while the request still waits for one.
    stack.wait("the chat message about the request to approve", lambda: any(
        "Decision needed" in m.get("text", "") for m in chat.received), 15)  # fmt: skip
    approved = stack.api("POST", f"requests/{req['id']}/approve/", carol, {"comment": "prod-check"})
    stack.wait("the approved grant to become effective", lambda: stack.api(
        "GET", "check/?role=prodcheck-approve", alice)["allowed"], 15)  # fmt: skip
    ended = stack.api("POST", f"grants/{approved['grant']}/revoke/", alice, {"reason": "done"})
    stack.wait("the relinquished grant to end", lambda: stack.api(
        "GET", f"grants/{approved['grant']}/", alice)["status"] == "revoked", 15)  # fmt: skip
    if stack.api("GET", "check/?role=prodcheck-approve", alice)["allowed"]:
        raise Failed("check/ still allows a relinquished grant")
    report.append(
        f"request #{req['id']}: approved by carol, grant #{approved['grant']} relinquished ({ended['status']})"
    )

    step("/metrics")
    status, _, _ = stack.http("GET", "/metrics")
    if status != 401:
        raise Failed(f"/metrics without the token answered {status}, not 401")
    calls = stack.api_calls

    def with_the_workers_calls():
        found = metrics(stack, metrics_token)
        return found if total(found, "broker_connector_call_duration_seconds_count") >= 4 else None

    found = stack.wait("the worker's connector calls in /metrics", with_the_workers_calls, 20)
    lag_count = found.get("broker_revocation_lag_seconds_count", 0)
    if lag_count < 1:
        raise Failed("the expired grant is not in broker_revocation_lag_seconds")
    if found.get("broker_grants_overdue", -1) != 0:
        raise Failed(f"broker_grants_overdue is {found.get('broker_grants_overdue')}, not 0")
    api_answers = total(found, "broker_http_responses_total", 'surface="api"')
    if api_answers != calls:
        raise Failed(f"the metrics count {api_answers:.0f} API answers, the check made {calls}")
    report.append(
        f"/metrics: lag histogram count {lag_count:.0f} (sum {found['broker_revocation_lag_seconds_sum']:.3f} s), "
        f"overdue 0, {api_answers:.0f} API answers counted across the web processes = {calls} made, "
        f"{total(found, 'broker_connector_call_duration_seconds_count'):.0f} connector calls from the worker"
    )

    step("logs, chat and the audit chain")
    worker_lines = [json.loads(line) for line in stack.log("worker").splitlines() if line.startswith("{")]
    carried = [r for r in worker_lines if r.get("request_id") == rid and r.get("task_name")]
    if not carried:
        raise Failed(f"no worker log line carries the request id {rid}")
    report.append(f"request id {rid}: on {len(carried)} worker log line(s) ({carried[0]['task_name']}, ...)")
    report.append(f"chat: {len(chat.received)} message(s) posted to the local Slack-compatible receiver")
    out = stack.manage("audit_verify", "--checkpoints", stack.env["AUDIT_CHECKPOINT_FILE"], capture=True)
    report.append(out.strip().splitlines()[-1][:160])
    return report


def main() -> int:
    database_url, broker_url = os.environ.get("DATABASE_URL", ""), os.environ.get("CELERY_BROKER_URL", "")
    if not database_url.startswith(("postgres://", "postgresql://")) or not broker_url.startswith("redis"):
        print("set DATABASE_URL (PostgreSQL) and CELERY_BROKER_URL (Redis), as in the README", file=sys.stderr)
        return 2
    import psycopg
    import redis

    suffix = secrets.token_hex(4)
    database = f"broker_prodcheck_{suffix}"
    parts = urlsplit(database_url)
    check_url = urlunsplit(parts._replace(path=f"/{database}"))
    queue = f"prodcheck-{suffix}"
    keys = {name: secrets.token_urlsafe(40) for name in ("SECRET_KEY", "AUDIT_KEY", "METRICS_TOKEN")}
    tmp = Path(tempfile.mkdtemp(prefix="broker-prodcheck-"))
    port = free_port()
    chat = ChatReceiver()
    rid = f"prodcheck-{suffix}"
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith(("DEBUG", "DJANGO_"))},
        **keys,
        "DEBUG": "0",
        "DATABASE_URL": check_url,
        "CELERY_BROKER_URL": broker_url,
        "CELERY_TASK_DEFAULT_QUEUE": queue,
        "CELERY_NOTIFICATIONS_QUEUE": f"{queue}-notifications",
        "ALLOWED_HOSTS": "127.0.0.1,localhost",
        "SITE_URL": f"http://127.0.0.1:{port}",
        "HTTPS": "0",
        "GUNICORN_BIND": f"127.0.0.1:{port}",
        "WEB_CONCURRENCY": "2",
        "LOG_FORMAT": "json",
        # The check's people have no history, so asking for a second role is a "first for this
        # role" anomaly that needs a second factor they do not have; the flag is tested elsewhere
        # (tests/approvals/test_anomaly.py, tests/e2e). Every other reason stays on.
        "ANOMALY_IGNORE": "first_for_role",
        "PROMETHEUS_MULTIPROC_DIR": str(tmp / "metrics"),
        "BROKER_VAR_DIR": str(tmp / "var"),
        "STATIC_ROOT": str(tmp / "static"),
        "AUDIT_CHECKPOINT_FILE": str(tmp / "audit-checkpoints.jsonl"),
        "AUDIT_CHECKPOINT_INTERVAL": "2s",
        "EMAIL_BACKEND": "django.core.mail.backends.filebased.EmailBackend",
        "EMAIL_FILE_PATH": str(tmp / "mail"),
        "HEARTBEAT_INTERVAL": "2s",
        "HEARTBEAT_MAX_AGE": "10s",
        "SWEEP_INTERVAL": "1s",
        "SLACK_WEBHOOK_URL": chat.url,
    }
    (tmp / "metrics").mkdir()
    stack = Stack(tmp, env, port)
    step(f"a throwaway database {database} and queue {queue}; files in {tmp}")
    try:
        with psycopg.connect(database_url, autocommit=True, connect_timeout=10) as conn:
            conn.execute(f'CREATE DATABASE "{database}"')
    except psycopg.Error as exc:
        print(
            f"cannot create the throwaway database {database} with DATABASE_URL's server and user: {exc}\n"
            "prod-check needs a user that may create databases (it drops it again at the end)",
            file=sys.stderr,
        )
        return 2
    ok = False
    try:
        step("migrate, collectstatic, check --deploy, the policy, two API tokens")
        stack.manage("migrate", "--noinput")
        stack.manage("collectstatic", "--noinput")
        stack.manage("check", "--deploy", "--fail-level", "ERROR")
        (tmp / "policy.yaml").write_text(POLICY)
        stack.manage(
            "shell", "-c",
            "from django.contrib.auth.models import User\n"
            "for name in ('alice', 'carol'):\n"
            "    User.objects.create_user(name, f'{name}@example.com')",
        )  # fmt: skip
        stack.manage("apply_policy", str(tmp / "policy.yaml"))
        tokens = {
            "alice": stack.manage("create_api_token", "alice", "--scopes", "read,request", capture=True).strip(),
            "carol": stack.manage("create_api_token", "carol", "--scopes", "read,approve", capture=True).strip(),
        }
        step(f"start web (gunicorn), worker and beat on 127.0.0.1:{port}")
        stack.start()
        started = time.monotonic()

        def ready():
            try:
                status, text, _ = stack.http("GET", "/readyz")
            except OSError:
                return None
            return status == 200 and json.loads(text)

        try:
            body = stack.wait("/readyz", ready, 90)
        except Failed:
            status, text, _ = stack.http("GET", "/readyz")
            raise Failed(f"/readyz never answered 200; last: {status} {text}") from None
        print(f"   ready after {time.monotonic() - started:.1f} s: " + ", ".join(
            f"{name}: {check['detail']}" for name, check in body["checks"].items()))  # fmt: skip
        report = lifecycle(stack, tokens, chat, keys["METRICS_TOKEN"], rid)

        step("no secret in any log line")
        logs = "".join(stack.log(name) for name in stack.procs)
        leaked = [name for name, value in [*keys.items(), *tokens.items()] if value in logs]
        if leaked:
            raise Failed(f"secrets in the logs: {', '.join(leaked)}")
        report.append(f"no token or key in {len(logs.splitlines())} log lines (web, worker, beat)")
        ok = True
        print("\n".join(f"   {line}" for line in report))
        access = [line for line in stack.log("web").splitlines() if '"logger": "gunicorn.access"' in line]
        print(f"   a web access log line: {access[-1] if access else '(none)'}")
    except Failed as exc:
        print(f"FAILED: {exc}", file=sys.stderr)
    except Exception as exc:  # noqa: BLE001 - report, then clean up like any failure
        print(f"FAILED: {type(exc).__name__}: {exc}", file=sys.stderr)
    finally:
        step("stop everything, drop the database")
        stack.stop()
        chat.server.shutdown()
        with psycopg.connect(database_url, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)')
        client = redis.Redis.from_url(broker_url)
        for key in (
            queue,
            f"{queue}-notifications",
            f"_kombu.binding.{queue}",
            f"_kombu.binding.{queue}-notifications",
        ):
            client.delete(key)
        if not ok:
            for name in stack.procs:
                print(
                    f"--- last lines of {name}.log:\n" + "\n".join(stack.log(name).splitlines()[-15:]), file=sys.stderr
                )
    if ok:
        shutil.rmtree(tmp, ignore_errors=True)
    else:
        print(f"the logs stay in {tmp}", file=sys.stderr)
    print("prod-check passed" if ok else "prod-check FAILED", flush=True)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
