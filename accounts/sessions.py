"""Ending all of a person's sessions at once: a per-person session epoch, checked on every request.

Why an epoch: Django keeps sessions in a store (database, cache, signed cookies) that cannot be
searched by user without reading every session, and the signed-cookie backend cannot be searched
at all. Django's own session hash (a hash of the password) ends sessions only when the password
changes, which ``risk_high`` and ``account_disabled`` do not do. So each session records, when it
signs in, the person's epoch (``CredentialState.session_epoch``, 0 until a signal raises it), and
``SessionEpochMiddleware`` compares it on each request with the stored one: one primary-key read,
O(1) per request, the same for every backend. Raising the epoch (``sessions_end``) ends every
session of the person at its next request; the step-up time kept in a session goes with it.

A session that carries no epoch (signed in before this existed) counts as ended.
"""

from __future__ import annotations

import logging
from datetime import datetime

from django.contrib.auth import logout
from django.contrib.auth.models import AbstractBaseUser
from django.contrib.auth.signals import user_logged_in
from django.db import transaction
from django.utils import timezone

from accounts.events import record_auth_event
from accounts.models import CredentialState

log = logging.getLogger(__name__)

EPOCH_KEY = "broker_session_epoch"


def current_epoch(user_id: int) -> int:
    return CredentialState.objects.filter(user_id=user_id).values_list("session_epoch", flat=True).first() or 0


def _stamp(sender, request, user, **kwargs) -> None:
    """Every sign-in (portal, admin, tests' force_login) records the person's epoch in the new session."""
    if request is not None and hasattr(request, "session"):
        request.session[EPOCH_KEY] = current_epoch(user.pk)


def connect() -> None:
    user_logged_in.connect(_stamp, dispatch_uid="accounts.sessions.stamp")


def lock_state(user: AbstractBaseUser) -> CredentialState:
    """The person's CredentialState row, created if needed, locked for the caller's transaction."""
    CredentialState.objects.get_or_create(user=user)
    return CredentialState.objects.select_for_update().get(user=user)


def sessions_end(
    *, user: AbstractBaseUser, actor: AbstractBaseUser | None, reason: str, via: str, ip: str | None = None,
    now: datetime | None = None,
) -> int:  # fmt: skip
    """End every session of ``user`` now (each one at its next request); audited. Returns the new epoch."""
    now = now or timezone.now()
    with transaction.atomic():
        state = lock_state(user)
        state.session_epoch += 1
        state.sessions_ended_at = now
        state.save(update_fields=["session_epoch", "sessions_ended_at"])
        record_auth_event(
            "auth.sessions_ended",
            user=user,
            actor=actor,
            via=via,
            ip=ip,
            data={"reason": reason, "epoch": state.session_epoch},
        )
    return state.session_epoch


class SessionEpochMiddleware:
    """Sign out a session whose epoch is older than its person's. After AuthenticationMiddleware."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        user = getattr(request, "user", None)
        if user is not None and user.is_authenticated and request.session.get(EPOCH_KEY) != current_epoch(user.pk):
            log.info("ended session of %s presented again (its epoch is over)", user.get_username())
            logout(request)
        return self.get_response(request)
