"""The keyboard alone (Tab, Enter, Space: no mouse, no filling by script) signs in, sends a request and
decides it; after a refused submit the error summary has the focus and leads to each field. And the
approver email link page is laid out like the rest of the portal."""

from __future__ import annotations

import re
from datetime import timedelta

import pytest
from django.contrib.auth.models import Group
from django.core import mail
from django.utils import timezone

from approvals.models import AccessRequest
from approvals.services import request_create
from broker.models import Channel
from tests.e2e.conftest import PASSWORD
from tests.factories import EligibilityFactory, RoleFactory, StageFactory, UserFactory
from tests.otp import authenticator, code_of

pytestmark = [pytest.mark.django_db(transaction=True)]

DANGER = "rgb(180, 35, 24)"  # --danger in broker.css

_ACTIVE = """() => {
  const el = document.activeElement;
  return {
    id: el.id, tag: el.tagName.toLowerCase(), text: (el.textContent || "").trim().replace(/\\s+/g, " "),
    summary: el.hasAttribute("data-error-summary"), value: el.value || "",
  };
}"""


def active(page) -> dict:
    return page.evaluate(_ACTIVE)


def tab_to(page, *, id: str | None = None, text: str | None = None, limit: int = 60) -> None:
    """Press Tab until the focus is on the element with this id (or whose text starts with ``text``)."""
    for _ in range(limit):
        page.keyboard.press("Tab")
        now = active(page)
        if (id is not None and now["id"] == id) or (text is not None and now["text"].startswith(text)):
            return
    raise AssertionError(f"Tab never reached {id or text!r}")


def press_and_load(page, key: str) -> None:
    """Press a key that sends a form, and wait for the answer page."""
    with page.expect_navigation():
        page.keyboard.press(key)


def sign_in(page, username: str) -> None:
    page.goto("/account/login/")
    tab_to(page, id="id_username")
    page.keyboard.type(username)
    page.keyboard.press("Tab")
    assert active(page)["id"] == "id_password"
    page.keyboard.type(PASSWORD)
    page.keyboard.press("Enter")
    page.wait_for_url(re.compile(r"^https?://[^/]+/$"))  # the home page


@pytest.fixture
def cast(db):
    alice, carol = UserFactory(username="alice"), UserFactory(username="carol")
    leads = Group.objects.get_or_create(name="dba-leads")[0]
    carol.groups.add(leads)
    authenticator(alice)
    authenticator(carol)
    role = RoleFactory(
        slug="prod-db-admin",
        name="Production database admin",
        requires_mfa=True,
        max_duration=timedelta(hours=4),
        default_duration=timedelta(hours=1),
    )
    StageFactory(role=role, position=0, required=1, groups=[leads])
    EligibilityFactory(role=role, user=alice)
    return {"alice": alice, "carol": carol, "role": role}


def test_a_refused_sign_in_puts_the_focus_on_the_error_summary(person, cast):
    visitor = person("keyboard-visitor")
    page = visitor.page
    page.goto("/account/login/")
    tab_to(page, id="id_username")
    page.keyboard.type("alice")
    page.keyboard.press("Tab")
    page.keyboard.type("not the password")
    press_and_load(page, "Enter")
    assert page.title().startswith("Error: ")
    assert active(page)["summary"]  # not the username field, which asks for the focus too
    assert "Please enter a correct username and password" in page.get_by_role("alert").inner_text()


