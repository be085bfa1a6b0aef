"""Every change of an access request's state. One function per transition, row locked, audited.

Lock order: AccessRequest, then Grant (grants.services), then the audit head.
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta

from django.conf import settings
from django.contrib.auth.models import AbstractBaseUser
from django.db import IntegrityError, transaction
from django.db.models import F, Q
from django.utils import timezone

from accounts import mfa
from approvals import anomaly
from approvals.models import AccessRequest, Decision
from approvals.policy import StageSpec, Vote, evaluate
from broker import audit
from broker.catalog import (
    check_conditions,
    escalation_approvers,
    is_eligible,
    is_escalation_approver,
    is_stage_approver,
    why_not_eligible,
)
from broker.durations import humanize_duration
from broker.errors import Conflict, Invalid, NotAllowed, NotFound
from broker.models import ApprovalStage, Channel, Role
from broker.notify import Message, notify_on_commit
from grants import services as grant_services
from grants.models import LIVE_STATUSES, Grant

log = logging.getLogger(__name__)

Status = AccessRequest.Status

MAX_JUSTIFICATION = 2000
MAX_TICKET = 200
MAX_COMMENT = 2000


def _facts(req: AccessRequest) -> dict:
    return {"role": req.role.slug, "subject": req.requester.get_username()}


def _on(role_slug: str, resource: str) -> str:
    """A role as people read it: ``deploy``, or ``deploy on staging`` for one of its resources."""
    return f"{role_slug} on {resource}" if resource else role_slug


def _lock(request_id: int, *, skip_locked: bool = False) -> AccessRequest | None:
    return (
        AccessRequest.objects.select_for_update(skip_locked=skip_locked, of=("self",))
        .select_related("role", "requester")
        .filter(pk=request_id)
        .first()
    )


# --- Validation of a new request --------------------------------------------------------------


def _clean_text(value: str | None, *, field: str, required: bool, limit: int, what: str) -> str:
    text = (value or "").strip()
    if required and not text:
        raise Invalid(f"{what} is required for this role", fields={field: [f"{what} is required for this role."]})
    if len(text) > limit:
        raise Invalid(f"{what} is too long", fields={field: [f"At most {limit} characters."]})
    return text


def _clean_duration(role: Role, duration: timedelta | None) -> timedelta:
    if duration is None:
        return role.default_duration
    if duration <= timedelta(0):
        raise Invalid("the duration must be positive", fields={"duration_seconds": ["Must be more than zero."]})
    if duration > role.max_duration:
        message = f"At most {humanize_duration(role.max_duration)} for {role.slug}."
        raise Invalid(f"the duration exceeds the role's maximum: {message}", fields={"duration_seconds": [message]})
    if role.min_duration and duration < role.min_duration:
        message = f"At least {humanize_duration(role.min_duration)} for {role.slug}."
        raise Invalid(f"the duration is below the role's minimum: {message}", fields={"duration_seconds": [message]})
    return duration


def _clean_start(starts_at: datetime | None, now: datetime) -> datetime | None:
    if starts_at is None:
        return None
    if timezone.is_naive(starts_at):
        raise Invalid(
            "starts_at needs a time zone", fields={"starts_at": ["Give a time zone, e.g. 2026-01-01T09:00:00Z."]}
        )
    if starts_at <= now:
        raise Invalid("starts_at must be in the future", fields={"starts_at": ["Must be in the future."]})
    horizon = settings.REQUEST_MAX_SCHEDULE_AHEAD
    if starts_at > now + horizon:
        message = f"At most {humanize_duration(horizon)} ahead."
        raise Invalid(f"starts_at is too far ahead: {message}", fields={"starts_at": [message]})
    return starts_at


def _ensure_routable(role: Role) -> None:
    if not (role.approved_at_once or role.stages.exists()):
        # Never approve by default: a role without approvers is a configuration error.
        raise Conflict(f"{role.slug} has no approvers configured; ask an administrator", code="no_approvers")


def _clean_resource(role: Role, resource: str | None) -> str:
    """The resource asked for: one of the role's when it has resources, none otherwise."""
    resource = (resource or "").strip()
    if not role.has_resources:
        if resource:
            message = f"{role.slug} has no resources; leave the resource out."
            raise Invalid(f"{role.slug} is not asked for per resource", fields={"resource": [message]})
        return ""
    if not resource:
        names = ", ".join(role.resource_names)
        message = f"Name the resource you need{' (one of ' + names + ')' if names else ''}."
        raise Invalid(f"{role.slug} is asked for per resource", fields={"resource": [message]})
    if not role.allows_resource(resource):
        message = f"{resource[:63]!r} is not one of the resources of {role.slug}."
        raise Invalid(f"unknown resource for {role.slug}", fields={"resource": [message]})
    return resource


