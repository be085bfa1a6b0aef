"""Approver email links: opening changes nothing; only the approver, signed in and stepped up, decides, once."""

from datetime import timedelta

import pytest
from django.core import signing
from django.test import override_settings
from django.utils import timezone

from accounts import stepup
from approvals import services
from approvals.email_links import SALT
from approvals.models import AccessRequest, ApprovalLink
from broker.models import AuditEvent, Channel
from tests.otp import authenticator, code_of, link_in, messages_to, wrong_code_of

pytestmark = pytest.mark.django_db


@pytest.fixture
def mfa_role(make_role, approver, approver2):
    return make_role(stages=[[approver, approver2]], slug="prod-db", requires_mfa=True)


@pytest.fixture
def pending(mfa_role, request_role, django_capture_on_commit_callbacks, clock):
    """Alice asks for prod-db; carol and dave get their emails."""
    from django.utils import timezone

    with django_capture_on_commit_callbacks(execute=True):
        req = request_role(mfa_role, mfa_at=timezone.now(), ticket="CHG-7")
    return req


@pytest.fixture
def carol_link(pending, approver):
    (message,) = messages_to(approver)
    return link_in(message)


@pytest.fixture
def carol_device(approver):
    return authenticator(approver)


def refusals(reason=None):
    events = AuditEvent.objects.filter(action="approval_link.refused")
    return [e for e in events if reason is None or e.data["reason"] == reason]


def fresh(req) -> AccessRequest:
    req.refresh_from_db()
    return req


def decide(client, link, device, decision="approve", **extra):
    return client.post(link, {"decision": decision, "code": code_of(device), **extra})


def test_each_approver_gets_one_email_with_a_link_of_their_own(pending, approver, approver2, requester):
    (to_carol,), (to_dave,) = messages_to(approver), messages_to(approver2)
    assert link_in(to_carol) != link_in(to_dave)
    assert messages_to(requester) == []
    assert ApprovalLink.objects.filter(request=pending).count() == 2


def test_the_link_is_stored_only_as_a_hash(carol_link):
    token = carol_link.split("/")[2]
    assert not ApprovalLink.objects.filter(token_hash__contains=token[:20]).exists()
    assert len(ApprovalLink.objects.first().token_hash) == 64


def test_opening_the_link_shows_the_facts_and_changes_nothing(client, pending, carol_link):
    response = client.get(carol_link)
    assert response.status_code == 200
    assert response["Cache-Control"] == "no-store"
    assert response["Referrer-Policy"] == "strict-origin"
    page = response.content.decode()
    assert "alice" in page and "prod-db" in page and "incident INC-1" in page and "CHG-7" in page
    assert "Sign in to decide" in page
    assert fresh(pending).status == "pending"
    assert ApprovalLink.objects.filter(used_at__isnull=False).count() == 0


def test_head_and_repeated_gets_leave_the_link_valid(client, pending, carol_link, approver, carol_device):
    assert client.head(carol_link).status_code == 200
    for _ in range(3):
        assert client.get(carol_link).status_code == 200
    client.force_login(approver)
    assert decide(client, carol_link, carol_device).status_code == 200
    assert fresh(pending).status == "approved"


def test_a_post_without_a_session_is_sent_to_sign_in_and_changes_nothing(client, pending, carol_link, carol_device):
    response = decide(client, carol_link, carol_device)
    assert response.status_code == 302
    assert response["Location"].startswith("/account/login/?next=/email-link/")
    assert fresh(pending).status == "pending"


def test_after_sign_in_the_approver_comes_back_to_the_page(client, pending, carol_link, approver, carol_device):
    login = client.get(carol_link).content.decode()
    assert "/account/login/?next=/email-link/" in login
    response = client.post(
        "/account/login/", {"username": "carol", "password": "correct horse battery staple", "next": carol_link}
    )
    assert (response.status_code, response["Location"]) == (302, carol_link)
    page = client.get(carol_link).content.decode()
    assert 'value="approve"' in page and 'value="deny"' in page and 'name="code"' in page


