"""API calls with the identity provider's own tokens instead of a personal broker token: a JWT signed
with the provider's key (tests/idp, a real provider process), issuer and audience checked, mapped to
the person's linked account or to a workload's service account, with scopes."""

import pytest
from django.test import Client

from accounts.models import ExternalIdentity
from tests.accounts.test_oidc_signin import sso_sign_in
from tests.factories import EligibilityFactory, RoleFactory, UserFactory

pytestmark = pytest.mark.django_db


@pytest.fixture
def api_tokens(settings, sso):
    settings.OIDC_API_AUDIENCE = "https://access.example.com/api"
    settings.OIDC_API_SCOPES = ["read", "request"]
    settings.OIDC_API_CLIENTS = ["deploy-bot=svc-deploy:read"]
    return sso


@pytest.fixture
def olivia(client, api_tokens):
    api_tokens.person("olivia")
    sso_sign_in(client, api_tokens, "olivia")
    client.logout()
    row = ExternalIdentity.objects.get(user__username="olivia")
    EligibilityFactory(role=RoleFactory(slug="sandbox"), user=row.user)
    return row


def call(token, path="/api/v1/roles/", method="get", **body):
    client = Client()
    kwargs = {"content_type": "application/json", "data": body} if method == "post" else {}
    return getattr(client, method)(path, headers={"Authorization": f"Bearer {token}"}, **kwargs)


def test_a_persons_token_from_the_provider_acts_as_their_account(api_tokens, olivia):
    token = api_tokens.mint(sub=olivia.subject, aud="https://access.example.com/api", client_id="cli")
    response = call(token)
    assert response.status_code == 200, response.content
    assert [r["slug"] for r in response.json()["results"]] == ["sandbox"]
    check = call(token, "/api/v1/check/?role=sandbox").json()
    assert check["allowed"] is False


def test_the_scopes_of_a_persons_token_are_the_configured_ones(api_tokens, olivia):
    token = api_tokens.mint(sub=olivia.subject, aud="https://access.example.com/api")
    response = call(token, "/api/v1/tokens/", method="post", scopes=["read", "approve"], name="x")
    assert response.status_code in (403, 400)  # never more than read and request


def test_a_workloads_token_acts_as_its_service_account(api_tokens):
    UserFactory(username="svc-deploy")
    token = api_tokens.mint(sub="deploy-bot", client_id="deploy-bot", aud="https://access.example.com/api")
    assert call(token).status_code == 200
    refused = call(token, "/api/v1/requests/", method="post", role="sandbox", duration_seconds=600)
    assert refused.status_code == 403 and refused.json()["error"] == "insufficient_scope"


@pytest.mark.parametrize(
    "claims",
    [
        pytest.param({"aud": "https://other.example.com/api"}, id="another-audience"),
        pytest.param({"aud": "https://access.example.com/api", "iss": "https://evil.example.com"}, id="another-issuer"),
        pytest.param({"aud": "https://access.example.com/api", "exp": 1_000_000_000}, id="expired"),
        pytest.param({"aud": "https://access.example.com/api", "sub": "nobody-here"}, id="unknown-subject"),
        pytest.param(
            {"aud": "https://access.example.com/api", "client_id": "unknown-bot", "sub": "x"}, id="unknown-workload"
        ),
    ],
)
def test_tokens_that_fail_a_check_are_401(api_tokens, olivia, claims):
    claims = {"sub": olivia.subject, **claims}
    assert call(api_tokens.mint(**claims)).status_code == 401


def test_a_tampered_token_is_401(api_tokens, olivia):
    header, payload, signature = api_tokens.mint(sub=olivia.subject, aud="https://access.example.com/api").split(".")
    forged = f"{header}.{payload[:-4]}AAAA.{signature}"
    assert call(forged).status_code == 401


def test_a_deactivated_persons_token_is_401(api_tokens, olivia):
    olivia.user.is_active = False
    olivia.user.save()
    assert call(api_tokens.mint(sub=olivia.subject, aud="https://access.example.com/api")).status_code == 401


def test_without_an_api_audience_the_providers_tokens_are_not_accepted(api_tokens, olivia, settings):
    settings.OIDC_API_AUDIENCE = ""
    assert call(api_tokens.mint(sub=olivia.subject, aud="https://access.example.com/api")).status_code == 401


def test_a_token_for_a_fresh_strong_sign_in_counts_as_the_step_up(api_tokens, olivia):
    import time

    EligibilityFactory(role=RoleFactory(slug="prod-db", requires_mfa=True, auto_approve=True), user=olivia.user)
    weak = api_tokens.mint(sub=olivia.subject, aud="https://access.example.com/api", amr=["pwd"],
                           auth_time=int(time.time()))  # fmt: skip
    body = {"role": "prod-db", "duration_seconds": 600, "justification": "INC-4"}
    refused = call(weak, "/api/v1/requests/", method="post", **body)
    assert refused.status_code == 403 and refused.json()["error"] in ("mfa_required", "mfa_not_enrolled")
    strong = api_tokens.mint(sub=olivia.subject, aud="https://access.example.com/api", amr=["pwd", "hwk"],
                             auth_time=int(time.time()))  # fmt: skip
    assert call(strong, "/api/v1/requests/", method="post", **body).status_code == 201