def _ensure_nothing_open(requester: AbstractBaseUser, role: Role, resource: str) -> None:
    pending = AccessRequest.objects.filter(
        requester=requester, role=role, resource=resource, status=Status.PENDING
    ).first()
    if pending:
        raise Conflict(
            f"you already have a pending request for {_on(role.slug, resource)} (#{pending.pk}); "
            "cancel it or wait for a decision",
            code="duplicate_request",
        )


def _ensure_conditions(
    requester: AbstractBaseUser,
    role: Role,
    resource: str,
    *,
    grant: Grant | None,
    via: str,
    ip: str | None,
    posture: str | None,
    now: datetime,
) -> None:
    """Refuse, with every failed condition and why, a request the role's conditions do not allow.

    The refusal is audited (``request.refused``) in its own transaction: nothing else changes.
    """
    outcome = check_conditions(role, requester, now=now, ip=ip, posture=posture)
    if outcome.allowed:
        return
    refusals = [r.as_dict() for r in outcome.refusals]
    with transaction.atomic():
        audit.record(
            "request.refused",
            actor=requester,
            target=grant if grant is not None else ("role", role.slug),
            via=via,
            ip=ip,
            role=role.slug,
            subject=requester.get_username(),
            data={
                "kind": "extension" if grant else "new",
                "grant": grant.pk if grant else None,
                "conditions": refusals,
                **({"resource": resource} if resource else {}),
            },
        )
    raise NotAllowed(
        f"the conditions of {_on(role.slug, resource)} refuse the request: {outcome}",
        code="condition_failed",
        conditions=refusals,
    )


def _extended_grant(grant_id: int, requester: AbstractBaseUser, now: datetime) -> Grant:
    grant = Grant.objects.select_related("role").filter(pk=grant_id, user=requester).first()
    if grant is None:
        raise NotFound(f"grant {grant_id} does not exist")
    if not grant.is_running(now):
        raise Conflict(f"grant {grant.pk} has ended; request the role anew", code="grant_ended")
    return grant


def _clean_extension(grant: Grant, duration: timedelta | None) -> timedelta:
    if duration is None or duration <= timedelta(0):
        raise Invalid("the extension must be positive", fields={"duration_seconds": ["Must be more than zero."]})
    room = grant_services.extension_room(grant)
    if duration > min(room, grant.role.max_duration):
        message = f"At most {humanize_duration(min(room, grant.role.max_duration))} more for this grant."
        if room <= timedelta(0):
            message = "This grant has reached the role's maximum lifetime; request the role anew after it ends."
        raise Invalid(f"the extension is too long: {message}", fields={"duration_seconds": [message]})
    return duration


# --- Asking: a new request, or more time on a grant ----------------------------------------------


