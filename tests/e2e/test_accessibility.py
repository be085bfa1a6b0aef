"""Accessibility in a real browser: axe-core on every portal page, as every kind of person, and the
keyboard alone.

Each page is checked for:
- every WCAG 2.0, 2.1 and 2.2 rule at levels A and AA that axe-core runs (axe is injected through
  the DevTools protocol; the page's Content-Security-Policy stays as strict as in production);
- no sideways scrolling at 390 px (a phone);
- a focus ring on everything the Tab key reaches: drawn, at least 2 px, and at least 3:1 against
  what surrounds it.

The pages are those of a signed-out visitor, a requester, an approver, an auditor, an
administrator and a security reviewer, the approver email link, the account, MFA and token pages,
and the error pages.
"""

from __future__ import annotations

import re
from datetime import timedelta

import pytest
from django.contrib.auth.models import Group
from django.contrib.auth.tokens import default_token_generator
from django.core import mail
from django.utils import timezone
from django.utils.encoding import force_bytes
from django.utils.http import urlsafe_base64_encode

from accounts.tokens import token_create
from approvals import services as approvals
from broker.catalog import AUDITORS_GROUP, SECURITY_GROUP
from broker.models import Channel
from grants import services as grants
from tests.e2e.conftest import axe_violations
from tests.factories import EligibilityFactory, RoleFactory, StageFactory, UserFactory
from tests.otp import authenticator, code_of, wrong_code_of

pytestmark = [pytest.mark.django_db(transaction=True)]

PHONE = {"width": 390, "height": 844}
DESKTOP = {"width": 1280, "height": 860}
LINK = re.compile(r"https?://\S+/email-link/\S+/")

_FOCUS = """() => {
  const el = document.activeElement;
  if (!el || el === document.body || el === document.documentElement) { return null; }
  const style = getComputedStyle(el);
  let around = "rgb(255, 255, 255)";
  for (let node = el.parentElement; node; node = node.parentElement) {
    const colour = getComputedStyle(node).backgroundColor;
    if (colour && colour !== "transparent" && !/rgba\\(.*, 0\\)$/.test(colour)) { around = colour; break; }
  }
  const name = (el.getAttribute("aria-label") || el.textContent || el.name || el.id || "").trim().slice(0, 40);
  return {
    key: el.tagName.toLowerCase() + (el.id ? "#" + el.id : "") + " " + name + " " + (el.getAttribute("href") || el.value || ""),
    visible: el.matches(":focus-visible"),
    style: style.outlineStyle,
    width: parseFloat(style.outlineWidth),
    colour: style.outlineColor,
    around: around,
  };
}"""


def _rgb(text: str) -> tuple[float, ...]:
    return tuple(float(v) for v in re.findall(r"[\d.]+", text)[:3])


def _luminance(rgb: tuple[float, ...]) -> float:
    def channel(c: float) -> float:
        c /= 255
        return c / 12.92 if c <= 0.03928 else ((c + 0.055) / 1.055) ** 2.4

    r, g, b = (channel(c) for c in rgb)
    return 0.2126 * r + 0.7152 * g + 0.0722 * b


def contrast(a: str, b: str) -> float:
    la, lb = sorted((_luminance(_rgb(a)), _luminance(_rgb(b))), reverse=True)
    return (la + 0.05) / (lb + 0.05)


