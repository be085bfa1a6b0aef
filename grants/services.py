"""Every change of a grant's state. One function per transition, row locked, audited.

Lock order, everywhere: AccessRequest rows, then Grant rows, then the access lock of the grant's
piece of access for its holder (``AccessLock``), then the audit head (taken last by
``audit.record``). Connector calls happen while the grant's row and its access lock are held,
before the audit head is taken, so that activation and removal of one grant never interleave,
two grants sharing one piece of access never both skip its removal, and the audit chain is never
held up by a slow target (connector calls are bounded by their timeouts; see
grants/connectors/base.py).
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta

from django.conf import settings
from django.contrib.auth.models import AbstractBaseUser
from django.db import IntegrityError, transaction
from django.utils import timezone

from broker import audit
from broker.catalog import check_conditions, why_not_eligible
from broker.errors import Conflict, Invalid, NotAllowed, NotFound
from broker.jobs import enqueue_on_commit
from broker.models import Channel
from broker.notify import Message, notify_on_commit
from grants.connectors import Connector, ConnectorError, connector_for_grant, set_access
from grants.events import FINAL_ACTION, FINAL_STATUS, ended_data, facts, grant_event, resource_of
from grants.models import ENDING_STATUSES, AccessLock, Grant
from grants.push import queue_ticks_on_commit, within_horizon

log = logging.getLogger(__name__)

# The tasks that take a grant id and call back into this module (grants/tasks.py), by name.
ACTIVATE_TASK = "grants.tasks.activate_grant"
REMOVE_TASK = "grants.tasks.remove_grant"

# Longest reason or comment kept with an ended grant or a review.
MAX_REASON = 2000

S = Grant.Status
R = Grant.EndReason


def _lock(grant_id: int, *, skip_locked: bool = False) -> Grant | None:
    return (
        Grant.objects.select_for_update(skip_locked=skip_locked, of=("self",))
        .select_related("role", "user")
        .filter(pk=grant_id)
        .first()
    )


def _error_text(exc: BaseException) -> str:
    text = f"{type(exc).__name__}: {exc}" if not isinstance(exc, ConnectorError) else str(exc)
    return text[:2000]


def _backoff(attempts: int) -> timedelta:
    base = settings.REVOKE_RETRY_BASE.total_seconds()
    delay = min(base * (2 ** max(0, attempts - 1)), settings.REVOKE_RETRY_MAX.total_seconds())
    return timedelta(seconds=delay)


def _hold_access(grant: Grant, connector: Connector) -> None:
    AccessLock.objects.hold(connector.target_key(), grant.user)


def _queue_after_commit(task: str, grant_id: int, eta: datetime, now: datetime) -> None:
    enqueue_on_commit(task, grant_id, eta=eta if eta > now else None)


def _queue_expiry(grant: Grant, now: datetime) -> None:
    """Push layer: the task of the grant's expiry tick (grants/push.py), if within the horizon."""
    if grant.eta_queued_for == grant.expires_at or not within_horizon(grant.expires_at, now):
        return
    grant.eta_queued_for = grant.expires_at
    grant.save(update_fields=["eta_queued_for"])
    queue_ticks_on_commit([grant.expires_at])


# --- Creation -------------------------------------------------------------------------------------


def grant_create(*, request, actor: AbstractBaseUser | None, via: str, now: datetime) -> Grant:
    """Turn an approved request into a grant. Runs inside the approving transaction.

    The clock starts at approval (or at the requested start, if later), not at the request.
    """
    starts_at = max(now, request.starts_at) if request.starts_at else now
    try:
        with transaction.atomic():
            grant = Grant.objects.create(
                request=request,
                user=request.requester,
                role=request.role,
                resource=request.resource,
                status=S.SCHEDULED,
                starts_at=starts_at,
                expires_at=starts_at + request.duration,
                created_at=now,
                break_glass=request.break_glass,
            )
    except IntegrityError:
        raise Conflict(
            f"{request.requester.get_username()} already holds {request.role.slug}"
            f"{' on ' + request.resource if request.resource else ''}; request an extension instead",
            code="already_granted",
        ) from None
    audit.record(
        "grant.scheduled",
        actor=actor,
        target=grant,
        via=via,
        **facts(grant),
        data={
            "request": request.pk,
            "starts_at": grant.starts_at,
            "expires_at": grant.expires_at,
            "break_glass": grant.break_glass,
            **resource_of(grant),
        },
    )
    if within_horizon(starts_at, now):
        _queue_after_commit(ACTIVATE_TASK, grant.pk, starts_at, now)
    return grant


