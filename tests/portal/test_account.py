"""My account: time zone, API tokens behind a step-up; and what every page carries (nav, CSP)."""

import pytest
from django.urls import reverse

from accounts.models import ApiToken
from accounts.tokens import digest, token_create
from broker import links
from broker.models import AuditEvent, Channel
from tests.otp import authenticator, code_of
from tests.portal.conftest import mark_fresh

pytestmark = pytest.mark.django_db


def test_portal_paths_agree_with_the_links_in_emails_and_the_api():
    assert reverse("request-detail", args=[7]) == links.request_path(7)
    assert reverse("grant-detail", args=[7]) == links.grant_path(7)
    assert reverse("approvals-inbox") == links.inbox_path()
    assert reverse("portal-home") == links.home_path()
    assert reverse("audit-log") == links.audit_log_path()


def test_every_page_has_a_strict_content_security_policy(client, requester):
    client.force_login(requester)
    for url in ("/", "/account/login/", "/requests/"):
        policy = client.get(url)["Content-Security-Policy"]
        assert "default-src 'self'" in policy
        assert "img-src 'self' data:" in policy
        assert "unsafe-inline" not in policy
        assert "frame-ancestors 'none'" in policy


def test_templates_have_no_inline_script_or_style(client, requester, role):
    client.force_login(requester)
    for url in ("/", f"/roles/{role.slug}/request/", "/account/", "/account/tokens/"):
        body = client.get(url).content.decode()
        assert "<script>" not in body and "<style" not in body and ' style="' not in body, url


def test_navigation_depends_on_who_is_looking(client, requester, auditor, admin_user, security):
    client.force_login(requester)
    body = client.get("/").content.decode()
    assert 'href="/account/mfa/"' in body and 'href="/account/tokens/"' in body
    assert 'href="/audit/"' not in body and 'href="/admin/"' not in body and 'href="/review/"' not in body
    client.force_login(auditor)
    body = client.get("/").content.decode()
    assert 'href="/audit/"' in body and 'href="/review/"' in body and 'href="/admin/"' not in body
    client.force_login(admin_user)
    body = client.get("/").content.decode()
    assert 'href="/admin/"' in body and 'href="/audit/"' in body
    client.force_login(security)
    body = client.get("/").content.decode()
    assert 'href="/review/"' in body and 'href="/audit/"' not in body


def test_sign_out_is_a_post(client, requester):
    client.force_login(requester)
    body = client.get("/").content.decode()
    assert 'action="/account/logout/"' in body and 'method="post"' in body


# --- Time zone -------------------------------------------------------------------------------------


def test_times_default_to_utc_and_name_the_zone(client, requester):
    client.force_login(requester)
    body = client.get("/").content.decode()
    assert "Times are shown in <strong data-tz-name>UTC</strong>" in body


def test_the_browser_zone_cookie_is_used_when_valid(client, requester):
    client.force_login(requester)
    client.cookies["broker_tz"] = "America/New_York"
    assert "America/New_York" in client.get("/").content.decode()
    client.cookies["broker_tz"] = "../../etc/passwd"
    assert "<strong data-tz-name>UTC</strong>" in client.get("/").content.decode()


def test_a_saved_zone_wins_over_the_browser(client, requester):
    client.force_login(requester)
    client.cookies["broker_tz"] = "America/New_York"
    response = client.post("/account/", {"tz": "Asia/Kolkata"})
    assert response.status_code == 302
    assert "Asia/Kolkata" in client.get("/").content.decode()
    client.post("/account/", {"tz": ""})
    assert "America/New_York" in client.get("/").content.decode()
    assert client.post("/account/", {"tz": "Mars/Olympus"}).status_code == 400  # refused, form error


def test_times_render_in_the_chosen_zone(client, requester, request_role, role, clock):
    request_role(role)
    client.force_login(requester)
    client.post("/account/", {"tz": "Europe/Berlin"})
    body = client.get("/requests/").content.decode()
    assert "2 Mar 2026, 10:00 CET" in body  # T0 is 09:00 UTC


# --- API tokens ------------------------------------------------------------------------------------


def test_tokens_page_lists_only_my_tokens(client, requester, outsider):
    token_create(user=requester, name="laptop", via="cli")
    token_create(user=outsider, name="theirs", via="cli")
    client.force_login(requester)
    body = client.get("/account/tokens/").content.decode()
    assert "laptop" in body and "theirs" not in body


def test_creating_a_token_needs_a_code_and_shows_it_once(client, requester):
    authenticator(requester)
    client.force_login(requester)
    response = client.post("/account/tokens/", {"name": "ci", "scopes": ["read"], "expires_in": "30"})
    assert response.status_code == 400
    assert not ApiToken.objects.exists()
    response = client.post(
        "/account/tokens/", {"name": "ci", "scopes": ["read"], "expires_in": "30", "code": code_of(requester)}
    )
    assert response.status_code == 200
    assert response["Cache-Control"].startswith("max-age=0")
    token = ApiToken.objects.get()
    text = response.context["created"][1]
    assert text.startswith("pab_") and digest(text) == token.digest
    assert text in response.content.decode()
    assert token.scopes == ["read"]
    assert text not in client.get("/account/tokens/").content.decode()  # never again
    assert AuditEvent.objects.get(action="token.created").channel == "portal"


