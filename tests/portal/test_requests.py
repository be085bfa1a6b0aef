"""Portal pages for requesting a role and following the request."""

from datetime import UTC, datetime, timedelta

import pytest
from django.utils import timezone

from accounts import stepup
from accounts.preferences import time_zone_set
from approvals import services as approvals
from approvals.models import AccessRequest
from broker.models import AuditEvent, Channel
from grants.models import Grant
from tests.conftest import T0
from tests.factories import AccessRequestFactory, GroupFactory, UserFactory
from tests.otp import authenticator, code_of, wrong_code_of
from tests.portal.conftest import mark_fresh

pytestmark = pytest.mark.django_db


def post_request(client, role, **fields):
    data = {"duration": "3600", "justification": "INC-1: disk full", **fields}
    return client.post(f"/roles/{role.slug}/request/", data)


# --- Home -------------------------------------------------------------------------------------------


def test_anonymous_visitors_are_sent_to_login(client, role):
    for url in ("/", "/requests/", "/grants/", "/approvals/", f"/roles/{role.slug}/request/", "/account/tokens/"):
        response = client.get(url)
        assert response.status_code == 302, url
        assert response["Location"].startswith("/account/login/"), url


def test_home_shows_grants_pending_requests_and_requestable_roles(client, requester, approver, make_role, active_grant):
    grant = active_grant()
    other = make_role(stages=[[approver]], slug="net-admin", name="Network admin")
    pending = approvals.request_create(requester=requester, role=other, justification="change 7", via=Channel.PORTAL)
    client.force_login(requester)
    response = client.get("/")
    assert response.status_code == 200
    body = response.content.decode()
    assert f'href="/grants/{grant.pk}/"' in body
    assert "data-countdown" in body and "left" in body
    assert "Network admin" in body
    assert f"/requests/{pending.pk}/" in body


def test_home_empty_states_say_what_to_do(client, outsider):
    client.force_login(outsider)
    body = client.get("/").content.decode()
    assert "You hold no privileged role right now." in body
    assert "You are not eligible for any role yet." in body
    assert "Ask an administrator" in body


# --- The request form -------------------------------------------------------------------------------


def test_request_form_offers_presets_within_the_role_bounds(client, requester, make_role, approver):
    role = make_role(
        stages=[[approver]], max_duration=timedelta(hours=2), min_duration=timedelta(minutes=30), slug="bounded"
    )
    client.force_login(requester)
    body = client.get(f"/roles/{role.slug}/request/").content.decode()
    assert 'value="1800"' in body and 'value="3600"' in body and 'value="7200"' in body
    assert 'value="900"' not in body and 'value="14400"' not in body
    assert 'value="custom"' in body


def test_the_request_form_names_the_people_who_can_approve(client, requester, approver, approver2, make_role):
    leads = GroupFactory(name="dba-leads")
    approver2.groups.add(leads)
    requester.groups.add(leads)  # alice is a lead too, but never approves her own request
    UserFactory(username="gone", is_active=False).groups.add(leads)
    role = make_role(stages=[[approver], []], slug="two-stage")
    role.stages.get(position=1).groups.add(leads)
    client.force_login(requester)
    page = client.get(f"/roles/{role.slug}/request/").content.decode()
    assert "<strong>Stage 1</strong>: 1 approval from carol." in page
    assert "<strong>Stage 2</strong>: 1 approval from dave (group dba-leads)." in page
    assert "alice" not in page.split('id="h-approvers"')[1].split("</ol>")[0]
    assert "gone" not in page


def test_the_request_form_says_when_nobody_can_approve(client, requester, make_role):
    role = make_role(stages=[[]], slug="orphan")
    client.force_login(requester)
    assert (
        "nobody yet (no active approver: ask an administrator)"
        in client.get(f"/roles/{role.slug}/request/").content.decode()
    )


def test_a_role_the_user_is_not_eligible_for_is_not_found(client, outsider, role):
    client.force_login(outsider)
    assert client.get(f"/roles/{role.slug}/request/").status_code == 404
    assert post_request(client, role).status_code == 404
    assert not AccessRequest.objects.exists()


