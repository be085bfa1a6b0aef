"""End to end over real SMTP and HTTP: the approver's email arrives, its link shows, and only a signed-in,
stepped-up POST by that approver decides, once.

A real Celery worker sends the message through the SMTP backend to an aiosmtpd server on
localhost; the test reads it as a mail client would (MIME, HTML part), takes the link and walks
it with a plain HTTP client (urllib, a cookie jar, no redirects followed) against a live server.
"""

import email
import email.policy
import re
import socket
import urllib.error
import urllib.parse
import urllib.request
from http.cookiejar import CookieJar

import pytest
from aiosmtpd.controller import Controller
from django.contrib.auth.models import Group
from django.utils import timezone

from approvals import services as approvals
from approvals.models import AccessRequest
from broker.models import AuditEvent, Channel
from tests.factories import EligibilityFactory, RoleFactory, StageFactory, UserFactory
from tests.integration.conftest import Worker, wait_for
from tests.otp import authenticator, code_of

pytestmark = pytest.mark.django_db(transaction=True)

PASSWORD = "correct horse battery staple"


class Inbox:
    """aiosmtpd handler keeping every message it accepts."""

    def __init__(self):
        self.messages: list[tuple[list[str], bytes]] = []

    async def handle_DATA(self, server, session, envelope):
        self.messages.append((list(envelope.rcpt_tos), envelope.original_content or envelope.content))
        return "250 Message accepted for delivery"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def smtp():
    inbox = Inbox()
    controller = Controller(inbox, hostname="127.0.0.1", port=free_port())
    controller.start()
    yield controller, inbox
    controller.stop()


@pytest.fixture
def mail_worker(transactional_db, tmp_path, smtp, live_server):
    controller, _ = smtp
    worker = Worker(tmp_path, sweep_interval="1s")
    worker.env.update(
        EMAIL_BACKEND="django.core.mail.backends.smtp.EmailBackend",
        EMAIL_HOST="127.0.0.1",
        EMAIL_PORT=str(controller.port),
        SITE_URL=live_server.url,
    )
    worker.start()
    yield worker
    worker.stop()


class NoRedirects(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args, **kwargs):
        return None


class Browser:
    """Just enough of a browser: cookies, forms posted as urlencoded, redirects not followed."""

    def __init__(self, base: str):
        self.base = base
        self.jar = CookieJar()
        self.opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(self.jar), NoRedirects)

    def request(self, method: str, url: str, data: dict | None = None) -> tuple[int, dict, str]:
        if url.startswith("/"):
            url = self.base + url
        body = urllib.parse.urlencode(data).encode() if data is not None else None
        req = urllib.request.Request(url, data=body, method=method)  # noqa: S310 - http://localhost only
        try:
            with self.opener.open(req, timeout=20) as response:
                return response.status, dict(response.headers), response.read().decode()
        except urllib.error.HTTPError as error:
            return error.code, dict(error.headers), error.read().decode()

    def csrf(self, page: str) -> str:
        return re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', page).group(1)


@pytest.fixture
def cast(transactional_db):
    alice = UserFactory(username="alice")
    carol = UserFactory(username="carol")
    carol.groups.add(Group.objects.create(name="dba-leads"))
    role = RoleFactory(slug="prod-db-admin", name="Production database admin", requires_mfa=True)
    StageFactory(role=role, groups=[Group.objects.get(name="dba-leads")])
    EligibilityFactory(role=role, user=alice)
    return alice, carol, role


def test_an_approver_decides_from_the_email_over_smtp_and_http(cast, smtp, mail_worker, live_server):
    alice, carol, role = cast
    device = authenticator(carol)
    _, inbox = smtp

    req = approvals.request_create(
        requester=alice,
        role=role,
        justification="disk full on db-3",
        ticket="INC-42",
        via=Channel.PORTAL,
        mfa_at=timezone.now(),
    )

    # The worker sends it over SMTP; read it as a mail client would.
    wait_for(lambda: inbox.messages, timeout=30, what="the approver's email over SMTP")
    (recipients, raw), *others = inbox.messages
    assert recipients == ["carol@example.com"] and others == []
    message = email.message_from_bytes(raw, policy=email.policy.default)
    assert message["Subject"] == f"[Access broker] Decision needed: alice asks for prod-db-admin (request #{req.pk})"
    assert message.is_multipart()
    text = message.get_body(preferencelist=("plain",)).get_content()
    html = message.get_body(preferencelist=("html",)).get_content()
    assert "disk full on db-3" in text and "INC-42" in html
    (link,) = set(re.findall(r'href="([^"]*/email-link/[^"]+)"', html))
    assert link.startswith(live_server.url + "/email-link/")
    assert link in text

    # Opening the link (as a mail scanner would) shows the facts and changes nothing.
    scanner = Browser(live_server.url)
    status, headers, page = scanner.request("GET", link)
    assert status == 200
    assert headers["Cache-Control"] == "no-store" and headers["Referrer-Policy"] == "strict-origin"
    assert "alice" in page and "Production database admin" in page and "disk full on db-3" in page
    assert scanner.request("HEAD", link)[0] == 200
    req.refresh_from_db()
    assert req.status == AccessRequest.Status.PENDING

    # A POST without a session decides nothing.
    status, _, _ = scanner.request("POST", link, {"decision": "approve", "code": code_of(device)})
    assert status in (302, 403)
    req.refresh_from_db()
    assert req.status == AccessRequest.Status.PENDING

    # Carol signs in, comes back to the page, and approves with her TOTP code.
    carol_browser = Browser(live_server.url)
    path = urllib.parse.urlsplit(link).path
    status, _, login_page = carol_browser.request("GET", f"/account/login/?next={urllib.parse.quote(path)}")
    assert status == 200
    status, headers, _ = carol_browser.request(
        "POST",
        "/account/login/",
        {
            "username": "carol",
            "password": PASSWORD,
            "next": path,
            "csrfmiddlewaretoken": carol_browser.csrf(login_page),
        },
    )
    assert (status, headers["Location"]) == (302, path)
    status, _, page = carol_browser.request("GET", link)
    assert status == 200 and 'value="approve"' in page
    form = {"decision": "approve", "code": code_of(device), "csrfmiddlewaretoken": carol_browser.csrf(page)}
    status, _, done = carol_browser.request("POST", link, form)
    assert status == 200, done
    assert "You approved request" in done
    req.refresh_from_db()
    assert req.status == AccessRequest.Status.APPROVED
    assert AuditEvent.objects.get(action="request.approved").channel == "email"

    # The same link again: refused, nothing changes.
    status, _, again = carol_browser.request("POST", link, form)
    assert status == 410
    assert "already been used" in again
    assert req.decisions.count() == 1
    assert AuditEvent.objects.filter(action="approval_link.refused", data__reason="used").exists()

    # And alice hears about it, over the same SMTP server.
    wait_for(
        lambda: any("alice@example.com" in rcpts and b"Approved" in raw for rcpts, raw in inbox.messages),
        timeout=30,
        what="the requester's approval email",
    )
