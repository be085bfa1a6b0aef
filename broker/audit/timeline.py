"""The story of a request or a grant, told from the audit trail in plain sentences."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from django.db.models import Q
from django.utils import timezone
from django.utils.dateformat import format as date_format
from django.utils.dateparse import parse_datetime

from broker.durations import humanize_duration
from broker.models import AuditEvent

TIME_FORMAT = "j M Y, H:i T"


@dataclass
class Entry:
    event: AuditEvent
    title: str
    detail: str = ""
    tone: str = ""  # "", "good", "bad", "warn": for the marker next to the entry


def _when(value) -> str:
    moment = parse_datetime(value) if isinstance(value, str) else value
    if not isinstance(moment, datetime):
        return ""
    return date_format(timezone.localtime(moment), TIME_FORMAT)


def _seconds(value) -> str:
    try:
        return humanize_duration(timedelta(seconds=float(value)))
    except (TypeError, ValueError):
        return ""


REASONS = {
    "expiry": "its time ran out",
    "relinquished": "the holder gave it back",
    "revoked": "an administrator revoked it",
    "risk_signal": "a risk signal",
    "eligibility_lost": "the holder is no longer eligible",
    "role_retired": "the role was retired",
    "activation_failed": "activation failed",
    "not_activated": "it was never switched on in time",
}


def describe(event: AuditEvent) -> Entry:
    d, who, action = event.data or {}, event.actor_name, event.action
    if action == "request.created":
        what = "an extension of" if d.get("kind") == "extension" else ""
        title = f"{who} requested {what} {event.role} for {_seconds(d.get('duration_seconds'))}".replace("  ", " ")
        parts = []
        if d.get("justification"):
            parts.append(f"Justification: {d['justification']}")
        if d.get("ticket"):
            parts.append(f"Ticket: {d['ticket']}")
        if d.get("starts_at"):
            parts.append(f"Start requested for {_when(d['starts_at'])}")
        if d.get("break_glass"):
            parts.append("Break-glass: security is notified; reviewed afterwards")
        return Entry(event, title, " · ".join(parts), "warn" if d.get("break_glass") else "")
    if action == "request.approval_given":
        how = ", as escalation approver" if d.get("escalation") else ""
        return Entry(event, f"{who} approved (stage {d.get('stage', '?')}{how})", d.get("comment", ""), "good")
    if action == "request.escalated":
        people = ", ".join(d.get("escalated_to") or [])
        return Entry(
            event,
            f"Stage {d.get('stage', '?')} escalated after {_seconds(d.get('waited_seconds'))} without a decision",
            f"Escalation approvers: {people}" if people else "",
            "warn",
        )
    if action == "request.approved":
        why = {
            "auto_approve": "Approved automatically: the role needs no approval",
            "break_glass": "Break-glass: approved at once without approvers; security notified",
        }.get(d.get("why"), "Approved: every stage has its approvals")
        return Entry(event, why, "", "warn" if d.get("why") == "break_glass" else "good")
    if action == "request.denied":
        how = ", as escalation approver" if d.get("escalation") else ""
        return Entry(event, f"{who} denied (stage {d.get('stage', '?')}{how})", d.get("comment", ""), "bad")
    if action == "request.cancelled":
        title = f"{who} withdrew the request" if who == event.subject else "Request cancelled"
        return Entry(event, title, d.get("reason", ""), "bad")
    if action == "request.expired":
        return Entry(event, "Expired unanswered", d.get("reason", ""), "bad")
    if action == "grant.scheduled":
        return Entry(
            event,
            f"Grant #{event.target_id} created",
            f"From {_when(d.get('starts_at'))} until {_when(d.get('expires_at'))}",
        )
    if action == "grant.activated":
        return Entry(event, "Switched on in the target", f"Until {_when(d.get('expires_at'))}", "good")
    if action == "grant.extended":
        return Entry(event, "Extended", f"Expiry moved from {_when(d.get('from'))} to {_when(d.get('to'))}", "good")
    if action == "grant.ending":
        return Entry(event, "End decided; removal from the target in progress", REASONS.get(d.get("end_reason"), ""))
    if action == "grant.connector_failed":
        op = "switching on" if d.get("operation") == "grant" else "removing"
        return Entry(event, f"The target failed while {op} (attempt {d.get('attempt')})", d.get("error", ""), "bad")
    if action == "grant.revoke_failed":
        return Entry(
            event,
            f"Removal failed {d.get('attempt')} times; retried daily, security alerted",
            d.get("error", ""),
            "bad",
        )
    if action == "grant.expired":
        lag = d.get("lag_seconds")
        detail = f"Removed {lag:.1f} s after expiry" if isinstance(lag, int | float) else ""
        return Entry(event, "Expired and removed from the target", detail)
    if action == "grant.relinquished":
        return Entry(event, f"{d.get('by') or who} gave the role back early", d.get("comment", ""))
    if action == "grant.revoked":
        reason = REASONS.get(d.get("end_reason"), d.get("end_reason", ""))
        return Entry(event, f"Revoked by {d.get('by') or who} ({reason})", d.get("comment", ""), "bad")
    if action == "grant.failed":
        return Entry(event, "Activation failed for good; the grant never gave access", "", "bad")
    if action == "grant.reviewed":
        return Entry(event, f"{who} reviewed the break-glass activation", d.get("note", ""), "good")
    if action == "grant.review_reopened":
        previous = d.get("previous") or {}
        return Entry(
            event,
            f"Review reopened: extended until {_when(d.get('expires_at'))} (request #{d.get('request')})",
            f"The earlier review by {previous.get('by') or '?'} covered the activation only",
            "warn",
        )
    return Entry(event, f"{action} by {who}")


def _entries(condition: Q) -> list[Entry]:
    return [describe(e) for e in AuditEvent.objects.filter(condition).order_by("seq")]


def request_timeline(req) -> list[Entry]:
    """Everything that happened to a request and to the grant it became (one query)."""
    condition = Q(target_type="request", target_id=str(req.pk))
    grant_id = getattr(getattr(req, "grant", None), "pk", None)
    if grant_id:
        condition |= Q(target_type="grant", target_id=str(grant_id))
    return _entries(condition)


def grant_timeline(grant, extension_ids=()) -> list[Entry]:
    """The grant's events, the request it came from and its extension requests (one query)."""
    requests = [str(grant.request_id), *(str(pk) for pk in extension_ids)]
    return _entries(Q(target_type="grant", target_id=str(grant.pk)) | Q(target_type="request", target_id__in=requests))
