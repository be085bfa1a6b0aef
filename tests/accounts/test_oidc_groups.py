"""A group removed at the provider is removed here at the next sign-in, with the reaction to lost eligibility."""

from datetime import timedelta

import pytest
from django.contrib.auth.models import Group, User

from approvals import services as approvals
from approvals.models import AccessRequest
from broker.models import AuditEvent, Channel
from grants.models import Grant
from tests.accounts.test_oidc_signin import sso_sign_in
from tests.factories import EligibilityFactory, RoleFactory, StageFactory, UserFactory

pytestmark = pytest.mark.django_db


@pytest.fixture
def eligible_by_idp_group(db):
    """Two roles for members of idp-dba: one approved by carol, one auto-approved."""
    dba = Group.objects.create(name="idp-dba")
    carol = UserFactory(username="carol")
    pending_role = RoleFactory(slug="prod-db")
    StageFactory(role=pending_role, position=0, users=[carol])
    EligibilityFactory(role=pending_role, group=dba)
    auto_role = RoleFactory(slug="sandbox", auto_approve=True, connector_config={"group": "sandbox-admins"})
    EligibilityFactory(role=auto_role, group=dba)
    return pending_role, auto_role


def test_a_group_removed_at_the_provider_is_removed_at_the_next_sign_in_and_ends_what_it_gave(
    client, sso, eligible_by_idp_group, django_capture_on_commit_callbacks
):
    pending_role, auto_role = eligible_by_idp_group
    sso.person("olivia", groups=["idp-dba"])
    sso_sign_in(client, sso, "olivia")
    olivia = User.objects.get(username="olivia")
    request = approvals.request_create(
        requester=olivia, role=pending_role, duration=timedelta(hours=1), justification="INC-7", via=Channel.PORTAL
    )
    with django_capture_on_commit_callbacks(execute=True):  # the worker's activation
        grant = approvals.request_create(
            requester=olivia, role=auto_role, duration=timedelta(hours=1), justification="INC-7", via=Channel.PORTAL
        ).grant
    assert Grant.objects.get(pk=grant.pk).status == "active"
    client.logout()

    sso.person("olivia", groups=[])
    with django_capture_on_commit_callbacks(execute=True):  # the reaction queued when the change commits
        sso_sign_in(client, sso, "olivia")

    assert not olivia.groups.filter(name="idp-dba").exists()
    request.refresh_from_db()
    assert request.status == AccessRequest.Status.CANCELLED
    grant.refresh_from_db()
    assert (grant.status, grant.end_reason) == ("revoked", "eligibility_lost")
    assert not olivia.groups.filter(name="sandbox-admins").exists()
    change = AuditEvent.objects.get(action="user.groups_changed", subject="olivia", data__removed=["idp-dba"])
    assert change.channel == "oidc"
    assert AuditEvent.objects.filter(action="request.cancelled", target_id=str(request.pk)).exists()
