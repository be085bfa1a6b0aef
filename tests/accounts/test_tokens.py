"""API tokens: shown once, stored hashed, scoped, expiring, revocable."""

from datetime import timedelta

import pytest

from accounts.models import ApiToken
from accounts.tokens import token_authenticate, token_create, token_revoke
from broker.errors import Invalid
from broker.models import AuditEvent

pytestmark = pytest.mark.django_db


def test_token_is_stored_only_as_a_hash(requester):
    row, text = token_create(user=requester, via="cli")
    assert text.startswith(f"pab_{row.prefix}_")
    assert text not in str(ApiToken.objects.values().get())
    assert token_authenticate(text) == row


def test_token_creation_is_audited_without_the_token(requester):
    _, text = token_create(user=requester, via="cli")
    event = AuditEvent.objects.get(action="token.created")
    assert text not in str(event.data)
    assert event.data["scopes"] == ["read", "request", "approve"]


def test_wrong_token_does_not_authenticate(requester):
    _, text = token_create(user=requester, via="cli")
    assert token_authenticate(text[:-1] + ("A" if text[-1] != "A" else "B")) is None
    assert token_authenticate("Bearer nonsense") is None


def test_expired_token_does_not_authenticate(requester, clock):
    _, text = token_create(user=requester, via="cli", expires_in=timedelta(days=1))
    clock.shift(timedelta(days=1))
    assert token_authenticate(text) is None


def test_revoked_token_does_not_authenticate(requester):
    row, text = token_create(user=requester, via="cli")
    token_revoke(token_id=row.pk, owner=requester, via="api")
    assert token_authenticate(text) is None


def test_token_of_an_inactive_user_does_not_authenticate(requester):
    _, text = token_create(user=requester, via="cli")
    requester.is_active = False
    requester.save()
    assert token_authenticate(text) is None


def test_admin_scope_needs_a_staff_user(requester, admin_user):
    with pytest.raises(Invalid, match="administrators"):
        token_create(user=requester, scopes="read,admin", via="cli")
    assert token_create(user=admin_user, scopes="read,admin", via="cli")[0].scopes == ["read", "admin"]


def test_unknown_scope_is_refused(requester):
    with pytest.raises(Invalid, match="unknown scope"):
        token_create(user=requester, scopes="read,root", via="cli")
