"""API races on PostgreSQL with real concurrent connections."""

import pytest
from rest_framework.test import APIClient

from accounts.tokens import token_create
from approvals.models import AccessRequest, IdempotencyKey
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
