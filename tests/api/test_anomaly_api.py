"""The anomaly flag through the API: a flagged request needs `otp`, and the flag shows and filters."""

from datetime import timedelta

import pytest

from tests.conftest import T0
from tests.factories import AccessRequestFactory
from tests.otp import authenticator, code_of

pytestmark = pytest.mark.django_db

BODY = {"role": "deploy", "duration_seconds": 3600, "justification": "release 1.2"}


@pytest.fixture
def unusual(world, settings, clock):
    """alice usually asks for deploy at 09:00 UTC from 192.0.2.0/24; now it is 03:00."""
    settings.ANOMALY_SCORING = True
    for day in range(1, 7):
        AccessRequestFactory(
            requester=world.alice,
            role=world.deploy,
            status="approved",
            created_at=T0 - timedelta(days=day),
            network="192.0.2.0/24",
        )
    clock.move_to(T0.replace(hour=3))
    return world


def test_a_flagged_request_without_otp_is_refused_with_the_reasons(unusual, bearer):
    authenticator(unusual.alice)
    response = bearer(unusual.alice).post("/api/v1/requests/", BODY, format="json", REMOTE_ADDR="192.0.2.7")
    assert response.status_code == 403
    assert response.json()["error"] == "mfa_required"
    assert "Asked at 03:00 UTC" in response.json()["detail"]


def test_a_flagged_request_with_otp_is_created_flagged_with_coded_reasons(unusual, bearer):
    device = authenticator(unusual.alice)
    body = {**BODY, "otp": code_of(device)}
    response = bearer(unusual.alice).post("/api/v1/requests/", body, format="json", REMOTE_ADDR="192.0.2.7")
    assert response.status_code == 201
    assert response.json()["flagged"] is True
    assert [r["code"] for r in response.json()["flag_reasons"]] == ["unusual_hour"]


def test_auditors_list_only_the_flagged_requests(unusual, bearer):
    flagged = AccessRequestFactory(
        requester=unusual.bob, role=unusual.deploy, flagged=True, flag_reasons=[{"code": "burst", "sentence": "x"}]
    )
    response = bearer(unusual.erin).get("/api/v1/requests/?flagged=true")
    assert response.status_code == 200
    assert [r["id"] for r in response.json()["results"]] == [flagged.pk]