def request_create(
    *,
    requester: AbstractBaseUser,
    role: Role | None = None,
    extends_grant_id: int | None = None,
    duration: timedelta | None = None,
    justification: str = "",
    ticket: str = "",
    starts_at: datetime | None = None,
    via: str,
    ip: str | None = None,
    posture: str | None = None,
    resource: str = "",
    mfa_at: datetime | None = None,
    now: datetime | None = None,
) -> AccessRequest:
    """Ask for ``role``, or (``extends_grant_id``) for more time on one of the requester's live grants.

    One path for both: eligibility, a fresh second factor (``mfa_at``) for roles that require a
    step-up, the duration within the role's bounds (for an extension: within what is left of the
    role's lifetime cap), reasons where the role requires them, the role's conditions (client
    address ``ip``, the time, the device ``posture`` signal, the requester's risk level), an
    approval policy to route to. A role with resources is asked for on one of them (``resource``);
    an extension keeps its grant's. Extensions are routed by the role's policy like new requests. Auto-approve and break-glass
    roles are approved at once.
    """
    now = now or timezone.now()
    grant = _extended_grant(extends_grant_id, requester, now) if extends_grant_id is not None else None
    if grant is not None:
        role = grant.role
        resource = grant.resource
    if role.is_retired or not is_eligible(requester, role):
        if grant is None and role.is_retired:
            raise NotFound(f"role {role.slug} does not exist")
        what = "no longer" if grant is not None else "not"
        raise NotAllowed(f"you are {what} eligible for {role.slug}", code="not_eligible")
    resource = _clean_resource(role, resource) if grant is None else resource
    _ensure_conditions(requester, role, resource, grant=grant, via=via, ip=ip, posture=posture, now=now)
    if role.requires_step_up:
        mfa.ensure_fresh(mfa_at, action=f"requesting {role.slug}", now=now)
    if grant is not None:
        duration = _clean_extension(grant, duration)
    else:
        duration = _clean_duration(role, duration)
        starts_at = _clean_start(starts_at, now)
        if role.break_glass and starts_at:
            raise Invalid(
                "break-glass access starts at once", fields={"starts_at": ["Break-glass access cannot be scheduled."]}
            )
    justification = _clean_text(
        justification,
        field="justification",
        required=role.requires_reason,
        limit=MAX_JUSTIFICATION,
        what="a justification",
    )
    ticket = _clean_text(ticket, field="ticket", required=role.requires_ticket, limit=MAX_TICKET, what="a ticket")
    _ensure_routable(role)
    network = anomaly.network_of(ip)
    reasons = (
        anomaly.assess(requester=requester, role=role, duration=duration, network=network, now=now)
        if grant is None
        else []
    )
    # Unusual for this person: the same step-up as an MFA role, with the reasons said.
    if reasons and not role.requires_step_up and not mfa.is_fresh(mfa_at, now):
        sentences = " ".join(r.sentence for r in reasons)
        raise NotAllowed(
            f"this request for {role.slug} is unusual for you and needs a fresh MFA verification "
            f"(a one-time code): {sentences}",
            code="mfa_required",
        )

    with transaction.atomic(), audit.batched():
        _ensure_nothing_open(requester, role, resource)
        if grant is None:
            live = Grant.objects.live().filter(user=requester, role=role, resource=resource).first()
            if live:
                raise Conflict(
                    f"you already hold {_on(role.slug, resource)} (grant #{live.pk}); request an extension instead",
                    code="already_granted",
                )
        req = _open(
            AccessRequest(
                role=role,
                requester=requester,
                resource=resource,
                kind=AccessRequest.Kind.EXTENSION if grant is not None else AccessRequest.Kind.NEW,
                extends_grant=grant,
                duration=duration,
                justification=justification,
                ticket=ticket,
                starts_at=starts_at if grant is None else None,
                break_glass=role.break_glass,
                network=network,
                flagged=bool(reasons),
                flag_reasons=[r.as_dict() for r in reasons],
                channel=via,
                created_at=now,
                stage_started_at=now,
                # An extension is moot once its grant has ended.
                expires_at=min(now + role.request_ttl, grant.expires_at) if grant else now + role.request_ttl,
            ),
            via=via,
            ip=ip,
            now=now,
            details={"kind": "extension", "grant": grant.pk}
            if grant is not None
            else {
                "starts_at": starts_at,
                "break_glass": role.break_glass,
                **({"flagged": True, "flag_reasons": [r.as_dict() for r in reasons]} if reasons else {}),
            },
        )
    log.info(
        "request %s created: %s asks for %s (%s)",
        req.pk,
        requester,
        role,
        req.status,
        extra={"access_request_id": req.pk},
    )
    return req


