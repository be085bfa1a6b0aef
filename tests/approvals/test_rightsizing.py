"""Right-sizing: unused eligibilities listed, removed where the policy says so, and kept out of the catalog."""

from datetime import timedelta
from textwrap import dedent

import pytest
from django.core.management import call_command
from django.utils import timezone

from approvals import rightsizing
from broker import policy
from broker.models import AuditEvent, Eligibility, EligibilityExclusion
from broker.policy.suggest import suggest
from grants.models import Grant
from tests.conftest import T0
from tests.factories import AccessRequestFactory, EligibilityFactory, GroupFactory, UserFactory

pytestmark = pytest.mark.django_db

LONG_AGO = T0 - timedelta(days=200)


@pytest.fixture
def old_role(make_role, approver, requester):
    """db-admin, alice eligible since 200 days before T0, unused after 90 days (the default)."""
    role = make_role(stages=[[approver]], slug="db-admin", eligible=[])
    EligibilityFactory(role=role, user=requester, created_at=LONG_AGO)
    return role


def whos(now=T0):
    return [(u.role.slug, u.who) for u in rightsizing.unused_eligibilities(now=now)]


def test_an_eligibility_nobody_used_within_the_window_is_unused(old_role):
    assert whos() == [("db-admin", "alice")]


def test_a_request_within_the_window_makes_it_used(old_role, requester):
    AccessRequestFactory(requester=requester, role=old_role, created_at=T0 - timedelta(days=30), status="approved")
    assert whos() == []


def test_the_last_request_is_reported_however_old(old_role, requester):
    AccessRequestFactory(requester=requester, role=old_role, created_at=T0 - timedelta(days=120), status="approved")
    [unused] = rightsizing.unused_eligibilities(now=T0)
    assert unused.last_asked == T0 - timedelta(days=120)


def test_a_young_eligibility_is_not_unused(make_role, approver, requester):
    role = make_role(stages=[[approver]], slug="new-role", eligible=[])
    EligibilityFactory(role=role, user=requester, created_at=T0 - timedelta(days=10))
    assert whos() == []


def test_a_group_is_used_when_any_member_asked(make_role, approver, outsider):
    group = GroupFactory(name="dba")
    outsider.groups.add(group)
    role = make_role(stages=[[approver]], slug="grp-role", eligible=[])
    EligibilityFactory(role=role, group=group, created_at=LONG_AGO)
    assert whos() == [("grp-role", "group:dba")]
    AccessRequestFactory(requester=outsider, role=role, created_at=T0 - timedelta(days=1))
    assert whos() == []


def test_the_roles_own_window_overrides_the_setting(old_role, requester):
    AccessRequestFactory(requester=requester, role=old_role, created_at=T0 - timedelta(days=40), status="approved")
    old_role.unused_after = timedelta(days=30)
    old_role.save()
    assert whos() == [("db-admin", "alice")]


def test_the_global_window_comes_from_the_setting(old_role, requester, settings):
    settings.UNUSED_ELIGIBILITY_AFTER = timedelta(days=300)
    assert whos() == []


# --- Removing automatically ---------------------------------------------------------------------------


def test_roles_without_remove_unused_keep_their_unused_eligibilities(old_role):
    assert rightsizing.remove_unused(now=T0) == 0
    assert Eligibility.objects.filter(role=old_role).exists()


def test_remove_unused_removes_the_eligibility_keeps_it_out_and_audits(old_role, requester):
    old_role.remove_unused = True
    old_role.save()
    assert rightsizing.remove_unused(now=T0) == 1
    assert not Eligibility.objects.filter(role=old_role).exists()
    exclusion = EligibilityExclusion.objects.get(role=old_role, user=requester)
    assert exclusion.reason == "unused" and "never asked" in exclusion.detail
    event = AuditEvent.objects.get(action="eligibility.removed")
    assert (event.role, event.subject, event.data["policy_patch"]) == (
        "db-admin",
        "alice",
        "remove alice from db-admin",
    )


