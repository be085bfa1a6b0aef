"""The whole story of an automation, through HTTP only, with real commits (on_commit tasks run)."""

import json
from datetime import timedelta

import pytest
import time_machine
from django.test import Client

from tests.conftest import T0
from tests.factories import EligibilityFactory, GroupFactory, RoleFactory, StageFactory, UserFactory
from tests.otp import authenticator, code_of

PASSWORD = "correct horse battery staple"


def login(username: str) -> Client:
    client = Client()
    response = client.post("/account/login/", {"username": username, "password": PASSWORD})
    assert response.status_code == 302, response.content[:300]
    return client


def token_through_the_api(username: str, user) -> dict:
    session = login(username)
    response = session.post(
        "/api/v1/tokens/",
        {"name": "pipeline", "scopes": ["read", "request", "approve"], "otp": code_of(user)},
        content_type="application/json",
    )
    assert response.status_code == 201, response.content
    return {"HTTP_AUTHORIZATION": f"Bearer {response.json()['token']}"}


@pytest.mark.django_db(transaction=True)
def test_automation_requests_gets_approved_with_totp_checks_relinquishes_and_the_audit_shows_it_all():
    with time_machine.travel(T0, tick=False) as clock:
        alice, carol = UserFactory(username="alice"), UserFactory(username="carol")
        erin = UserFactory(username="erin")
        erin.groups.add(GroupFactory(name="auditors"))
        role = RoleFactory(slug="prod-db-admin", requires_mfa=True, max_duration=timedelta(hours=4))
        StageFactory(role=role, users=[carol])
        EligibilityFactory(role=role, user=alice)
        authenticator(alice)
        authenticator(carol)

        # 1. Each person makes a token for their automation (session + one-time code).
        as_alice = token_through_the_api("alice", alice)
        as_carol = token_through_the_api("carol", carol)
        api = Client()

        # 2. The pipeline lists what it may ask for.
        roles = api.get("/api/v1/roles/", **as_alice).json()["results"]
        assert [r["slug"] for r in roles] == ["prod-db-admin"]
        assert roles[0]["requires_mfa"] is True

        # 3. It asks (a new code: the one used for the token cannot be replayed).
        clock.shift(timedelta(seconds=30))
        created = api.post(
            "/api/v1/requests/",
            {"role": "prod-db-admin", "duration_seconds": 1800, "justification": "INC-7", "otp": code_of(alice)},
            content_type="application/json",
            **as_alice,
        )
        assert created.status_code == 201, created.content
        assert created.json()["status"] == "pending"
        request_id = created.json()["id"]

        # 4. The approver approves with a TOTP code.
        approved = api.post(
            f"/api/v1/requests/{request_id}/approve/",
            {"comment": "go ahead", "otp": code_of(carol)},
            content_type="application/json",
            **as_carol,
        )
        assert approved.status_code == 200, approved.content
        assert approved.json()["status"] == "approved"
        grant_id = approved.json()["grant"]
        assert grant_id is not None

        # 5. The target system asks: allowed (the worker task ran on commit).
        check = api.get("/api/v1/check/?role=prod-db-admin", **as_alice).json()
        assert check["allowed"] is True
        assert check["grant"] == grant_id

        # 6. The holder gives the role back early.
        ended = api.post(
            f"/api/v1/grants/{grant_id}/revoke/", {"reason": "done"}, content_type="application/json", **as_alice
        )
        assert ended.status_code == 200, ended.content
        assert ended.json()["status"] == "revoked"
        assert ended.json()["end_reason"] == "relinquished"
        assert ended.json()["effective"] is False

        # 7. Denied from now on.
        assert api.get("/api/v1/check/?role=prod-db-admin", **as_alice).json()["allowed"] is False

        # 8. The auditor's export has every step, in order.
        export = login("erin").get("/api/v1/audit/?format=jsonl")
        assert export.status_code == 200
        assert export["Content-Type"].startswith("application/x-ndjson")
        events = [json.loads(line) for line in b"".join(export.streaming_content).decode().splitlines()]
        steps = [
            (e["action"], e["actor"], e["channel"])
            for e in events
            if e["action"].startswith(("token.", "request.", "grant."))
        ]
        assert steps == [
            ("token.created", "alice", "api"),
            ("token.created", "carol", "api"),
            ("request.created", "alice", "api"),
            ("request.approval_given", "carol", "api"),
            ("request.approved", "carol", "api"),
            ("grant.scheduled", "carol", "api"),
            ("grant.activated", "system", "worker"),
            ("grant.relinquished", "alice", "api"),
        ]
        assert [e["seq"] for e in events] == sorted(e["seq"] for e in events)
