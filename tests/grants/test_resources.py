"""Resource-scoped roles: a request names one resource; grants, removal and the check are per resource."""

from datetime import timedelta

import pytest
from django.contrib.auth.models import Group
from django.core.exceptions import ValidationError

from approvals import services as approvals
from broker.errors import Conflict, Invalid
from broker.models import AuditEvent, Channel
from grants import services
from grants.connectors import connector_for
from grants.models import Grant, TargetReport
from grants.reconcile import reconcile
from grants.selectors import grant_check

pytestmark = pytest.mark.django_db


@pytest.fixture
def deploy(make_role):
    """Auto-approved, held per environment: the Django group deploy-<environment>."""
    return make_role(
        slug="deploy",
        auto_approve=True,
        resources={"names": ["staging", "production"], "patterns": [r"preview-\d+"]},
        connector_config={"group": "deploy-{resource}"},
    )


def ask(role, user, resource, **kwargs):
    req = approvals.request_create(
        requester=user, role=role, resource=resource, justification="release 7", via=Channel.PORTAL, **kwargs
    )
    return req


def hold(role, user, resource) -> Grant:
    return services.grant_activate(grant_id=ask(role, user, resource).grant.pk)


def in_group(user, name) -> bool:
    return user.groups.filter(name=name).exists()


def test_a_grant_on_a_resource_gives_the_access_of_that_resource(deploy, requester):
    grant = hold(deploy, requester, "staging")
    assert (grant.status, grant.resource) == ("active", "staging")
    assert in_group(requester, "deploy-staging") and not in_group(requester, "deploy-production")


def test_one_person_may_hold_the_role_on_two_resources_at_once(deploy, requester):
    hold(deploy, requester, "staging")
    hold(deploy, requester, "production")
    assert Grant.objects.live().filter(user=requester, role=deploy).count() == 2


def test_asking_again_for_a_resource_already_held_is_refused(deploy, requester):
    hold(deploy, requester, "staging")
    with pytest.raises(Conflict, match="deploy on staging"):
        ask(deploy, requester, "staging")


def test_relinquishing_one_resource_keeps_the_other(deploy, requester):
    staging = hold(deploy, requester, "staging")
    hold(deploy, requester, "production")
    services.grant_relinquish(grant_id=staging.pk, user=requester, via=Channel.PORTAL)
    assert not in_group(requester, "deploy-staging")
    assert in_group(requester, "deploy-production")


def test_removal_keeps_access_that_another_resource_of_the_role_still_gives(make_role, requester):
    # The config does not change with the resource: both grants give the same group.
    role = make_role(slug="shared", auto_approve=True, resources={"names": ["a", "b"]})
    first = hold(role, requester, "a")
    hold(role, requester, "b")
    services.grant_relinquish(grant_id=first.pk, user=requester, via=Channel.PORTAL)
    assert in_group(requester, role.connector_config["group"])


def test_the_check_answers_per_resource(deploy, requester):
    hold(deploy, requester, "staging")
    assert grant_check(viewer=requester, username="alice", role_slug="deploy", resource="staging").allowed
    assert not grant_check(viewer=requester, username="alice", role_slug="deploy", resource="production").allowed


def test_the_check_without_a_resource_does_not_count_a_resource_grant(deploy, requester):
    hold(deploy, requester, "staging")
    assert not grant_check(viewer=requester, username="alice", role_slug="deploy").allowed


def test_a_resource_matching_a_pattern_may_be_asked_for(deploy, requester):
    assert hold(deploy, requester, "preview-42").status == "active"
    assert in_group(requester, "deploy-preview-42")


def test_a_resource_the_role_does_not_declare_is_refused(deploy, requester):
    with pytest.raises(Invalid) as info:
        ask(deploy, requester, "preview-x")
    assert "resource" in info.value.fields


def test_a_role_with_resources_needs_one_named(deploy, requester):
    with pytest.raises(Invalid, match="per resource") as info:
        ask(deploy, requester, "")
    assert "staging, production" in info.value.fields["resource"][0]


