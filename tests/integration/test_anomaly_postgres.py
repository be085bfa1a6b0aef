"""The anomaly scoring on PostgreSQL: every read it makes is an index range, never a scan of the requests."""

from datetime import timedelta

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from approvals import anomaly
from approvals.models import AccessRequest
from broker.models import Channel
from tests.factories import RoleFactory, UserFactory

pytestmark = pytest.mark.django_db


def test_scoring_reads_only_through_indexes_on_a_filled_table(settings):
    settings.ANOMALY_SCORING = True
    people = [UserFactory(username=f"user{i}") for i in range(50)]
    roles = [RoleFactory(slug=f"role{i}") for i in range(5)]
    now = timezone.now()
    AccessRequest.objects.bulk_create(
        AccessRequest(
            role=roles[i % 5], requester=people[i % 50], status="approved", duration=timedelta(hours=1),
            channel=Channel.API, created_at=now - timedelta(minutes=i * 7), stage_started_at=now,
            expires_at=now, network="10.0.0.0/24",
        )
        for i in range(20_000)
    )  # fmt: skip
    with connection.cursor() as cursor:
        cursor.execute("ANALYZE approvals_accessrequest")
    with CaptureQueriesContext(connection) as captured:
        reasons = anomaly.assess(
            requester=people[0], role=roles[0], duration=timedelta(hours=9), network="10.9.9.0/24", now=now
        )
    assert {r.code for r in reasons} == {"long_duration", "new_network"}
    assert len(captured.captured_queries) == 4
    for query in captured.captured_queries:
        with connection.cursor() as cursor:
            cursor.execute("EXPLAIN " + query["sql"])
            plan = "\n".join(row[0] for row in cursor.fetchall())
        assert "Seq Scan on approvals_accessrequest" not in plan, plan
