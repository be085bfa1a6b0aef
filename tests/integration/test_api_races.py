"""API races on PostgreSQL with real concurrent connections."""

import contextlib
import threading

import pytest
from django.utils import timezone
from rest_framework.test import APIClient

from accounts import tokens
from accounts.models import ApiToken
from accounts.tokens import token_create
from approvals.models import AccessRequest, IdempotencyKey
from broker.errors import Conflict
from broker.models import Channel
from tests.factories import EligibilityFactory, RoleFactory, StageFactory, UserFactory
from tests.integration.test_races import run_together

pytestmark = pytest.mark.django_db(transaction=True)


def test_two_concurrent_posts_with_one_idempotency_key_make_one_request_and_one_answer():
    alice, carol = UserFactory(username="alice"), UserFactory(username="carol")
    role = RoleFactory(slug="deploy")
    StageFactory(role=role, users=[carol])
    EligibilityFactory(role=role, user=alice)
    _, text = token_create(user=alice, via=Channel.CLI)
    body = {"role": "deploy", "duration_seconds": 600, "justification": "release"}

    def post():
        client = APIClient()
        client.credentials(HTTP_AUTHORIZATION=f"Bearer {text}")
        response = client.post("/api/v1/requests/", body, format="json", HTTP_IDEMPOTENCY_KEY="once")
        return response.status_code, response.json(), response.get("Idempotent-Replayed")

    first, second = run_together(post, post)
    assert first[0] == second[0] == 201, (first, second)
    assert first[1]["id"] == second[1]["id"]
    assert sorted([first[2], second[2]], key=str) == [None, "true"]
    assert AccessRequest.objects.filter(requester=alice).count() == 1
    assert IdempotencyKey.objects.count() == 1


def test_two_concurrent_token_creations_at_the_cap_make_one_token(monkeypatch):
    """At 49 live tokens, two creations at once: exactly one passes the cap of 50.

    Each creation waits (at most two seconds) for the other between counting and inserting, so
    without a lock both count 49 and both insert; with the lock the second one waits for the
    first to commit, counts 50 and is refused.
    """
    alice = UserFactory(username="alice")
    for _ in range(tokens.MAX_LIVE_TOKENS - 1):
        token_create(user=alice, via=Channel.CLI)
    both_counted = threading.Barrier(2, timeout=2)
    create = tokens.token_create

    def create_after_the_other_counted(**kwargs):
        with contextlib.suppress(threading.BrokenBarrierError):
            both_counted.wait()
        return create(**kwargs)

    monkeypatch.setattr(tokens, "token_create", create_after_the_other_counted)

    def make():
        return tokens.token_create_for_self(user=alice, mfa_at=timezone.now(), via=Channel.API)

    outcomes = run_together(make, make)
    refused = [o for o in outcomes if isinstance(o, Conflict)]
    assert len(refused) == 1, outcomes
    assert refused[0].code == "too_many_tokens"
    assert ApiToken.objects.filter(user=alice, revoked_at__isnull=True).count() == tokens.MAX_LIVE_TOKENS
