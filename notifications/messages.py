"""What each message says and who gets it: one builder per kind of message (broker.notify.Message).

A builder takes the object's id, the revision and the time, reads the rows it needs, and returns
drafts, one per recipient, or none when there is nothing (or nothing any more) to say. Sending them,
at most once each, is the outbox's job (services.py).
"""

from __future__ import annotations

import logging
import zoneinfo
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime

from django.conf import settings
from django.contrib.auth import get_user_model
from django.contrib.auth.models import AbstractBaseUser
from django.urls import reverse
from django.utils import timezone

from accounts import preferences
from approvals import email_links
from approvals.models import AccessRequest, Decision, Recertification
from broker import links, wording
from broker.audit.status import stored_verification
from broker.catalog import SECURITY_GROUP, escalation_approvers, review_owners, stage_approvers
from broker.durations import humanize_duration
from broker.models import AuditEvent
from broker.notify import Message
from grants.models import Grant

log = logging.getLogger(__name__)

Kind = Message
User = get_user_model()


@dataclass
class Draft:
    recipient: AbstractBaseUser
    subject: str
    intro: list[str]
    why: str
    action_label: str
    action_url: str
    revision: int = 0
    facts: list[tuple[str, str]] = field(default_factory=list)
    more_links: list[tuple[str, str]] = field(default_factory=list)
    # Work done only once the message is claimed (issuing a single-use link), returning overrides.
    late: Callable[[], dict] | None = None


# --- Facts shown in messages ------------------------------------------------------------------------


def _when(value: datetime | None) -> str:
    """A time in the active zone, named: each email is written in its recipient's (``build``)."""
    return timezone.localtime(value).strftime("%Y-%m-%d %H:%M %Z") if value else "—"


def _person(user: AbstractBaseUser) -> str:
    full = user.get_full_name()
    return f"{full} ({user.get_username()})" if full else user.get_username()


def _request_facts(req: AccessRequest) -> list[tuple[str, str]]:
    facts = [
        ("Who", _person(req.requester)),
        ("Role", f"{req.role.name} ({req.role.slug})"),
        ("How long", humanize_duration(req.duration) + (" more (extension)" if req.kind == "extension" else "")),
        ("Justification", req.justification or "—"),
        ("Ticket", req.ticket or "—"),
    ]
    if req.starts_at:
        facts.insert(3, ("Starts", _when(req.starts_at)))
    if req.flagged:
        # The anomaly scoring's reasons (approvals/anomaly.py), each a sentence.
        facts.append(("Unusual", " ".join(r.get("sentence", "") for r in req.flag_reasons)))
    return facts


def _grant_facts(grant: Grant) -> list[tuple[str, str]]:
    return [
        ("Role", f"{grant.role.name} ({grant.role.slug})"),
        ("Holder", grant.user.get_username()),
        ("From", _when(grant.starts_at)),
        ("Until", _when(grant.expires_at)),
    ]


def _request(object_id: int) -> AccessRequest | None:
    return AccessRequest.objects.select_related("role", "requester").filter(pk=object_id).first()


def _grant(object_id: int) -> Grant | None:
    return Grant.objects.select_related("role", "user", "request").filter(pk=object_id).first()


def waiting_approvers(req: AccessRequest, *, escalation_only: bool = False) -> list[AbstractBaseUser]:
    """Approvers of the current stage who have not decided yet (with the role's escalation approvers
    once the stage was escalated; only those with ``escalation_only``); never the requester."""
    stages = list(req.role.stages.order_by("position"))
    if req.current_stage >= len(stages):
        return []
    own = set(stage_approvers(stages[req.current_stage]).values_list("pk", flat=True))
    escalation = set(escalation_approvers(req.role).values_list("pk", flat=True)) if req.is_escalated else set()
    people = escalation - own if escalation_only else own | escalation
    return list(
        User.objects.filter(pk__in=people)
        .exclude(pk=req.requester_id)
        .exclude(pk__in=req.decisions.values("approver_id"))
        .order_by("username")
    )


