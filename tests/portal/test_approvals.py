"""The approver's inbox and decisions: comment and code in one form, every boundary refused politely."""

from datetime import timedelta

import pytest
from django.utils import timezone

from approvals import recertification
from approvals import services as approvals
from approvals.models import AccessRequest, Decision, Recertification
from broker.models import AuditEvent, Channel, Eligibility
from grants.models import Grant
from tests.factories import AccessRequestFactory, DecisionFactory, UserFactory
from tests.otp import authenticator, code_of, wrong_code_of
from tests.portal.conftest import mark_fresh

pytestmark = pytest.mark.django_db


@pytest.fixture
def pending(request_role, role):
    return request_role(role)


def decide(client, req, verdict, **fields):
    return client.post(f"/requests/{req.pk}/decide/", {"verdict": verdict, **fields})


def test_inbox_lists_requests_waiting_for_me_oldest_first_with_the_count_in_the_nav(client, approver, role):
    now = timezone.now()
    older = AccessRequestFactory(role=role, created_at=now - timedelta(minutes=2))
    newer = AccessRequestFactory(role=role, created_at=now - timedelta(minutes=1))
    client.force_login(approver)
    response = client.get("/approvals/")
    body = response.content.decode()
    assert [r.pk for r in response.context["page"].object_list] == [older.pk, newer.pk]
    assert '<span class="count">2<span class="visually-hidden"> waiting for you</span></span>' in body
    assert older.justification in body  # the facts needed to decide


def test_inbox_is_empty_for_the_requester_and_for_others(client, pending, requester, outsider, auditor):
    for user in (requester, outsider, auditor):
        client.force_login(user)
        response = client.get("/approvals/")
        assert list(response.context["page"].object_list) == []
        assert "Nothing is waiting for you." in response.content.decode()


def test_inbox_takes_constant_queries(client, approver, role, constant_queries):
    client.force_login(approver)
    assert constant_queries("/approvals/", lambda n: AccessRequestFactory.create_batch(n, role=role)) <= 12


def test_approve_with_comment_and_code_in_one_form(client, pending, approver, django_capture_on_commit_callbacks):
    authenticator(approver)
    client.force_login(approver)
    assert "id_code" in client.get(f"/requests/{pending.pk}/").content.decode()
    with django_capture_on_commit_callbacks(execute=True):
        response = decide(client, pending, "approve", comment="fine", code=code_of(approver))
    assert response.status_code == 302
    assert response["Location"] == "/approvals/"
    pending.refresh_from_db()
    assert pending.status == "approved"
    assert Grant.objects.get(request=pending).status == "active"
    event = AuditEvent.objects.get(action="request.approval_given")
    assert (event.actor_name, event.channel, event.data["comment"]) == ("carol", "portal", "fine")
    assert AuditEvent.objects.filter(action="auth.step_up", actor_name="carol").exists()


def test_a_wrong_code_decides_nothing(client, pending, approver):
    authenticator(approver)
    client.force_login(approver)
    wrong = wrong_code_of(approver)
    response = decide(client, pending, "approve", code=wrong)
    assert response.status_code == 400
    assert "wrong, expired or was already used" in response.content.decode()
    pending.refresh_from_db()
    assert pending.status == "pending"


def test_approving_without_a_code_is_refused_and_decides_nothing(client, pending, approver):
    authenticator(approver)
    client.force_login(approver)
    response = decide(client, pending, "approve")
    assert response.status_code == 400
    assert response.context["form"].errors["code"]
    pending.refresh_from_db()
    assert pending.status == AccessRequest.Status.PENDING


def test_deny_needs_a_comment(client, pending, approver):
    client.force_login(approver)
    mark_fresh(client)
    response = decide(client, pending, "deny")
    assert response.status_code == 400
    assert "Say why you deny" in response.content.decode()
    response = decide(client, pending, "deny", comment="not during the freeze")
    assert response.status_code == 302
    pending.refresh_from_db()
    assert pending.status == "denied"


def test_deny_also_needs_a_step_up_in_the_portal(client, pending, approver):
    authenticator(approver)
    client.force_login(approver)
    response = decide(client, pending, "deny", comment="no")
    assert response.status_code == 400
    pending.refresh_from_db()
    assert pending.status == "pending"


def test_the_requester_cannot_approve_their_own_request(client, pending, requester):
    client.force_login(requester)
    mark_fresh(client)
    response = decide(client, pending, "approve")
    assert response.status_code == 400
    assert "cannot approve or deny your own request" in response.content.decode()
    pending.refresh_from_db()
    assert pending.status == "pending"


def test_an_auditor_sees_the_request_but_cannot_decide(client, pending, auditor):
    client.force_login(auditor)
    mark_fresh(client)
    response = decide(client, pending, "approve")
    assert response.status_code == 400
    assert "not an approver" in response.content.decode()
    pending.refresh_from_db()
    assert pending.status == "pending"


def test_an_outsider_gets_404(client, pending, outsider):
    client.force_login(outsider)
    mark_fresh(client)
    assert decide(client, pending, "approve").status_code == 404


def test_deciding_twice_is_a_message_not_a_crash(client, pending, approver):
    client.force_login(approver)
    mark_fresh(client)
    decide(client, pending, "deny", comment="no")
    response = decide(client, pending, "approve")
    assert response.status_code == 400
    assert "already denied" in response.content.decode()


