"""The approver email link in a real browser: the page sends no token in a Referer (strict-origin), and its form still decides with its real Origin."""

from __future__ import annotations

import re
from datetime import timedelta

import pytest
from django.contrib.auth.models import Group
from django.core import mail

from approvals.services import request_create
from broker.models import Channel
from tests.factories import EligibilityFactory, RoleFactory, StageFactory, UserFactory
from tests.otp import authenticator, code_of

pytestmark = [pytest.mark.django_db(transaction=True)]


def test_approver_decides_from_the_email_link_in_a_browser(person, live_server, settings):
    settings.SITE_URL = live_server.url
    alice, carol = UserFactory(username="alice"), UserFactory(username="carol")
    leads = Group.objects.get_or_create(name="dba-leads")[0]
    carol.groups.add(leads)
    authenticator(carol)
    role = RoleFactory(slug="prod-db-admin", name="Production database admin", max_duration=timedelta(hours=4))
    StageFactory(role=role, position=0, required=1, groups=[leads])
    EligibilityFactory(role=role, user=alice)

    mail.outbox.clear()
    req = request_create(requester=alice, role=role, justification="INC-77: replica lag", via=Channel.API)
    (message,) = [m for m in mail.outbox if "carol@example.com" in m.to]
    link = re.search(r"https?://\S+/email-link/\S+/", message.body).group(0)

    approver = person("carol-email")
    approver.login("carol")
    page = approver.page
    response = page.goto(link)
    assert response.headers["referrer-policy"] == "strict-origin"
    assert page.get_by_role("heading", name="alice asks for Production database admin").is_visible()
    approver.shot("21-email-link-page")
    page.get_by_label("One-time code").fill(code_of(carol))
    page.get_by_role("button", name="Approve").click()
    page.wait_for_load_state()
    approver.shot("22-email-link-approved")
    assert "approved" in page.locator("main").inner_text()
    req.refresh_from_db()
    assert req.status == "approved"
    assert approver.csp_violations == []
