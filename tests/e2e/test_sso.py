"""Single sign-on in a real browser: Chromium goes through the real redirect flow of the test OpenID
Connect provider (tests/idp, its own process), and the broker creates the account with its groups;
later a SCIM leaver call from the same IdP ends the browser's session and the sign-in is refused."""

from __future__ import annotations

import json
import urllib.request
from datetime import timedelta

import pytest
from django.contrib.auth.models import Group, User

from tests.factories import EligibilityFactory, RoleFactory

pytestmark = [pytest.mark.django_db(transaction=True)]

SCIM_TOKEN = "scim-token-for-the-browser-test-0123456789"


@pytest.fixture
def sso_live(settings, idp, live_server):
    idp.allow_redirect(f"{live_server.url}/account/oidc/callback/")
    settings.OIDC_ISSUER = idp.issuer
    settings.OIDC_CLIENT_ID = idp.client_id
    settings.OIDC_CLIENT_SECRET = idp.client_secret
    settings.OIDC_PROVIDER_NAME = "Test IdP"
    settings.IDP_MANAGED_GROUP_PREFIX = "idp-"
    settings.SITE_URL = live_server.url
    settings.SCIM_TOKEN = SCIM_TOKEN
    return idp


def scim_leaver(base_url: str, user_id: int) -> int:
    body = {"schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"],
            "Operations": [{"op": "replace", "path": "active", "value": False}]}  # fmt: skip
    request = urllib.request.Request(  # noqa: S310 - the live test server on loopback
        f"{base_url}/scim/v2/Users/{user_id}",
        data=json.dumps(body).encode(),
        headers={"Authorization": f"Bearer {SCIM_TOKEN}", "Content-Type": "application/scim+json"},
        method="PATCH",
    )
    with urllib.request.urlopen(request, timeout=10) as response:  # noqa: S310
        return response.status


def test_a_new_person_signs_in_through_the_idp_and_gets_their_account_and_groups(person, live_server, sso_live):
    from tests.idp.driver import PASSWORD

    dba = Group.objects.create(name="idp-dba")
    role = RoleFactory(slug="prod-db-admin", name="Production database admin", max_duration=timedelta(hours=4))
    EligibilityFactory(role=role, group=dba)
    sso_live.person("nina", email="nina@example.com", first_name="Nina", groups=["idp-dba", "finance-all"],
                    amr=["pwd", "mfa"])  # fmt: skip

    nina = person("nina")
    page = nina.page
    page.goto("/account/login/")
    nina.shot("40-sso-sign-in-page")
    page.get_by_role("link", name="Sign in with Test IdP").click()
    assert page.url.startswith(sso_live.base)  # at the provider, as in production
    nina.shot("41-sso-at-the-provider")
    page.get_by_label("IdP username").fill("nina")
    page.get_by_label("IdP password").fill(PASSWORD)
    page.get_by_role("button", name="Sign in to the IdP").click()
    page.wait_for_url(f"{live_server.url}/")
    nina.shot("42-sso-signed-in-home")
    assert "Production database admin" in page.content()  # eligible through the group from the IdP

    user = User.objects.get(username="nina")
    assert (user.email, user.first_name) == ("nina@example.com", "Nina")
    assert list(user.groups.values_list("name", flat=True)) == ["idp-dba"]
    assert nina.csp_violations == []

    # The IdP says she left: the browser that is inside is out at its next request, and stays out.
    assert scim_leaver(live_server.url, user.pk) == 200
    page.goto("/requests/")
    assert page.url.startswith(f"{live_server.url}/account/login/")
    # Her session at the IdP still runs (the IdP would refuse her too, once it deprovisions her there).
    page.get_by_role("link", name="Sign in with Test IdP").click()
    page.get_by_role("heading", name="Sign-in refused").wait_for()
    assert "deactivated" in page.content()
    nina.shot("43-sso-leaver-refused")
