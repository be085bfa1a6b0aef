"""A risk signal in a real browser: the session cookie that was signed in before it is dead after it."""

from __future__ import annotations

import json
import urllib.request

import pytest

from accounts.tokens import token_create
from broker.models import Channel
from tests.factories import UserFactory

pytestmark = [pytest.mark.django_db(transaction=True)]


def send_signal(base_url: str, token: str, username: str, event: str) -> dict:
    """POST signals/ to the live server, as an identity provider's hook would."""
    body = json.dumps({"user": username, "event": event, "reason": "impossible travel"}).encode()
    request = urllib.request.Request(  # noqa: S310 - the live test server on loopback
        f"{base_url}/api/v1/signals/",
        data=body,
        headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"},
        method="POST",
    )
    with urllib.request.urlopen(request, timeout=10) as response:  # noqa: S310
        return json.loads(response.read())


def test_the_session_cookie_of_a_compromised_account_is_dead_after_the_signal(person, live_server):
    UserFactory(username="alice")
    root = UserFactory(username="root", is_staff=True, is_superuser=True)
    _, admin_token = token_create(user=root, scopes=["read", "admin"], via=Channel.CLI)

    attacker = person("attacker-with-alices-cookie")
    attacker.login("alice")
    page = attacker.page
    page.goto("/requests/")
    assert page.url == f"{live_server.url}/requests/"
    cookie = next(c for c in attacker.context.cookies() if c["name"] == "sessionid")
    attacker.shot("31-signed-in-before-the-signal")

    send_signal(live_server.url, admin_token, "alice", "credential_compromised")

    page.goto("/requests/")
    assert page.url == f"{live_server.url}/account/login/?next=/requests/"
    assert page.get_by_role("heading", name="Sign in").is_visible()
    attacker.shot("32-old-cookie-sent-to-sign-in")

    # The same cookie, replayed by hand in a fresh browser, is no better.
    replay = person("replayed-cookie")
    replay.context.add_cookies([cookie])
    replay.page.goto("/")
    assert replay.page.url.startswith(f"{live_server.url}/account/login/")

    # And the old password signs in nowhere.
    page.get_by_label("Username").fill("alice")
    page.get_by_label("Password").fill("correct horse battery staple")
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_load_state()
    assert page.url.startswith(f"{live_server.url}/account/login/")
    assert attacker.csp_violations == []