def _open(req: AccessRequest, *, via: str, ip: str | None, now: datetime, details: dict) -> AccessRequest:
    """Save a new request, audit it, approve it at once if its role says so, and notify."""
    role = req.role
    try:
        with transaction.atomic():
            req.save(force_insert=True)
    except IntegrityError:
        # Two requests raced past _ensure_nothing_open; the database constraint decided.
        raise Conflict(
            f"you already have a pending request for {_on(role.slug, req.resource)}", code="duplicate_request"
        ) from None
    audit.record(
        "request.created",
        actor=req.requester,
        target=req,
        via=via,
        ip=ip,
        **_facts(req),
        data={
            "duration_seconds": int(req.duration.total_seconds()),
            "justification": req.justification,
            "ticket": req.ticket,
            **({"resource": req.resource} if req.resource else {}),
            **details,
        },
    )
    if role.approved_at_once:
        _approve(req, actor=None, via=via, now=now, why="break_glass" if role.break_glass else "auto_approve")
    _notify_created(req)
    return req


def _notify_created(req: AccessRequest) -> None:
    if req.status == Status.PENDING:
        notify_on_commit(Message.DECISION_NEEDED, req.pk, req.version)


# --- Decisions --------------------------------------------------------------------------------


def _stages(role: Role) -> list[ApprovalStage]:
    return list(role.stages.order_by("position"))


def _ensure_open(req: AccessRequest | None, request_id: int, now: datetime) -> AccessRequest:
    if req is None:
        raise NotFound(f"request {request_id} does not exist")
    if req.status != Status.PENDING:
        raise Conflict(f"request {req.pk} is already {req.status}", code="already_decided")
    if now >= req.expires_at:
        raise Conflict(f"request {req.pk} has expired unanswered", code="request_expired")
    return req


def _ensure_may_decide(req: AccessRequest, approver: AbstractBaseUser) -> tuple[ApprovalStage, bool]:
    """The stage ``approver`` decides now, and whether as an escalation approver (the stage was
    escalated and they are not one of its own approvers)."""
    if approver.pk == req.requester_id:
        raise NotAllowed("you cannot approve or deny your own request", code="self_approval")
    stages = _stages(req.role)
    if req.current_stage >= len(stages):
        raise Conflict(f"request {req.pk} has no stage waiting for a decision", code="already_decided")
    stage = stages[req.current_stage]
    escalation = False
    if not is_stage_approver(approver, stage):
        escalation = req.is_escalated and is_escalation_approver(approver, req.role)
        if not escalation:
            raise NotAllowed(
                f"you are not an approver of stage {req.current_stage + 1} for {req.role.slug}", code="not_approver"
            )
    if req.decisions.filter(approver=approver).exists():
        raise Conflict(f"you have already decided request {req.pk}", code="already_decided_by_you")
    return stage, escalation


def may_decide(req: AccessRequest, user: AbstractBaseUser) -> bool:
    """For display: would request_approve accept this user now (ignoring MFA)?"""
    try:
        _ensure_open(req, req.pk, timezone.now())
        _ensure_may_decide(req, user)
    except (Conflict, NotAllowed, NotFound):
        return False
    return True


def _record_decision(
    request_id: int,
    approver: AbstractBaseUser,
    verdict: str,
    *,
    comment: str,
    via: str,
    mfa_at: datetime | None,
    now: datetime,
) -> tuple[AccessRequest, ApprovalStage, Decision]:
    """Inside the caller's transaction: lock the request, check that ``approver`` may decide its
    current stage now (and, approving a role that requires MFA, with a fresh second factor), and
    record the decision. Returns the locked request, the stage decided and the decision.

    A role that requires MFA needs a fresh second factor for every decision, approve or deny, on
    every channel: denying is a decision too (a stolen session must not be able to block access).
    """
    req = _ensure_open(_lock(request_id), request_id, now)
    stage, escalation = _ensure_may_decide(req, approver)
    if verdict == Decision.Verdict.APPROVE:
        why = why_not_eligible(req.requester, req.role)
        if why is not None:
            # The change that removed it has queued the cancellation (approvals.eligibility).
            raise Conflict(
                f"{req.requester.get_username()} may no longer get {req.role.slug} ({why}); "
                "the request is being cancelled",
                code="requester_not_eligible",
            )
    if req.role.requires_mfa:
        what = "approving" if verdict == Decision.Verdict.APPROVE else "denying"
        mfa.ensure_fresh(mfa_at, action=f"{what} {req.role.slug}", now=now)
    decision = Decision.objects.create(
        request=req,
        approver=approver,
        stage=stage.position,
        verdict=verdict,
        escalation=escalation,
        comment=comment,
        channel=via,
        created_at=now,
    )
    return req, stage, decision