def test_the_approver_approves_with_a_code_and_the_decision_is_audited_as_email(
    client, pending, carol_link, approver, carol_device
):
    client.force_login(approver)
    response = decide(client, carol_link, carol_device, comment="go ahead")
    assert response.status_code == 200
    assert b"You approved request" in response.content
    req = fresh(pending)
    assert req.status == "approved"
    decision = req.decisions.get()
    assert (decision.approver, decision.channel, decision.comment) == (approver, "email", "go ahead")
    assert AuditEvent.objects.get(action="request.approved").channel == Channel.EMAIL
    assert AuditEvent.objects.filter(action="auth.step_up", channel="email", actor=approver).exists()
    assert ApprovalLink.objects.get(approver=approver).used_for == "approve"


def test_the_approver_denies_with_a_comment(client, pending, carol_link, approver, carol_device):
    client.force_login(approver)
    decide(client, carol_link, carol_device, decision="deny", comment="not during the freeze")
    req = fresh(pending)
    assert req.status == "denied"
    assert AuditEvent.objects.get(action="request.denied").channel == Channel.EMAIL


def test_deny_without_a_comment_is_refused_and_the_link_stays_usable(
    client, pending, carol_link, approver, carol_device, clock
):
    client.force_login(approver)
    response = decide(client, carol_link, carol_device, decision="deny")
    assert response.status_code == 400
    assert b"comment is required" in response.content
    assert fresh(pending).status == "pending"
    # The code was accepted, so the session is fresh: no second code needed within the window.
    response = client.post(carol_link, {"decision": "deny", "comment": "no"})
    assert fresh(pending).status == "denied"


def test_deciding_needs_a_code_when_the_session_is_not_fresh(client, pending, carol_link, approver, carol_device):
    client.force_login(approver)
    response = client.post(carol_link, {"decision": "approve"})
    assert response.status_code == 400
    assert b"one-time code" in response.content
    assert fresh(pending).status == "pending"


def test_a_wrong_code_decides_nothing(client, pending, carol_link, approver, carol_device):
    client.force_login(approver)
    wrong = wrong_code_of(carol_device)
    response = client.post(carol_link, {"decision": "approve", "code": wrong})
    assert response.status_code == 400
    assert fresh(pending).status == "pending"
    assert AuditEvent.objects.filter(action="auth.step_up_failed", channel="email").exists()


def test_an_approver_without_a_device_is_offered_enrolment_and_brought_back(client, pending, carol_link, approver):
    client.force_login(approver)
    page = client.get(carol_link).content.decode()
    assert "/account/mfa/enrol/?next=%2Femail-link%2F" in page
    response = client.post(carol_link, {"decision": "approve", "code": "123456"})
    assert response.status_code == 400
    assert b"/account/mfa/enrol/?next=" in response.content
    assert fresh(pending).status == "pending"


def test_a_fresh_session_decides_without_typing_a_code_again(client, pending, carol_link, approver, carol_device):
    client.force_login(approver)
    session = client.session
    session[stepup.SESSION_KEY] = "2026-03-02T09:00:00+00:00"
    session.save()
    client.post(carol_link, {"decision": "approve"})
    assert fresh(pending).status == "approved"


def test_another_signed_in_user_gets_403_without_the_facts_and_an_audit_event(client, pending, carol_link, approver2):
    client.force_login(approver2)  # dave is an approver too, but this is carol's link
    for response in (client.get(carol_link), client.post(carol_link, {"decision": "approve", "code": "000000"})):
        assert response.status_code == 403
        assert b"sent to someone else" in response.content
        assert b"alice" not in response.content and b"INC-1" not in response.content
    assert fresh(pending).status == "pending"
    assert len(refusals("wrong_user")) == 2
    assert refusals()[0].actor == approver2


def test_a_second_post_with_the_same_link_is_refused(client, make_role, request_role, approver, approver2, clock,
                                                     django_capture_on_commit_callbacks):  # fmt: skip
    # Two approvals needed: after carol's, the request is still pending.
    role = make_role(stages=[[approver, approver2]], required=[2], slug="two-keys")
    with django_capture_on_commit_callbacks(execute=True):
        req = request_role(role)
    link = link_in(messages_to(approver)[0])
    device = authenticator(approver)
    client.force_login(approver)
    decide(client, link, device)
    assert fresh(req).decisions.count() == 1
    clock.shift(timedelta(seconds=30))
    response = decide(client, link, device)
    assert response.status_code == 410
    assert b"already been used" in response.content
    assert fresh(req).decisions.count() == 1
    assert refusals("used")