# --- Activation -----------------------------------------------------------------------------------


def grant_activate(*, grant_id: int, now: datetime | None = None, skip_locked: bool = False) -> Grant | None:
    """Switch a due scheduled grant on in the target. Idempotent: anything else is a no-op."""
    now = now or timezone.now()
    with transaction.atomic():
        grant = _lock(grant_id, skip_locked=skip_locked)
        if grant is None or grant.status != S.SCHEDULED or grant.starts_at > now:
            return grant
        if grant.next_attempt_at and grant.next_attempt_at > now:
            return grant
        if now >= grant.expires_at:
            # The whole window passed before any worker got to it (all workers down): it never
            # gave access. Remove anyway, in case an earlier attempt got through before a crash.
            return _end_and_remove(grant, reason=R.NOT_ACTIVATED, actor=None, via=Channel.WORKER, now=now)
        why = why_not_eligible(grant.user, grant.role)
        if why is not None:
            reason = R.ROLE_RETIRED if grant.role.is_retired else R.ELIGIBILITY_LOST
            return _end_and_remove(grant, reason=reason, actor=None, via=Channel.WORKER, comment=why, now=now)
        conditions = check_conditions(grant.role, grant.user, now=now, at_activation=True)
        if not conditions.allowed:
            # It never gave access; the removal below is a no-op in the target, as for not_activated.
            log.info("grant %s not activated: %s", grant.pk, conditions)
            return _end_and_remove(
                grant,
                reason=R.CONDITIONS_FAILED,
                actor=None,
                via=Channel.WORKER,
                comment=f"not activated: {conditions}",
                now=now,
                conditions=[r.as_dict() for r in conditions.refusals],
            )
        if Grant.objects.filter(user=grant.user, role=grant.role, resource=grant.resource, status=S.REVOKING).exists():
            # The previous grant of this role is still being removed; switching this one on now
            # could be undone by that removal. Try again shortly.
            grant.next_attempt_at = now + timedelta(seconds=2)
            grant.save(update_fields=["next_attempt_at"])
            _queue_after_commit(ACTIVATE_TASK, grant.pk, grant.next_attempt_at, now)
            return grant

        try:
            connector = connector_for_grant(grant)
            _hold_access(grant, connector)
            set_access(connector, grant.user, present=True, event=grant_event(grant, "grant.activated"))
        except Exception as exc:  # noqa: BLE001 - any connector failure is retried, never fatal
            return _activation_failed(grant, exc, now)

        grant.status = S.ACTIVE
        grant.activated_at = timezone.now()
        grant.attempts = 0
        grant.next_attempt_at = None
        grant.last_error = ""
        grant.save(update_fields=["status", "activated_at", "attempts", "next_attempt_at", "last_error"])
        audit.record(
            "grant.activated",
            actor=None,
            target=grant,
            via=Channel.WORKER,
            **facts(grant),
            data={
                "starts_at": grant.starts_at,
                "expires_at": grant.expires_at,
                "connector": grant.role.connector,
                **resource_of(grant),
            },
        )
        _queue_expiry(grant, now)
        notify_on_commit(Message.GRANT_ACTIVE, grant.pk)
    log.info("grant %s activated: %s holds %s until %s", grant.pk, grant.user, grant.role, grant.expires_at)
    return grant


def _activation_failed(grant: Grant, exc: BaseException, now: datetime) -> Grant:
    grant.attempts += 1
    grant.last_error = _error_text(exc)
    log.warning("grant %s: activation attempt %s failed: %s", grant.pk, grant.attempts, grant.last_error)
    # A permanent refusal (a webhook's 400, a login missing on the target) is not worth retrying.
    if grant.attempts >= settings.ACTIVATE_MAX_ATTEMPTS or getattr(exc, "permanent", False):
        grant.save(update_fields=["attempts", "last_error"])
        audit.record(
            "grant.connector_failed",
            actor=None,
            target=grant,
            via=Channel.WORKER,
            **facts(grant),
            data={"operation": "grant", "attempt": grant.attempts, "error": grant.last_error, "final": True},
        )
        return _end_and_remove(grant, reason=R.ACTIVATION_FAILED, actor=None, via=Channel.WORKER, now=now)
    grant.next_attempt_at = now + _backoff(grant.attempts)
    grant.save(update_fields=["attempts", "last_error", "next_attempt_at"])
    audit.record(
        "grant.connector_failed",
        actor=None,
        target=grant,
        via=Channel.WORKER,
        **facts(grant),
        data={
            "operation": "grant",
            "attempt": grant.attempts,
            "error": grant.last_error,
            "next_attempt_at": grant.next_attempt_at,
        },
    )
    _queue_after_commit(ACTIVATE_TASK, grant.pk, grant.next_attempt_at, now)
    return grant


