"""/healthz answers while the process lives; /readyz names what the broker needs and is down."""

from datetime import timedelta

import pytest
from django.utils import timezone

from broker import audit
from broker.audit.status import store_verification
from broker.models import AuditEvent, Heartbeat
from broker.tasks import heartbeat

pytestmark = pytest.mark.django_db


def test_healthz_answers_json_and_is_never_cached(client):
    response = client.get("/healthz")
    assert response.status_code == 200
    assert response.json() == {"status": "ok"}
    assert "no-store" in response["Cache-Control"]


def test_readyz_is_ready_with_a_fresh_heartbeat(client):
    heartbeat.delay()

    response = client.get("/readyz")

    assert response.status_code == 200, response.json()
    body = response.json()
    assert body["status"] == "ok" and body["down"] == []
    assert set(body["checks"]) == {"database", "celery_broker", "worker", "audit_chain"}
    assert "no-store" in response["Cache-Control"]


def test_readyz_names_a_missing_worker_heartbeat(client):
    response = client.get("/readyz")
    assert response.status_code == 503
    assert response.json()["down"] == ["worker"]


def test_readyz_names_a_stale_heartbeat(client, settings):
    Heartbeat.objects.create(name="worker", at=timezone.now() - settings.HEARTBEAT_MAX_AGE - timedelta(seconds=1))
    body = client.get("/readyz").json()
    assert body["down"] == ["worker"]
    assert "old" in body["checks"]["worker"]["detail"]


def test_readyz_names_a_chain_known_broken(client):
    heartbeat.delay()
    from django.db import transaction

    from broker.models import Channel

    with transaction.atomic():
        audit.record("test.event", actor=None, target=None, via=Channel.CLI)
    AuditEvent.objects.update(data={"changed": True})
    store_verification(audit.verify())

    body = client.get("/readyz").json()

    assert body["down"] == ["audit_chain"]
    assert "broken at event #1" in body["checks"]["audit_chain"]["detail"]


def test_readyz_names_the_celery_broker_when_its_queue_folder_is_gone(client, settings, tmp_path):
    heartbeat.delay()
    settings.CELERY_BROKER_TRANSPORT_OPTIONS = {"data_folder_in": str(tmp_path / "missing")}
    settings.CELERY_BROKER_URL = "filesystem://localhost/"

    assert client.get("/readyz").json()["down"] == ["celery_broker"]


def test_the_heartbeat_records_how_long_it_waited_in_the_queue(clock):
    heartbeat.apply(headers={"published_at": (timezone.now() - timedelta(seconds=2)).isoformat()})

    beat = Heartbeat.objects.get(name="worker")
    assert (beat.at - beat.queued_at).total_seconds() == 2