def _decision_facts(stage: ApprovalStage, decision: Decision) -> dict:
    facts = {"stage": stage.position + 1, "comment": decision.comment}
    if decision.escalation:
        facts["escalation"] = True  # decided by an escalation approver, not one of the stage's own
    return facts


def request_approve(
    *,
    request_id: int,
    approver: AbstractBaseUser,
    comment: str = "",
    via: str,
    ip: str | None = None,
    mfa_at: datetime | None = None,
    now: datetime | None = None,
) -> AccessRequest:
    """Record one approval; when every stage has its approvals, the request is approved.

    For roles that require MFA, ``mfa_at`` must be a fresh second-factor verification.
    """
    now = now or timezone.now()
    comment = _clean_text(comment, field="comment", required=False, limit=MAX_COMMENT, what="a comment")
    with transaction.atomic(), audit.batched():
        req, stage, decision = _record_decision(
            request_id, approver, Decision.Verdict.APPROVE, comment=comment, via=via, mfa_at=mfa_at, now=now
        )
        stages = _stages(req.role)
        outcome = evaluate(
            [StageSpec(position=s.position, required=s.required) for s in stages],
            [
                Vote(stage=d.stage, approver=str(d.approver_id), approve=d.verdict == Decision.Verdict.APPROVE)
                for d in req.decisions.all()
            ],
        )
        req.version += 1
        audit.record(
            "request.approval_given",
            actor=approver,
            target=req,
            via=via,
            ip=ip,
            **_facts(req),
            data=_decision_facts(stage, decision),
        )
        if outcome.approved:
            _approve(req, actor=approver, via=via, now=now, why="approvals", ip=ip)
            notify_on_commit(Message.APPROVED, req.pk)
        else:
            next_stage = outcome.current_stage
            if next_stage is not None and next_stage != req.current_stage:
                # The next stage gets its own time to decide before it is escalated.
                req.current_stage = next_stage
                req.stage_started_at = now
            req.save(update_fields=["version", "current_stage", "stage_started_at"])
            # The links sent for the previous version no longer work: the approvers still
            # waiting (this stage's, or the next stage's) get fresh ones.
            notify_on_commit(Message.DECISION_NEEDED, req.pk, req.version)
    return req


def _approve(
    req: AccessRequest, *, actor: AbstractBaseUser | None, via: str, now: datetime, why: str, ip: str | None = None
) -> None:
    """Final approval: the request becomes a grant, or moves its grant's expiry (extension)."""
    req.status = Status.APPROVED
    req.decided_at = now
    req.version += 1
    req.save(update_fields=["status", "decided_at", "version", "current_stage"])
    approvers = list(
        req.decisions.filter(verdict=Decision.Verdict.APPROVE).values_list("approver__username", flat=True)
    )
    audit.record(
        "request.approved",
        actor=actor,
        target=req,
        via=via,
        ip=ip,
        **_facts(req),
        data={
            "why": why,
            "approvers": approvers,
            "kind": req.kind,
            "break_glass": req.break_glass,
            **({"resource": req.resource} if req.resource else {}),
        },
    )
    if req.kind == AccessRequest.Kind.EXTENSION:
        grant = grant_services.grant_extend(
            grant_id=req.extends_grant_id, duration=req.duration, actor=actor, via=via, request_id=req.pk, now=now
        )
    else:
        grant = grant_services.grant_create(request=req, actor=actor, via=via, now=now)
    if grant.break_glass:
        # Security hears of every break-glass activation and of every extension of one. The
        # request is the revision: each gets its own row in the outbox, none is taken for a repeat.
        notify_on_commit(Message.BREAK_GLASS, grant.pk, req.pk)