def test_a_removal_ends_the_live_grant_it_allowed(role, active_grant, requester, django_capture_on_commit_callbacks):
    grant = active_grant()
    eligibility = Eligibility.objects.get(role=role, user=requester)
    with django_capture_on_commit_callbacks(execute=True):
        rightsizing.eligibility_remove(eligibility_id=eligibility.pk, reason="unused", detail="test", via="worker")
    grant.refresh_from_db()
    assert grant.status == Grant.Status.REVOKED and grant.end_reason == "eligibility_lost"


# --- The policy file: not added back, and the suggestion --------------------------------------------------

POLICY = dedent(
    """\
    # the roles
    roles:
      - slug: db-admin
        name: DB admin
        max_duration: 1h
        requires_justification: false
        review: {unused_after: 90d, remove_unused: true}
        approval: {stages: [{approvers: {users: [carol]}}]}
        target: {connector: django_group, config: {group: db-admins}}
    eligibility:
      - role: db-admin
        users: [alice, bob]
    """
)


@pytest.fixture
def applied(requester, approver, clock):
    UserFactory(username="bob")
    policy.apply(policy.load(POLICY))
    Eligibility.objects.update(created_at=LONG_AGO)
    return policy.load(POLICY)


def test_the_review_keys_are_applied_to_the_role(applied):
    role = Eligibility.objects.first().role
    assert (role.unused_after, role.remove_unused) == (timedelta(days=90), True)


def test_a_removed_eligibility_is_not_added_back_by_the_unchanged_file(applied, requester):
    rightsizing.remove_unused(now=timezone.now())
    changes = policy.apply(policy.load(POLICY))
    assert not Eligibility.objects.filter(user=requester).exists()
    [excluded] = [c for c in changes if c.kind == "excluded" and c.detail.startswith("alice ")]
    assert excluded.detail.startswith("alice stays removed (unused:")
    assert "apply_policy --suggest" in excluded.detail


def test_the_exclusion_is_dropped_once_the_file_no_longer_lists_it(applied, requester):
    rightsizing.remove_unused(now=timezone.now())
    policy.apply(policy.load(POLICY.replace("[alice, bob]", "[bob]")))
    assert not EligibilityExclusion.objects.filter(user=requester).exists()
    policy.apply(policy.load(POLICY))
    assert Eligibility.objects.filter(user=requester).exists()


def test_suggest_prints_the_file_without_the_unused_eligibilities(applied, requester):
    AccessRequestFactory(requester=requester, role=Eligibility.objects.first().role, created_at=timezone.now())
    text, dropped = suggest(POLICY, applied, now=timezone.now())
    assert text.startswith("# the roles\nroles:\n")
    assert text.endswith("eligibility:\n  - role: db-admin\n    users: [alice]\n")
    assert list(dropped) == [("db-admin", "bob")]
    policy.load(text)  # still a valid file


def test_apply_policy_suggest_prints_the_file_and_changes_nothing(applied, tmp_path, capsys):
    path = tmp_path / "policy.yaml"
    path.write_text(POLICY)
    call_command("apply_policy", str(path), "--suggest")
    out = capsys.readouterr()
    assert "eligibility: []" in out.out
    assert "left out: alice from db-admin" in out.err
    assert Eligibility.objects.count() == 2


def test_suggest_keeps_the_recertification_of_an_entry(applied):
    text = POLICY.replace("users: [alice, bob]\n", "users: [alice, bob]\n    recertify: {every: 90d}\n")
    out, _ = suggest(text, policy.load(text), now=LONG_AGO + timedelta(days=30))  # nothing unused yet then
    assert "    recertify: {every: 90d, grace: 14d, expire: false}\n" in out
    assert policy.load(out).recertify("db-admin") == policy.load(text).recertify("db-admin")