def test_posting_the_form_creates_a_pending_request_audited_from_the_portal(client, requester, role):
    client.force_login(requester)
    response = post_request(client, role, ticket="CHG-9")
    req = AccessRequest.objects.get()
    assert response.status_code == 302
    assert response["Location"] == f"/requests/{req.pk}/"
    assert (req.status, req.duration, req.ticket) == ("pending", timedelta(hours=1), "CHG-9")
    event = AuditEvent.objects.get(action="request.created")
    assert (event.channel, event.ip) == ("portal", "127.0.0.1")


def test_custom_duration_is_parsed_and_bounded_by_the_role(client, requester, role):
    client.force_login(requester)
    response = post_request(client, role, duration="custom", custom_duration="5h")
    assert response.status_code == 400
    assert "At most 4 h for db-admin." in response.content.decode()
    response = post_request(client, role, duration="custom", custom_duration="soon")
    assert "Enter a duration such as 45m" in response.content.decode()
    response = post_request(client, role, duration="custom", custom_duration="1h30m")
    assert response.status_code == 302
    assert AccessRequest.objects.get().duration == timedelta(minutes=90)


def test_missing_justification_is_reported_next_to_the_field(client, requester, role):
    client.force_login(requester)
    response = post_request(client, role, justification="")
    assert response.status_code == 400
    form = response.context["form"]
    assert form.errors["justification"]
    assert 'aria-invalid="true"' in response.content.decode()
    assert not AccessRequest.objects.exists()


def test_required_ticket_is_enforced(client, requester, make_role, approver):
    role = make_role(stages=[[approver]], requires_ticket=True, slug="ticketed")
    client.force_login(requester)
    response = post_request(client, role)
    assert response.status_code == 400
    assert response.context["form"].errors["ticket"]


def test_a_role_requiring_mfa_asks_for_a_code_in_the_same_form(client, requester, make_role, approver, clock):
    role = make_role(stages=[[approver]], requires_mfa=True, slug="mfa-role")
    authenticator(requester)
    client.force_login(requester)
    assert "id_code" in client.get(f"/roles/{role.slug}/request/").content.decode()
    response = post_request(client, role)
    assert response.status_code == 400
    assert response.context["form"].errors["code"]
    response = post_request(client, role, code=wrong_code_of(requester))
    assert "wrong, expired or was already used" in response.content.decode()
    assert not AccessRequest.objects.exists()
    clock.shift(timedelta(seconds=3))  # django-otp throttles after a wrong code
    response = post_request(client, role, code=code_of(requester))
    assert response.status_code == 302
    assert AccessRequest.objects.get().status == "pending"
    assert stepup.SESSION_KEY in client.session  # the code counts as a step-up for the next minutes


def test_a_fresh_step_up_needs_no_code(client, requester, make_role, approver):
    role = make_role(stages=[[approver]], requires_mfa=True, slug="mfa-role")
    client.force_login(requester)
    mark_fresh(client)
    body = client.get(f"/roles/{role.slug}/request/").content.decode()
    assert "id_code" not in body
    assert "no code needed" in body
    assert post_request(client, role).status_code == 302


def test_without_an_mfa_device_the_form_says_to_enrol(client, requester, make_role, approver):
    role = make_role(stages=[[approver]], requires_mfa=True, slug="mfa-role")
    client.force_login(requester)
    response = post_request(client, role, code="123456")
    assert response.status_code == 400
    assert "/account/mfa/" in response.content.decode()


def test_a_scheduled_start_is_read_in_the_viewers_time_zone(client, requester, role):
    client.force_login(requester)
    time_zone_set(user=requester, zone="Europe/Berlin")
    local = (timezone.now() + timedelta(days=2)).astimezone(timezone.get_fixed_timezone(0))
    start = f"{local.date().isoformat()}T10:00"
    assert post_request(client, role, starts_at=start).status_code == 302
    starts_at = AccessRequest.objects.get().starts_at
    assert starts_at.astimezone(UTC).hour in (8, 9)  # 10:00 in Berlin is 09:00 or 08:00 UTC