def test_a_link_for_an_older_version_is_refused_without_leaking_the_request(
    client, make_role, request_role, approver, approver2, clock, django_capture_on_commit_callbacks
):
    role = make_role(stages=[[approver, approver2]], required=[2], slug="two-keys")
    with django_capture_on_commit_callbacks(execute=True):
        req = request_role(role)
    old_dave_link = link_in(messages_to(approver2)[0])
    with django_capture_on_commit_callbacks(execute=True):
        services.request_approve(request_id=req.pk, approver=approver, via=Channel.PORTAL)
    # Dave got a fresh link for the new version; the old one is outdated.
    assert len(messages_to(approver2)) == 2
    new_dave_link = link_in(messages_to(approver2)[1])
    assert new_dave_link != old_dave_link

    response = client.get(old_dave_link)
    assert response.status_code == 410
    assert b"has changed since this email was sent" in response.content
    assert b"alice" not in response.content and b"INC-1" not in response.content
    assert refusals("outdated")[0].actor is None
    assert client.get(new_dave_link).status_code == 200


def test_a_link_to_a_request_decided_in_the_portal_is_refused(client, pending, carol_link, approver, approver2):
    services.request_deny(
        request_id=pending.pk, approver=approver2, comment="no", via=Channel.PORTAL, mfa_at=timezone.now()
    )
    client.force_login(approver)
    response = client.get(carol_link)
    assert response.status_code == 410
    # The approver it was sent to is told where to look.
    assert f"/requests/{pending.pk}/".encode() in response.content


def test_a_tampered_link_is_refused_without_an_audit_event_per_hit(client, pending, carol_link):
    token = carol_link.split("/")[2]
    forged = signing.dumps({"r": pending.pk, "a": 1, "v": 1, "e": 2_000_000_000, "n": "x"}, salt="other")
    before = AuditEvent.objects.count()
    for bad in (token[:-2] + ("AA" if token[-2:] != "AA" else "BB"), token[:20], forged, "x"):
        for method in (client.get, client.head):
            response = method(f"/email-link/{bad}/")
            assert response.status_code == 400
            assert b"alice" not in response.content
        assert b"not valid" in client.get(f"/email-link/{bad}/").content
    assert AuditEvent.objects.count() == before


@override_settings(EMAIL_LINK_FAILURE_LIMIT=5, EMAIL_LINK_FAILURE_WINDOW=timedelta(minutes=15))
def test_made_up_links_past_the_limit_are_answered_429_with_one_summary_event(client, clock):
    for i in range(5):
        assert client.get(f"/email-link/made-up-{i}/").status_code == 400
    assert refusals() == []
    for i in range(20):
        response = client.head(f"/email-link/made-up-more-{i}/")
        assert response.status_code == 429
        assert 0 < int(response["Retry-After"]) <= 15 * 60
    (summary,) = refusals("invalid")
    assert summary.ip == "127.0.0.1" and summary.target_id == ""
    assert (summary.data["count"], summary.data["window_seconds"]) == (6, 900)


@override_settings(EMAIL_LINK_FAILURE_LIMIT=2, EMAIL_LINK_FAILURE_WINDOW=timedelta(minutes=15))
def test_the_count_of_made_up_links_is_per_address_and_per_window(client, clock):
    for _ in range(3):
        client.get("/email-link/nonsense/")
    assert client.get("/email-link/nonsense/").status_code == 429
    assert client.get("/email-link/nonsense/", REMOTE_ADDR="192.0.2.7").status_code == 400
    clock.shift(timedelta(minutes=16))
    assert client.get("/email-link/nonsense/").status_code == 400
    for _ in range(3):
        client.get("/email-link/nonsense/")
    assert len(refusals("invalid")) == 2  # one per window


