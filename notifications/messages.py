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
from django.utils import timezone, translation
from django.utils.translation import gettext as _
from django.utils.translation import ngettext, pgettext

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
    # The recipient's language (accounts.preferences), in which ``build`` wrote the draft and the
    # outbox renders its email.
    language: str = ""


# --- Facts shown in messages ------------------------------------------------------------------------


def _when(value: datetime | None) -> str:
    """A time in the active zone, named: each email is written in its recipient's (``build``)."""
    return timezone.localtime(value).strftime("%Y-%m-%d %H:%M %Z") if value else "—"


def _person(user: AbstractBaseUser) -> str:
    full = user.get_full_name()
    return f"{full} ({user.get_username()})" if full else user.get_username()


def _on(role: str, resource: str) -> str:
    """A role as people read it: the role, or the role on one of its resources."""
    return _("%(role)s on %(resource)s") % {"role": role, "resource": resource} if resource else role


def _request_facts(req: AccessRequest) -> list[tuple[str, str]]:
    facts = [
        (_("Who"), _person(req.requester)),
        (_("Role"), f"{req.role.name} ({req.role.slug})"),
        *([(_("Resource"), req.resource)] if req.resource else []),
        (
            _("How long"),
            _("%(duration)s more (extension)") % {"duration": humanize_duration(req.duration)}
            if req.kind == "extension"
            else humanize_duration(req.duration),
        ),
        (_("Justification"), req.justification or "—"),
        (_("Ticket"), req.ticket or "—"),
    ]
    if req.starts_at:
        facts.insert(3, (_("Starts"), _when(req.starts_at)))
    if req.flagged:
        # The anomaly scoring's reasons (approvals/anomaly.py), each a sentence.
        facts.append((_("Unusual"), " ".join(r.get("sentence", "") for r in req.flag_reasons)))
    return facts


