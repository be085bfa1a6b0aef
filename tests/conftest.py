"""The cast: a requester, two approvers, an outsider, an auditor and an admin, and helpers to make roles."""

from datetime import UTC, datetime, timedelta

import pytest
import time_machine
from django.conf import settings as django_settings
from django.core.cache import cache
from django.utils import timezone, translation

from approvals import services as approvals
from approvals.models import AccessRequest
from broker.catalog import AUDITORS_GROUP
from broker.models import Channel
from grants import services as grants
from grants.models import Grant
from tests.factories import EligibilityFactory, GroupFactory, RoleFactory, StageFactory, UserFactory

T0 = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)

_figures: list[str] = []


@pytest.fixture
def report_figure():
    """Record a measured figure (a lag, a case count); the run prints them all at its end."""
    return _figures.append


def pytest_terminal_summary(terminalreporter):
    if _figures:
        terminalreporter.write_sep("-", "measured figures")
        for line in _figures:
            terminalreporter.write_line(line)


@pytest.fixture(autouse=True)
def _empty_cache():
    """Every test starts with an empty cache: rate-limit counters never leak from one test to the next."""
    cache.clear()


@pytest.fixture(autouse=True)
def _default_language():
    """Every test starts in the default language: a request in German (the middleware activates the
    saved language for the thread, as Django's LocaleMiddleware does) never leaks into the next test."""
    translation.activate(django_settings.LANGUAGE_CODE)
    yield
    translation.activate(django_settings.LANGUAGE_CODE)


@pytest.fixture
def clock():
    """Frozen time at T0; move it with clock.shift(...)."""
    with time_machine.travel(T0, tick=False) as traveller:
        yield traveller


@pytest.fixture
def requester(db):
    return UserFactory(username="alice")


@pytest.fixture
def approver(db):
    return UserFactory(username="carol")


@pytest.fixture
def approver2(db):
    return UserFactory(username="dave")


@pytest.fixture
def outsider(db):
    return UserFactory(username="mallory")


@pytest.fixture
def auditor(db):
    user = UserFactory(username="erin")
    user.groups.add(GroupFactory(name=AUDITORS_GROUP))
    return user


@pytest.fixture
def admin_user(db):
    return UserFactory(username="root", is_staff=True, is_superuser=True)


@pytest.fixture
def make_role(db, requester):
    """A role the requester is eligible for, with stages of approver users: make_role(stages=[[carol]])."""

    def make(*, stages=None, required=None, eligible=None, **fields):
        role = RoleFactory(**fields)
        for position, approvers in enumerate(stages or []):
            StageFactory(
                role=role, position=position, required=(required or [1] * len(stages))[position], users=approvers
            )
        for user in [requester] if eligible is None else eligible:
            EligibilityFactory(role=role, user=user)
        return role

    return make


@pytest.fixture
def role(make_role, approver):
    """One stage, one approval by carol; alice is eligible."""
    return make_role(stages=[[approver]], slug="db-admin")


@pytest.fixture
def request_role(requester):
    def create(role, *, user=None, duration=timedelta(hours=1), justification="incident INC-1", **kwargs):
        return approvals.request_create(
            requester=user or requester,
            role=role,
            duration=duration,
            justification=justification,
            via=Channel.PORTAL,
            **kwargs,
        )

    return create


@pytest.fixture
def active_grant(role, request_role, approver):
    """Alice holds db-admin for one hour from now, activated in the target."""

    def make(duration=timedelta(hours=1), target_role=None):
        req = request_role(target_role or role, duration=duration, mfa_at=timezone.now())
        if req.status == AccessRequest.Status.PENDING:
            req = approvals.request_approve(
                request_id=req.pk, approver=approver, via=Channel.PORTAL, mfa_at=timezone.now()
            )
        grant = grants.grant_activate(grant_id=req.grant.pk)
        assert grant.status == Grant.Status.ACTIVE
        return grant

    return make


# --- A real OpenID Connect provider (tests/idp), for sign-in, step-up and e2e tests -------------------


@pytest.fixture(scope="session")
def idp(tmp_path_factory):
    """The test identity provider, running as its own process on a spare port for the whole run."""
    from tests.idp.driver import IdP

    provider = IdP(tmp_path_factory.mktemp("idp"), redirect_uri="http://testserver/account/oidc/callback/")
    provider.start()
    yield provider
    provider.stop()


@pytest.fixture
def sso(settings, idp):
    """The broker pointed at the test IdP, as the README's few variables do; groups prefixed idp- are its own."""
    settings.OIDC_ISSUER = idp.issuer
    settings.OIDC_CLIENT_ID = idp.client_id
    settings.OIDC_CLIENT_SECRET = idp.client_secret
    settings.OIDC_SCOPES = ["openid", "email", "profile"]
    settings.IDP_MANAGED_GROUP_PREFIX = "idp-"
    settings.SITE_URL = "http://testserver"
    return idp