# --- Extension ------------------------------------------------------------------------------------


def extension_room(grant: Grant) -> timedelta:
    """How much later expires_at may still move under the role's lifetime cap."""
    return max(timedelta(0), grant.starts_at + grant.role.lifetime_cap - grant.expires_at)


def grant_extend(
    *, grant_id: int, duration: timedelta, actor: AbstractBaseUser | None, via: str, request_id: int, now: datetime
) -> Grant:
    """Move a live grant's expiry later (an approved extension request). Runs in the approving transaction."""
    grant = _lock(grant_id)
    if grant is None or not grant.is_running(now):
        raise Conflict("the grant this extension is for has already ended", code="grant_ended")
    room = extension_room(grant)
    if room <= timedelta(0):
        raise Conflict("the grant has reached the role's maximum lifetime", code="extension_cap")
    old = grant.expires_at
    grant.expires_at = old + min(duration, room)
    grant.save(update_fields=["expires_at"])
    audit.record(
        "grant.extended",
        actor=actor,
        target=grant,
        via=via,
        **facts(grant),
        data={"request": request_id, "from": old, "to": grant.expires_at},
    )
    if grant.break_glass and grant.reviewed_at is not None:
        _reopen_review(grant, actor=actor, via=via, request_id=request_id)
    if grant.status == S.ACTIVE:
        _queue_expiry(grant, now)
    return grant


def _reopen_review(grant: Grant, *, actor: AbstractBaseUser | None, via: str, request_id: int) -> None:
    """More break-glass time is a new emergency decision: the review of the first one no longer covers it."""
    previous = {
        "at": grant.reviewed_at,
        "by": grant.reviewed_by.get_username() if grant.reviewed_by else None,
        "note": grant.review_note,
    }
    grant.reviewed_at = None
    grant.reviewed_by = None
    grant.review_note = ""
    grant.save(update_fields=["reviewed_at", "reviewed_by", "review_note"])
    audit.record(
        "grant.review_reopened",
        actor=actor,
        target=grant,
        via=via,
        **facts(grant),
        data={"request": request_id, "expires_at": grant.expires_at, "previous": previous},
    )


# --- Ending ---------------------------------------------------------------------------------------


def grant_relinquish(
    *,
    grant_id: int,
    user: AbstractBaseUser,
    via: str,
    ip: str | None = None,
    comment: str = "",
    now: datetime | None = None,
) -> Grant:
    """The holder gives the role back early."""
    now = now or timezone.now()
    with transaction.atomic():
        grant = _lock(grant_id)
        if grant is None or grant.user_id != user.pk:
            raise NotAllowed("only the holder may relinquish a grant")
        _ensure_live(grant)
        return _end_and_remove(grant, reason=R.RELINQUISHED, actor=user, via=via, ip=ip, comment=comment, now=now)


def grant_revoke(
    *,
    grant_id: int,
    actor: AbstractBaseUser | None,
    reason: str,
    via: str,
    end_reason: str = R.REVOKED,
    ip: str | None = None,
    now: datetime | None = None,
) -> Grant:
    """End a grant early on someone else's decision (an admin, a risk signal, lost eligibility).

    Someone else's decision always says why (the holder and the auditors read it): every channel
    (API, portal, admin, policy apply, risk signals) comes through here, so the rule lives here.
    """
    now = now or timezone.now()
    if actor is not None and not actor.is_staff:
        raise NotAllowed("only administrators may revoke another person's grant")
    reason = (reason or "").strip()
    if not reason:
        raise Invalid("say why you revoke the grant", fields={"reason": ["Required to revoke another's grant."]})
    if len(reason) > MAX_REASON:
        raise Invalid("the reason is too long", fields={"reason": [f"At most {MAX_REASON} characters."]})
    with transaction.atomic():
        grant = _lock(grant_id)
        if grant is None:
            raise NotFound(f"grant {grant_id} does not exist")
        _ensure_live(grant)
        return _end_and_remove(grant, reason=end_reason, actor=actor, via=via, ip=ip, comment=reason, now=now)