def _grant_facts(grant: Grant) -> list[tuple[str, str]]:
    return [
        (_("Role"), f"{grant.role.name} ({grant.role.slug})"),
        *([(_("Resource"), grant.resource)] if grant.resource else []),
        (_("Holder"), grant.user.get_username()),
        (pgettext("since", "From"), _when(grant.starts_at)),
        (_("Until"), _when(grant.expires_at)),
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
        return _("You get this because you are an escalation approver for the role %(role)s.") % {"role": req.role.slug}
    return _("You get this because you are in the %(group)s group, which decides escalated requests.") % {
        "group": settings.ESCALATION_GROUP
    }


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
        names = {"who": who, "waited": waited, "role": _on(req.role.slug, req.resource), "pk": req.pk}
        subject = (
            _("Escalated: %(who)s has waited %(waited)s for %(role)s (request #%(pk)s)") % names
            if escalated
            else _("Reminder: %(who)s is still waiting for %(role)s (request #%(pk)s)") % names
            if reminder
            else _("Decision needed: %(who)s asks for %(role)s (request #%(pk)s)") % names
        )
        intro = [
            _("%(who)s asks for %(role)s for %(duration)s.")
            % {"who": who, "role": _on(req.role.name, req.resource), "duration": humanize_duration(req.duration)},
            _(
                "This request is flagged as unusual for them (see Unusual below); they confirmed it with a "
                "second factor. Check the reasons before deciding."
            )
            if req.flagged
            else "",
            _(
                "Stage %(stage)s has waited %(waited)s without a decision, so it was escalated to you: "
                "you may approve or deny it in place of its approvers."
            )
            % {"stage": req.current_stage + 1, "waited": waited}
            if escalated
            else "",
            _("Half of the time to decide has passed without a decision.") if reminder else "",
            _("The request expires unanswered at %(when)s.") % {"when": _when(req.expires_at)},
            _(
                "The button opens a page with the facts; nothing is decided until you sign in, confirm with "
                "your authenticator and press Approve or Deny there. The link works once, for you only."
            ),
        ]
        drafts.append(
            Draft(
                recipient=approver,
                revision=revision,
                subject=subject,
                intro=[line for line in intro if line],
                facts=[
                    *_request_facts(req),
                    (_("Stage"), _("%(stage)s of %(stages)s") % {"stage": req.current_stage + 1, "stages": stages}),
                ],
                why=_("You get this because you are an approver of stage %(stage)s for the role %(role)s.")
                % {"stage": req.current_stage + 1, "role": req.role.slug}
                if approver.pk in own
                else _escalation_why(req),
                action_label=_("Review the request"),
                action_url="",
                more_links=[
                    (_("Open the request in the portal"), links.absolute(links.request_path(req.pk))),
                    (_("Your approvals inbox"), links.absolute(links.inbox_path())),
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
        why=_("You get this because you requested %(role)s (request #%(pk)s).") % {"role": req.role.slug, "pk": req.pk},
        action_label=_("Open the request"),
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
    facts = _request_facts(req) + [(_("Approved by"), approvers or _("policy"))]
    if grant is not None:
        grant.refresh_from_db()
        facts += [(_("Access from"), _when(grant.starts_at)), (_("Access until"), _when(grant.expires_at))]
    intro = [
        _("Your request for %(role)s was approved.") % {"role": req.role.name}
        if req.kind == AccessRequest.Kind.NEW
        else _("Your extension of %(role)s was approved.") % {"role": req.role.name},
        _("The access is switched on at the start time and off again at its end, by itself."),
    ]
    subject = _("Approved: %(role)s (request #%(pk)s)") % {"role": req.role.slug, "pk": req.pk}
    return [_requester_draft(req, subject=subject, intro=intro, facts=facts)]


def _denied(object_id: int, revision: int, now: datetime) -> list[Draft]:
    req = _request(object_id)
    if req is None or req.status != AccessRequest.Status.DENIED:
        return []
    decision = req.decisions.filter(verdict=Decision.Verdict.DENY).select_related("approver").first()
    facts = _request_facts(req)
    if decision is not None:
        facts += [(_("Denied by"), decision.approver.get_username()), (_("Comment"), decision.comment or "—")]
    intro = [_("Your request for %(role)s was denied.") % {"role": req.role.name}]
    subject = _("Denied: %(role)s (request #%(pk)s)") % {"role": req.role.slug, "pk": req.pk}
    return [_requester_draft(req, subject=subject, intro=intro, facts=facts)]


def _expired(object_id: int, revision: int, now: datetime) -> list[Draft]:
    req = _request(object_id)
    if req is None or req.status != AccessRequest.Status.EXPIRED:
        return []
    intro = [
        _("Your request for %(role)s expired unanswered: %(why)s.")
        % {"role": req.role.name, "why": req.closed_reason or _("nobody decided in time")},
        _("Ask again if you still need the access."),
    ]
    return [
        _requester_draft(
            req,
            subject=_("Expired unanswered: %(role)s (request #%(pk)s)") % {"role": req.role.slug, "pk": req.pk},
            intro=intro,
            facts=_request_facts(req),
        )
    ]


def _holder_draft(grant: Grant, **fields) -> Draft:
    return Draft(
        recipient=grant.user,
        why=_("You get this because you hold (or held) %(role)s through grant #%(pk)s.")
        % {"role": grant.role.slug, "pk": grant.pk},
        action_label=_("Open the grant"),
        action_url=links.absolute(links.grant_path(grant.pk)),
        facts=_grant_facts(grant),
        **fields,
    )


def _grant_active(object_id: int, revision: int, now: datetime) -> list[Draft]:
    grant = _grant(object_id)
    if grant is None or grant.status != Grant.Status.ACTIVE:
        return []
    intro = [
        _("You now hold %(role)s, until %(until)s.") % {"role": grant.role.name, "until": _when(grant.expires_at)},
        _("Give it back early from the grant page when you are done."),
    ]
    subject = _("Active: %(role)s until %(until)s") % {"role": grant.role.slug, "until": _when(grant.expires_at)}
    return [_holder_draft(grant, subject=subject, intro=intro)]


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
        _("Your %(role)s access ends in %(left)s, at %(when)s.")
        % {"role": grant.role.name, "left": left, "when": _when(grant.expires_at)},
        _("Finish or save your work; request an extension from the grant page if you need more time."),
    ]
    subject = _("Ends in %(left)s: %(role)s") % {"left": left, "role": grant.role.slug}
    return [_holder_draft(grant, subject=subject, revision=revision, intro=intro)]


def _grant_ended(object_id: int, revision: int, now: datetime) -> list[Draft]:
    grant = _grant(object_id)
    if grant is None or grant.status not in (Grant.Status.EXPIRED, Grant.Status.REVOKED, Grant.Status.FAILED):
        return []
    why = wording.ended_to_holder(grant.end_reason)
    intro = [
        _("Your %(role)s access has ended (%(why)s) and was removed at %(when)s.")
        % {"role": grant.role.name, "why": why, "when": _when(grant.ended_at)}
    ]
    if grant.end_comment:
        intro.append(_("Comment: %(comment)s") % {"comment": grant.end_comment})
    state = str(wording.grant_state(grant.status, grant.end_reason))
    subject = _("%(state)s: %(role)s (grant #%(pk)s)") % {
        "state": f"{state[:1].upper()}{state[1:]}",
        "role": grant.role.slug,
        "pk": grant.pk,
    }
    return [_holder_draft(grant, subject=subject, intro=intro)]


def _security_drafts(grant: Grant, *, subject: str, intro: list[str], revision: int = 0) -> list[Draft]:
    facts = _grant_facts(grant) + [(_("Justification"), grant.request.justification or "—")]
    return [
        Draft(
            recipient=person,
            revision=revision,
            subject=subject,
            intro=intro,
            facts=facts,
            why=_("You get this because you are in the %(group)s group.") % {"group": SECURITY_GROUP},
            action_label=_("Open the grant"),
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
            _("%(who)s activated the break-glass role %(role)s without approval.")
            % {"who": who, "role": grant.role.name},
            _("Check that it is justified; the grant waits for its post-hoc review."),
        ]
        subject = _("Break-glass: %(who)s activated %(role)s") % {"who": who, "role": grant.role.slug}
        return _security_drafts(grant, subject=subject, intro=intro, revision=revision)
    extension = AccessRequest.objects.filter(
        pk=revision, extends_grant=grant, kind=AccessRequest.Kind.EXTENSION, status=AccessRequest.Status.APPROVED
    ).first()
    if extension is None:
        return []
    intro = [
        _(
            "%(who)s extended the break-glass role %(role)s by %(duration)s "
            "(extension #%(pk)s); the access now lasts until %(until)s."
        )
        % {
            "who": who,
            "role": grant.role.name,
            "duration": humanize_duration(extension.duration),
            "pk": extension.pk,
            "until": _when(grant.expires_at),
        },
        _("The extension reopened the grant's post-hoc review: check that the extra time is justified."),
    ]
    drafts = _security_drafts(
        grant,
        subject=_("Break-glass extended: %(who)s keeps %(role)s until %(until)s")
        % {"who": who, "role": grant.role.slug, "until": _when(grant.expires_at)},
        intro=intro,
        revision=revision,
    )
    for draft in drafts:
        draft.facts += [
            (
                _("Extension"),
                _("#%(pk)s, %(duration)s more")
                % {"pk": extension.pk, "duration": humanize_duration(extension.duration)},
            ),
            (_("Why more time"), extension.justification or "—"),
        ]
    return drafts


def _revoke_failed(object_id: int, revision: int, now: datetime) -> list[Draft]:
    grant = _grant(object_id)
    if grant is None or grant.status != Grant.Status.REVOKE_FAILED:
        return []
    intro = [
        ngettext(
            "The broker could not remove %(who)s's %(role)s access from the target system after %(count)s "
            "attempt. The grant is no longer effective in the broker, but the target may still give the "
            "access: remove it by hand, then retry from the admin.",
            "The broker could not remove %(who)s's %(role)s access from the target system after %(count)s "
            "attempts. The grant is no longer effective in the broker, but the target may still give the "
            "access: remove it by hand, then retry from the admin.",
            grant.attempts,
        )
        % {"who": grant.user.get_username(), "role": grant.role.slug, "count": grant.attempts},
        _("Last error: %(error)s") % {"error": grant.last_error or "—"},
        _("Next automatic retry: %(when)s.") % {"when": _when(grant.next_attempt_at)},
    ]
    return _security_drafts(
        grant,
        subject=_("Revocation failing: %(role)s of %(who)s (grant #%(pk)s)")
        % {"role": grant.role.slug, "who": grant.user.get_username(), "pk": grant.pk},
        intro=intro,
        revision=revision,
    )


def _audit_broken(object_id: int, revision: int, now: datetime) -> list[Draft]:
    """``object_id`` is the sequence number of the first event that does not fit the chain (0: none named)."""
    found, authentic = stored_verification()  # what the scheduled walk that asked for this message found
    if found is None or found.ok or not authentic or (found.broken_seq or 0) != object_id:
        return []  # nothing (or something else) is broken now: that finding has its own message
    where = _("event #%(seq)s") % {"seq": found.broken_seq} if found.broken_seq else _("its checkpoints")
    intro = [
        _("The scheduled check of the audit trail found it broken at %(where)s: %(reason)s.")
        % {"where": where, "reason": found.reason},
        _(
            "Events up to #%(seq)s still verify (head hash %(hash)s). Compare with the signed "
            "checkpoints kept outside the database, and find out who changed the database directly."
        )
        % {"seq": found.seq, "hash": found.hash},
    ]
    return [
        Draft(
            recipient=person,
            subject=_("Audit trail broken at %(where)s") % {"where": where},
            intro=intro,
            why=_("You get this because you are in the %(group)s group.") % {"group": SECURITY_GROUP},
            action_label=_("Open the audit log"),
            action_url=links.absolute(links.audit_log_path()),
        )
        for person in security_people()
    ]


def _device_added_line(kind: str | None, *, first: bool) -> str:
    if kind == "totp":
        return (
            _("An authenticator app was added to your account as a second factor (your first one).")
            if first
            else _("An authenticator app was added to your account as a second factor.")
        )
    if kind == "passkey":
        return (
            _("A passkey was added to your account as a second factor (your first one).")
            if first
            else _("A passkey was added to your account as a second factor.")
        )
    return (
        _("A second factor was added to your account (your first one).")
        if first
        else _("A second factor was added to your account.")
    )


def _device_kind(kind: str | None) -> str:
    return {"totp": _("an authenticator app"), "passkey": _("a passkey")}.get(kind or "", _("a second factor"))


def _mfa_device_added(object_id: int, revision: int, now: datetime) -> list[Draft]:
    """``object_id`` is the audit event ``mfa.device_added``: tell the person, who may not have done it."""
    event = AuditEvent.objects.filter(pk=object_id, action="mfa.device_added", target_type="user").first()
    person = User.objects.filter(pk=event.target_id).first() if event is not None else None
    if person is None:
        return []
    intro = [
        _device_added_line(event.data.get("type"), first=bool(event.data.get("first"))),
        _(
            "If that was you, there is nothing to do. If it was not, someone has your password and your "
            "session: tell your security team at once, so that they can end your sessions and reset your password."
        ),
    ]
    return [
        Draft(
            recipient=person,
            subject=_("A second factor was added to your account"),
            intro=intro,
            why=_("You get this whenever a second factor is added to your account."),
            action_label=_("Review your second factors"),
            action_url=links.absolute(links.mfa_devices_path()),
            facts=[
                (_("What"), _device_kind(event.data.get("type"))),
                (_("When"), _when(event.at)),
                (_("From address"), event.ip or "—"),
            ],
        )
    ]


# --- Recertification: reviews of eligibilities -------------------------------------------------------------


def _review_drafts(object_id: int, *, step: str) -> list[Draft]:
    task = Recertification.objects.select_related("role", "user", "group", "eligibility").filter(pk=object_id).first()
    if task is None or not task.is_pending:
        return []
    owners = list(review_owners(task.role))
    owner_ids = {o.pk for o in owners}
    people = owners + (
        [u for u in escalation_approvers(task.role) if u.pk not in owner_ids] if step == "escalated" else []
    )
    names = {"who": task.who, "role": task.role.slug, "pk": task.pk}
    subject = {
        "due": _("Review needed: may %(who)s still ask for %(role)s? (review #%(pk)s)"),
        "reminder": _("Reminder: review #%(pk)s of %(who)s for %(role)s is waiting"),
        "escalated": _("Escalated: nobody reviewed %(who)s's eligibility for %(role)s (review #%(pk)s)"),
    }[step] % names
    removes = task.eligibility is not None and task.eligibility.recertify_expire
    intro = [
        _(
            "%(who)s is eligible for %(name)s (%(role)s). Confirm that this is still needed, or remove it: "
            "a removal takes effect at once (any grant it allowed ends)."
        )
        % {**names, "name": task.role.name},
        _("The role's owners have not answered; as an escalation approver of the role you may decide it too.")
        if step == "escalated"
        else "",
        (
            _("Unanswered by %(when)s, the eligibility is removed.")
            if removes
            else _("Unanswered by %(when)s, the eligibility stays and the review is closed as expired.")
        )
        % {"when": _when(task.grace_until)},
    ]
    drafts = []
    for person in people:
        if person.pk == task.user_id:
            continue
        drafts.append(
            Draft(
                recipient=person,
                subject=subject,
                intro=[line for line in intro if line],
                why=(
                    _("You get this because you review the eligibilities of %(role)s.")
                    if person.pk in owner_ids
                    else _("You get this because you are an escalation approver of %(role)s.")
                )
                % names,
                action_label=_("Open the review"),
                action_url=links.absolute(links.reviews_path()),
                facts=[
                    (_("Who"), task.who),
                    (_("Role"), f"{task.role.name} ({task.role.slug})"),
                    (_("Due since"), _when(task.due_at)),
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
    """The drafts of one message, each written in its recipient's time zone and language.

    Builders write times (``_when``) in the active zone and sentences in the active language. The
    builder runs once in the server's zone and the default language, then once more for each other
    pair of zone and language its recipients chose (accounts.preferences), and each person gets the
    draft written in theirs: one run for most messages, a few for a group. So a German approver gets
    a German email even when the requester reads English.
    """
    builder = BUILDERS[kind]
    default = (settings.TIME_ZONE, settings.LANGUAGE_CODE)
    with timezone.override(zoneinfo.ZoneInfo(settings.TIME_ZONE)), translation.override(settings.LANGUAGE_CODE):
        drafts = builder(object_id, revision, now)
    people = [d.recipient for d in drafts]
    zones, languages = preferences.email_time_zones(people), preferences.email_languages(people)
    wanted = {pk: (zones[pk], languages[pk]) for pk in zones}
    for zone, language in sorted(set(wanted.values()) - {default}):
        with timezone.override(zoneinfo.ZoneInfo(zone)), translation.override(language):
            local = {
                d.recipient.pk: d
                for d in builder(object_id, revision, now)
                if wanted.get(d.recipient.pk) == (zone, language)
            }
        # Someone missing from the second run (the object changed in between) keeps the first draft.
        drafts = [local.get(d.recipient.pk, d) for d in drafts]
    for draft in drafts:
        draft.language = wanted.get(draft.recipient.pk, default)[1]
    return drafts
