"""The policy keys of issue 15: owners, an eligibility's recertify, a role's review (right-sizing)."""

from datetime import timedelta
from textwrap import dedent

import pytest

from broker import policy
from broker.models import Eligibility, Role
from tests.factories import GroupFactory, UserFactory

pytestmark = pytest.mark.django_db

POLICY = dedent(
    """\
    roles:
      - slug: db-admin
        name: DB admin
        max_duration: 1h
        owners: {users: [olga], groups: [leads]}
        review: {unused_after: 60d}
        approval: {stages: [{approvers: {users: [carol]}}]}
        target: {connector: django_group, config: {group: db-admins}}
    eligibility:
      - role: db-admin
        users: [alice]
        recertify: {every: 90d, grace: 10d, expire: true}
      - role: db-admin
        groups: [dba]
    """
)


@pytest.fixture
def directory(db):
    for name in ("alice", "carol", "olga"):
        UserFactory(username=name)
    GroupFactory(name="leads")
    GroupFactory(name="dba")


def test_owners_review_and_recertify_are_applied(directory):
    changes = policy.apply(policy.load(POLICY))
    role = Role.objects.get(slug="db-admin")
    assert list(role.owner_users.values_list("username", flat=True)) == ["olga"]
    assert list(role.owner_groups.values_list("name", flat=True)) == ["leads"]
    assert role.unused_after == timedelta(days=60)
    alice = Eligibility.objects.get(role=role, user__username="alice")
    assert (alice.recertify_every, alice.recertify_grace, alice.recertify_expire) == (
        timedelta(days=90),
        timedelta(days=10),
        True,
    )
    assert Eligibility.objects.get(role=role, group__name="dba").recertify_every is None
    assert "recertification of alice → every 90d, grace 10d, expires unanswered" in [c.detail for c in changes]


def test_applying_the_same_file_again_changes_nothing(directory):
    policy.apply(policy.load(POLICY))
    changes = policy.apply(policy.load(POLICY))
    assert [c for c in changes if c.kind not in policy.NOT_CHANGES] == []


def test_dropping_recertify_from_the_file_clears_it(directory):
    policy.apply(policy.load(POLICY))
    policy.apply(policy.load(POLICY.replace("    recertify: {every: 90d, grace: 10d, expire: true}\n", "")))
    assert Eligibility.objects.get(user__username="alice").recertify_every is None


def test_an_unknown_owner_is_an_error_with_its_line(directory):
    with pytest.raises(policy.PolicyInvalid) as caught:
        policy.load(POLICY.replace("users: [olga]", "users: [nobody]"))
    assert [(e.line, e.message) for e in caught.value.errors] == [(5, "no user 'nobody'")]


def test_a_review_period_under_a_day_is_an_error(directory):
    with pytest.raises(policy.PolicyInvalid) as caught:
        policy.load(POLICY.replace("every: 90d", "every: 2h"))
    assert [e.message for e in caught.value.errors] == ["must be at least 1d"]
