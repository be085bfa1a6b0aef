"""LOCAL_LOGIN=off: people sign in through the identity provider; superusers keep the break-glass path."""

import pytest

from broker.models import AuditEvent
from tests.otp import authenticator, code_of

PASSWORD = "correct horse battery staple"  # the factories' password

pytestmark = pytest.mark.django_db


@pytest.fixture
def sso_only(settings):
    settings.OIDC_ISSUER = "https://idp.example.com"
    settings.OIDC_CLIENT_ID = "access-broker"
    settings.OIDC_PROVIDER_NAME = "Keycloak"
    settings.LOCAL_LOGIN = False


def test_the_sign_in_page_offers_single_sign_on_and_no_password_form(client, sso_only):
    body = client.get("/account/login/?next=/requests/").content.decode()
    assert "Sign in with Keycloak" in body
    assert "/account/oidc/login/?next=/requests/" in body
    assert 'name="password"' not in body and "Forgot your password?" not in body


def test_a_posted_password_is_refused(client, sso_only, requester):
    response = client.post("/account/login/", {"username": requester.username, "password": PASSWORD})
    assert response.status_code == 403
    assert "_auth_user_id" not in client.session


def test_password_reset_is_gone(client, sso_only):
    assert client.get("/account/password-reset/").status_code == 404


def test_both_ways_are_offered_while_local_passwords_are_on(client, settings):
    settings.OIDC_ISSUER = "https://idp.example.com"
    body = client.get("/account/login/").content.decode()
    assert "Sign in with single sign-on" in body and 'name="password"' in body


def test_a_superuser_signs_in_at_the_admin_with_password_and_code_as_break_glass(client, sso_only, admin_user):
    device = authenticator(admin_user)
    response = client.post(
        "/admin/login/?next=/admin/", {"username": "root", "password": PASSWORD, "otp_token": code_of(device)}
    )
    assert response.status_code == 302 and response["Location"] == "/admin/"
    event = AuditEvent.objects.get(action="auth.login", subject="root")
    assert event.data["break_glass"] is True


def test_other_staff_cannot_use_the_admin_sign_in_when_local_passwords_are_off(client, sso_only):
    from tests.factories import UserFactory

    staff = UserFactory(username="sam", is_staff=True)
    device = authenticator(staff)
    response = client.post("/admin/login/", {"username": "sam", "password": PASSWORD, "otp_token": code_of(device)})
    assert response.status_code == 200
    assert "LOCAL_LOGIN=off" in response.content.decode()
    assert "_auth_user_id" not in client.session
