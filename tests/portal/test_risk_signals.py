"""Risk signals through the portal: the old session cookie is signed out at once, the old password is dead.

The attacker's browser is a test client signed in before the signal; the signal comes through the
API like an identity provider's would.
"""

import pytest
from django.core import mail
from django.test import Client
from rest_framework.test import APIClient

from accounts.tokens import token_create
from broker.models import AuditEvent, Channel
from tests.factories import UserFactory
from tests.portal.conftest import mark_fresh

pytestmark = pytest.mark.django_db

PASSWORD = "correct horse battery staple"  # the factories' password
EVENTS = ["credential_compromised", "risk_high", "account_disabled"]


@pytest.fixture
def alice(db):
    return UserFactory(username="alice")


@pytest.fixture
def signal(admin_user):
    _, text = token_create(user=admin_user, scopes=["read", "admin"], via=Channel.CLI)
    api = APIClient()
    api.credentials(HTTP_AUTHORIZATION=f"Bearer {text}")

    def send(user, event):
        response = api.post(
            "/api/v1/signals/", {"user": user.username, "event": event, "reason": "impossible travel"}, format="json"
        )
        assert response.status_code == 200, response.content
        return response.json()

    return send


def signed_in(username: str, password: str = PASSWORD) -> Client:
    browser = Client()
    response = browser.post("/account/login/", {"username": username, "password": password})
    assert response.status_code == 302, response.content
    assert browser.get("/").status_code == 200
    return browser


@pytest.mark.parametrize("event", EVENTS)
def test_after_a_signal_the_old_session_cookie_is_sent_to_the_sign_in_page(alice, signal, event):
    attacker = signed_in("alice")
    signal(alice, event)
    response = attacker.get("/requests/")
    assert response.status_code == 302
    assert response["Location"].startswith("/account/login/?next=/requests/")
    # And the ended session stays ended: the cookie does not come back to life.
    assert attacker.get("/").status_code == 302


@pytest.mark.parametrize("event", EVENTS)
def test_after_a_signal_the_old_session_cookie_cannot_use_the_api_either(alice, signal, event):
    attacker = signed_in("alice")
    signal(alice, event)
    assert attacker.get("/api/v1/roles/").status_code in (401, 403)


def test_after_credential_compromised_the_old_password_no_longer_signs_in(alice, signal):
    signal(alice, "credential_compromised")
    response = Client().post("/account/login/", {"username": "alice", "password": PASSWORD})
    assert response.status_code == 200
    assert "_auth_user_id" not in response.wsgi_request.session
    alice.refresh_from_db()
    assert not alice.has_usable_password()


def test_risk_high_ends_the_sessions_but_the_password_still_signs_in(alice, signal):
    attacker = signed_in("alice")
    signal(alice, "risk_high")
    assert attacker.get("/").status_code == 302
    signed_in("alice")


def test_a_session_that_had_stepped_up_loses_its_step_up_with_it(alice, signal):
    attacker = signed_in("alice")
    mark_fresh(attacker)
    signal(alice, "credential_compromised")
    attacker.get("/")
    assert "broker_mfa_at" not in attacker.session


def test_a_signal_about_one_person_leaves_other_peoples_sessions_alone(alice, signal):
    UserFactory(username="bob")
    bob = signed_in("bob")
    signal(alice, "credential_compromised")
    assert bob.get("/").status_code == 200


def test_signing_in_again_after_risk_high_starts_a_session_that_lives(alice, signal):
    signal(alice, "risk_high")
    fresh = signed_in("alice")
    assert fresh.get("/requests/").status_code == 200


def test_after_credential_compromised_the_person_gets_back_in_through_the_password_reset(alice, signal, settings):
    settings.SITE_URL = "http://testserver"
    signal(alice, "credential_compromised")
    mail.outbox.clear()
    browser = Client()
    response = browser.post("/account/password-reset/", {"email": alice.email})
    assert response.status_code == 302
    (message,) = mail.outbox
    assert message.to == [alice.email]
    link = next(word for word in message.body.split() if "/account/password-reset/" in word)
    path = link.removeprefix("http://testserver")
    form = browser.get(path, follow=True)
    assert b"Choose a new password" in form.content
    new = "a brand new long passphrase 42"
    done = browser.post(form.redirect_chain[-1][0], {"new_password1": new, "new_password2": new})
    assert done.status_code == 302
    signed_in("alice", new)
    assert AuditEvent.objects.filter(action="auth.password_reset", subject="alice").exists()


def test_a_password_reset_for_an_unknown_address_looks_the_same_and_sends_nothing(db):
    mail.outbox.clear()
    response = Client().post("/account/password-reset/", {"email": "nobody@example.com"})
    assert response.status_code == 302
    assert response["Location"] == "/account/password-reset/sent/"
    assert mail.outbox == []