def _escalation_why(req: AccessRequest) -> str:
    if req.role.escalation_users.exists() or req.role.escalation_groups.exists():
        return f"You get this because you are an escalation approver for the role {req.role.slug}."
    return f"You get this because you are in the {settings.ESCALATION_GROUP} group, which decides escalated requests."


def security_people() -> list[AbstractBaseUser]:
    return list(User.objects.filter(groups__name=SECURITY_GROUP, is_active=True).distinct().order_by("username"))


# --- One builder per kind ---------------------------------------------------------------------------


def _approver_drafts(
    req: AccessRequest, *, reminder: bool, revision: int, now: datetime, escalated: bool = False
) -> list[Draft]:
    """Messages with a decision link: to the approvers waited for (``escalated``: to the escalation
    approvers only, when the stage has just been escalated)."""
    stages = req.role.stages.count()
    own = {u.pk for u in waiting_approvers(req)} - {u.pk for u in waiting_approvers(req, escalation_only=True)}
    drafts = []
    for approver in waiting_approvers(req, escalation_only=escalated):

        def late(approver=approver):
            token = email_links.link_issue(request=req, approver=approver, now=now)
            return {"action_url": links.absolute(reverse("approval-link", args=[token]))}

        who = req.requester.get_username()
        waited = humanize_duration(now - req.stage_started_at)
        subject = (
            f"Escalated: {who} has waited {waited} for {req.role.slug} (request #{req.pk})"
            if escalated
            else f"Reminder: {who} is still waiting for {req.role.slug} (request #{req.pk})"
            if reminder
            else f"Decision needed: {who} asks for {req.role.slug} (request #{req.pk})"
        )
        intro = [
            f"{who} asks for {req.role.name} for {humanize_duration(req.duration)}.",
            "This request is flagged as unusual for them (see Unusual below); they confirmed it with a "
            "second factor. Check the reasons before deciding."
            if req.flagged
            else "",
            f"Stage {req.current_stage + 1} has waited {waited} without a decision, so it was escalated to you: "
            "you may approve or deny it in place of its approvers."
            if escalated
            else "",
            "Half of the time to decide has passed without a decision." if reminder else "",
            f"The request expires unanswered at {_when(req.expires_at)}.",
            "The button opens a page with the facts; nothing is decided until you sign in, confirm with "
            "your authenticator and press Approve or Deny there. The link works once, for you only.",
        ]
        drafts.append(
            Draft(
                recipient=approver,
                revision=revision,
                subject=subject,
                intro=[line for line in intro if line],
                facts=[*_request_facts(req), ("Stage", f"{req.current_stage + 1} of {stages}")],
                why=f"You get this because you are an approver of stage {req.current_stage + 1} "
                f"for the role {req.role.slug}."
                if approver.pk in own
                else _escalation_why(req),
                action_label="Review the request",
                action_url="",
                more_links=[
                    ("Open the request in the portal", links.absolute(links.request_path(req.pk))),
                    ("Your approvals inbox", links.absolute(links.inbox_path())),
                ],
                late=late,
            )
        )
    return drafts


def _decision_needed(object_id: int, revision: int, now: datetime) -> list[Draft]:
    req = _request(object_id)
    # A later version means a later message (with fresh links) replaces this one.
    if req is None or req.status != AccessRequest.Status.PENDING or req.version != revision or now >= req.expires_at:
        return []
    return _approver_drafts(req, reminder=False, revision=revision, now=now)


def _reminder(object_id: int, revision: int, now: datetime) -> list[Draft]:
    req = _request(object_id)
    if req is None or req.status != AccessRequest.Status.PENDING or req.current_stage != revision:
        return []
    if now >= req.expires_at or now < reminder_due_at(req):
        return []
    return _approver_drafts(req, reminder=True, revision=revision, now=now)