def grant_expire(*, grant_id: int, now: datetime | None = None, skip_locked: bool = False) -> Grant | None:
    """End an active grant whose time is up. Idempotent; a no-op before expires_at."""
    now = now or timezone.now()
    with transaction.atomic():
        grant = _lock(grant_id, skip_locked=skip_locked)
        if grant is None or grant.status != S.ACTIVE or grant.expires_at > now:
            return grant
        return _end_and_remove(grant, reason=R.EXPIRY, actor=None, via=Channel.WORKER, now=now)


def grant_end_if_not_eligible(
    *,
    grant_id: int,
    actor: AbstractBaseUser | None = None,
    via: str = Channel.WORKER,
    now: datetime | None = None,
    skip_locked: bool = False,
) -> Grant | None:
    """End a live grant its holder may no longer hold (``broker.catalog.why_not_eligible``): the
    account was deactivated or the eligibility removed (``eligibility_lost``), or the role was
    retired (``role_retired``). Idempotent: None when the grant is not live or still allowed.
    Called by approvals.eligibility, which reacts to every change that can remove eligibility."""
    now = now or timezone.now()
    with transaction.atomic():
        grant = _lock(grant_id, skip_locked=skip_locked)
        if grant is None or not grant.is_live:
            return None
        why = why_not_eligible(grant.user, grant.role)
        if why is None:
            return None
        reason = R.ROLE_RETIRED if grant.role.is_retired else R.ELIGIBILITY_LOST
        return _end_and_remove(grant, reason=reason, actor=actor, via=via, comment=why, now=now)


def grant_remove(
    *, grant_id: int, now: datetime | None = None, skip_locked: bool = False, force: bool = False
) -> Grant | None:
    """Retry the removal of a grant whose end was decided. ``force`` ignores the backoff (by hand)."""
    now = now or timezone.now()
    with transaction.atomic():
        grant = _lock(grant_id, skip_locked=skip_locked)
        if grant is None or grant.status not in ENDING_STATUSES:
            return grant
        if not force and grant.next_attempt_at and grant.next_attempt_at > now:
            return grant
        return _remove(grant, now=now, via=Channel.WORKER)


def _ensure_live(grant: Grant) -> None:
    if not grant.is_live:
        raise Conflict(f"grant {grant.pk} is already {grant.status}", code="grant_ended")


def _end_and_remove(
    grant: Grant,
    *,
    reason: str,
    actor: AbstractBaseUser | None,
    via: str,
    now: datetime,
    ip: str | None = None,
    comment: str = "",
    conditions: list[dict[str, str]] | None = None,
) -> Grant:
    """Decide the end (status revoking: never effective again) and try the removal at once.

    ``conditions``: the role conditions that failed (end reason ``conditions_failed``), for the audit event.
    """
    grant.status = S.REVOKING
    grant.end_reason = reason
    grant.end_requested_at = now
    grant.ended_by = actor
    grant.end_comment = comment
    grant.attempts = 0
    grant.next_attempt_at = None
    grant.save(
        update_fields=[
            "status",
            "end_reason",
            "end_requested_at",
            "ended_by",
            "end_comment",
            "attempts",
            "next_attempt_at",
        ]
    )
    return _remove(grant, now=now, via=via, actor=actor, ip=ip, first=True, conditions=conditions)


def _still_needed_elsewhere(grant: Grant, connector: Connector) -> bool:
    """Another active grant of this user gives the very same access (two roles, one target group;
    one role whose config does not change with the resource, held on two resources).

    Asked while holding the access lock (``_hold_access``): a sibling's activation or removal
    that started earlier has committed by then, and one that starts later waits for this one.
    """
    others = Grant.objects.filter(user=grant.user, status=S.ACTIVE).exclude(pk=grant.pk).select_related("role")
    return any(connector_for_grant(other).target_key() == connector.target_key() for other in others)


