"""Step-up from the provider: a fresh strong sign-in there counts as the broker's step-up; a stale or
weak one does not, and the broker asks again (its own code, or the provider with prompt=login)."""

from datetime import timedelta
from urllib.parse import parse_qs, urlsplit

import pytest
from django.contrib.auth.models import Group, User
from django.utils import timezone

from approvals import services as approvals
from approvals.models import AccessRequest
from broker.models import AuditEvent, Channel
from tests.accounts.test_oidc_signin import finish, sso_sign_in, start
from tests.factories import EligibilityFactory, RoleFactory, StageFactory, UserFactory

pytestmark = pytest.mark.django_db


@pytest.fixture
def mfa_request(db):
    """alice asks for prod-db (requires MFA); members of idp-approvers approve."""
    approvers = Group.objects.create(name="idp-approvers")
    role = RoleFactory(slug="prod-db", requires_mfa=True)
    StageFactory(role=role, position=0, groups=[approvers])
    alice = UserFactory(username="alice")
    EligibilityFactory(role=role, user=alice)
    return approvals.request_create(
        requester=alice, role=role, duration=timedelta(hours=1), justification="INC-9", via=Channel.PORTAL,
        mfa_at=timezone.now(),
    )  # fmt: skip


def approve(client, req):
    return client.post(f"/requests/{req.pk}/decide/", {"verdict": "approve", "comment": "ok"})


def test_a_fresh_strong_sign_in_at_the_provider_approves_an_mfa_role_without_a_code(client, sso, mfa_request):
    sso.person("carol", groups=["idp-approvers"], amr=["pwd", "mfa"])
    sso_sign_in(client, sso, "carol")
    page = client.get(f"/requests/{mfa_request.pk}/")
    assert "no code needed" in page.content.decode()
    response = approve(client, mfa_request)
    assert response.status_code == 302
    mfa_request.refresh_from_db()
    assert mfa_request.status == AccessRequest.Status.APPROVED
    login = AuditEvent.objects.get(action="auth.login", subject="carol")
    assert login.data["step_up"] is True and login.data["amr"] == ["pwd", "mfa"]


def test_a_phishing_resistant_acr_counts_too(client, sso, mfa_request):
    sso.person("carol", groups=["idp-approvers"], amr=["pwd"], acr="phr")
    sso_sign_in(client, sso, "carol")
    assert approve(client, mfa_request).status_code == 302


@pytest.mark.parametrize(
    "profile",
    [
        pytest.param({"amr": ["pwd", "mfa"], "auth_age": 3600}, id="strong-but-an-hour-old"),
        pytest.param({"amr": ["pwd"], "auth_age": 0}, id="fresh-but-password-only"),
    ],
)
def test_a_stale_or_weak_sign_in_is_asked_again(client, sso, mfa_request, profile):
    sso.person("carol", groups=["idp-approvers"], acr=None, **profile)
    sso_sign_in(client, sso, "carol")
    response = approve(client, mfa_request)
    assert response.status_code == 400
    mfa_request.refresh_from_db()
    assert mfa_request.status == AccessRequest.Status.PENDING
    body = response.content.decode()
    assert 'name="code"' in body  # the broker's own second factor
    assert "/account/oidc/login/?step_up=1" in body  # or the provider again


def test_the_step_up_goes_back_to_the_provider_with_prompt_login_and_then_approves(client, sso, mfa_request, settings):
    settings.OIDC_STEP_UP_ACR_VALUES = "phr"
    sso.person("carol", groups=["idp-approvers"], amr=["pwd"], acr=None, auth_age=0)
    sso_sign_in(client, sso, "carol")
    assert approve(client, mfa_request).status_code == 400

    sso.person("carol", amr=["pwd", "hwk"])  # this time with a security key
    authorize = start(client, next_url=f"/requests/{mfa_request.pk}/", step_up=True)
    query = parse_qs(urlsplit(authorize).query)
    assert (query["prompt"], query["max_age"], query["acr_values"]) == (["login"], ["0"], ["phr"])
    callback, _ = sso.authorize(authorize, "carol")
    response = finish(client, callback)
    assert response.status_code == 302 and response["Location"] == f"/requests/{mfa_request.pk}/"
    assert approve(client, mfa_request).status_code == 302
    mfa_request.refresh_from_db()
    assert mfa_request.status == AccessRequest.Status.APPROVED
    step_up = AuditEvent.objects.get(action="auth.step_up", subject="carol")
    assert step_up.channel == "oidc" and step_up.data["amr"] == ["pwd", "hwk"]


def test_a_step_up_answered_for_someone_else_is_refused(client, sso, mfa_request):
    sso.person("carol", groups=["idp-approvers"], amr=["pwd"])
    sso.person("mallory", groups=["idp-approvers"], amr=["pwd", "mfa"])
    sso_sign_in(client, sso, "carol")
    authorize = start(client, step_up=True)
    callback, _ = sso.authorize(authorize, "mallory")
    response = finish(client, callback)
    assert response.status_code == 400
    assert AuditEvent.objects.filter(action="auth.sso_refused").latest("seq").data["reason"] == "step_up_other_person"
    assert approve(client, mfa_request).status_code == 400
    assert User.objects.filter(username="mallory").count() == 0


def test_a_strong_sign_in_at_the_provider_opens_the_admin_for_staff(client, sso):
    sso.person("sam", amr=["pwd", "mfa"])
    sso_sign_in(client, sso, "sam")
    User.objects.filter(username="sam").update(is_staff=True)
    assert client.get("/admin/").status_code == 200


def test_a_password_only_sign_in_at_the_provider_is_sent_back_to_it_for_the_admin(client, sso):
    sso.person("sam", amr=["pwd"])
    sso_sign_in(client, sso, "sam")
    User.objects.filter(username="sam").update(is_staff=True)
    response = client.get("/admin/", follow=False)
    assert response.status_code == 302
    response = client.get(response["Location"])
    assert response.status_code == 302 and response["Location"].startswith("/account/oidc/login/?step_up=1")
