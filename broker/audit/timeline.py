"""The story of a request or a grant, told from the audit trail in plain sentences.

``describe`` has a sentence for every action the broker writes (tests/broker/test_timeline.py
finds each ``audit.record``/``record_auth_event`` in the code and fails on one without its
sentence), so that nobody reads a code such as ``approval_link.refused``. The audit log shows the
same sentence beside the code, for auditors who filter by it.

Some events are for auditors only: a refused approver link says who opened someone's link, which
is not the requester's business. The timelines leave them out unless the viewer reads everything.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta

from django.db.models import Q
from django.utils import timezone
from django.utils.dateformat import format as date_format
from django.utils.dateparse import parse_datetime

from broker import wording
from broker.audit.chain import SYSTEM
from broker.durations import humanize_duration
from broker.models import AuditEvent

TIME_FORMAT = "j M Y, H:i T"

# Shown in a request's or a grant's timeline only to auditors and administrators.
AUDITORS_ONLY = frozenset({"approval_link.refused"})


@dataclass
class Entry:
    event: AuditEvent
    title: str
    detail: str = ""
    tone: str = ""  # "", "good", "bad", "warn": for the marker next to the entry

    @property
    def channel(self) -> str:
        return wording.channel(self.event.channel)


def _when(value) -> str:
    moment = parse_datetime(value) if isinstance(value, str) else value
    if not isinstance(moment, datetime):
        return ""
    return date_format(timezone.localtime(moment), TIME_FORMAT)


def _seconds(value) -> str:
    try:
        return humanize_duration(timedelta(seconds=float(value)))
    except (TypeError, ValueError, OverflowError):
        return ""


def _names(values) -> str:
    if not values:
        return "nobody"
    return ", ".join(str(v) for v in values)


def _plural(count, one: str, many: str) -> str:
    return f"{count} {one if count == 1 else many}"


def _who(event: AuditEvent) -> str:
    return "The broker" if event.actor_name == SYSTEM else event.actor_name


def _whose(event: AuditEvent) -> str:
    return event.subject or "someone"


# --- Requests --------------------------------------------------------------------------------------


def _request_created(e: AuditEvent, d: dict) -> Entry:
    how_long = _seconds(d.get("duration_seconds"))
    if d.get("kind") == "extension":
        title = f"{_who(e)} asked for {how_long} more on {e.role}"
    elif d.get("break_glass"):
        title = f"{_who(e)} activated the break-glass role {e.role} for {how_long}"
    else:
        title = f"{_who(e)} requested {e.role} for {how_long}"
    parts = []
    if d.get("justification"):
        parts.append(f"Justification: {d['justification']}")
    if d.get("ticket"):
        parts.append(f"Ticket: {d['ticket']}")
    if d.get("starts_at"):
        parts.append(f"Start requested for {_when(d['starts_at'])}")
    if d.get("break_glass"):
        parts.append("Break-glass: security is notified; reviewed afterwards")
    return Entry(e, title, " · ".join(parts), "warn" if d.get("break_glass") else "")


def _approval_given(e: AuditEvent, d: dict) -> Entry:
    how = ", as escalation approver" if d.get("escalation") else ""
    return Entry(e, f"{_who(e)} approved (stage {d.get('stage', '?')}{how})", d.get("comment", ""), "good")


def _denied(e: AuditEvent, d: dict) -> Entry:
    how = ", as escalation approver" if d.get("escalation") else ""
    return Entry(e, f"{_who(e)} denied (stage {d.get('stage', '?')}{how})", d.get("comment", ""), "bad")


def _escalated(e: AuditEvent, d: dict) -> Entry:
    people = ", ".join(d.get("escalated_to") or [])
    return Entry(
        e,
        f"Stage {d.get('stage', '?')} escalated after {_seconds(d.get('waited_seconds'))} without a decision",
        f"Escalation approvers: {people}" if people else "",
        "warn",
    )


def _approved(e: AuditEvent, d: dict) -> Entry:
    why = {
        "auto_approve": "Approved automatically: the role needs no approval",
        "break_glass": "Break-glass: approved at once without approvers; security notified",
    }.get(d.get("why"), "Approved: every stage has its approvals")
    return Entry(e, why, "", "warn" if d.get("why") == "break_glass" else "good")


def _cancelled(e: AuditEvent, d: dict) -> Entry:
    if e.actor_name == e.subject and not d.get("reason"):
        return Entry(e, f"{_who(e)} withdrew the request", "", "bad")
    if d.get("end_reason"):
        why = wording.ended_because(d["end_reason"]).replace("the holder", "the requester")
        reason = d.get("reason", "")
        return Entry(e, f"Cancelled: {why}", "" if reason in why else reason, "bad")
    by = "" if e.actor_name == SYSTEM else f" by {e.actor_name}"
    return Entry(e, f"Cancelled{by}", d.get("reason", ""), "bad")


def _expired_request(e: AuditEvent, d: dict) -> Entry:
    return Entry(e, "Expired: nobody decided in time", d.get("reason", ""), "bad")


LINK_REFUSALS = {
    "invalid": "not valid (cut short or altered)",
    "expired": "expired",
    "used": "already used",
    "outdated": "out of date (the request had changed)",
    "wrong_user": "opened by someone it was not sent to",
}


def _link_refused(e: AuditEvent, d: dict) -> Entry:
    why = LINK_REFUSALS.get(d.get("reason"), "refused")
    if d.get("summary"):
        return Entry(
            e,
            f"{_plural(d.get('count'), 'made-up or altered email link', 'made-up or altered email links')} "
            f"refused from one address within {_seconds(d.get('window_seconds'))}",
            "Links whose signature does not verify are counted per address; this is the first over the limit.",
            "warn",
        )
    opener = "someone not signed in" if e.actor_name == SYSTEM else e.actor_name
    sent_to = d.get("sent_to") or "an approver"
    return Entry(e, f"An email decision link sent to {sent_to} was refused: {why}", f"Opened by {opener}.", "warn")


# --- Grants ----------------------------------------------------------------------------------------


def _scheduled(e: AuditEvent, d: dict) -> Entry:
    return Entry(
        e, f"Grant #{e.target_id} created", f"From {_when(d.get('starts_at'))} until {_when(d.get('expires_at'))}"
    )


def _activated(e: AuditEvent, d: dict) -> Entry:
    return Entry(e, "Switched on in the target", f"Until {_when(d.get('expires_at'))}", "good")


def _extended(e: AuditEvent, d: dict) -> Entry:
    return Entry(e, "Extended", f"Expiry moved from {_when(d.get('from'))} to {_when(d.get('to'))}", "good")


def _ending(e: AuditEvent, d: dict) -> Entry:
    why = wording.ended_because(d.get("end_reason"))
    return Entry(e, "End decided; removal from the target in progress", why[:1].upper() + why[1:] if why else "")


def _connector_failed(e: AuditEvent, d: dict) -> Entry:
    op = "switching it on" if d.get("operation") == "grant" else "removing it"
    attempt = f" (attempt {d['attempt']})" if d.get("attempt") else ""
    return Entry(e, f"The target failed while {op}{attempt}", d.get("error", ""), "bad")


def _revoke_failed(e: AuditEvent, d: dict) -> Entry:
    times = _plural(d["attempt"], "time", "times") if d.get("attempt") else "for good"
    return Entry(e, f"Removal failed {times}; retried daily, security alerted", d.get("error", ""), "bad")


def _lag(d: dict) -> str:
    lag = d.get("lag_seconds")
    return f"Removed {lag:.1f} s after its end" if isinstance(lag, int | float) else ""


def _expired_grant(e: AuditEvent, d: dict) -> Entry:
    if d.get("end_reason") == "not_activated":
        return Entry(e, "Ended without ever being switched on", "", "bad")
    return Entry(e, "Expired and removed from the target", _lag(d))


def _relinquished(e: AuditEvent, d: dict) -> Entry:
    return Entry(e, f"{d.get('by') or _who(e)} gave the role back early (relinquished)", d.get("comment", ""))


def _revoked(e: AuditEvent, d: dict) -> Entry:
    reason = d.get("end_reason")
    by = d.get("by") if d.get("by") not in (None, "", SYSTEM) else ""
    if reason == "revoked":
        title = f"Revoked by {by}" if by else "Revoked by an administrator"
    elif reason == "risk_signal":
        title = "Revoked by a risk signal" + (f" reported by {by}" if by else "")
    elif reason == "eligibility_lost":
        title = f"Ended: {_whose(e)} is no longer eligible for {e.role or 'the role'}"
    elif reason == "role_retired":
        title = f"Ended: the role {e.role} was retired".replace("  ", " ")
    else:
        title = f"Ended: {wording.ended_because(reason) or 'ended early'}"
    detail = " · ".join(part for part in (d.get("comment", ""), _lag(d)) if part)
    return Entry(e, title, detail, "bad")


def _failed(e: AuditEvent, d: dict) -> Entry:
    return Entry(e, "Activation failed for good; the grant never gave access", d.get("comment", ""), "bad")


def _reviewed(e: AuditEvent, d: dict) -> Entry:
    return Entry(e, f"{_who(e)} reviewed the break-glass activation", d.get("note", ""), "good")


def _review_reopened(e: AuditEvent, d: dict) -> Entry:
    previous = d.get("previous") or {}
    until = f" until {_when(d['expires_at'])}" if d.get("expires_at") else ""
    by = f" (request #{d['request']})" if d.get("request") else ""
    return Entry(
        e,
        f"Review reopened: extended{until}{by}",
        f"The earlier review by {previous.get('by') or 'someone'} covered the activation only",
        "warn",
    )


# --- Targets: drift and reconciliation -------------------------------------------------------------


def _drift_detected(e: AuditEvent, d: dict) -> Entry:
    return Entry(
        e,
        f"{_whose(e)} has {e.role} in the target without a grant; left in place (the target is not authoritative)",
        "",
        "warn",
    )


def _drift_removed(e: AuditEvent, d: dict) -> Entry:
    return Entry(e, f"{_whose(e)} had {e.role} in the target without a grant; the broker removed it", "", "warn")


def _drift_restored(e: AuditEvent, d: dict) -> Entry:
    return Entry(e, f"{_whose(e)}'s {e.role} access was missing from the target; the broker put it back", "", "warn")


def _reconcile_run(e: AuditEvent, d: dict) -> Entry:
    return Entry(
        e,
        f"{_who(e)} compared {_plural(d.get('targets', 0), 'target', 'targets')} with the grants",
        f"{d.get('removed', 0)} removed, {d.get('detected', 0)} found and left, {d.get('restored', 0)} put back, "
        f"{_plural(d.get('errors', 0), 'error', 'errors')}",
    )


def _policy_applied(e: AuditEvent, d: dict) -> Entry:
    changes = d.get("changes") or []
    source = {"api": " through the API", "": ""}.get(d.get("source") or "", f" from {d.get('source')}")
    prune = " (retiring roles missing from it)" if d.get("prune") else ""
    return Entry(
        e,
        f"{_who(e)} applied the policy{source}{prune}: {_plural(len(changes), 'change', 'changes')}",
        "\n".join(changes),
    )


def _eligibility_removed(e: AuditEvent, d: dict) -> Entry:
    who = d.get("who") or e.subject
    return Entry(
        e,
        f"{who}'s eligibility for {e.role} was removed ({d.get('reason') or 'no reason given'})",
        f"{d.get('detail') or ''}\nTo make in the policy file: {d.get('policy_patch') or ''}".strip(),
        "warn",
    )


def _recertification(verb: str, tone: str = ""):
    def describe(e: AuditEvent, d: dict) -> Entry:
        who = d.get("who") or e.subject
        detail = d.get("comment") or ""
        if verb == "expired":
            detail = "The eligibility was removed." if d.get("eligibility_removed") else "The eligibility was kept."
        by = f" by {_who(e)}" if verb in ("confirmed", "removed") else ""
        return Entry(e, f"Review #{e.target_id} of {who}'s eligibility for {e.role}: {verb}{by}", detail, tone)

    return describe


# --- People: accounts, sign-in, second factors, tokens ---------------------------------------------


def _risk_signal(e: AuditEvent, d: dict) -> Entry:
    what = wording.risk_event(d.get("event"))
    return Entry(
        e,
        f"Risk signal about {_whose(e)}: {what}",
        (f"Reported by {_who(e)}. " if e.actor_name != SYSTEM else "")
        + "Grants revoked, pending requests cancelled, sessions ended, API tokens revoked."
        + (f" Reason: {d['reason']}" if d.get("reason") else ""),
        "bad",
    )


def _user_created(e: AuditEvent, d: dict) -> Entry:
    how = "at the first single sign-on" if e.channel == "oidc" else "by the identity provider (SCIM)"
    return Entry(e, f"Account {_whose(e)} created {how}")


def _user_deactivated(e: AuditEvent, d: dict) -> Entry:
    why = (wording.risk_event(d["event"]) if d.get("event") else "") or d.get("reason") or ""
    return Entry(e, f"{_whose(e)}'s account was deactivated", why[:1].upper() + why[1:], "bad")


def _user_reactivated(e: AuditEvent, d: dict) -> Entry:
    return Entry(e, f"{_whose(e)}'s account was reactivated by the identity provider")


def _user_deleted(e: AuditEvent, d: dict) -> Entry:
    return Entry(e, f"The identity provider deleted {_whose(e)}; the account is kept, deactivated", "", "bad")


def _user_restored(e: AuditEvent, d: dict) -> Entry:
    return Entry(e, f"The identity provider restored {_whose(e)}'s account")


def _user_renamed(e: AuditEvent, d: dict) -> Entry:
    return Entry(e, f"Account renamed from {d.get('from') or '?'} to {d.get('to') or _whose(e)}")


def _user_updated(e: AuditEvent, d: dict) -> Entry:
    fields = ", ".join(str(f).replace("_", " ") for f in d.get("fields") or []) or "nothing"
    renamed = f" (previously {d['renamed_from']})" if d.get("renamed_from") else ""
    return Entry(e, f"The identity provider updated {_whose(e)}{renamed}: {fields}")


def _changes(d: dict) -> str:
    parts = []
    if d.get("added"):
        parts.append(f"added {_names(d['added'])}")
    if d.get("removed"):
        parts.append(f"removed {_names(d['removed'])}")
    return "; ".join(parts) or "no change"


def _user_groups_changed(e: AuditEvent, d: dict) -> Entry:
    return Entry(e, f"{_whose(e)}'s groups changed", _changes(d)[:1].upper() + _changes(d)[1:])


def _group_created(e: AuditEvent, d: dict) -> Entry:
    return Entry(e, f"Group {d.get('group') or _whose(e)} created by the identity provider")


def _group_renamed(e: AuditEvent, d: dict) -> Entry:
    return Entry(e, f"Group renamed from {d.get('from') or '?'} to {d.get('to') or _whose(e)}")


def _group_members_changed(e: AuditEvent, d: dict) -> Entry:
    text = _changes(d)
    return Entry(e, f"Members of group {d.get('group') or _whose(e)} changed", text[:1].upper() + text[1:])


def _login(e: AuditEvent, d: dict) -> Entry:
    if d.get("admin"):
        return Entry(e, f"{_who(e)} signed in to the admin with a second factor")
    if d.get("method") == "oidc" or e.channel == "oidc":
        return Entry(e, f"{_who(e)} signed in through single sign-on" + (" (first time)" if d.get("created") else ""))
    return Entry(e, f"{_who(e)} signed in")


def _login_throttled(e: AuditEvent, d: dict) -> Entry:
    wait = _seconds(d.get("lockout_seconds"))
    return Entry(
        e, f"Too many failed sign-ins as {_whose(e)}: sign-in refused" + (f" for {wait}" if wait else ""), "", "warn"
    )


def _password_reset(e: AuditEvent, d: dict) -> Entry:
    return Entry(e, f"{_whose(e)} chose a new password through a reset link")


def _password_revoked(e: AuditEvent, d: dict) -> Entry:
    return Entry(e, f"{_whose(e)}'s password was made unusable", d.get("reason", ""), "bad")


def _sessions_ended(e: AuditEvent, d: dict) -> Entry:
    return Entry(e, f"Every session of {_whose(e)} was ended", d.get("reason", ""), "warn")


def _sso_refused(e: AuditEvent, d: dict) -> Entry:
    who = f" for {_whose(e)}" if e.subject else ""
    return Entry(e, f"A single sign-on answer{who} was refused", d.get("detail") or d.get("reason", ""), "warn")


def _step_up(e: AuditEvent, d: dict) -> Entry:
    how = {"passkey": "with a passkey", "oidc": "through single sign-on"}.get(
        d.get("type") or d.get("method"), "with a one-time code"
    )
    return Entry(e, f"{_who(e)} confirmed a second factor {how}")


STEP_UP_FAILURES = {
    "mfa_invalid": "the code was wrong or already used",
    "mfa_required": "no code was given",
    "mfa_not_enrolled": "no second factor is set up",
    "throttled": "too many wrong codes",
}


def _step_up_failed(e: AuditEvent, d: dict) -> Entry:
    why = STEP_UP_FAILURES.get(d.get("reason"), "")
    return Entry(e, f"A second-factor check of {_whose(e)} failed", why[:1].upper() + why[1:], "warn")


DEVICE_KINDS = {"totp": "an authenticator app", "passkey": "a passkey"}


def _device_added(e: AuditEvent, d: dict) -> Entry:
    kind = DEVICE_KINDS.get(d.get("type"), "a second factor")
    first = " (their first)" if d.get("first") else ""
    return Entry(e, f"{_who(e)} added {kind}{first}")


def _device_removed(e: AuditEvent, d: dict) -> Entry:
    name = f" “{d['name']}”" if d.get("name") else ""
    return Entry(e, f"{_who(e)} removed the second factor{name}", "", "warn")


def _backup_codes(e: AuditEvent, d: dict) -> Entry:
    return Entry(
        e,
        f"{_who(e)} made {_plural(d.get('count', 0), 'new backup code', 'new backup codes')}; older ones stop working",
    )


def _enrolment_code_issued(e: AuditEvent, d: dict) -> Entry:
    withdrawn = d.get("withdrawn") or 0
    return Entry(
        e,
        f"{_who(e)} issued an enrolment code for {_whose(e)}",
        f"Valid until {_when(d.get('expires_at'))}"
        + (f"; {_plural(withdrawn, 'older code', 'older codes')} withdrawn" if withdrawn else ""),
    )


def _enrolment_code_used(e: AuditEvent, d: dict) -> Entry:
    return Entry(e, f"{_whose(e)} used an enrolment code")


def _enrolment_authorised(e: AuditEvent, d: dict) -> Entry:
    extra = " and an enrolment code" if d.get("enrolment_code") else ""
    return Entry(e, f"{_whose(e)} confirmed their password{extra} to set up a first second factor")


def _enrolment_refused(e: AuditEvent, d: dict) -> Entry:
    what = "enrolment code" if d.get("reason") == "enrolment_code" else "password"
    return Entry(e, f"Setting up a first second factor for {_whose(e)} was refused: wrong {what}", "", "warn")


def _token_created(e: AuditEvent, d: dict) -> Entry:
    scopes = ", ".join(d.get("scopes") or []) or "no scopes"
    name = f" “{d['name']}”" if d.get("name") else ""
    return Entry(
        e,
        f"{_who(e)} created API token{name} pab_{d.get('prefix', '')}… for {_whose(e)}",
        f"Scopes: {scopes}; expires {_when(d.get('expires_at')) or 'never'}",
    )


def _token_revoked(e: AuditEvent, d: dict) -> Entry:
    by = "" if e.actor_name == SYSTEM else f" by {e.actor_name}"
    return Entry(e, f"API token pab_{d.get('prefix', '')}… of {_whose(e)} revoked{by}", "", "warn")


# --- The trail itself and the admin ----------------------------------------------------------------


def _exported(e: AuditEvent, d: dict) -> Entry:
    filters = d.get("filters") or {}
    kept = ", ".join(f"{k} {v}" for k, v in sorted(filters.items())) or "everything"
    fmt = {"csv": "CSV", "jsonl": "JSON Lines"}.get(d.get("format"), d.get("format") or "a file")
    return Entry(e, f"{_who(e)} exported the audit trail as {fmt}", f"Filter: {kept}")


def _archived(e: AuditEvent, d: dict) -> Entry:
    span = f" #{d['first_seq']} to #{d['last_seq']}" if d.get("first_seq") and d.get("last_seq") else ""
    return Entry(
        e,
        f"{_who(e)} archived {_plural(d.get('count', 0), 'event', 'events')}{span} out of the database",
        f"File {d['file']}, SHA-256 {d.get('sha256', '')}" if d.get("file") else "",
    )


def _keyed(e: AuditEvent, d: dict) -> Entry:
    verified = "they verified" if d.get("unkeyed_verified") else "they did NOT verify"
    return Entry(
        e,
        f"The trail written before the audit key existed was sealed "
        f"({_plural(d.get('unkeyed_events', 0), 'event', 'events')})",
        f"Checked when sealed: {verified}.",
        "" if d.get("unkeyed_verified") else "bad",
    )


OPERATIONS = {"add": "added", "change": "changed", "delete": "deleted"}


def _admin_changed(e: AuditEvent, d: dict) -> Entry:
    done = OPERATIONS.get(d.get("operation"), d.get("operation") or "changed")
    what = d.get("object") or _whose(e)
    fields = ", ".join(str(f).replace("_", " ") for f in d.get("fields") or [])
    return Entry(e, f"{_who(e)} {done} {what} in the admin", f"Fields: {fields}" if fields else "")


DESCRIBE: dict[str, Callable[[AuditEvent, dict], Entry]] = {
    "request.created": _request_created,
    "request.approval_given": _approval_given,
    "request.denied": _denied,
    "request.escalated": _escalated,
    "request.approved": _approved,
    "request.cancelled": _cancelled,
    "request.expired": _expired_request,
    "approval_link.refused": _link_refused,
    "grant.scheduled": _scheduled,
    "grant.activated": _activated,
    "grant.extended": _extended,
    "grant.ending": _ending,
    "grant.connector_failed": _connector_failed,
    "grant.revoke_failed": _revoke_failed,
    "grant.expired": _expired_grant,
    "grant.relinquished": _relinquished,
    "grant.revoked": _revoked,
    "grant.failed": _failed,
    "grant.reviewed": _reviewed,
    "grant.review_reopened": _review_reopened,
    "drift.detected": _drift_detected,
    "drift.removed": _drift_removed,
    "drift.restored": _drift_restored,
    "reconcile.run": _reconcile_run,
    "policy.applied": _policy_applied,
    "eligibility.removed": _eligibility_removed,
    "recertification.opened": _recertification("opened"),
    "recertification.escalated": _recertification("escalated", "warn"),
    "recertification.expired": _recertification("expired", "warn"),
    "recertification.confirmed": _recertification("confirmed", "good"),
    "recertification.removed": _recertification("removed", "bad"),
    "risk.signal": _risk_signal,
    "user.created": _user_created,
    "user.deactivated": _user_deactivated,
    "user.reactivated": _user_reactivated,
    "user.deleted": _user_deleted,
    "user.restored": _user_restored,
    "user.renamed": _user_renamed,
    "user.updated": _user_updated,
    "user.groups_changed": _user_groups_changed,
    "group.created": _group_created,
    "group.renamed": _group_renamed,
    "group.members_changed": _group_members_changed,
    "auth.login": _login,
    "auth.login_throttled": _login_throttled,
    "auth.password_reset": _password_reset,
    "auth.password_revoked": _password_revoked,
    "auth.sessions_ended": _sessions_ended,
    "auth.sso_refused": _sso_refused,
    "auth.step_up": _step_up,
    "auth.step_up_failed": _step_up_failed,
    "mfa.device_added": _device_added,
    "mfa.device_removed": _device_removed,
    "mfa.backup_codes_generated": _backup_codes,
    "mfa.enrolment_code_issued": _enrolment_code_issued,
    "mfa.enrolment_code_used": _enrolment_code_used,
    "mfa.enrolment_authorised": _enrolment_authorised,
    "mfa.enrolment_refused": _enrolment_refused,
    "token.created": _token_created,
    "token.revoked": _token_revoked,
    "audit.exported": _exported,
    "audit.archived": _archived,
    "audit.keyed": _keyed,
    "admin.changed": _admin_changed,
}


def describe(event: AuditEvent) -> Entry:
    build = DESCRIBE.get(event.action)
    if build is None:
        # An action added without a sentence (tests catch it): still no dotted code for people.
        return Entry(event, f"{event.action.replace('.', ' ').replace('_', ' ').capitalize()} ({_who(event)})")
    return build(event, event.data or {})


def _entries(condition: Q, *, for_auditor: bool) -> list[Entry]:
    events = AuditEvent.objects.filter(condition)
    if not for_auditor:
        events = events.exclude(action__in=AUDITORS_ONLY)
    return [describe(e) for e in events.order_by("seq")]


def request_timeline(req, *, for_auditor: bool = False) -> list[Entry]:
    """Everything that happened to a request and to the grant it became (one query).

    ``for_auditor``: the viewer reads everything (auditors, administrators), and sees the events
    that are for them only (who opened whose approver link).
    """
    condition = Q(target_type="request", target_id=str(req.pk))
    grant_id = getattr(getattr(req, "grant", None), "pk", None)
    if grant_id:
        condition |= Q(target_type="grant", target_id=str(grant_id))
    return _entries(condition, for_auditor=for_auditor)


def grant_timeline(grant, extension_ids=(), *, for_auditor: bool = False) -> list[Entry]:
    """The grant's events, the request it came from and its extension requests (one query)."""
    requests = [str(grant.request_id), *(str(pk) for pk in extension_ids)]
    return _entries(
        Q(target_type="grant", target_id=str(grant.pk)) | Q(target_type="request", target_id__in=requests),
        for_auditor=for_auditor,
    )
