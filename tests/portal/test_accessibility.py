"""What screen readers and keyboards need from the HTML itself: errors announced and tied to their
fields, every id that a label, description or link names exists, buttons that say what they act on.

The browser tests (tests/e2e/test_accessibility.py) run axe-core on every page and use the
keyboard; these check the markup of each state quickly, page by page.
"""

from html.parser import HTMLParser

import pytest
from django.utils import timezone

from accounts import stepup
from tests.otp import authenticator
from tests.portal.conftest import mark_fresh

pytestmark = pytest.mark.django_db


class Markup(HTMLParser):
    """The ids of a page, what its attributes point to, and its error summary."""

    REFERENCES = ("aria-describedby", "aria-labelledby", "aria-controls", "for")

    def __init__(self, html: str):
        super().__init__()
        self.ids: list[str] = []
        self.references: list[tuple[str, str, str]] = []  # (tag, attribute, id)
        self.anchors: list[str] = []
        self.summary: dict | None = None
        self.title = ""
        self._in_title = False
        self.feed(html)

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if "id" in attrs:
            self.ids.append(attrs["id"])
        for name in self.REFERENCES:
            for ref in (attrs.get(name) or "").split():
                self.references.append((tag, name, ref))
        href = attrs.get("href") or ""
        if tag == "a" and href.startswith("#") and len(href) > 1:
            self.anchors.append(href[1:])
        if "data-error-summary" in attrs:
            self.summary = attrs
        self._in_title = tag == "title"

    def handle_data(self, data):
        if self._in_title:
            self.title += data

    def handle_endtag(self, tag):
        if tag == "title":
            self._in_title = False


def checked(response) -> Markup:
    page = Markup(response.content.decode())
    assert len(page.ids) == len(set(page.ids)), "duplicate ids"
    missing = [(tag, name, ref) for tag, name, ref in page.references if ref not in page.ids]
    assert missing == [], "attributes point to ids that do not exist"
    assert [a for a in page.anchors if a not in page.ids] == [], "links to ids that do not exist"
    return page


def assert_error_page(response) -> Markup:
    assert response.status_code == 400
    page = checked(response)
    assert page.title.startswith("Error: ")
    assert page.summary is not None
    assert page.summary["role"] == "alert" and page.summary["tabindex"] == "-1" and "autofocus" in page.summary
    return page


# --- After a refused submit ------------------------------------------------------------------------


def test_a_refused_request_form_announces_its_errors_and_links_to_each_field(client, requester, role):
    client.force_login(requester)
    response = client.post(f"/roles/{role.slug}/request/", {"duration": "custom", "justification": ""})
    page = assert_error_page(response)
    assert {"id_justification", "id_custom_duration"} <= set(page.anchors)
    html = response.content.decode()
    assert "There are 2 problems" in html
    assert "Justification: This field is required." in html
    assert 'aria-describedby="id_justification_helptext id_justification_error"' in html
    assert 'aria-invalid="true"' in html


def test_a_radio_group_error_links_to_its_first_choice(client, requester, role):
    client.force_login(requester)
    response = client.post(f"/roles/{role.slug}/request/", {"duration": "", "justification": "x"})
    page = assert_error_page(response)
    assert "id_duration_0" in page.anchors


def test_a_failed_sign_in_is_an_alert(client, requester):
    response = client.post("/account/login/", {"username": "alice", "password": "wrong"})
    assert response.status_code == 200  # Django's login view answers a refused form with 200
    page = checked(response)
    assert page.title.startswith("Error: ")
    assert page.summary["role"] == "alert"
    assert "Please enter a correct username and password" in response.content.decode()


def test_a_refused_decision_in_the_portal_is_announced(client, pending_request, approver):
    client.force_login(approver)
    response = client.post(f"/requests/{pending_request.pk}/decide/", {"verdict": "deny", "comment": ""})
    page = assert_error_page(response)
    assert "id_comment" in page.anchors and "id_code" in page.anchors


def test_a_refused_token_form_and_time_zone_are_announced(client, requester):
    client.force_login(requester)
    mark_fresh(client)
    page = assert_error_page(client.post("/account/tokens/", {"name": "", "scopes": [], "expires_in": "30"}))
    assert {"id_name", "id_scopes_0"} <= set(page.anchors)
    assert_error_page(client.post("/account/", {"tz": "Mars/Olympus"}))


def test_a_wrong_code_on_the_step_up_page_is_announced(client, requester):
    authenticator(requester)
    client.force_login(requester)
    response = client.post("/account/mfa/verify/", {"code": "000000"})
    assert response.status_code == 200
    page = checked(response)
    assert page.title.startswith("Error: ") and "id_code" in page.anchors


def test_pages_without_errors_have_no_summary_and_no_prefix(client, requester, role):
    client.force_login(requester)
    page = checked(client.get(f"/roles/{role.slug}/request/"))
    assert page.summary is None and not page.title.startswith("Error")


# --- Descriptions that exist, forms the portal validates --------------------------------------------


def test_help_texts_named_by_fields_exist(client, requester, auditor, role, approver, pending_request):
    authenticator(requester)
    client.force_login(requester)
    for url in (f"/roles/{role.slug}/request/", "/account/", "/account/mfa/verify/", "/account/tokens/"):
        checked(client.get(url))
    client.force_login(auditor)
    page = client.get("/audit/?actor=alice").content.decode()
    checked(client.get("/audit/"))
    assert '<span class="helptext" id="id_actor_helptext">' in page
    client.force_login(approver)
    checked(client.get(f"/requests/{pending_request.pk}/"))


def test_required_to_deny_is_tied_to_the_comment_box_in_the_portal(client, pending_request, approver):
    client.force_login(approver)
    html = client.get(f"/requests/{pending_request.pk}/").content.decode()
    assert 'aria-describedby="id_comment_helptext"' in html
    assert 'id="id_comment_helptext">Required to deny; the requester sees it.</div>' in html


def test_the_decision_form_leaves_validation_to_the_portal(client, pending_request, approver):
    client.force_login(approver)
    html = client.get(f"/requests/{pending_request.pk}/").content.decode()
    form = html[html.index('action="/requests/') : html.index("</form>", html.index('action="/requests/'))]
    assert "novalidate" in form.split(">", 1)[0]
    assert 'name="code"' in form and "required" in form  # still marked required for screen readers


# --- Second factors and tokens ---------------------------------------------------------------------


def test_each_remove_button_names_its_device_and_the_column_has_a_header(client, requester):
    device = authenticator(requester)
    device.name = "Work phone"
    device.save()
    client.force_login(requester)
    session = client.session
    session[stepup.SESSION_KEY] = timezone.now().isoformat()
    session.save()
    html = client.get("/account/mfa/").content.decode()
    assert '<th scope="col">Actions</th>' in html
    assert 'Remove<span class="visually-hidden"> authenticator app “Work phone”</span>' in html
    assert '<div class="table-wrap">' in html
    checked(client.get("/account/mfa/"))


@pytest.fixture
def pending_request(role, request_role):
    return request_role(role)