class Sweep:
    """Checks pages one after the other and keeps every problem, to report them all at the end."""

    def __init__(self, axe_source: str):
        self.axe_source = axe_source
        self.problems: list[str] = []
        self.pages: list[str] = []

    def check(self, who, label: str) -> None:
        page = who.page
        page.wait_for_load_state()
        where = f"[{who.name}] {label} ({page.url.split('//', 1)[-1].split('/', 1)[-1] or '/'})"
        self.pages.append(where)
        for v in axe_violations(page, self.axe_source):
            self.problems.append(
                f"{where}: {v['id']} ({v['impact']}) {v['help']}\n      " + "\n      ".join(v["nodes"])
            )
        self._focus_rings(who, where)
        page.set_viewport_size(PHONE)
        wide = page.evaluate("document.documentElement.scrollWidth")
        if wide > PHONE["width"]:
            self.problems.append(f"{where}: {wide} px wide at {PHONE['width']} px (scrolls sideways)")
        page.set_viewport_size(DESKTOP)
        assert who.csp_violations == [], who.csp_violations

    def _focus_rings(self, who, where: str, limit: int = 60) -> None:
        page = who.page
        seen = set()
        for _ in range(limit):
            page.keyboard.press("Tab")
            focused = page.evaluate(_FOCUS)
            if focused is None or focused["key"] in seen:
                break
            seen.add(focused["key"])
            ratio = contrast(focused["colour"], focused["around"])
            if not focused["visible"] or focused["style"] == "none" or focused["width"] < 2 or ratio < 3:
                self.problems.append(
                    f"{where}: weak focus ring on {focused['key']!r}: {focused['style']} {focused['width']} px "
                    f"{focused['colour']} on {focused['around']} ({ratio:.2f}:1)"
                )
        page.keyboard.press("Escape")

    def done(self) -> None:
        report = "\n".join(self.problems)
        assert not self.problems, f"{len(self.problems)} problems on {len(self.pages)} pages:\n{report}"


@pytest.fixture
def sweep(axe_source):
    return Sweep(axe_source)


@pytest.fixture
def world(db, live_server, settings):
    """Everyone and everything the pages show: requests in each state, grants live and ended, a
    break-glass activation awaiting review, decisions, tokens, the audit trail."""
    settings.SITE_URL = live_server.url
    now = timezone.now()
    alice = UserFactory(username="alice", first_name="Alice", last_name="Adams")
    carol = UserFactory(username="carol", first_name="Carol")
    dave = UserFactory(username="dave")  # no second factor yet
    erin = UserFactory(username="erin")
    erin.groups.add(Group.objects.get_or_create(name=AUDITORS_GROUP)[0])
    frank = UserFactory(username="frank")
    frank.groups.add(Group.objects.get_or_create(name=SECURITY_GROUP)[0])
    root = UserFactory(username="root", is_staff=True, is_superuser=True)
    leads = Group.objects.get_or_create(name="dba-leads")[0]
    carol.groups.add(leads)
    for person in (alice, carol, frank, root):
        authenticator(person)

    db_admin = RoleFactory(
        slug="prod-db-admin",
        name="Production database admin",
        description="Superuser on the production PostgreSQL cluster",
        requires_mfa=True,
    )
    StageFactory(role=db_admin, position=0, required=1, groups=[leads])
    net_admin = RoleFactory(slug="net-admin", name="Network admin")
    StageFactory(role=net_admin, position=0, required=1, users=[carol])
    sandbox = RoleFactory(
        slug="sandbox-admin", name="Sandbox administrator", auto_approve=True, requires_justification=False
    )
    glass = RoleFactory(
        slug="break-glass-root",
        name="Emergency root (break-glass)",
        requires_mfa=True,
        break_glass=True,
        max_duration=timedelta(hours=1),
        default_duration=timedelta(minutes=30),
    )
    for role in (db_admin, net_admin, sandbox, glass):
        EligibilityFactory(role=role, user=alice)

    def ask(role, **fields):
        return approvals.request_create(
            requester=alice,
            role=role,
            duration=timedelta(hours=1),
            justification="INC-4711: replica lag on the primary",
            via=Channel.PORTAL,
            mfa_at=now,
            **fields,
        )

    mail.outbox.clear()
    pending = ask(db_admin, ticket="CHG-12")
    denied = ask(net_admin)
    approvals.request_deny(request_id=denied.pk, approver=carol, comment="Use the runbook", via=Channel.PORTAL)
    given_back = ask(sandbox).grant
    grants.grant_relinquish(grant_id=given_back.pk, user=alice, via=Channel.PORTAL)
    live = ask(sandbox).grant
    break_glass = ask(glass).grant
    token_create(user=alice, scopes=["read"], via=Channel.PORTAL, name="laptop CLI")
    (to_carol,) = [m for m in mail.outbox if carol.email in m.to and "asks for prod-db-admin" in m.subject]
    return {
        "alice": alice,
        "carol": carol,
        "dave": dave,
        "pending": pending,
        "denied": denied,
        "given_back": given_back,
        "live": live,
        "break_glass": break_glass,
        "link": LINK.search(to_carol.body).group(0),
    }


