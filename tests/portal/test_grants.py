"""Grant pages: countdown, relinquish, extension, administrator revoke, break-glass review."""

from datetime import timedelta

import pytest
from django.utils import timezone

from approvals.models import AccessRequest
from approvals.services import request_create
from broker.models import AuditEvent, Channel
from grants.models import Grant
from tests.factories import GrantFactory, RoleFactory, UserFactory
from tests.portal.conftest import mark_fresh

pytestmark = pytest.mark.django_db


@pytest.fixture
def grant(active_grant):
    return active_grant()


def test_grant_page_is_visible_to_holder_approver_auditor_and_staff_only(
    client, grant, requester, approver, auditor, admin_user, outsider
):
    for user, status in ((requester, 200), (approver, 200), (auditor, 200), (admin_user, 200), (outsider, 404)):
        client.force_login(user)
        assert client.get(f"/grants/{grant.pk}/").status_code == status, user


def test_holder_sees_countdown_relinquish_and_extension(client, grant, requester):
    client.force_login(requester)
    body = client.get(f"/grants/{grant.pk}/").content.decode()
    assert "data-countdown" in body
    assert "Relinquish now" in body
    assert "Request extension" in body
    assert "Revoke grant" not in body
    assert "Switched on in the target" in body  # the timeline


def test_auditor_sees_no_buttons(client, grant, auditor):
    client.force_login(auditor)
    body = client.get(f"/grants/{grant.pk}/").content.decode()
    for button in ("Relinquish now", "Request extension", "Revoke grant", "Mark as reviewed"):
        assert button not in body


def test_holder_relinquishes(client, grant, requester):
    client.force_login(requester)
    assert client.get(f"/grants/{grant.pk}/relinquish/").status_code == 405
    response = client.post(f"/grants/{grant.pk}/relinquish/")
    assert response.status_code == 302
    grant.refresh_from_db()
    assert (grant.status, grant.end_reason) == ("revoked", "relinquished")
    assert grant.user.groups.filter(name="db-admin-holders").exists() is False
    event = AuditEvent.objects.get(action="grant.relinquished")
    assert (event.channel, event.ip) == ("portal", "127.0.0.1")


def test_others_cannot_relinquish(client, grant, approver, auditor, outsider):
    client.force_login(outsider)
    assert client.post(f"/grants/{grant.pk}/relinquish/").status_code == 404
    for user in (approver, auditor):
        client.force_login(user)
        client.post(f"/grants/{grant.pk}/relinquish/")
    grant.refresh_from_db()
    assert grant.status == "active"


def test_holder_requests_an_extension(client, grant, requester):
    client.force_login(requester)
    response = client.post(f"/grants/{grant.pk}/extend/", {"duration": "3600", "justification": "still on it"})
    ext = AccessRequest.objects.get(kind="extension")
    assert response["Location"] == f"/requests/{ext.pk}/"
    assert (ext.extends_grant_id, ext.duration, ext.status) == (grant.pk, timedelta(hours=1), "pending")
    body = client.get(f"/grants/{grant.pk}/").content.decode()
    assert f'Extension <a href="/requests/{ext.pk}/">' in body


def test_an_extension_beyond_the_role_limit_is_refused_next_to_the_field(client, grant, requester):
    client.force_login(requester)
    response = client.post(
        f"/grants/{grant.pk}/extend/", {"duration": "custom", "custom_duration": "10h", "justification": "x"}
    )
    assert response.status_code == 400
    assert response.context["extension_form"].errors["duration"]
    assert not AccessRequest.objects.filter(kind="extension").exists()


def test_only_the_holder_asks_for_more_time(client, grant, admin_user, outsider):
    client.force_login(admin_user)
    assert client.post(f"/grants/{grant.pk}/extend/", {"duration": "3600"}).status_code == 403
    client.force_login(outsider)
    assert client.post(f"/grants/{grant.pk}/extend/", {"duration": "3600"}).status_code == 404


def test_staff_revokes_with_a_reason(client, grant, admin_user):
    client.force_login(admin_user)
    assert "Revoke grant" in client.get(f"/grants/{grant.pk}/").content.decode()
    response = client.post(f"/grants/{grant.pk}/revoke/", {"reason": ""})
    assert response.status_code == 400
    grant.refresh_from_db()
    assert grant.status == "active"
    response = client.post(f"/grants/{grant.pk}/revoke/", {"reason": "left the on-call rota"})
    assert response.status_code == 302
    grant.refresh_from_db()
    assert (grant.status, grant.end_reason, grant.end_comment) == ("revoked", "revoked", "left the on-call rota")
    assert AuditEvent.objects.get(action="grant.revoked").actor_name == "root"


def test_non_staff_cannot_revoke(client, grant, auditor, approver, requester):
    for user in (auditor, approver, requester):
        client.force_login(user)
        assert client.post(f"/grants/{grant.pk}/revoke/", {"reason": "x"}).status_code == 403, user
    grant.refresh_from_db()
    assert grant.status == "active"


def test_grant_list_mine_and_everyones(client, grant, requester, auditor, outsider):
    client.force_login(requester)
    assert [g.pk for g in client.get("/grants/").context["page"].object_list] == [grant.pk]
    client.force_login(outsider)
    assert list(client.get("/grants/?scope=all").context["page"].object_list) == []
    client.force_login(auditor)
    assert [g.pk for g in client.get("/grants/?scope=all&status=live").context["page"].object_list] == [grant.pk]