def test_get_on_decide_changes_nothing(client, pending, approver):
    client.force_login(approver)
    assert client.get(f"/requests/{pending.pk}/decide/?verdict=approve").status_code == 405
    pending.refresh_from_db()
    assert pending.status == "pending"


def test_a_second_stage_approver_sees_it_only_after_the_first_stage(
    client, requester, approver, approver2, make_role, request_role
):
    role = make_role(stages=[[approver], [approver2]], slug="two-stage")
    req = request_role(role)
    client.force_login(approver2)
    assert list(client.get("/approvals/").context["page"].object_list) == []
    client.force_login(approver)
    mark_fresh(client)
    decide(client, req, "approve")
    client.force_login(approver2)
    assert [r.pk for r in client.get("/approvals/").context["page"].object_list] == [req.pk]
    body = client.get(f"/requests/{req.pk}/").content.decode()
    assert "Approved by carol" in body and "Still 1 from: dave" in body


def test_approvers_through_a_group_see_the_request(client, requester, make_role, request_role):
    from tests.factories import GroupFactory, StageFactory

    leads = GroupFactory(name="leads")
    lead = UserFactory(username="lena")
    lead.groups.add(leads)
    role = make_role(slug="grouped")
    StageFactory(role=role, position=0, groups=[leads])
    req = request_role(role)
    client.force_login(lead)
    assert [r.pk for r in client.get("/approvals/").context["page"].object_list] == [req.pk]


def test_decided_list_shows_my_decisions(client, pending, approver):
    client.force_login(approver)
    mark_fresh(client)
    decide(client, pending, "deny", comment="not now")
    response = client.get("/approvals/decided/")
    rows = list(response.context["page"].object_list)
    assert [r.pk for r in rows] == [pending.pk]
    assert rows[0].my_verdict == "deny"
    assert "not now" in response.content.decode()


def test_decided_list_takes_constant_queries(client, approver, role, constant_queries):
    def add(n):
        DecisionFactory.create_batch(
            n, approver=approver, verdict=Decision.Verdict.DENY, comment="no", request__role=role
        )

    client.force_login(approver)
    constant_queries("/approvals/decided/", add)


def test_expired_requests_leave_the_inbox(clock, client, pending, approver):
    clock.shift(timedelta(hours=25))
    client.force_login(approver)  # (the earlier session would have expired by now)
    assert list(client.get("/approvals/").context["page"].object_list) == []
    assert AccessRequest.objects.get().status == "pending"  # the sweeper closes it; the inbox hides it


def test_approvers_see_user_text_without_bidi_controls_or_zero_width_characters(client, approver, role, request_role):
    req = request_role(role, justification="fix \u202egnp.exe\u202c now\u200b", ticket="CHG\u200b-1\x1b[2J")
    approvals.request_approve(request_id=req.pk, approver=approver, comment="ok \u202eevil", via=Channel.PORTAL)
    client.force_login(approver)
    for url in ("/approvals/decided/", f"/requests/{req.pk}/", "/requests/?scope=all"):
        body = client.get(url).content.decode()
        for char in ("\u202e", "\u202c", "\u200b", "\x1b"):
            assert char not in body, (url, char)
    detail = client.get(f"/requests/{req.pk}/").content.decode()
    assert "fix gnp.exe now" in detail and "CHG-1[2J" in detail and "ok evil" in detail


def test_the_inbox_shows_user_text_without_bidi_controls(client, approver, role, request_role):
    request_role(role, justification="fix \u202egnp.exe\u202c now\u200b", ticket="CHG\u200b-1")
    client.force_login(approver)
    body = client.get("/approvals/").content.decode()
    assert "fix gnp.exe now" in body and "CHG-1" in body
    assert "\u202e" not in body and "\u200b" not in body


# --- Eligibility reviews (recertification) ------------------------------------------------------------


@pytest.fixture
def due_review(role, requester):
    Eligibility.objects.filter(role=role, user=requester).update(
        created_at=timezone.now() - timedelta(days=100),
        recertify_every=timedelta(days=90),
        recertify_grace=timedelta(days=14),
    )
    recertification.recertifications_open()
    return Recertification.objects.get()


def test_the_owner_sees_the_review_task_and_confirms_it(client, approver, due_review):
    client.force_login(approver)
    page = client.get("/reviews/").content.decode()
    assert "alice → db-admin" in page and 'value="confirm"' in page
    response = client.post(f"/reviews/{due_review.pk}/decide/", {"verdict": "confirm"})
    assert response.status_code == 302
    due_review.refresh_from_db()
    assert due_review.status == "confirmed"
    assert "Confirmed: alice may still ask for db-admin." in client.get("/reviews/").content.decode()


def test_the_owner_removes_with_a_comment_and_downloads_the_patch(client, approver, due_review):
    client.force_login(approver)
    client.post(f"/reviews/{due_review.pk}/decide/", {"verdict": "remove", "comment": "left the team"})
    due_review.refresh_from_db()
    assert due_review.status == "removed"
    response = client.get("/reviews/patch/")
    assert response["Content-Type"].startswith("text/yaml")
    assert "remove_users: [alice]" in response.content.decode()


def test_someone_else_cannot_decide_a_review(client, outsider, due_review):
    client.force_login(outsider)
    assert client.post(f"/reviews/{due_review.pk}/decide/", {"verdict": "confirm"}).status_code == 404