def request_deny(
    *,
    request_id: int,
    approver: AbstractBaseUser,
    comment: str,
    via: str,
    ip: str | None = None,
    mfa_at: datetime | None = None,
    now: datetime | None = None,
) -> AccessRequest:
    """One deny from an approver of the current stage ends the request.

    For roles that require MFA, ``mfa_at`` must be a fresh second-factor verification, as for approving.
    """
    now = now or timezone.now()
    comment = _clean_text(comment, field="comment", required=True, limit=MAX_COMMENT, what="a comment")
    with transaction.atomic():
        req, stage, decision = _record_decision(
            request_id, approver, Decision.Verdict.DENY, comment=comment, via=via, mfa_at=mfa_at, now=now
        )
        req.status = Status.DENIED
        req.decided_at = now
        req.version += 1
        req.save(update_fields=["status", "decided_at", "version"])
        audit.record(
            "request.denied",
            actor=approver,
            target=req,
            via=via,
            ip=ip,
            **_facts(req),
            data=_decision_facts(stage, decision),
        )
        notify_on_commit(Message.DENIED, req.pk)
    return req


def request_cancel(
    *,
    request_id: int,
    requester: AbstractBaseUser,
    via: str,
    ip: str | None = None,
    now: datetime | None = None,
) -> AccessRequest:
    """The requester withdraws a pending request."""
    now = now or timezone.now()
    with transaction.atomic():
        req = _lock(request_id)
        if req is None or req.requester_id != requester.pk:
            raise NotFound(f"request {request_id} does not exist")
        if req.status != Status.PENDING:
            raise Conflict(f"request {req.pk} is already {req.status}", code="already_decided")
        _close(req, Status.CANCELLED, reason="withdrawn by the requester", now=now)
        audit.record("request.cancelled", actor=requester, target=req, via=via, ip=ip, **_facts(req), data={})
    return req


def request_close_for_user(
    *, request_id: int, actor: AbstractBaseUser | None, reason: str, via: str, now: datetime | None = None
) -> AccessRequest | None:
    """Cancel a pending request on someone else's decision (a risk signal); no-op otherwise."""
    now = now or timezone.now()
    with transaction.atomic():
        req = _lock(request_id)
        if req is None or req.status != Status.PENDING:
            return req
        _close(req, Status.CANCELLED, reason=reason, now=now)
        audit.record("request.cancelled", actor=actor, target=req, via=via, **_facts(req), data={"reason": reason})
    return req


def request_cancel_if_not_eligible(
    *,
    request_id: int,
    cause: str,
    actor: AbstractBaseUser | None = None,
    via: str = Channel.WORKER,
    now: datetime | None = None,
    skip_locked: bool = False,
) -> AccessRequest | None:
    """Cancel a pending request whose requester may no longer get its role (deactivated, eligibility
    removed, role retired). Idempotent: None when it is not pending or still allowed. ``cause``
    says what changed; see approvals.eligibility."""
    now = now or timezone.now()
    with transaction.atomic():
        req = _lock(request_id, skip_locked=skip_locked)
        if req is None or req.status != Status.PENDING:
            return None
        why = why_not_eligible(req.requester, req.role)
        if why is None:
            return None
        _close(req, Status.CANCELLED, reason=why, now=now)
        end_reason = Grant.EndReason.ROLE_RETIRED if req.role.is_retired else Grant.EndReason.ELIGIBILITY_LOST
        audit.record(
            "request.cancelled",
            actor=actor,
            target=req,
            via=via,
            **_facts(req),
            data={"reason": why, "end_reason": end_reason, "cause": cause},
        )
    return req


def _close(req: AccessRequest, status: str, *, reason: str, now: datetime) -> None:
    req.status = status
    req.decided_at = now
    req.closed_reason = reason
    req.version += 1
    req.save(update_fields=["status", "decided_at", "closed_reason", "version"])