def _escalated(object_id: int, revision: int, now: datetime) -> list[Draft]:
    """``revision`` is the stage (0-based) that was escalated: one message per stage and person."""
    req = _request(object_id)
    if req is None or not req.is_escalated or req.current_stage != revision or now >= req.expires_at:
        return []
    return _approver_drafts(req, reminder=False, revision=revision, now=now, escalated=True)


def _requester_draft(req: AccessRequest, **fields) -> Draft:
    return Draft(
        recipient=req.requester,
        why=f"You get this because you requested {req.role.slug} (request #{req.pk}).",
        action_label="Open the request",
        action_url=links.absolute(links.request_path(req.pk)),
        **fields,
    )


def _approved(object_id: int, revision: int, now: datetime) -> list[Draft]:
    req = _request(object_id)
    if req is None or req.status != AccessRequest.Status.APPROVED:
        return []
    approvers = ", ".join(
        req.decisions.filter(verdict=Decision.Verdict.APPROVE).values_list("approver__username", flat=True)
    )
    grant = req.extends_grant if req.kind == AccessRequest.Kind.EXTENSION else getattr(req, "grant", None)
    facts = _request_facts(req) + [("Approved by", approvers or "policy")]
    if grant is not None:
        grant.refresh_from_db()
        facts += [("Access from", _when(grant.starts_at)), ("Access until", _when(grant.expires_at))]
    intro = [
        f"Your request for {req.role.name} was approved."
        if req.kind == AccessRequest.Kind.NEW
        else f"Your extension of {req.role.name} was approved.",
        "The access is switched on at the start time and off again at its end, by itself.",
    ]
    return [_requester_draft(req, subject=f"Approved: {req.role.slug} (request #{req.pk})", intro=intro, facts=facts)]


def _denied(object_id: int, revision: int, now: datetime) -> list[Draft]:
    req = _request(object_id)
    if req is None or req.status != AccessRequest.Status.DENIED:
        return []
    decision = req.decisions.filter(verdict=Decision.Verdict.DENY).select_related("approver").first()
    facts = _request_facts(req)
    if decision is not None:
        facts += [("Denied by", decision.approver.get_username()), ("Comment", decision.comment or "—")]
    intro = [f"Your request for {req.role.name} was denied."]
    return [_requester_draft(req, subject=f"Denied: {req.role.slug} (request #{req.pk})", intro=intro, facts=facts)]


def _expired(object_id: int, revision: int, now: datetime) -> list[Draft]:
    req = _request(object_id)
    if req is None or req.status != AccessRequest.Status.EXPIRED:
        return []
    intro = [
        f"Your request for {req.role.name} expired unanswered: {req.closed_reason or 'nobody decided in time'}.",
        "Ask again if you still need the access.",
    ]
    return [
        _requester_draft(
            req,
            subject=f"Expired unanswered: {req.role.slug} (request #{req.pk})",
            intro=intro,
            facts=_request_facts(req),
        )
    ]


def _holder_draft(grant: Grant, **fields) -> Draft:
    return Draft(
        recipient=grant.user,
        why=f"You get this because you hold (or held) {grant.role.slug} through grant #{grant.pk}.",
        action_label="Open the grant",
        action_url=links.absolute(links.grant_path(grant.pk)),
        facts=_grant_facts(grant),
        **fields,
    )


def _grant_active(object_id: int, revision: int, now: datetime) -> list[Draft]:
    grant = _grant(object_id)
    if grant is None or grant.status != Grant.Status.ACTIVE:
        return []
    intro = [
        f"You now hold {grant.role.name}, until {_when(grant.expires_at)}.",
        "Give it back early from the grant page when you are done.",
    ]
    return [_holder_draft(grant, subject=f"Active: {grant.role.slug} until {_when(grant.expires_at)}", intro=intro)]