def _remove(
    grant: Grant,
    *,
    now: datetime,
    via: str,
    actor: AbstractBaseUser | None = None,
    ip: str | None = None,
    first: bool = False,
    conditions: list[dict[str, str]] | None = None,
) -> Grant:
    """Remove the access in the target; only a confirmed removal ends the grant."""
    try:
        connector = connector_for_grant(grant)
        _hold_access(grant, connector)
        if not _still_needed_elsewhere(grant, connector):
            set_access(connector, grant.user, present=False, event=grant_event(grant, "grant.revoked"))
    except Exception as exc:  # noqa: BLE001 - any connector failure is retried, never fatal
        return _removal_failed(grant, exc, now=now, via=via, actor=actor, ip=ip, first=first)

    grant.status = FINAL_STATUS.get(grant.end_reason, S.REVOKED)
    grant.ended_at = timezone.now()
    grant.next_attempt_at = None
    grant.save(update_fields=["status", "ended_at", "next_attempt_at"])
    audit.record(
        FINAL_ACTION.get(grant.end_reason, "grant.revoked"),
        actor=actor if first else None,
        target=grant,
        via=via,
        ip=ip,
        **facts(grant),
        data={**ended_data(grant), **({"conditions": conditions} if conditions else {})},
    )
    notify_on_commit(Message.GRANT_ENDED, grant.pk)
    log.info("grant %s ended (%s): %s no longer holds %s", grant.pk, grant.end_reason, grant.user, grant.role)
    return grant


def _removal_failed(
    grant: Grant,
    exc: BaseException,
    *,
    now: datetime,
    via: str,
    actor: AbstractBaseUser | None,
    ip: str | None,
    first: bool,
) -> Grant:
    grant.attempts += 1
    grant.last_error = _error_text(exc)
    log.warning("grant %s: removal attempt %s failed: %s", grant.pk, grant.attempts, grant.last_error)
    if first:
        # The end was decided even though the target did not answer: say so before the failure.
        audit.record(
            "grant.ending",
            actor=actor,
            target=grant,
            via=via,
            ip=ip,
            **facts(grant),
            data={"end_reason": grant.end_reason, "comment": grant.end_comment},
        )
    # A permanent refusal (a webhook's 400) goes to revoke_failed at once: retrying it soon cannot
    # help, and security must hear of it now. The daily retry and the admin's retry still apply.
    exhausted = grant.attempts >= settings.REVOKE_MAX_ATTEMPTS or getattr(exc, "permanent", False)
    if exhausted:
        grant.status = S.REVOKE_FAILED
        grant.next_attempt_at = now + settings.REVOKE_FAILED_RETRY
    else:
        grant.next_attempt_at = now + _backoff(grant.attempts)
    grant.save(update_fields=["status", "attempts", "last_error", "next_attempt_at"])
    audit.record(
        "grant.revoke_failed" if exhausted else "grant.connector_failed",
        actor=None,
        target=grant,
        via=Channel.WORKER if not first else via,
        **facts(grant),
        data={
            "operation": "revoke",
            "attempt": grant.attempts,
            "error": grant.last_error,
            "next_attempt_at": grant.next_attempt_at,
        },
    )
    if exhausted:
        log.error("grant %s: removal failed %s times; needs attention: %s", grant.pk, grant.attempts, grant.last_error)
        # Security hears of it now and after every failed daily retry (one message per attempt).
        notify_on_commit(Message.REVOKE_FAILED, grant.pk, grant.attempts)
    elif within_horizon(grant.next_attempt_at, now):
        _queue_after_commit(REMOVE_TASK, grant.pk, grant.next_attempt_at, now)
    return grant


# --- Break-glass review ---------------------------------------------------------------------------


def grant_review(
    *,
    grant_id: int,
    reviewer: AbstractBaseUser,
    note: str,
    via: str,
    ip: str | None = None,
    now: datetime | None = None,
) -> Grant:
    """Record the post-hoc review of a break-glass activation."""
    now = now or timezone.now()
    with transaction.atomic():
        grant = _lock(grant_id)
        if grant is None or not grant.break_glass:
            raise Conflict("only break-glass grants are reviewed", code="not_break_glass")
        if grant.reviewed_at is not None:
            raise Conflict(f"grant {grant.pk} was already reviewed", code="already_reviewed")
        if grant.user_id == reviewer.pk:
            raise NotAllowed("you cannot review your own break-glass activation", code="self_review")
        grant.reviewed_at = now
        grant.reviewed_by = reviewer
        grant.review_note = note
        grant.save(update_fields=["reviewed_at", "reviewed_by", "review_note"])
        audit.record(
            "grant.reviewed", actor=reviewer, target=grant, via=via, ip=ip, **facts(grant), data={"note": note}
        )
        return grant