def test_a_role_without_resources_refuses_one(role, requester):
    with pytest.raises(Invalid, match="not asked for per resource"):
        ask(role, requester, "staging")


def test_an_extension_stays_on_its_grants_resource(make_role, requester):
    role = make_role(
        slug="deploy",
        auto_approve=True,
        resources={"names": ["staging"]},
        connector_config={"group": "deploy-{resource}"},
        max_total_duration=timedelta(hours=8),
    )
    grant = hold(role, requester, "staging")
    req = approvals.request_create(
        requester=requester,
        extends_grant_id=grant.pk,
        duration=timedelta(hours=1),
        justification="release 7 runs late",
        via=Channel.PORTAL,
    )
    assert req.resource == "staging"


def test_the_audit_events_carry_the_resource(deploy, requester):
    grant = hold(deploy, requester, "staging")
    services.grant_relinquish(grant_id=grant.pk, user=requester, via=Channel.PORTAL)
    for action in ("request.created", "request.approved", "grant.scheduled", "grant.activated", "grant.relinquished"):
        assert AuditEvent.objects.get(action=action).data["resource"] == "staging", action


def test_a_role_without_resources_writes_no_resource_in_its_audit_events(role, request_role, approver):
    req = request_role(role)
    approvals.request_approve(request_id=req.pk, approver=approver, via=Channel.PORTAL)
    assert "resource" not in AuditEvent.objects.get(action="grant.scheduled").data


def test_resources_typed_in_the_admin_are_checked_like_a_policy_file(make_role):
    role = make_role(slug="typed", auto_approve=True, resources={"names": ["Prod DB"], "patterns": ["("]})
    with pytest.raises(ValidationError) as info:
        role.full_clean()
    assert len(info.value.message_dict["resources"]) == 2


def test_each_resource_is_its_own_ldap_group(make_role):
    role = make_role(
        slug="ops",
        auto_approve=True,
        resources={"names": ["staging", "production"]},
        connector="ldap_group",
        connector_config={
            "url": "ldaps://ldap.example.com",
            "bind_dn": "cn=broker,dc=example,dc=org",
            "password_env": "LDAP_PW",
            "group_dn": "cn=ops-{resource},ou=groups,dc=example,dc=org",
            "user_dn": "uid={username},ou=people,dc=example,dc=org",
        },
    )
    staging, production = connector_for(role, "staging"), connector_for(role, "production")
    assert staging.group_dn == "cn=ops-staging,ou=groups,dc=example,dc=org"
    assert staging.target_key() != production.target_key()


# --- Reconciliation, per named resource ------------------------------------------------------------


def test_reconciliation_removes_standing_access_on_one_resource_and_keeps_a_granted_one(make_role, requester):
    role = make_role(
        slug="deploy",
        auto_approve=True,
        authoritative=True,
        resources={"names": ["staging", "production"]},
        connector_config={"group": "deploy-{resource}"},
    )
    hold(role, requester, "staging")
    requester.groups.add(Group.objects.get_or_create(name="deploy-production")[0])  # by hand, no grant
    report = reconcile()
    assert report.removed == ["deploy/alice"]
    assert in_group(requester, "deploy-staging") and not in_group(requester, "deploy-production")
    assert AuditEvent.objects.get(action="drift.removed").data["resource"] == "production"


def test_reconciliation_restores_the_missing_access_of_a_grant_on_its_resource(deploy, requester):
    hold(deploy, requester, "production")
    requester.groups.remove(Group.objects.get(name="deploy-production"))
    assert reconcile().restored == ["deploy/alice"]
    assert in_group(requester, "deploy-production")


def test_reconciliation_keeps_one_report_per_named_resource(deploy):
    reconcile()
    assert sorted(TargetReport.objects.filter(roles=["deploy"]).values_list("target", flat=True)) == [
        "Django group 'deploy-production'",
        "Django group 'deploy-staging'",
    ]
