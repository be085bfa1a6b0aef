"""Resources and conditions in a real browser: a refusal with its reason, one role held on two resources."""

from __future__ import annotations

from datetime import timedelta

import pytest

from grants.models import Grant
from tests.e2e.conftest import axe_violations
from tests.factories import EligibilityFactory, RoleFactory, UserFactory

pytestmark = [pytest.mark.django_db(transaction=True)]


@pytest.fixture
def cast(db):
    alice = UserFactory(username="alice")
    office = RoleFactory(
        slug="office-only",
        name="Office-only console",
        max_duration=timedelta(minutes=15),
        default_duration=timedelta(minutes=2),
        requires_justification=False,
        auto_approve=True,
        conditions={"networks": ["10.0.0.0/8"]},
    )
    envs = RoleFactory(
        slug="deploy",
        name="Deployer",
        max_duration=timedelta(minutes=15),
        default_duration=timedelta(minutes=2),
        requires_justification=False,
        auto_approve=True,
        resources={"names": ["staging", "production"]},
        connector_config={"group": "deployers-{resource}"},
    )
    for role in (office, envs):
        EligibilityFactory(role=role, user=alice)
    return {"alice": alice, "office": office, "envs": envs}


def test_a_refusal_says_why_and_a_role_is_held_on_two_resources(person, cast, axe_source):
    alice = cast["alice"]
    requester = person("alice")
    requester.login("alice")
    page = requester.page

    # --- Conditions: listed before asking, and the refusal names the condition ----------------------
    page.get_by_role("link", name="Request Office-only console").click()
    assert "Only from the networks 10.0.0.0/8." in page.get_by_role("note").inner_text()
    page.get_by_role("button", name="Get access").click()
    error = page.locator(".errorlist.nonfield").inner_text()
    assert "your address 127.0.0.1 is outside the allowed networks (10.0.0.0/8)" in error
    assert axe_violations(page, axe_source) == []
    requester.shot("least-privilege-01-refused-by-network")

    # --- Resources: the form asks which one; the role is held on two at once -------------------------
    for environment in ("staging", "production"):
        page.goto("/")
        page.get_by_role("link", name="Request Deployer").click()
        page.get_by_label("Resource").select_option(environment)
        page.get_by_role("button", name="Get access").click()
        page.wait_for_url("**/grants/*/")
        assert f"on {environment}" in page.get_by_role("heading", level=1).inner_text()
    requester.shot("least-privilege-02-held-on-production")
    assert set(alice.groups.values_list("name", flat=True)) == {"deployers-staging", "deployers-production"}

    # --- Giving one back keeps the other ---------------------------------------------------------------
    staging = Grant.objects.get(user=alice, resource="staging")
    page.goto(f"/grants/{staging.pk}/")
    page.get_by_role("button", name="Relinquish now").click()
    page.wait_for_url(f"**/grants/{staging.pk}/")
    assert set(alice.groups.values_list("name", flat=True)) == {"deployers-production"}
    page.goto("/")
    assert "Deployer on production" in page.locator("main").inner_text()
    assert "Deployer on staging" not in page.locator("main").inner_text()
    requester.shot("least-privilege-03-production-kept")