def test_the_request_form_by_keyboard_alone(person, cast):
    requester = person("alice-keyboard")
    page = requester.page
    sign_in(page, "alice")
    page.goto("/roles/prod-db-admin/request/")
    assert "carol" in page.locator("#h-approvers + ol, #h-approvers ~ ol").first.inner_text()

    # Sent empty: refused, and the focus is on the summary of what is wrong.
    tab_to(page, text="Send request")
    press_and_load(page, "Enter")
    assert page.title().startswith("Error: ")
    focused = active(page)
    assert focused["summary"], focused
    assert page.get_by_role("alert").inner_text().startswith("There are 2 problems")
    requester.shot("41-keyboard-error-summary")
    # The text field and the text input both show the error border (the input rule no longer wins).
    for field in ("#id_justification", "#id_code"):
        border = page.locator(field).evaluate(
            "el => [getComputedStyle(el).borderTopColor, getComputedStyle(el).borderTopWidth]"
        )
        assert border == [DANGER, "2px"], (field, border)

    # The summary's first link leads to the field.
    page.keyboard.press("Tab")
    assert active(page)["text"].startswith("Justification:")
    page.keyboard.press("Enter")
    assert active(page)["id"] == "id_justification"
    page.keyboard.type("INC-4711: replica lag on the primary")
    tab_to(page, id="id_code")
    page.keyboard.type(code_of(cast["alice"]))
    tab_to(page, text="Send request")
    page.keyboard.press("Space")
    page.wait_for_url("**/requests/*/")
    assert page.get_by_text("Request sent").is_visible()
    assert AccessRequest.objects.get().justification == "INC-4711: replica lag on the primary"
    assert requester.csp_violations == []


def test_the_decision_form_by_keyboard_alone(person, cast):
    req = request_create(
        requester=cast["alice"],
        role=cast["role"],
        justification="INC-4711",
        via=Channel.API,
        mfa_at=timezone.now(),
    )
    approver = person("carol-keyboard")
    page = approver.page
    sign_in(page, "carol")
    page.goto(f"/requests/{req.pk}/")

    # Deny with no comment and no code: the portal's messages, not the browser's bubble.
    tab_to(page, text="Deny")
    press_and_load(page, "Enter")
    assert active(page)["summary"]
    summary = page.get_by_role("alert").inner_text()
    assert "Comment: Say why you deny" in summary and "One-time code: Enter the 6-digit code" in summary
    approver.shot("42-keyboard-decision-refused")

    page.keyboard.press("Tab")
    page.keyboard.press("Enter")
    assert active(page)["id"] == "id_comment"
    page.keyboard.type("OK for the incident")
    tab_to(page, id="id_code")
    page.keyboard.type(code_of(cast["carol"]))
    tab_to(page, text="Approve")
    page.keyboard.press("Space")
    page.wait_for_url("**/approvals/")
    req.refresh_from_db()
    assert req.status == AccessRequest.Status.APPROVED
    assert approver.csp_violations == []


_LANDMARKS = """() => Array.from(document.querySelectorAll("header, nav, main, footer")).map(el => {
  const role = {header: "banner", nav: "navigation", main: "main", footer: "contentinfo"}[el.tagName.toLowerCase()];
  return role + (el.getAttribute("aria-label") ? " " + el.getAttribute("aria-label") : "");
})"""


def test_the_email_link_page_has_the_portals_landmarks_and_fact_grid(person, cast, live_server, settings):
    settings.SITE_URL = live_server.url
    mail.outbox.clear()
    req = request_create(
        requester=cast["alice"], role=cast["role"], justification="INC-77", via=Channel.API, mfa_at=timezone.now()
    )
    (message,) = [m for m in mail.outbox if cast["carol"].email in m.to]
    link = next(word for word in message.body.split() if "/email-link/" in word)

    approver = person("carol-email-layout")
    approver.login("carol")
    page = approver.page
    page.goto(f"/requests/{req.pk}/")
    portal = page.evaluate(_LANDMARKS)
    portal_grid = page.locator("dl.facts").evaluate("el => getComputedStyle(el).display")
    page.goto(link)
    assert (
        page.evaluate(_LANDMARKS)
        == portal
        == [
            "banner",
            "navigation Main",
            "navigation Account",
            "main",
            "contentinfo",
        ]
    )
    assert page.locator("dl.facts").evaluate("el => getComputedStyle(el).display") == portal_grid == "grid"
    assert "INC-77" in page.locator("dl.facts").inner_text()
    assert "Europe/Berlin" in page.locator("footer").inner_text()  # the reader's zone, not UTC
    approver.shot("43-email-link-layout")