def test_the_admin_scope_is_offered_to_staff_only(client, requester, admin_user):
    client.force_login(requester)
    assert 'value="admin"' not in client.get("/account/tokens/").content.decode()
    mark_fresh(client)
    response = client.post("/account/tokens/", {"name": "x", "scopes": ["admin"], "expires_in": "7"})
    assert response.status_code == 400
    assert not ApiToken.objects.exists()
    client.force_login(admin_user)
    assert 'value="admin"' in client.get("/account/tokens/").content.decode()


def test_revoking_a_token_takes_a_post(client, requester):
    mine, _ = token_create(user=requester, name="mine", via=Channel.CLI)
    client.force_login(requester)
    assert client.get(f"/account/tokens/{mine.pk}/revoke/").status_code == 405
    mine.refresh_from_db()
    assert mine.revoked_at is None


def test_a_user_revokes_their_own_token_and_not_someone_elses(client, requester, outsider):
    mine, _ = token_create(user=requester, name="mine", via=Channel.CLI)
    theirs, _ = token_create(user=outsider, name="theirs", via=Channel.CLI)
    client.force_login(requester)
    client.post(f"/account/tokens/{mine.pk}/revoke/")
    response = client.post(f"/account/tokens/{theirs.pk}/revoke/", follow=True)
    assert "does not exist" in response.content.decode()
    mine.refresh_from_db()
    theirs.refresh_from_db()
    assert mine.revoked_at is not None and theirs.revoked_at is None


def test_tokens_page_takes_constant_queries(client, requester, constant_queries):
    client.force_login(requester)

    def add(n):
        for i in range(n):
            token_create(user=requester, name=f"t{i}", via="cli")

    constant_queries("/account/tokens/", add)


def test_account_page_links_to_mfa_devices_and_tokens(client, requester):
    client.force_login(requester)
    body = client.get("/account/").content.decode()
    assert 'href="/account/mfa/"' in body and 'href="/account/tokens/"' in body


def test_the_chosen_zone_is_saved_on_the_account_and_follows_the_person_to_another_browser(
    client, requester, django_user_model
):
    from django.test import Client

    from accounts.models import Preference

    client.force_login(requester)
    client.post("/account/", {"tz": "Asia/Kolkata"})
    assert Preference.objects.get(user=requester).time_zone == "Asia/Kolkata"
    laptop = Client()
    laptop.force_login(requester)
    laptop.cookies["broker_tz"] = "America/New_York"  # another browser, another zone: the choice wins
    page = laptop.get("/").content.decode()
    assert "<strong data-tz-name>Asia/Kolkata</strong> (your choice)" in page


def test_the_account_page_says_which_zone_the_emails_use(client, requester):
    client.force_login(requester)
    assert "Your emails show them in <strong>UTC</strong> until you choose a zone here" in (
        client.get("/account/").content.decode()
    )
    client.post("/account/", {"tz": "Europe/Berlin"})
    assert "Your emails show them in <strong>Europe/Berlin</strong>." in client.get("/account/").content.decode()


def test_a_zone_this_machine_does_not_know_is_refused_by_the_service(requester):
    from accounts.preferences import time_zone_set
    from broker.errors import Invalid

    with pytest.raises(Invalid):
        time_zone_set(user=requester, zone="../../etc/passwd")


# --- Language -------------------------------------------------------------------------------------


def test_the_portal_follows_the_browsers_language_when_none_is_saved(client, requester):
    client.force_login(requester)
    german = client.get("/", HTTP_ACCEPT_LANGUAGE="de-DE,de;q=0.9,en;q=0.8")
    assert '<html lang="de">' in german.content.decode() and german["Content-Language"] == "de"
    english = client.get("/", HTTP_ACCEPT_LANGUAGE="fr-FR,en;q=0.5")
    assert '<html lang="en">' in english.content.decode() and "Your access" in english.content.decode()


def test_the_language_saved_on_the_account_wins_over_the_browsers(client, requester):
    client.force_login(requester)
    response = client.post("/account/", {"lang-language": "de"}, HTTP_ACCEPT_LANGUAGE="en")
    assert response.status_code == 302
    page = client.get("/", HTTP_ACCEPT_LANGUAGE="en-GB,en;q=0.9").content.decode()
    assert '<html lang="de">' in page and "Ihr Zugriff" in page
    assert "Das Portal und Ihre E-Mails sind jetzt auf Deutsch." in page


def test_choosing_to_follow_the_browser_again_clears_the_saved_language(client, requester):
    from accounts.preferences import language_of, language_set

    language_set(user=requester, language="de")
    client.force_login(requester)
    client.post("/account/", {"lang-language": ""})
    assert language_of(requester) == ""
    assert '<html lang="en">' in client.get("/", HTTP_ACCEPT_LANGUAGE="en").content.decode()


def test_a_language_the_broker_does_not_ship_is_refused_with_the_reason_next_to_the_field(client, requester):
    from accounts.preferences import language_of

    client.force_login(requester)
    response = client.post("/account/", {"lang-language": "xx"})
    assert response.status_code == 400
    assert "Select a valid choice" in response.content.decode()
    assert language_of(requester) == ""


def test_the_api_answers_in_english_whatever_the_browser_or_the_saved_language(client, requester):
    from accounts.preferences import language_set

    language_set(user=requester, language="de")
    client.force_login(requester)
    response = client.get("/api/v1/nothing-here/", HTTP_ACCEPT_LANGUAGE="de")
    assert response.status_code == 404
    assert response["Content-Language"] == "en"
