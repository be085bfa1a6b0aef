"""Step-up verification in the portal session."""

from datetime import timedelta

import pytest
from django.http import HttpResponse
from django.test import RequestFactory

from accounts import stepup
from broker.models import AuditEvent
from tests.otp import authenticator, code_of, wrong_code_of

pytestmark = pytest.mark.django_db


@pytest.fixture
def device(approver):
    return authenticator(approver)


def test_the_login_page_shows_the_sign_in_form(client):
    response = client.get("/account/login/")
    assert response.status_code == 200
    assert b'name="username"' in response.content


def test_verify_page_needs_login(client):
    response = client.get("/account/mfa/verify/")
    assert response.status_code == 302
    assert response["Location"].startswith("/account/login/")


def test_correct_code_marks_the_session_and_returns_to_next(client, approver, device, clock):
    client.force_login(approver)
    old_key = client.session.session_key
    response = client.post("/account/mfa/verify/", {"code": code_of(device), "next": "/somewhere/"})
    assert (response.status_code, response["Location"]) == (302, "/somewhere/")
    assert client.session[stepup.SESSION_KEY].startswith("2026-03-02T09:00:00")
    assert client.session.session_key != old_key
    assert AuditEvent.objects.filter(action="auth.step_up", actor=approver).exists()


def test_wrong_code_shows_an_error_and_is_audited(client, approver, device, clock):
    client.force_login(approver)
    wrong = wrong_code_of(device)
    response = client.post("/account/mfa/verify/", {"code": wrong})
    assert response.status_code == 200
    assert b"wrong, expired or was already used" in response.content
    assert stepup.SESSION_KEY not in client.session
    assert AuditEvent.objects.filter(action="auth.step_up_failed").exists()


def test_next_pointing_elsewhere_is_ignored(client, approver, device, clock):
    client.force_login(approver)
    response = client.post("/account/mfa/verify/", {"code": code_of(device), "next": "https://evil.example/"})
    assert response["Location"] == "/"


def test_step_up_required_sends_a_stale_session_to_verify_and_lets_a_fresh_one_through(client, approver, device, clock):
    protected = stepup.step_up_required(lambda request: HttpResponse("secret"))
    request = RequestFactory().get("/approve/7/")
    request.user = approver
    request.session = client.session
    response = protected(request)
    assert response.status_code == 302
    assert response["Location"] == "/account/mfa/verify/?next=%2Fapprove%2F7%2F"

    request.session[stepup.SESSION_KEY] = "2026-03-02T09:00:00+00:00"
    assert protected(request).content == b"secret"
    clock.shift(timedelta(minutes=5, seconds=1))
    assert protected(request).status_code == 302


def test_a_user_without_a_device_is_sent_to_enrolment_with_next(client, approver):
    protected = stepup.step_up_required(lambda request: HttpResponse("secret"))
    request = RequestFactory().get("/approvals/7/")
    request.user = approver
    request.session = client.session
    assert protected(request)["Location"] == "/account/mfa/enrol/?next=%2Fapprovals%2F7%2F"


def test_a_stale_post_comes_back_to_the_form_that_sent_it(client, approver, device):
    protected = stepup.step_up_required(lambda request: HttpResponse("done"))
    request = RequestFactory().post("/tokens/new/", HTTP_REFERER="http://testserver/tokens/?tab=new")
    request.user = approver
    request.session = client.session
    assert protected(request)["Location"] == "/account/mfa/verify/?next=%2Ftokens%2F%3Ftab%3Dnew"
    request = RequestFactory().post("/tokens/new/", HTTP_REFERER="https://evil.example/")
    request.user = approver
    request.session = client.session
    assert protected(request)["Location"] == "/account/mfa/verify/?next=%2F"


def test_step_up_mixin_guards_class_based_views(client, approver, device, clock):
    from django.views import View

    class Secret(stepup.StepUpRequiredMixin, View):
        def get(self, request):
            return HttpResponse("secret")

    view = Secret.as_view()
    request = RequestFactory().get("/break-glass/")
    request.user = approver
    request.session = client.session
    assert view(request).status_code == 302
    request.session[stepup.SESSION_KEY] = "2026-03-02T09:00:00+00:00"
    assert view(request).content == b"secret"


def test_anonymous_users_are_sent_to_sign_in_first():
    from django.contrib.auth.models import AnonymousUser

    protected = stepup.step_up_required(lambda request: HttpResponse("secret"))
    request = RequestFactory().get("/approvals/7/")
    request.user = AnonymousUser()
    assert protected(request)["Location"] == "/account/login/?next=/approvals/7/"


def test_verify_and_mark_returns_the_time_the_services_take_as_mfa_at(client, approver, device, clock):
    request = RequestFactory().post("/x/")
    request.user = approver
    request.session = client.session
    mfa_at = stepup.verify_and_mark(request, code_of(device))
    assert mfa_at == stepup.verified_at(request)
    assert stepup.is_recent(request)