def test_break_glass_needs_a_confirmation_and_grants_at_once(
    client, requester, make_role, django_capture_on_commit_callbacks
):
    role = make_role(
        break_glass=True, slug="glass", max_duration=timedelta(hours=1), default_duration=timedelta(minutes=30)
    )
    client.force_login(requester)
    mark_fresh(client)
    body = client.get(f"/roles/{role.slug}/request/").content.decode()
    assert "security team is notified" in body
    assert "starts_at" not in body
    response = post_request(client, role, duration="1800")
    assert response.status_code == 400
    assert response.context["form"].errors["confirm"]
    with django_capture_on_commit_callbacks(execute=True):
        response = post_request(client, role, duration="1800", confirm="on")
    grant = Grant.objects.get()
    assert response["Location"] == f"/grants/{grant.pk}/"
    assert grant.break_glass and grant.status == "active"


def test_a_duplicate_request_is_refused_with_a_message_not_an_error_page(client, requester, role):
    client.force_login(requester)
    post_request(client, role)
    response = post_request(client, role)
    assert response.status_code == 400
    assert "already have a pending request" in response.content.decode()


# --- Request detail and cancel ---------------------------------------------------------------------


@pytest.fixture
def pending(request_role, role):
    return request_role(role)


def test_request_page_is_visible_to_requester_approver_and_auditor_only(
    client, pending, requester, approver, auditor, outsider
):
    for user, status in ((requester, 200), (approver, 200), (auditor, 200), (outsider, 404)):
        client.force_login(user)
        assert client.get(f"/requests/{pending.pk}/").status_code == status, user


def test_request_page_tells_the_story_and_who_still_has_to_approve(client, pending, requester):
    client.force_login(requester)
    response = client.get(f"/requests/{pending.pk}/")
    body = response.content.decode()
    assert "alice requested db-admin for 1 h" in body
    assert "Still 1 from: carol" in body
    assert "Withdraw this request" in body
    assert response.context["form"] is None  # the requester never decides


def test_auditor_sees_no_buttons(client, pending, auditor):
    client.force_login(auditor)
    body = client.get(f"/requests/{pending.pk}/").content.decode()
    assert "Withdraw" not in body and "Approve" not in body


def test_requester_withdraws_a_pending_request(client, pending, requester):
    client.force_login(requester)
    assert client.get(f"/requests/{pending.pk}/cancel/").status_code == 405  # GET changes nothing
    response = client.post(f"/requests/{pending.pk}/cancel/")
    assert response.status_code == 302
    pending.refresh_from_db()
    assert pending.status == "cancelled"


def test_nobody_else_can_withdraw(client, pending, approver, outsider):
    client.force_login(outsider)
    assert client.post(f"/requests/{pending.pk}/cancel/").status_code == 404
    client.force_login(approver)
    client.post(f"/requests/{pending.pk}/cancel/")
    pending.refresh_from_db()
    assert pending.status == "pending"


def test_request_list_shows_mine_and_filters_by_status(client, pending, requester, request_role, make_role, approver):
    client.force_login(requester)
    body = client.get("/requests/").content.decode()
    assert f"/requests/{pending.pk}/" in body
    assert f"/requests/{pending.pk}/" not in client.get("/requests/?status=denied").content.decode()


def test_request_list_takes_constant_queries(client, auditor, role, constant_queries):
    client.force_login(auditor)
    constant_queries("/requests/?scope=visible", lambda n: AccessRequestFactory.create_batch(n, role=role))


def test_extension_and_schedule_fields_survive_a_round_trip_through_timezones(client):
    # The templates show times with the zone's abbreviation and a machine-readable UTC value.
    from broker.portal.templatetags import when

    moment = datetime(2026, 7, 1, 12, 0, tzinfo=UTC)
    with timezone.override("Europe/Berlin"):
        html = when(moment)
    assert 'datetime="2026-07-01T12:00:00Z"' in html and "14:00 CEST" in html