def verify(who, user) -> None:
    """Step up on the verify page with the authenticator's code (fresh for the rest of the test)."""
    page = who.page
    page.goto("/account/mfa/verify/?next=/")
    page.get_by_label("One-time code").fill(code_of(user))
    page.get_by_role("button", name="Verify").click()
    page.wait_for_url(f"{who.base_url}/")


def test_signed_out_pages(person, world, sweep, live_server):
    visitor = person("visitor")
    page = visitor.page
    page.goto("/account/login/")
    sweep.check(visitor, "sign-in")
    page.get_by_label("Username").fill("alice")
    page.get_by_label("Password").fill("not the password")
    page.get_by_role("button", name="Sign in").click()
    sweep.check(visitor, "sign-in refused")
    for url, label in [
        ("/account/password-reset/", "password reset"),
        ("/account/password-reset/sent/", "password reset sent"),
        ("/account/password-reset/MQ/set-password/", "password reset link not valid"),
        ("/account/password-reset/done/", "password changed"),
        (world["link"], "email link, signed out"),
        ("/no/such/page/", "404"),
    ]:
        page.goto(url)
        sweep.check(visitor, label)
    alice = world["alice"]
    uid, token = urlsafe_base64_encode(force_bytes(alice.pk)), default_token_generator.make_token(alice)
    page.goto(f"/account/password-reset/{uid}/{token}/")
    sweep.check(visitor, "choose a new password")
    page.get_by_label("New password").fill("short")
    page.get_by_label("The same again").fill("other")
    page.get_by_role("button", name="Set the password").click()
    sweep.check(visitor, "choose a new password, refused")
    sweep.done()


def test_requester_pages(person, world, sweep):
    alice = world["alice"]
    requester = person("alice")
    requester.login("alice")
    page = requester.page
    sweep.check(requester, "home")
    page.goto("/account/mfa/verify/?next=/")
    sweep.check(requester, "verify it's you")
    verify(requester, alice)
    for url, label in [
        ("/roles/prod-db-admin/request/", "request form"),
        ("/roles/break-glass-root/request/", "break-glass form"),
        ("/roles/sandbox-admin/request/", "auto-approved role form"),
        ("/requests/", "my requests"),
        (f"/requests/{world['pending'].pk}/", "pending request"),
        (f"/requests/{world['denied'].pk}/", "denied request"),
        ("/grants/", "my grants"),
        (f"/grants/{world['live'].pk}/", "live grant: relinquish and extend"),
        (f"/grants/{world['given_back'].pk}/", "relinquished grant"),
        ("/approvals/", "empty inbox"),
        ("/approvals/decided/", "nothing decided"),
        ("/account/", "account"),
        ("/account/mfa/", "MFA devices"),
        ("/account/mfa/enrol/", "add an authenticator"),
        ("/account/tokens/", "API tokens"),
        ("/audit/", "403: not for requesters"),
    ]:
        page.goto(url)
        sweep.check(requester, label)

    page.goto("/roles/net-admin/request/")
    page.get_by_label("Justification").fill("")
    page.get_by_role("button", name="Send request").click()
    sweep.check(requester, "request form, refused")
    page.goto(f"/grants/{world['live'].pk}/")
    page.get_by_label("Other duration").fill("forever")
    page.get_by_role("button", name="Request extension").click()
    sweep.check(requester, "extension, refused")
    page.goto("/account/tokens/")
    page.get_by_label("Name").fill("deploy bot")
    page.get_by_role("button", name="Create token").click()
    sweep.check(requester, "token shown once")
    page.get_by_role("button", name="Create token").click()
    sweep.check(requester, "token form, refused")
    page.goto("/account/mfa/")
    page.get_by_role("button", name="New backup codes").click()
    sweep.check(requester, "backup codes")
    # Last: a wrong code makes the authenticator wait before it accepts the next one.
    page.goto("/account/mfa/verify/?next=/")
    page.get_by_label("One-time code").fill(wrong_code_of(alice))
    page.get_by_role("button", name="Verify").click()
    sweep.check(requester, "verify it's you, wrong code")
    sweep.done()


