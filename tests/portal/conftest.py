"""Helpers for the portal's view tests: fresh step-ups, audit events in bulk, query counts."""

import pytest
from django.db import connection, transaction
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from accounts import stepup
from broker import audit
from broker.catalog import SECURITY_GROUP
from broker.models import Channel
from tests.factories import GroupFactory, UserFactory


def mark_fresh(client) -> None:
    """The session verified a second factor just now (as the step-up page would)."""
    session = client.session
    session[stepup.SESSION_KEY] = timezone.now().isoformat()
    session.save()


@pytest.fixture
def security(db):
    user = UserFactory(username="frank")
    user.groups.add(GroupFactory(name=SECURITY_GROUP))
    return user


@pytest.fixture
def many_events(db):
    def make(n, *, actor=None):
        with transaction.atomic():
            for i in range(n):
                audit.record("test.event", actor=actor, target=("thing", i), via=Channel.CLI, subject="alice")

    return make


@pytest.fixture
def constant_queries(client, django_assert_num_queries):
    """Count the queries of a page with a few rows, add many rows, and require the same count."""

    def check(url: str, add_rows) -> int:
        add_rows(10)
        with CaptureQueriesContext(connection) as small:
            assert client.get(url).status_code == 200
        add_rows(40)
        with django_assert_num_queries(len(small.captured_queries)):
            response = client.get(url)
        assert response.status_code == 200
        return len(small.captured_queries)

    return check