# --- Anomaly flags ----------------------------------------------------------------------------------


@pytest.fixture
def unusual_hour(requester, role, settings, clock):
    """alice usually asks for db-admin at 09:00 UTC; now it is 03:00."""
    settings.ANOMALY_SCORING = True
    for day in range(1, 7):
        AccessRequestFactory(requester=requester, role=role, status="approved", created_at=T0 - timedelta(days=day))
    clock.move_to(T0.replace(hour=3))


def test_a_flagged_request_asks_for_a_code_and_says_why(client, requester, role, unusual_hour):
    authenticator(requester)
    client.force_login(requester)
    response = post_request(client, role)
    assert response.status_code == 400
    body = response.content.decode()
    assert 'name="code"' in body
    assert "unusual for you" in body and "Asked at 03:00 UTC" in body
    assert not AccessRequest.objects.filter(requester=requester, status="pending").exists()


def test_a_flagged_request_with_its_code_shows_the_reasons_to_the_approver(
    client, requester, approver, role, unusual_hour
):
    authenticator(requester)
    client.force_login(requester)
    response = post_request(client, role, code=code_of(requester))
    req = AccessRequest.objects.get(requester=requester, status="pending")
    assert response.status_code == 302 and req.flagged
    client.force_login(approver)
    page = client.get(f"/requests/{req.pk}/").content.decode()
    assert "flagged" in page and "Asked at 03:00 UTC" in page
    assert "Asked at 03:00 UTC" in client.get("/approvals/").content.decode()


def test_auditors_filter_the_request_list_to_flagged_requests(client, auditor, role, requester):
    flagged = AccessRequestFactory(role=role, flagged=True, flag_reasons=[{"code": "burst", "sentence": "Many."}])
    plain = AccessRequestFactory(role=role)
    client.force_login(auditor)
    body = client.get("/requests/?scope=visible&flagged=1").content.decode()
    assert f"/requests/{flagged.pk}/" in body
    assert f"/requests/{plain.pk}/" not in body


# --- Resources and conditions -----------------------------------------------------------------------


def test_a_request_outside_the_roles_window_shows_the_reason_on_the_form(client, requester, role, clock):
    role.conditions = {"time_zone": "Europe/Berlin", "windows": [{"days": ["sat", "sun"], "hours": "00:00-24:00"}]}
    role.save(update_fields=["conditions"])
    client.force_login(requester)
    response = post_request(client, role)
    assert response.status_code == 400
    body = response.content.decode()
    assert "outside the allowed times" in body
    assert "Mon 10:00 in Europe/Berlin" in body
    assert not AccessRequest.objects.filter(role=role).exists()


def test_a_role_with_resources_is_asked_for_on_the_resource_chosen_in_the_form(client, requester, make_role):
    envs = make_role(slug="envs", auto_approve=True, resources={"names": ["staging", "production"]})
    client.force_login(requester)
    page = client.get(f"/roles/{envs.slug}/request/").content.decode()
    assert '<option value="production">production</option>' in page
    response = post_request(client, envs, resource="production")
    assert response.status_code == 302
    grant = Grant.objects.get(role=envs)
    assert grant.resource == "production"
    assert "on production" in client.get(f"/grants/{grant.pk}/").content.decode()


def test_a_role_with_resources_refuses_the_form_without_one(client, requester, make_role):
    envs = make_role(slug="envs", auto_approve=True, resources={"names": ["staging"]})
    client.force_login(requester)
    response = post_request(client, envs)
    assert response.status_code == 400
    assert "This field is required" in response.content.decode()


def test_the_request_page_lists_the_roles_conditions(client, requester, role):
    role.conditions = {"networks": ["10.0.0.0/8"], "max_risk": "low"}
    role.save(update_fields=["conditions"])
    client.force_login(requester)
    page = client.get(f"/roles/{role.slug}/request/").content.decode()
    assert "Only from the networks 10.0.0.0/8." in page
    assert "Only while your risk level is at most low" in page