@override_settings(EMAIL_LINK_FAILURE_LIMIT=1)
def test_a_genuine_link_opens_from_an_address_that_sent_made_up_ones(client, carol_link):
    for _ in range(3):
        client.get("/email-link/nonsense/")
    assert client.get(carol_link).status_code == 200


def test_a_well_signed_link_that_is_refused_is_still_audited_each_time(client, pending, carol_link, approver2):
    client.force_login(approver2)
    for _ in range(2):
        assert client.get(carol_link).status_code == 403
    assert len(refusals("wrong_user")) == 2


def test_a_well_signed_token_that_was_never_issued_is_refused(client, pending, approver):
    token = signing.dumps({"r": pending.pk, "a": approver.pk, "v": pending.version, "e": 2_000_000_000}, salt=SALT)
    assert client.get(f"/email-link/{token}/").status_code == 400


def test_an_expired_link_is_refused(client, pending, carol_link, approver, carol_device, clock):
    clock.shift(timedelta(hours=24))
    client.force_login(approver)
    response = decide(client, carol_link, carol_device)
    assert response.status_code == 410
    assert b"expired" in response.content
    assert fresh(pending).status == "pending"
    assert refusals("expired")


def test_post_without_csrf_token_is_refused(pending, carol_link, approver, carol_device):
    from django.test import Client

    client = Client(enforce_csrf_checks=True)
    client.force_login(approver)
    response = decide(client, carol_link, carol_device)
    assert response.status_code == 403
    assert fresh(pending).status == "pending"


def csrf_client(approver, link):
    """A client that enforces CSRF like a browser: the token from the page's form."""
    from django.test import Client

    client = Client(enforce_csrf_checks=True)
    client.force_login(approver)
    page = client.get(link).content.decode()
    token = page.split('name="csrfmiddlewaretoken" value="')[1].split('"')[0]
    return client, token


@pytest.mark.parametrize("secure", [False, True])
def test_the_form_posts_with_its_own_origin_which_strict_origin_lets_browsers_send(
    pending, carol_link, approver, carol_device, secure, settings
):
    # Under Referrer-Policy: strict-origin a browser sends the page's real Origin with the form's
    # POST (and at most the origin as Referer): Django's ordinary CSRF check accepts it.
    settings.ALLOWED_HOSTS = ["testserver"]
    client, token = csrf_client(approver, carol_link)
    response = client.post(
        carol_link,
        {"decision": "approve", "code": code_of(carol_device), "csrfmiddlewaretoken": token},
        HTTP_ORIGIN=f"{'https' if secure else 'http'}://testserver",
        secure=secure,
    )
    assert response.status_code == 200
    assert fresh(pending).status == "approved"


def test_a_null_origin_is_refused_like_anywhere_else_even_with_the_csrf_token(
    pending, carol_link, approver, carol_device
):
    # The page no longer relaxes Django's origin check (no private CsrfViewMiddleware override).
    client, token = csrf_client(approver, carol_link)
    response = client.post(
        carol_link,
        {"decision": "approve", "code": code_of(carol_device), "csrfmiddlewaretoken": token},
        HTTP_ORIGIN="null",
    )
    assert response.status_code == 403
    assert fresh(pending).status == "pending"


def test_a_null_origin_without_the_csrf_token_is_still_refused(pending, carol_link, approver, carol_device):
    client, _ = csrf_client(approver, carol_link)
    response = client.post(carol_link, {"decision": "approve", "code": code_of(carol_device)}, HTTP_ORIGIN="null")
    assert response.status_code == 403
    assert fresh(pending).status == "pending"


def test_a_foreign_origin_is_refused(pending, carol_link, approver, carol_device):
    client, token = csrf_client(approver, carol_link)
    response = client.post(
        carol_link,
        {"decision": "approve", "code": code_of(carol_device), "csrfmiddlewaretoken": token},
        HTTP_ORIGIN="https://evil.example",
    )
    assert response.status_code == 403
    assert fresh(pending).status == "pending"


