"""Sign-in through a real OpenID Connect provider (tests/idp, its own process): the redirect flow with
PKCE, state and nonce, the ID token verified against the provider's keys, people and groups from it."""

from datetime import timedelta
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


@pytest.mark.parametrize(
    "fault", ["tampered", "wrong_audience", "wrong_audience_with_our_azp", "wrong_nonce", "expired"]
)
def test_an_id_token_that_fails_a_check_signs_nobody_in(client, sso, fault):
    sso.person("mallory", groups=["idp-dba"])
    authorize = start(client)
    sso.fault(fault)
    callback, _ = sso.authorize(authorize, "mallory")
    response = finish(client, callback)
    assert response.status_code == 400
    assert "Sign-in refused" in response.content.decode()
    assert not User.objects.filter(username__in=["mallory", "root"]).exists()
    assert "_auth_user_id" not in client.session
    refused = AuditEvent.objects.get(action="auth.sso_refused")
    assert refused.channel == "oidc" and refused.data["reason"] == "id_token_invalid"


def test_an_answer_for_a_sign_in_this_browser_never_started_is_refused(client, sso):
    sso.person("mallory")
    authorize = start(client)
    callback, _ = sso.authorize(authorize, "mallory")
    other = client.__class__()  # another browser, where the victim is lured to the attacker's code
    response = finish(other, callback)
    assert response.status_code == 400
    assert not User.objects.filter(username="mallory").exists()
    # Anyone can send made-up callbacks: logged, never one audit event each.
    assert not AuditEvent.objects.filter(action="auth.sso_refused").exists()


def test_a_provider_that_does_not_answer_is_a_clear_502_not_a_500(client, settings):
    settings.OIDC_ISSUER = "http://127.0.0.1:9"  # nothing listens on the discard port
    settings.OIDC_CLIENT_ID = "access-broker"
    settings.OIDC_TIMEOUT = timedelta(seconds=2)
    response = client.get("/account/oidc/login/")
    assert response.status_code == 502
    assert "idp_unreachable" in response.content.decode()
    response = client.get("/account/oidc/callback/?state=x&code=y")
    assert response.status_code == 400


def test_single_sign_on_is_404_when_not_configured(client):
    assert client.get("/account/oidc/login/").status_code == 404
    assert client.get("/account/oidc/callback/").status_code == 404


def test_a_code_is_used_once(client, sso):
    sso.person("olivia")
    authorize = start(client)
    callback, _ = sso.authorize(authorize, "olivia")
    assert finish(client, callback).status_code == 302
    client.logout()
    assert finish(client, callback).status_code == 400


def test_the_account_is_found_by_subject_so_a_new_username_renames_it(client, sso):
    sso.person("olivia", email="olivia@example.com")
    sso_sign_in(client, sso, "olivia")
    subject = ExternalIdentity.objects.get(user__username="olivia").subject
    ExternalIdentity.objects.filter(subject=subject).update(subject="will-not-match")
    client.logout()
    # Another person who took the username at the IdP is not the owner of this account.
    response = sso_sign_in(client, sso, "olivia")
    assert response.status_code == 403
    assert AuditEvent.objects.filter(action="auth.sso_refused").latest("seq").data["reason"] == "username_taken"


def test_a_local_account_with_the_same_username_is_never_taken_over(client, sso, admin_user):
    sso.person(admin_user.username)
    response = sso_sign_in(client, sso, admin_user.username)
    assert response.status_code == 403
    assert "_auth_user_id" not in client.session
    assert not ExternalIdentity.objects.exists()


def test_a_deactivated_account_cannot_sign_in_through_the_provider(client, sso):
    sso.person("olivia")
    sso_sign_in(client, sso, "olivia")
    client.logout()
    User.objects.filter(username="olivia").update(is_active=False)
    response = sso_sign_in(client, sso, "olivia")
    assert response.status_code == 403
    assert AuditEvent.objects.filter(action="auth.sso_refused").latest("seq").data["reason"] == "account_inactive"


def test_groups_the_broker_does_not_manage_are_never_touched(client, sso, settings):
    from tests.factories import RoleFactory

    settings.IDP_MANAGED_GROUPS = ["auditors"]
    RoleFactory(slug="db", connector_config={"group": "idp-db-admins"})  # a target group with the prefix
    sso.person("olivia", groups=["idp-dba", "idp-db-admins", "auditors"])
    sso_sign_in(client, sso, "olivia")
    user = User.objects.get(username="olivia")
    assert sorted(user.groups.values_list("name", flat=True)) == ["auditors", "idp-dba"]
    local = Group.objects.create(name="local-team")
    target = Group.objects.get_or_create(name="idp-db-admins")[0]
    user.groups.add(local, target)  # given here, by hand and by a grant
    sso.person("olivia", groups=[])
    client.logout()
    sso_sign_in(client, sso, "olivia")
    assert sorted(user.groups.values_list("name", flat=True)) == ["idp-db-admins", "local-team"]


def test_an_entra_group_id_maps_onto_a_named_group(client, sso, settings):
    settings.IDP_MANAGED_GROUPS = ["6f1c2a9e-0000-4000-8000-00000000dba1=dba"]
    sso.person("olivia", groups=["6f1c2a9e-0000-4000-8000-00000000dba1", "6f1c2a9e-0000-4000-8000-0000000000ff"])
    sso_sign_in(client, sso, "olivia")
    assert list(User.objects.get(username="olivia").groups.values_list("name", flat=True)) == ["dba"]


def test_a_token_without_the_required_claims_is_refused(client, sso, settings):
    settings.OIDC_REQUIRED_CLAIMS = ["email=olivia@corp.example.com"]  # think of Google's hd, Entra's tid
    sso.person("mallory", email="mallory@gmail.example")
    response = sso_sign_in(client, sso, "mallory")
    assert response.status_code == 403
    assert AuditEvent.objects.get(action="auth.sso_refused").data["reason"] == "required_claim"
    assert not User.objects.filter(username="mallory").exists()
    sso.person("olivia", email="olivia@corp.example.com")
    assert sso_sign_in(client, sso, "olivia").status_code == 302


def test_without_account_creation_only_provisioned_people_sign_in(client, sso, settings):
    settings.OIDC_CREATE_USERS = False
    sso.person("olivia")
    response = sso_sign_in(client, sso, "olivia")
    assert response.status_code == 403
    assert AuditEvent.objects.get(action="auth.sso_refused").data["reason"] == "not_provisioned"
    assert not User.objects.filter(username="olivia").exists()


def test_a_person_provisioned_by_scim_is_linked_at_their_first_sign_in(client, sso, settings):
    from accounts import identity

    settings.OIDC_CREATE_USERS = False
    user, _ = identity.scim_user_save(
        user=None, username="olivia", external_id="ext-1", email="", first_name="", last_name=""
    )
    sso.person("olivia", email="olivia@example.com")
    assert sso_sign_in(client, sso, "olivia").status_code == 302
    identity_row = ExternalIdentity.objects.get(user=user)
    assert identity_row.subject and identity_row.issuer == sso.issuer
    assert User.objects.get(pk=user.pk).email == "olivia@example.com"