def expiry_warning_applies(grant: Grant) -> bool:
    """Only grants longer than twice the lead get a warning (a 20-minute grant needs none)."""
    return grant.expires_at - grant.starts_at > 2 * settings.NOTIFY_EXPIRY_LEAD


def _grant_expiring(object_id: int, revision: int, now: datetime) -> list[Draft]:
    grant = _grant(object_id)
    if grant is None or grant.status != Grant.Status.ACTIVE or int(grant.expires_at.timestamp()) != revision:
        return []
    if (
        not expiry_warning_applies(grant)
        or not grant.expires_at - settings.NOTIFY_EXPIRY_LEAD <= now < grant.expires_at
    ):
        return []
    left = humanize_duration(grant.expires_at - now)
    intro = [
        f"Your {grant.role.name} access ends in {left}, at {_when(grant.expires_at)}.",
        "Finish or save your work; request an extension from the grant page if you need more time.",
    ]
    return [_holder_draft(grant, subject=f"Ends in {left}: {grant.role.slug}", revision=revision, intro=intro)]


def _grant_ended(object_id: int, revision: int, now: datetime) -> list[Draft]:
    grant = _grant(object_id)
    if grant is None or grant.status not in (Grant.Status.EXPIRED, Grant.Status.REVOKED, Grant.Status.FAILED):
        return []
    why = wording.ended_to_holder(grant.end_reason)
    intro = [f"Your {grant.role.name} access has ended ({why}) and was removed at {_when(grant.ended_at)}."]
    if grant.end_comment:
        intro.append(f"Comment: {grant.end_comment}")
    state = wording.grant_state(grant.status, grant.end_reason)
    subject = f"{state[:1].upper()}{state[1:]}: {grant.role.slug} (grant #{grant.pk})"
    return [_holder_draft(grant, subject=subject, intro=intro)]


def _security_drafts(grant: Grant, *, subject: str, intro: list[str], revision: int = 0) -> list[Draft]:
    facts = _grant_facts(grant) + [("Justification", grant.request.justification or "—")]
    return [
        Draft(
            recipient=person,
            revision=revision,
            subject=subject,
            intro=intro,
            facts=facts,
            why=f"You get this because you are in the {SECURITY_GROUP} group.",
            action_label="Open the grant",
            action_url=links.absolute(links.grant_path(grant.pk)),
        )
        for person in security_people()
    ]


def _break_glass(object_id: int, revision: int, now: datetime) -> list[Draft]:
    """``revision`` is the request that was approved: the activation's own, or an extension's."""
    grant = _grant(object_id)
    if grant is None or not grant.break_glass:
        return []
    who = grant.user.get_username()
    if revision in (0, grant.request_id):
        intro = [
            f"{who} activated the break-glass role {grant.role.name} without approval.",
            "Check that it is justified; the grant waits for its post-hoc review.",
        ]
        return _security_drafts(
            grant, subject=f"Break-glass: {who} activated {grant.role.slug}", intro=intro, revision=revision
        )
    extension = AccessRequest.objects.filter(
        pk=revision, extends_grant=grant, kind=AccessRequest.Kind.EXTENSION, status=AccessRequest.Status.APPROVED
    ).first()
    if extension is None:
        return []
    intro = [
        f"{who} extended the break-glass role {grant.role.name} by {humanize_duration(extension.duration)} "
        f"(extension #{extension.pk}); the access now lasts until {_when(grant.expires_at)}.",
        "The extension reopened the grant's post-hoc review: check that the extra time is justified.",
    ]
    drafts = _security_drafts(
        grant,
        subject=f"Break-glass extended: {who} keeps {grant.role.slug} until {_when(grant.expires_at)}",
        intro=intro,
        revision=revision,
    )
    for draft in drafts:
        draft.facts += [
            ("Extension", f"#{extension.pk}, {humanize_duration(extension.duration)} more"),
            ("Why more time", extension.justification or "—"),
        ]
    return drafts


