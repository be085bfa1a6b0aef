"""Risk signals: an identity provider or a security tool says an account can no longer be trusted.

``user_signal_apply`` ends everything the person holds or asked for:

- every live grant (scheduled or active) is revoked with end_reason ``risk_signal``;
- every pending request (new or extension) is cancelled;
- every session of the person ends at once (accounts.sessions: a per-person epoch, so the
  attacker's browser is signed out at its next request, whatever the session backend), and with
  it the step-up time a session remembers; every API token of theirs is revoked;
- ``credential_compromised`` also makes the password unusable (they get back in through the
  password reset, or an administrator sets a new password); ``account_disabled`` deactivates the
  local account (it mirrors the identity provider; the sweeper and authentication refuse inactive
  accounts).

Each item is ended by its own service call in its own transaction, so one failing target does
not keep the others alive (assume breach: end as much as possible, as early as possible). The
signal itself is audited first, so it is on record even if something fails later. A request
approved concurrently, or a grant created meanwhile, is caught by a second pass.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

from django.contrib.auth.models import AbstractBaseUser
from django.db import transaction
from django.utils import translation

from accounts.events import record_auth_event
from accounts.models import ApiToken
from accounts.recovery import password_revoke
from accounts.sessions import sessions_end
from accounts.tokens import token_revoke
from approvals.models import AccessRequest
from approvals.services import request_close_for_user
from approvals.signals import handled_by_caller
from broker import wording
from broker.errors import Conflict, Invalid, NotAllowed, NotFound
from grants.models import Grant
from grants.services import MAX_REASON as grants_max_reason
from grants.services import grant_revoke

log = logging.getLogger(__name__)

EVENTS = ("account_disabled", "credential_compromised", "risk_high")
MAX_REASON = 2000
_PASSES = 3


@dataclass
class SignalOutcome:
    user: str
    event: str
    grants_revoked: list[int] = field(default_factory=list)
    requests_cancelled: list[int] = field(default_factory=list)
    tokens_revoked: int = 0
    account_deactivated: bool = False
    sessions_ended: bool = False
    password_revoked: bool = False


def user_signal_apply(
    *,
    user: AbstractBaseUser,
    event: str,
    reason: str,
    actor: AbstractBaseUser,
    via: str,
    ip: str | None = None,
) -> SignalOutcome:
    """Apply a risk signal about ``user``; ``actor`` is the administrator (or integration) reporting it."""
    if event not in EVENTS:
        raise Invalid(f"unknown event {event!r}", fields={"event": [f"One of {', '.join(EVENTS)}."]})
    reason = (reason or "").strip()
    if not reason:
        raise Invalid("say why", fields={"reason": ["Required."]})
    if len(reason) > MAX_REASON:
        raise Invalid("the reason is too long", fields={"reason": [f"At most {MAX_REASON} characters."]})
    if not actor.is_staff:
        raise NotAllowed("only administrators may report risk signals")

    username = user.get_username()
    outcome = SignalOutcome(user=username, event=event)
    # Kept in the audit trail and on the rows: in the broker's own words (the English source),
    # whatever language the reporter's request was in.
    with translation.override(None):
        said = wording.risk_event(event)
    # The grants and requests are ended below, as a risk signal: not by the reaction to the deactivation.
    with transaction.atomic(), handled_by_caller():
        record_auth_event(
            "risk.signal", user=user, actor=actor, via=via, ip=ip, data={"event": event, "reason": reason}
        )
        if event == "account_disabled" and user.is_active:
            user.is_active = False
            user.save(update_fields=["is_active"])
            outcome.account_deactivated = True
            record_auth_event("user.deactivated", user=user, actor=actor, via=via, ip=ip, data={"event": event})
        if event == "credential_compromised":
            password_revoke(user=user, actor=actor, reason=f"risk signal: {said}", via=via, ip=ip)
            outcome.password_revoked = True
        # First the sessions: the one step that shuts a browser already inside out at once.
        sessions_end(user=user, actor=actor, reason=f"risk signal: {said}", via=via, ip=ip)
        outcome.sessions_ended = True

    for token_id in ApiToken.objects.filter(user=user, revoked_at__isnull=True).values_list("pk", flat=True):
        try:
            token_revoke(token_id=token_id, owner=user, actor=actor, via=via, ip=ip)
            outcome.tokens_revoked += 1
        except NotFound:
            pass  # revoked meanwhile

    why = f"risk signal ({said}): {reason}"
    # Lock order as everywhere: requests before grants (approving a request creates its grant).
    for _ in range(_PASSES):
        pending = list(
            AccessRequest.objects.filter(requester=user, status=AccessRequest.Status.PENDING).values_list(
                "pk", flat=True
            )
        )
        live = list(Grant.objects.live().filter(user=user).values_list("pk", flat=True))
        if not pending and not live:
            break
        for request_id in pending:
            req = request_close_for_user(request_id=request_id, actor=actor, reason=why[:200], via=via)
            if req is not None and req.status == AccessRequest.Status.CANCELLED and req.closed_reason == why[:200]:
                outcome.requests_cancelled.append(request_id)
        for grant_id in Grant.objects.live().filter(user=user).values_list("pk", flat=True):
            try:
                grant_revoke(
                    grant_id=grant_id,
                    actor=actor,
                    reason=why[:grants_max_reason],
                    via=via,
                    ip=ip,
                    end_reason=Grant.EndReason.RISK_SIGNAL,
                )
                outcome.grants_revoked.append(grant_id)
            except (Conflict, NotFound):
                pass  # ended meanwhile
    log.warning(
        "risk signal %s for %s: %s grant(s) revoked, %s request(s) cancelled, %s token(s) revoked",
        event,
        username,
        len(outcome.grants_revoked),
        len(outcome.requests_cancelled),
        outcome.tokens_revoked,
    )
    return outcome
