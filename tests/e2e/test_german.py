"""A German-speaking approver in a real browser: a German email, a German decision page and portal.

The browser itself asks for English (en-GB): the language saved on the account decides once the
person is signed in, and the sign-in page before it follows the browser.
"""

from __future__ import annotations

import re
from datetime import timedelta

import pytest
from django.contrib.auth.models import Group
from django.core import mail

from accounts.preferences import language_set
from approvals.services import request_create
from broker.models import Channel
from tests.e2e.conftest import axe_violations
from tests.factories import EligibilityFactory, RoleFactory, StageFactory, UserFactory
from tests.otp import authenticator, code_of

pytestmark = [pytest.mark.django_db(transaction=True)]


def test_a_german_approver_decides_in_german_from_a_german_email(person, live_server, settings, axe_source):
    settings.SITE_URL = live_server.url
    alice, hans = UserFactory(username="alice"), UserFactory(username="hans", first_name="Hans")
    leads = Group.objects.get_or_create(name="dba-leads")[0]
    hans.groups.add(leads)
    authenticator(hans)
    language_set(user=hans, language="de")
    role = RoleFactory(slug="prod-db-admin", name="Production database admin", max_duration=timedelta(hours=4))
    StageFactory(role=role, position=0, required=1, groups=[leads])
    EligibilityFactory(role=role, user=alice)

    mail.outbox.clear()
    req = request_create(requester=alice, role=role, justification="INC-77: replica lag", via=Channel.API)
    (message,) = [m for m in mail.outbox if "hans@example.com" in m.to]
    assert message.subject.startswith("[Access Broker] Entscheidung nötig: alice beantragt prod-db-admin")
    assert "Hallo Hans," in message.body and "Antrag prüfen:" in message.body
    link = re.search(r"https?://\S+/email-link/\S+/", message.body).group(0)

    approver = person("hans-german")
    approver.login("hans")
    page = approver.page
    assert page.locator("html").get_attribute("lang") == "de"
    assert page.get_by_role("heading", name="Ihr Zugriff").is_visible()
    assert page.get_by_role("link", name="Anträge").is_visible()
    approver.shot("31-german-home")
    assert axe_violations(page, axe_source) == []

    page.goto(link)
    assert page.get_by_role("heading", name="alice beantragt Production database admin").is_visible()
    approver.shot("32-german-email-link-page")
    page.get_by_label("Einmalcode").fill(code_of(hans))
    page.get_by_role("button", name="Genehmigen").click()
    page.wait_for_load_state()
    assert f"Sie haben Antrag #{req.pk} genehmigt" in page.locator("main").inner_text()
    approver.shot("33-german-decision-recorded")

    page.goto(f"/requests/{req.pk}/")
    timeline = page.locator("ol.timeline").inner_text()
    assert "hans hat genehmigt (Stufe 1)" in timeline
    assert "Genehmigt: Jede Stufe hat ihre Genehmigungen" in timeline
    approver.shot("34-german-request-timeline")
    assert approver.csp_violations == []
