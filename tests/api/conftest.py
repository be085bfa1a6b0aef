"""API clients for the cast: a bearer token per person (any scopes), and a small world of requests and grants."""

from types import SimpleNamespace

import pytest
from rest_framework.test import APIClient

from accounts.tokens import token_create
from approvals import services as approvals
from broker.models import Channel
from grants import services as grants
from grants.models import Grant
from tests.factories import UserFactory

ALL = ("read", "request", "approve")


@pytest.fixture
def anonymous():
    return APIClient()


@pytest.fixture
def bearer(db):
    """bearer(user, scopes=...) -> an APIClient that sends that user's new token."""

    def make(user, scopes=ALL, **kwargs):
        row, text = token_create(user=user, scopes=list(scopes), via=Channel.CLI, **kwargs)
        client = APIClient()
        client.credentials(HTTP_AUTHORIZATION=f"Bearer {text}")
        client.token, client.token_text, client.user = row, text, user
        return client

    return make


@pytest.fixture
def bob(db):
    """Another requester, eligible for the same roles as alice."""
    return UserFactory(username="bob")


@pytest.fixture
def world(db, requester, bob, approver, auditor, admin_user, make_role):
    """alice has a pending request for db-admin (carol approves) and an active sandbox grant."""
    db_admin = make_role(stages=[[approver]], slug="db-admin", eligible=[requester, bob])
    sandbox = make_role(slug="sandbox", auto_approve=True, requires_justification=False, eligible=[requester, bob])
    deploy = make_role(stages=[[approver]], slug="deploy", eligible=[requester, bob])
    pending = approvals.request_create(requester=requester, role=db_admin, justification="INC-1", via=Channel.PORTAL)
    auto = approvals.request_create(requester=requester, role=sandbox, via=Channel.PORTAL)
    grant = grants.grant_activate(grant_id=auto.grant.pk)
    assert grant.status == Grant.Status.ACTIVE
    return SimpleNamespace(
        alice=requester,
        bob=bob,
        carol=approver,
        erin=auditor,
        root=admin_user,
        db_admin=db_admin,
        sandbox=sandbox,
        deploy=deploy,
        pending=pending,
        grant=grant,
    )
