"""Sign-in through a real OpenID Connect provider (tests/idp, its own process): the redirect flow with
PKCE, state and nonce, the ID token verified against the provider's keys, people and groups from it."""

from urllib.parse import parse_qs, urlsplit

import pytest
from django.contrib.auth.models import Group, User

from accounts.models import ExternalIdentity
from broker.models import AuditEvent

pytestmark = pytest.mark.django_db


def start(client, next_url=None, step_up=False):
    query = {}
    if next_url:
        query["next"] = next_url
    if step_up:
        query["step_up"] = "1"
    response = client.get("/account/oidc/login/", query)
    assert response.status_code == 302, response.content
    return response["Location"]


def finish(client, callback_url):
    parts = urlsplit(callback_url)
    assert parts.path == "/account/oidc/callback/"
    return client.get(parts.path, parse_qs(parts.query))


def sso_sign_in(client, idp, username, **kwargs):
    authorize = start(client, **kwargs)
    callback, _ = idp.authorize(authorize, username)
    return finish(client, callback)


def test_the_authorization_request_carries_pkce_state_and_nonce(client, sso):
    query = parse_qs(urlsplit(start(client)).query)
    assert query["code_challenge_method"] == ["S256"]
    assert len(query["code_challenge"][0]) >= 43
    assert query["state"][0] and query["nonce"][0]
    assert query["redirect_uri"] == ["http://testserver/account/oidc/callback/"]
    assert set(query["scope"][0].split()) == {"openid", "email", "profile"}


def test_a_first_sign_in_creates_the_account_with_the_groups_the_broker_manages(client, sso):
    sso.person("olivia", email="olivia@example.com", groups=["idp-dba", "idp-oncall", "payroll"])
    response = sso_sign_in(client, sso, "olivia", next_url="/requests/")
    assert response.status_code == 302 and response["Location"] == "/requests/"
    user = User.objects.get(username="olivia")
    assert user.email == "olivia@example.com"
    assert not user.has_usable_password()
    assert sorted(user.groups.values_list("name", flat=True)) == ["idp-dba", "idp-oncall"]
    assert not Group.objects.filter(name="payroll").exists()
    identity = ExternalIdentity.objects.get(user=user)
    assert identity.issuer == sso.issuer and identity.subject
    assert client.get("/").context["user"] == user
    login = AuditEvent.objects.get(action="auth.login", subject="olivia")
    assert login.channel == "oidc" and login.data["method"] == "oidc" and login.data["created"] is True
