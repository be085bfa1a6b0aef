"""When the database or Redis cannot be reached: 503 with Retry-After, never a 500 or a traceback.

The integration suite (tests/integration/test_outages.py) does it for real against a stopped
PostgreSQL and a stopped Redis; these pin the answer's shape on every channel.
"""

from unittest import mock

import pytest
from django.db import OperationalError
from kombu.exceptions import OperationalError as BrokerUnavailable

pytestmark = pytest.mark.django_db

TOO_MANY = OperationalError("connection failed: FATAL:  sorry, too many clients already")


def test_the_api_answers_503_json_with_retry_after_when_the_database_refuses(world, bearer):
    alice = bearer(world.alice)
    alice.raise_request_exception = False
    with mock.patch("broker.api.views.token_check", side_effect=TOO_MANY):
        response = alice.get("/api/v1/check/?role=sandbox")
    assert response.status_code == 503
    assert response["Retry-After"] == "5"
    assert response.json()["error"] == "unavailable"
    assert "allowed" not in response.json()


def test_an_api_write_answers_503_when_redis_refuses_the_task(world, bearer):
    alice = bearer(world.alice)
    alice.raise_request_exception = False
    with mock.patch("approvals.api.request_create", side_effect=BrokerUnavailable("Error 111 connecting")):
        response = alice.post("/api/v1/requests/", {"role": "deploy", "justification": "x"}, format="json")
    assert (response.status_code, response.json()["error"]) == (503, "unavailable")


def test_the_portal_shows_an_error_page_without_a_traceback(client, requester):
    client.force_login(requester)
    client.raise_request_exception = False
    with mock.patch("broker.portal.home.render", side_effect=TOO_MANY):
        response = client.get("/")
    assert response.status_code == 503
    assert response["Retry-After"] == "5"
    body = response.content.decode()
    assert "Unavailable for a moment" in body
    assert "Traceback" not in body and "too many clients" not in body


def test_other_errors_stay_500(world, bearer):
    alice = bearer(world.alice)
    alice.raise_request_exception = False
    with mock.patch("broker.api.views.token_check", side_effect=ZeroDivisionError):
        response = alice.get("/api/v1/check/?role=sandbox")
    assert (response.status_code, response.json()["error"]) == (500, "server_error")