def request_expire(*, request_id: int, now: datetime | None = None, skip_locked: bool = False) -> AccessRequest | None:
    """Nobody decided within the role's request TTL (or the grant to extend has ended)."""
    now = now or timezone.now()
    with transaction.atomic():
        req = _lock(request_id, skip_locked=skip_locked)
        if req is None or req.status != Status.PENDING:
            return req
        grant_gone = req.kind == AccessRequest.Kind.EXTENSION and not req.extends_grant.is_live
        if now < req.expires_at and not grant_gone:
            return req
        reason = "the grant it extends has ended" if grant_gone else "nobody decided in time"
        _close(req, Status.EXPIRED, reason=reason, now=now)
        audit.record(
            "request.expired",
            actor=None,
            target=req,
            via=Channel.WORKER,
            **_facts(req),
            data={"reason": reason, "expires_at": req.expires_at},
        )
        notify_on_commit(Message.EXPIRED, req.pk)
    return req


def requests_sweep(*, now: datetime | None = None, batch: int = 500) -> int:
    """Expire pending requests past their TTL and extension requests whose grant has ended."""
    now = now or timezone.now()
    candidates = AccessRequest.objects.filter(status=Status.PENDING).filter(
        Q(expires_at__lte=now)
        | Q(
            # A join to each pending extension's own grant, not a list of every ended grant (a
            # million of them, read on every sweep).
            kind=AccessRequest.Kind.EXTENSION,
            extends_grant__status__in=[s for s in Grant.Status.values if s not in LIVE_STATUSES],
        )
    )
    closed = 0
    for pk in candidates.values_list("pk", flat=True)[:batch]:
        req = request_expire(request_id=pk, now=now, skip_locked=True)
        if req is not None and req.status == Status.EXPIRED:
            closed += 1
    return closed


# --- Escalation -----------------------------------------------------------------------------------


def escalation_due_at(req: AccessRequest) -> datetime | None:
    """When the current stage of a pending request is escalated if still undecided; None when the
    role has no approvers to wait for (auto-approve, break-glass)."""
    if req.role.approved_at_once:
        return None
    return req.stage_started_at + req.role.escalation_delay


def request_escalate(*, request_id: int, now: datetime | None = None, skip_locked: bool = False) -> bool:
    """Escalate the current stage of a pending request nobody decided within the role's
    escalation delay: its escalation approvers are told and may decide that stage. Idempotent:
    False when it is not due, already escalated, or there is nobody to escalate to."""
    now = now or timezone.now()
    with transaction.atomic():
        req = _lock(request_id, skip_locked=skip_locked)
        if req is None or req.status != Status.PENDING or now >= req.expires_at:
            return False
        if req.escalated_stage == req.current_stage:
            return False
        due = escalation_due_at(req)
        if due is None or now < due:
            return False
        people = sorted(escalation_approvers(req.role).exclude(pk=req.requester_id).values_list("username", flat=True))
        if not people:
            return False
        req.escalated_stage = req.current_stage
        req.escalated_at = now
        req.save(update_fields=["escalated_stage", "escalated_at"])
        audit.record(
            "request.escalated",
            actor=None,
            target=req,
            via=Channel.WORKER,
            **_facts(req),
            data={
                "stage": req.current_stage + 1,
                "waited_seconds": int((now - req.stage_started_at).total_seconds()),
                "escalated_to": people,
            },
        )
        notify_on_commit(Message.ESCALATED, req.pk, req.current_stage)
    log.info("request %s: stage %s escalated to %s", req.pk, req.current_stage + 1, ", ".join(people))
    return True


def requests_escalate(*, now: datetime | None = None, batch: int = 500) -> int:
    """Escalate every pending request whose current stage has waited past its role's escalation delay."""
    now = now or timezone.now()
    candidates = (
        AccessRequest.objects.filter(status=Status.PENDING, expires_at__gt=now, role__auto_approve=False)
        .exclude(role__break_glass=True)
        .exclude(escalated_stage=F("current_stage"))
        .select_related("role")
        .only("pk", "stage_started_at", "current_stage", "escalated_stage", "role")
        .order_by("stage_started_at", "pk")
    )
    escalated = 0
    for req in candidates.iterator(chunk_size=batch):
        due = escalation_due_at(req)
        if due is not None and due <= now and request_escalate(request_id=req.pk, now=now, skip_locked=True):
            escalated += 1
    return escalated
