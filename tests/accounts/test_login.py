"""Sign-in: Django's views with our templates, failures throttled per username and per address."""

from datetime import timedelta

import pytest
from django.test import override_settings

from broker.models import AuditEvent

pytestmark = pytest.mark.django_db

PASSWORD = "correct horse battery staple"


def sign_in(client, username="alice", password=PASSWORD, ip="192.0.2.1", **extra):
    return client.post("/account/login/", {"username": username, "password": password, **extra}, REMOTE_ADDR=ip)


def test_signing_in_cycles_the_session_key_and_is_audited(client, requester):
    client.get("/account/login/")
    session = client.session
    session["before"] = "x"
    session.save()
    old_key = session.session_key
    response = sign_in(client)
    assert (response.status_code, response["Location"]) == (302, "/")
    assert client.session.session_key != old_key
    assert AuditEvent.objects.filter(action="auth.login", actor=requester).exists()


def test_signing_in_goes_back_to_next_but_never_to_another_site(client, requester):
    assert sign_in(client, next="/approvals/")["Location"] == "/approvals/"
    client.logout()
    assert sign_in(client, next="https://evil.example/")["Location"] == "/"


def test_a_wrong_password_says_so_without_telling_which_part_was_wrong(client, requester):
    response = sign_in(client, password="nope")
    assert response.status_code == 200
    assert b"Please enter a correct username and password" in response.content


def test_five_failures_lock_the_username_even_with_the_right_password(client, requester, clock):
    for _ in range(5):
        sign_in(client, password="nope")
    response = sign_in(client)
    assert response.status_code == 429
    assert b"Too many failed sign-ins. Try again in 15 minutes." in response.content
    assert int(response["Retry-After"]) == 15 * 60
    assert "_auth_user_id" not in client.session
    assert AuditEvent.objects.filter(action="auth.login_throttled", subject="alice").count() == 1

    clock.shift(timedelta(minutes=15, seconds=1))
    assert sign_in(client).status_code == 302


def test_the_lock_holds_for_the_username_from_any_address(client, requester, clock):
    for i in range(5):
        sign_in(client, password="nope", ip=f"198.51.100.{i}")
    assert sign_in(client, ip="203.0.113.9").status_code == 429


@override_settings(LOGIN_MAX_FAILURES_PER_IP=3)
def test_one_address_guessing_many_usernames_is_locked_out(client, requester, clock):
    for name in ("bob", "carol", "dave"):
        sign_in(client, username=name, password="nope")
    assert sign_in(client).status_code == 429
    assert sign_in(client, ip="192.0.2.77").status_code == 302


def test_a_success_clears_the_count_of_failures(client, requester):
    for _ in range(4):
        sign_in(client, password="nope")
    assert sign_in(client).status_code == 302
    client.logout()
    for _ in range(4):
        sign_in(client, password="nope")
    assert sign_in(client).status_code == 302


def test_the_admin_sign_in_is_throttled_too(client, admin_user):
    for _ in range(5):
        client.post("/admin/login/", {"username": "root", "password": "nope"}, REMOTE_ADDR="192.0.2.5")
    response = client.post("/admin/login/", {"username": "root", "password": PASSWORD}, REMOTE_ADDR="192.0.2.5")
    assert b"Too many failed sign-ins" in response.content
    assert "_auth_user_id" not in client.session


def test_signing_out_ends_the_session(client, requester):
    client.force_login(requester)
    response = client.post("/account/logout/")
    assert response.status_code == 302
    assert "_auth_user_id" not in client.session


def test_session_cookies_are_http_only_and_secure_outside_debug(settings):
    from broker import settings as real

    assert real.SESSION_COOKIE_HTTPONLY is True
    assert real.SESSION_COOKIE_SECURE is True  # DEBUG is off in the test environment
    assert real.CSRF_COOKIE_SECURE is True
    assert real.SESSION_COOKIE_SAMESITE == "Lax"
