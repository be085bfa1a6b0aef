"""Operations with real processes: metrics while the worker is down and back, /readyz naming
PostgreSQL or Redis down (a real gunicorn with gunicorn.conf.py), the request id in a real worker."""

import json
import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from datetime import timedelta

import pytest
from django.conf import settings
from django.test import Client
from django.utils import timezone
from prometheus_client.parser import text_string_to_metric_families

from approvals import services as approvals
from broker.models import Channel, Heartbeat
from grants.models import Grant
from tests.factories import EligibilityFactory, RoleFactory, UserFactory
from tests.integration.conftest import ROOT, database_url, wait_for

pytestmark = pytest.mark.django_db(transaction=True)

TOKEN = "integration-metrics-token-0123456789"


def figure(name: str) -> float:
    response = Client().get("/metrics", HTTP_AUTHORIZATION=f"Bearer {TOKEN}")
    assert response.status_code == 200
    for family in text_string_to_metric_families(response.content.decode()):
        for sample in family.samples:
            if sample.name == name and not sample.labels:
                return sample.value
    raise AssertionError(f"{name} not in /metrics")


@pytest.fixture
def sandbox(transactional_db, settings):
    settings.METRICS_TOKEN = TOKEN
    user = UserFactory(username="alice")
    role = RoleFactory(slug="sandbox", auto_approve=True, connector_config={"group": "sandbox-admins"})
    EligibilityFactory(role=role, user=user)
    return user, role


def fresh(grant: Grant) -> Grant:
    grant.refresh_from_db()
    return grant


def test_overdue_rises_while_the_worker_is_stopped_past_an_expiry_and_falls_to_zero_when_it_restarts(
    worker, sandbox, report_figure
):
    user, role = sandbox
    grant = approvals.request_create(
        requester=user, role=role, duration=timedelta(seconds=3), justification="x", via=Channel.API
    ).grant
    wait_for(lambda: fresh(grant).status == "active", timeout=10, what="activation by the worker")
    assert figure("broker_grants_overdue") == 0
    worker.stop()

    wait_for(lambda: timezone.now() > grant.expires_at + timedelta(seconds=1), timeout=10, what="the expiry")
    assert fresh(grant).status == "active"
    assert figure("broker_grants_overdue") == 1

    restarted = time.monotonic()
    worker.start()
    wait_for(lambda: figure("broker_grants_overdue") == 0, timeout=20, what="overdue back to 0")
    report_figure(f"overdue back to 0 {time.monotonic() - restarted:.2f} s after the worker restarted")
    assert fresh(grant).status == "expired"
    assert figure("broker_revocation_lag_seconds_count") == 1
    assert figure("broker_revocation_lag_seconds_sum") == pytest.approx(
        (grant.ended_at - grant.expires_at).total_seconds(), abs=0.01
    )


def test_the_request_id_of_an_api_request_reaches_the_real_worker(worker, sandbox):
    from accounts.tokens import token_create

    user, _role = sandbox
    _, token = token_create(user=user, scopes=["read", "request"], via=Channel.CLI)
    response = Client().post(
        "/api/v1/requests/",
        {"role": "sandbox", "duration_seconds": 600, "justification": "INC-7"},
        content_type="application/json",
        HTTP_AUTHORIZATION=f"Bearer {token}",
        HTTP_X_REQUEST_ID="integration-rid-7",
    )
    assert response.status_code == 201, response.content
    grant = Grant.objects.get(pk=response.json()["grant"])
    wait_for(lambda: fresh(grant).status == "active", timeout=10, what="activation by the worker")
    wait_for(
        lambda: "request_id=integration-rid-7 task_name=grants.tasks.activate_grant" in worker.logs(),
        timeout=5,
        what="the worker's log line with the request id",
    )


# --- /readyz from a real gunicorn ------------------------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def readyz_of_a_server(tmp_path, **env) -> tuple[int, dict, float]:
    """Start gunicorn (gunicorn.conf.py, one worker, DEBUG off) with ``env`` and ask its /readyz."""
    port = _free_port()
    full = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "broker.settings",
        "DEBUG": "0",
        "SECRET_KEY": settings.SECRET_KEY,
        "AUDIT_KEY": settings.AUDIT_KEY,
        "ALLOWED_HOSTS": "127.0.0.1",
        "GUNICORN_BIND": f"127.0.0.1:{port}",
        "WEB_CONCURRENCY": "1",
        "BROKER_VAR_DIR": str(tmp_path / "var"),
        "PROMETHEUS_MULTIPROC_DIR": "",
        **env,
    }
    log = (tmp_path / "web.log").open("w")
    server = subprocess.Popen(
        [os.path.join(os.path.dirname(sys.executable), "gunicorn"), "-c", "gunicorn.conf.py", "broker.wsgi"],
        cwd=ROOT, env=full, stdout=log, stderr=subprocess.STDOUT,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                started = time.monotonic()
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=15) as answer:
                    return answer.status, json.loads(answer.read()), time.monotonic() - started
            except urllib.error.HTTPError as exc:
                return exc.code, json.loads(exc.read()), time.monotonic() - started
            except OSError:
                if time.monotonic() > deadline or server.poll() is not None:
                    raise AssertionError((tmp_path / "web.log").read_text()) from None
                time.sleep(0.2)
    finally:
        server.terminate()
        server.wait(timeout=15)


def test_readyz_names_postgresql_when_it_cannot_be_reached(tmp_path):
    status, body, seconds = readyz_of_a_server(
        tmp_path, DATABASE_URL=f"postgresql://postgres@127.0.0.1:{_free_port()}/nothing"
    )

    assert status == 503
    assert body["down"] == ["database"]
    assert body["checks"]["celery_broker"]["ok"] is True
    assert body["checks"]["worker"] == {"ok": None, "detail": "not checked: the database is down"}
    assert seconds < 5


def test_readyz_names_redis_when_it_cannot_be_reached(tmp_path):
    Heartbeat.objects.create(name="worker", at=timezone.now(), worker="test")

    status, body, seconds = readyz_of_a_server(
        tmp_path, DATABASE_URL=database_url(), CELERY_BROKER_URL=f"redis://127.0.0.1:{_free_port()}/0"
    )

    assert status == 503
    assert body["down"] == ["celery_broker"]
    assert body["checks"]["database"]["ok"] is True and body["checks"]["worker"]["ok"] is True
    assert "Redis does not answer" in body["checks"]["celery_broker"]["detail"]
    assert seconds < 5


def test_readyz_of_a_healthy_stack_is_ready(tmp_path):
    Heartbeat.objects.create(name="worker", at=timezone.now(), worker="test")

    status, body, _ = readyz_of_a_server(tmp_path, DATABASE_URL=database_url())

    assert status == 200, body
    assert body["down"] == []