def test_approver_pages_and_the_email_link(person, world, sweep):
    approver = person("carol")
    approver.login("carol")
    page = approver.page
    for url, label in [
        ("/approvals/", "inbox"),
        (f"/requests/{world['pending'].pk}/", "decision form"),
        ("/approvals/decided/", "decided"),
        (world["link"], "email link, signed in"),
    ]:
        page.goto(url)
        sweep.check(approver, label)
    page.get_by_role("button", name="Deny").click()
    sweep.check(approver, "email link, refused decision")
    page.goto(f"/requests/{world['pending'].pk}/")
    page.get_by_role("button", name="Deny").click()
    sweep.check(approver, "decision form, refused")
    page.goto(world["link"])
    page.get_by_label("One-time code").fill(code_of(world["carol"]))
    page.get_by_role("button", name="Approve").click()
    sweep.check(approver, "email link, approved")

    stranger = person("dave")
    stranger.login("dave")
    stranger.page.goto(world["link"])
    sweep.check(stranger, "email link, someone else's")
    stranger.page.goto("/account/mfa/enrol/")
    sweep.check(stranger, "first second factor: password again")
    stranger.page.get_by_label("Your password").fill("correct horse battery staple")
    stranger.page.get_by_role("button", name="Continue").click()
    sweep.check(stranger, "first second factor: scan the code")
    sweep.done()


def test_auditor_pages(person, world, sweep):
    auditor = person("erin")
    auditor.login("erin")
    page = auditor.page
    for url, label in [
        ("/audit/", "audit log"),
        ("/audit/?action=grant.&subject=alice", "audit log, filtered"),
        ("/audit/?since=yesterday", "audit log, bad filter"),
        ("/review/", "elevation review"),
        ("/review/unused/", "unused eligibilities"),
        ("/requests/?scope=visible&flagged=1", "flagged requests"),
        ("/requests/?scope=visible", "everyone's requests"),
        ("/grants/?scope=all", "everyone's grants"),
        (f"/grants/{world['break_glass'].pk}/", "break-glass grant"),
        (f"/requests/{world['pending'].pk}/", "someone's request"),
    ]:
        page.goto(url)
        sweep.check(auditor, label)
    sweep.done()


def test_administrator_and_security_pages(person, world, sweep):
    admin = person("root")
    admin.login("root")
    verify(admin, UserFactory(username="root"))
    page = admin.page
    page.goto(f"/grants/{world['live'].pk}/")
    sweep.check(admin, "grant with the revoke form")
    page.get_by_role("button", name="Revoke grant").click()
    sweep.check(admin, "revoke form, refused")
    page.goto("/review/")
    sweep.check(admin, "elevation review with review forms")

    security = person("frank")
    security.login("frank")
    for url, label in [
        ("/review/", "break-glass awaiting review"),
        (f"/grants/{world['break_glass'].pk}/", "break-glass grant with the review form"),
    ]:
        security.page.goto(url)
        sweep.check(security, label)
    sweep.done()


def test_error_pages(person, world, sweep, settings):
    settings.ROOT_URLCONF = "tests.e2e.error_urls"
    settings.DEBUG_PROPAGATE_EXCEPTIONS = False
    visitor = person("visitor")
    page = visitor.page
    for url, label in [("/boom/", "500"), ("/bad/", "400")]:
        response = page.goto(url)
        assert response.status == int(label)
        sweep.check(visitor, label)
    # A form sent without the CSRF cookie: the portal's 403 page.
    page.goto("/account/login/")
    visitor.context.clear_cookies()
    page.get_by_label("Username").fill("alice")
    page.get_by_label("Password").fill("correct horse battery staple")
    page.get_by_role("button", name="Sign in").click()
    assert page.get_by_role("heading", name="This form could not be accepted").is_visible()
    sweep.check(visitor, "403 CSRF")
    settings.OIDC_ISSUER = "https://idp.invalid"
    settings.OIDC_CLIENT_ID = "broker"
    settings.OIDC_CLIENT_SECRET = "not-a-secret"
    page.goto("/account/oidc/callback/?code=x&state=made-up")
    assert page.get_by_role("heading", name="Sign-in refused").is_visible()
    sweep.check(visitor, "single sign-on refused")
    sweep.done()
