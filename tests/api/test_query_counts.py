"""Lists cost the same number of queries for 10 rows and for 200 (no query per row)."""

from datetime import timedelta

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from broker.models import AuditEvent, AuditHead, Channel
from grants.models import Grant
from tests.factories import DecisionFactory, GrantFactory

pytestmark = pytest.mark.django_db


def make_rows(world, count: int) -> None:
    """count expired grants of bob's, each with its approved request and carol's approval; count events."""
    now = timezone.now()
    for i in range(count):
        grant = GrantFactory(
            user=world.bob,
            role=world.deploy,
            status=Grant.Status.EXPIRED,
            ended_by=world.root,  # every related person is filled in, so a query per row would show
            created_at=now - timedelta(hours=2, minutes=i),
            request__channel=Channel.API,
        )
        DecisionFactory(request=grant.request, approver=world.carol, channel=Channel.API)
    last = AuditEvent.objects.order_by("-seq").first()
    AuditEvent.objects.bulk_create(
        AuditEvent(
            seq=last.seq + 1 + i,
            at=now,
            actor=world.bob,
            actor_name="bob",
            action="bulk.event",
            target_type="request",
            target_id=str(i),
            channel=Channel.API,
            data={"i": i},
            prev_hash="0" * 64,
            hash=f"{last.seq + 1 + i:064x}",
        )
        for i in range(count)
    )
    # Keep the chain's head in step, as audit.record would: exports append an event of their own.
    AuditHead.objects.filter(pk=1).update(seq=last.seq + count, hash=f"{last.seq + count:064x}")


def queries_for(client, path: str) -> int:
    client.get(path)  # the token's last_used_at is fresh afterwards
    with CaptureQueriesContext(connection) as queries:
        response = client.get(path)
        assert response.status_code == 200
        if response.streaming:
            assert b"".join(response.streaming_content).count(b"bulk.event") in (10, 200)
    return len(queries)


@pytest.mark.parametrize(
    "path",
    [
        "/api/v1/requests/?page_size=200",
        "/api/v1/grants/?page_size=200",
        "/api/v1/audit/?page_size=200",
        "/api/v1/audit/?format=jsonl",
        "/api/v1/audit/?format=csv",
    ],
)
def test_listing_10_or_200_rows_takes_the_same_number_of_queries(world, bearer, path):
    # An export also records itself in the trail: the savepoint, the head lock, the insert, the head update.
    cap = 6 + (4 if "format=" in path else 0)
    erin = bearer(world.erin)
    make_rows(world, 10)
    few = queries_for(erin, path)
    make_rows(world, 190)
    many = queries_for(erin, path)
    assert few == many, (few, many)
    assert many <= cap


def test_the_requester_list_is_constant_too(world, bearer):
    alice = bearer(world.alice)
    world.bob, world.alice = world.alice, world.bob  # rows for alice this time
    make_rows(world, 10)
    few = queries_for(alice, "/api/v1/requests/?page_size=200")
    make_rows(world, 190)
    assert queries_for(alice, "/api/v1/requests/?page_size=200") == few