def _revoke_failed(object_id: int, revision: int, now: datetime) -> list[Draft]:
    grant = _grant(object_id)
    if grant is None or grant.status != Grant.Status.REVOKE_FAILED:
        return []
    intro = [
        f"The broker could not remove {grant.user.get_username()}'s {grant.role.slug} access from the target "
        f"system after {grant.attempts} attempts. The grant is no longer effective in the broker, but the "
        "target may still give the access: remove it by hand, then retry from the admin.",
        f"Last error: {grant.last_error or '—'}",
        f"Next automatic retry: {_when(grant.next_attempt_at)}.",
    ]
    return _security_drafts(
        grant,
        subject=f"Revocation failing: {grant.role.slug} of {grant.user.get_username()} (grant #{grant.pk})",
        intro=intro,
        revision=revision,
    )


def _audit_broken(object_id: int, revision: int, now: datetime) -> list[Draft]:
    """``object_id`` is the sequence number of the first event that does not fit the chain (0: none named)."""
    found, authentic = stored_verification()  # what the scheduled walk that asked for this message found
    if found is None or found.ok or not authentic or (found.broken_seq or 0) != object_id:
        return []  # nothing (or something else) is broken now: that finding has its own message
    where = f"event #{found.broken_seq}" if found.broken_seq else "its checkpoints"
    intro = [
        f"The scheduled check of the audit trail found it broken at {where}: {found.reason}.",
        f"Events up to #{found.seq} still verify (head hash {found.hash}). Compare with the signed "
        "checkpoints kept outside the database, and find out who changed the database directly.",
    ]
    return [
        Draft(
            recipient=person,
            subject=f"Audit trail broken at {where}",
            intro=intro,
            why=f"You get this because you are in the {SECURITY_GROUP} group.",
            action_label="Open the audit log",
            action_url=links.absolute(links.audit_log_path()),
        )
        for person in security_people()
    ]


_DEVICE_KINDS = {"totp": "an authenticator app", "passkey": "a passkey"}


def _mfa_device_added(object_id: int, revision: int, now: datetime) -> list[Draft]:
    """``object_id`` is the audit event ``mfa.device_added``: tell the person, who may not have done it."""
    event = AuditEvent.objects.filter(pk=object_id, action="mfa.device_added", target_type="user").first()
    person = User.objects.filter(pk=event.target_id).first() if event is not None else None
    if person is None:
        return []
    kind = _DEVICE_KINDS.get(event.data.get("type"), "a second factor")
    intro = [
        f"{kind[0].upper()}{kind[1:]} was added to your account as a second factor"
        + (" (your first one)." if event.data.get("first") else "."),
        "If that was you, there is nothing to do. If it was not, someone has your password and your "
        "session: tell your security team at once, so that they can end your sessions and reset your password.",
    ]
    return [
        Draft(
            recipient=person,
            subject="A second factor was added to your account",
            intro=intro,
            why="You get this whenever a second factor is added to your account.",
            action_label="Review your second factors",
            action_url=links.absolute(links.mfa_devices_path()),
            facts=[("What", kind), ("When", _when(event.at)), ("From address", event.ip or "—")],
        )
    ]


# --- Recertification: reviews of eligibilities -------------------------------------------------------------