def test_the_requester_gets_no_link_even_in_the_approver_group(make_role, request_role, requester, approver,
                                                              django_capture_on_commit_callbacks):  # fmt: skip
    role = make_role(stages=[[requester, approver]], slug="self-check")
    with django_capture_on_commit_callbacks(execute=True):
        request_role(role)
    assert messages_to(requester) == []
    assert len(messages_to(approver)) == 1


def test_the_wrong_user_can_sign_out_and_come_back_as_the_approver(client, pending, carol_link, approver2):
    client.force_login(approver2)
    page = client.get(carol_link).content.decode()
    assert 'action="/account/logout/"' in page
    response = client.post("/account/logout/", {"next": f"/account/login/?next={carol_link}"})
    assert response["Location"] == f"/account/login/?next={carol_link}"


def test_a_passkey_user_can_verify_first_and_come_back_to_decide(client, pending, carol_link, approver, carol_device):
    client.force_login(approver)
    page = client.get(carol_link).content.decode()
    assert "/account/mfa/verify/?next=%2Femail-link%2F" in page


def test_a_refused_form_explains_itself_on_a_portal_page(pending, carol_link, approver, carol_device):
    client, _ = csrf_client(approver, carol_link)
    response = client.post(carol_link, {"decision": "approve", "code": code_of(carol_device)})
    assert response.status_code == 403
    assert b"Nothing was changed" in response.content


def test_the_link_page_shows_user_text_without_bidi_controls(client, make_role, request_role, approver,
                                                          django_capture_on_commit_callbacks):  # fmt: skip
    role = make_role(stages=[[approver]], slug="plain")
    with django_capture_on_commit_callbacks(execute=True):
        request_role(role, justification="fix \u202egnp.exe\u202c now\u200b", ticket="CHG\u200b-1")
    (message,) = messages_to(approver)
    body = client.get(link_in(message)).content.decode()
    assert "fix gnp.exe now" in body and "CHG-1" in body
    assert "\u202e" not in body and "\u200b" not in body


# --- What the page looks like ----------------------------------------------------------------------


def test_the_link_page_has_the_portals_layout_and_fact_grid(client, pending, carol_link, approver, carol_device):
    client.force_login(approver)
    page = client.get(carol_link).content.decode()
    assert '<nav aria-label="Main"' in page and '<footer class="site-footer">' in page
    assert '<dl class="facts" aria-labelledby="facts">' in page
    assert "<dt>Ticket</dt><dd>CHG-7</dd>" in page
    assert '<div class="columns">' in page and 'aria-labelledby="decide"' in page


def test_signed_out_the_page_shows_utc_and_says_so_whatever_the_browsers_zone(client, pending, carol_link):
    client.cookies["broker_tz"] = "Asia/Tokyo"
    page = client.get(carol_link).content.decode()
    assert "2 Mar 2026, 09:00 UTC" in page  # asked at T0
    assert "Times are in UTC: nobody is signed in on this page yet." in page
    assert "<strong data-tz-name>UTC</strong> (nobody is signed in here)" in page
    assert "JST" not in page


def test_signed_in_the_page_shows_the_readers_zone(client, pending, carol_link, approver):
    from accounts.preferences import time_zone_set

    time_zone_set(user=approver, zone="Europe/Berlin")
    client.force_login(approver)
    page = client.get(carol_link).content.decode()
    assert "2 Mar 2026, 10:00 CET" in page
    assert "nobody is signed in" not in page


def test_required_to_deny_is_tied_to_the_comment_box(client, pending, carol_link, approver, carol_device):
    client.force_login(approver)
    page = client.get(carol_link).content.decode()
    assert 'aria-describedby="id_comment_helptext"' in page
    assert '<div class="helptext" id="id_comment_helptext">Required to deny; the requester sees it.</div>' in page


def test_a_refused_decision_is_announced_and_linked_to_its_field(client, pending, carol_link, approver, carol_device):
    client.force_login(approver)
    page = decide(client, carol_link, carol_device, decision="deny").content.decode()
    assert "<title>Error: Decide request" in page
    assert 'role="alert"' in page and 'href="#id_comment"' in page
    assert 'aria-invalid="true"' in page and "id_comment_error" in page
