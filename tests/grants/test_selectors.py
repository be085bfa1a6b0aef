"""Reads of grants: only an active grant inside its window counts, whatever else the row says."""

from datetime import timedelta

import pytest

from grants.models import Grant
from grants.selectors import grant_check, grants_live_for
from tests.conftest import T0
from tests.factories import GrantFactory

pytestmark = pytest.mark.django_db


@pytest.mark.parametrize("status", [s for s in Grant.Status if s != Grant.Status.ACTIVE])
def test_a_grant_in_any_state_but_active_gives_no_access_even_inside_its_window(status, requester, role, clock):
    grant = GrantFactory(user=requester, role=role, status=status, starts_at=T0)
    assert grant.starts_at <= T0 < grant.expires_at
    assert not grant.is_effective()
    assert not Grant.objects.effective().exists()
    assert grant_check(viewer=requester, username="alice", role_slug=role.slug).allowed is False


def test_an_active_grant_inside_its_window_gives_access(requester, role, clock):
    grant = GrantFactory(user=requester, role=role)
    check = grant_check(viewer=requester, username="alice", role_slug=role.slug)
    assert (check.allowed, check.grant_id, check.expires_at) == (True, grant.pk, grant.expires_at)


def test_live_grants_are_those_still_to_be_removed_soonest_ending_first(requester, make_role, clock):
    later, sooner, ending, ended = (make_role() for _ in range(4))
    GrantFactory(user=requester, role=later, status=Grant.Status.SCHEDULED, expires_at=T0 + timedelta(hours=2))
    GrantFactory(user=requester, role=sooner)
    GrantFactory(user=requester, role=ending, status=Grant.Status.REVOKE_FAILED)
    GrantFactory(user=requester, role=ended, status=Grant.Status.EXPIRED)
    assert [g.role for g in grants_live_for(requester)] == [sooner, ending, later]