def _review_drafts(object_id: int, *, step: str) -> list[Draft]:
    task = Recertification.objects.select_related("role", "user", "group").filter(pk=object_id).first()
    if task is None or not task.is_pending:
        return []
    owners = list(review_owners(task.role))
    people = owners + (
        [u for u in escalation_approvers(task.role) if u.pk not in {o.pk for o in owners}]
        if step == "escalated"
        else []
    )
    subject = {
        "due": f"Review needed: may {task.who} still ask for {task.role.slug}? (review #{task.pk})",
        "reminder": f"Reminder: review #{task.pk} of {task.who} for {task.role.slug} is waiting",
        "escalated": f"Escalated: nobody reviewed {task.who}'s eligibility for {task.role.slug} (review #{task.pk})",
    }[step]
    removes = task.eligibility is not None and task.eligibility.recertify_expire
    intro = [
        f"{task.who} is eligible for {task.role.name} ({task.role.slug}). Confirm that this is still needed, "
        "or remove it: a removal takes effect at once (any grant it allowed ends).",
        f"Unanswered by {_when(task.grace_until)}, the eligibility "
        + ("is removed." if removes else "stays, and the review is closed as expired."),
    ]
    if step == "escalated":
        intro.insert(
            1, "The role's owners have not answered; as an escalation approver of the role you may decide it too."
        )
    drafts = []
    for person in people:
        if person.pk == task.user_id:
            continue
        drafts.append(
            Draft(
                recipient=person,
                subject=subject,
                intro=intro,
                why=f"You get this because you review the eligibilities of {task.role.slug}"
                + (" (owner)." if person in owners else " (escalation approver)."),
                action_label="Open the review",
                action_url=links.absolute(links.reviews_path()),
                facts=[
                    ("Who", task.who),
                    ("Role", f"{task.role.name} ({task.role.slug})"),
                    ("Due since", _when(task.due_at)),
                ],
            )
        )
    return drafts


def _review_due(object_id: int, revision: int, now: datetime) -> list[Draft]:
    return _review_drafts(object_id, step="due")


def _review_reminder(object_id: int, revision: int, now: datetime) -> list[Draft]:
    return _review_drafts(object_id, step="reminder")


def _review_escalated(object_id: int, revision: int, now: datetime) -> list[Draft]:
    return _review_drafts(object_id, step="escalated")


BUILDERS: dict[str, Callable[[int, int, datetime], list[Draft]]] = {
    Kind.DECISION_NEEDED: _decision_needed,
    Kind.REMINDER: _reminder,
    Kind.ESCALATED: _escalated,
    Kind.APPROVED: _approved,
    Kind.DENIED: _denied,
    Kind.EXPIRED: _expired,
    Kind.GRANT_ACTIVE: _grant_active,
    Kind.GRANT_EXPIRING: _grant_expiring,
    Kind.GRANT_ENDED: _grant_ended,
    Kind.BREAK_GLASS: _break_glass,
    Kind.REVOKE_FAILED: _revoke_failed,
    Kind.AUDIT_BROKEN: _audit_broken,
    Kind.MFA_DEVICE_ADDED: _mfa_device_added,
    Kind.REVIEW_DUE: _review_due,
    Kind.REVIEW_REMINDER: _review_reminder,
    Kind.REVIEW_ESCALATED: _review_escalated,
}


def reminder_due_at(req: AccessRequest) -> datetime:
    return req.created_at + (req.expires_at - req.created_at) / 2


def build(kind: str, object_id: int, revision: int, now: datetime) -> list[Draft]:
    """The drafts of one message, each written in its recipient's time zone.

    Builders write times (``_when``) in the active zone. The builder runs once in the server's
    zone, then once more for each other zone its recipients chose (accounts.preferences), and each
    person gets the draft written in theirs: one run for most messages, a few for a group.
    """
    builder = BUILDERS[kind]
    with timezone.override(zoneinfo.ZoneInfo(settings.TIME_ZONE)):
        drafts = builder(object_id, revision, now)
    zones = preferences.email_time_zones([d.recipient for d in drafts])
    for zone in sorted(set(zones.values()) - {settings.TIME_ZONE}):
        with timezone.override(zoneinfo.ZoneInfo(zone)):
            local = {d.recipient.pk: d for d in builder(object_id, revision, now) if zones.get(d.recipient.pk) == zone}
        # Someone missing from the second run (the object changed in between) keeps the first draft.
        drafts = [local.get(d.recipient.pk, d) for d in drafts]
    return drafts