def test_grant_list_takes_constant_queries(client, auditor, role, constant_queries):
    client.force_login(auditor)
    constant_queries("/grants/?scope=all", lambda n: GrantFactory.create_batch(n, role=role))


# --- Break-glass post-hoc review -------------------------------------------------------------------


@pytest.fixture
def glass_grant(requester, make_role, request_role, django_capture_on_commit_callbacks):
    role = make_role(break_glass=True, slug="glass", requires_mfa=True)
    with django_capture_on_commit_callbacks(execute=True):
        req = request_role(role, mfa_at=timezone.now())
    return Grant.objects.get(request=req)


def test_security_reviews_a_break_glass_activation(client, glass_grant, security):
    client.force_login(security)
    body = client.get("/review/").content.decode()
    assert f"Grant #{glass_grant.pk}" in body
    response = client.post(f"/grants/{glass_grant.pk}/review/", {"note": "INC-9 confirmed", "next": "review"})
    assert response["Location"] == "/review/"
    glass_grant.refresh_from_db()
    assert glass_grant.reviewed_by == security and glass_grant.review_note == "INC-9 confirmed"
    assert "No break-glass activation is waiting for review." in client.get("/review/").content.decode()


def test_an_extension_puts_a_reviewed_break_glass_grant_back_on_the_review_page(
    client, glass_grant, security, requester
):
    Role = type(glass_grant.role)
    Role.objects.filter(pk=glass_grant.role_id).update(max_total_duration=timedelta(hours=8))
    client.force_login(security)
    client.post(f"/grants/{glass_grant.pk}/review/", {"note": "INC-9 confirmed", "next": "review"})
    request_create(
        requester=requester,
        extends_grant_id=glass_grant.pk,
        duration=timedelta(hours=1),
        justification="still down",
        via=Channel.PORTAL,
        mfa_at=timezone.now(),
    )
    awaiting = client.get("/review/").context["awaiting"].object_list
    assert [g.pk for g in awaiting] == [glass_grant.pk]
    assert "awaiting review" in client.get(f"/grants/{glass_grant.pk}/").content.decode()


def test_auditors_and_the_holder_do_not_review(client, glass_grant, auditor, requester):
    client.force_login(auditor)
    assert client.post(f"/grants/{glass_grant.pk}/review/", {"note": "x"}).status_code == 403
    client.force_login(requester)
    assert client.post(f"/grants/{glass_grant.pk}/review/", {"note": "x"}).status_code == 403
    glass_grant.refresh_from_db()
    assert glass_grant.reviewed_at is None


def test_staff_cannot_review_their_own_break_glass(client, make_role, admin_user, django_capture_on_commit_callbacks):
    role = make_role(break_glass=True, slug="glass2", eligible=[admin_user])
    client.force_login(admin_user)
    mark_fresh(client)
    with django_capture_on_commit_callbacks(execute=True):
        req = request_create(
            requester=admin_user, role=role, justification="sev1", via=Channel.PORTAL, mfa_at=timezone.now()
        )
    grant = Grant.objects.get(request=req)
    response = client.post(f"/grants/{grant.pk}/review/", {"note": "self"}, follow=True)
    assert "cannot review your own" in response.content.decode()
    grant.refresh_from_db()
    assert grant.reviewed_at is None


def test_an_ordinary_user_cannot_see_the_review_page(client, requester, outsider):
    for user in (requester, outsider):
        client.force_login(user)
        assert client.get("/review/").status_code == 403


def test_security_sees_break_glass_grants_but_not_others(client, glass_grant, grant, security):
    client.force_login(security)
    assert client.get(f"/grants/{glass_grant.pk}/").status_code == 200
    assert client.get(f"/grants/{grant.pk}/").status_code == 404


def test_security_sees_only_break_glass_grants_on_the_review_page(client, glass_grant, security):
    ordinary = GrantFactory(user=UserFactory(username="olivia"), role=RoleFactory(slug="payroll-admin"))
    client.force_login(security)
    response = client.get("/review/")
    body = response.content.decode()
    assert f'href="/grants/{glass_grant.pk}/"' in body
    # Neither the table nor the charts nor their figures mention the grant security may not see.
    assert f'href="/grants/{ordinary.pk}/"' not in body
    assert "olivia" not in body and "payroll-admin" not in body
    assert response.context["figures"].total_grants == 1
    assert [g.pk for g in response.context["grants"].object_list] == [glass_grant.pk]


def test_auditors_see_every_grant_on_the_review_page(client, glass_grant, auditor):
    ordinary = GrantFactory(user=UserFactory(username="olivia"), role=RoleFactory(slug="payroll-admin"))
    client.force_login(auditor)
    response = client.get("/review/")
    assert response.context["figures"].total_grants == 2
    assert {g.pk for g in response.context["grants"].object_list} == {glass_grant.pk, ordinary.pk}


def test_a_user_with_only_a_pending_request_sees_no_grant(client, outsider):
    other = UserFactory(username="zed")
    client.force_login(other)
    assert list(client.get("/grants/").context["page"].object_list) == []
