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
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy, ngettext

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
        return _("nobody")
    return ", ".join(str(v) for v in values)


def _count(value) -> int:
    try:
        return int(value or 0)
    except (TypeError, ValueError):
        return 0


def _who(event: AuditEvent) -> str:
    return _("The broker") if event.actor_name == SYSTEM else event.actor_name


def _whose(event: AuditEvent) -> str:
    return event.subject or _("someone")


def _capital(text: str) -> str:
    return text[:1].upper() + text[1:]


# --- Requests --------------------------------------------------------------------------------------


def _on(role: str, d: dict) -> str:
    """The role of an event, on its resource when the event names one."""
    return _("%(role)s on %(resource)s") % {"role": role, "resource": d["resource"]} if d.get("resource") else role


def _request_created(e: AuditEvent, d: dict) -> Entry:
    names = {"who": _who(e), "duration": _seconds(d.get("duration_seconds")), "role": _on(e.role, d)}
    if d.get("kind") == "extension":
        title = _("%(who)s asked for %(duration)s more on %(role)s") % names
    elif d.get("break_glass"):
        title = _("%(who)s activated the break-glass role %(role)s for %(duration)s") % names
    else:
        title = _("%(who)s requested %(role)s for %(duration)s") % names
    parts = []
    if d.get("justification"):
        parts.append(_("Justification: %(text)s") % {"text": d["justification"]})
    if d.get("ticket"):
        parts.append(_("Ticket: %(ticket)s") % {"ticket": d["ticket"]})
    if d.get("starts_at"):
        parts.append(_("Start requested for %(when)s") % {"when": _when(d["starts_at"])})
    if d.get("break_glass"):
        parts.append(_("Break-glass: security is notified; reviewed afterwards"))
    return Entry(e, title, " · ".join(parts), "warn" if d.get("break_glass") else "")


def _approval_given(e: AuditEvent, d: dict) -> Entry:
    names = {"who": _who(e), "stage": d.get("stage", "?")}
    title = (
        _("%(who)s approved (stage %(stage)s, as escalation approver)") % names
        if d.get("escalation")
        else _("%(who)s approved (stage %(stage)s)") % names
    )
    return Entry(e, title, d.get("comment", ""), "good")


def _denied(e: AuditEvent, d: dict) -> Entry:
    names = {"who": _who(e), "stage": d.get("stage", "?")}
    title = (
        _("%(who)s denied (stage %(stage)s, as escalation approver)") % names
        if d.get("escalation")
        else _("%(who)s denied (stage %(stage)s)") % names
    )
    return Entry(e, title, d.get("comment", ""), "bad")


def _escalated(e: AuditEvent, d: dict) -> Entry:
    people = ", ".join(d.get("escalated_to") or [])
    return Entry(
        e,
        _("Stage %(stage)s escalated after %(waited)s without a decision")
        % {"stage": d.get("stage", "?"), "waited": _seconds(d.get("waited_seconds"))},
        _("Escalation approvers: %(people)s") % {"people": people} if people else "",
        "warn",
    )


def _approved(e: AuditEvent, d: dict) -> Entry:
    why = {
        "auto_approve": _("Approved automatically: the role needs no approval"),
        "break_glass": _("Break-glass: approved at once without approvers; security notified"),
    }.get(d.get("why"), _("Approved: every stage has its approvals"))
    return Entry(e, why, "", "warn" if d.get("why") == "break_glass" else "good")


def _cancelled(e: AuditEvent, d: dict) -> Entry:
    if e.actor_name == e.subject and not d.get("reason"):
        return Entry(e, _("%(who)s withdrew the request") % {"who": _who(e)}, "", "bad")
    if d.get("end_reason"):
        why = wording.ended_because(d["end_reason"])
        if d["end_reason"] == "eligibility_lost":
            why = _("the requester is no longer eligible for the role")
        reason = d.get("reason", "")
        return Entry(e, _("Cancelled: %(why)s") % {"why": why}, "" if reason in why else reason, "bad")
    if e.actor_name == SYSTEM:
        return Entry(e, _("Cancelled"), d.get("reason", ""), "bad")
    return Entry(e, _("Cancelled by %(who)s") % {"who": e.actor_name}, d.get("reason", ""), "bad")


def _expired_request(e: AuditEvent, d: dict) -> Entry:
    return Entry(e, _("Expired: nobody decided in time"), d.get("reason", ""), "bad")


LINK_REFUSALS = {
    "invalid": gettext_lazy("not valid (cut short or altered)"),
    "expired": gettext_lazy("expired"),
    "used": gettext_lazy("already used"),
    "outdated": gettext_lazy("out of date (the request had changed)"),
    "wrong_user": gettext_lazy("opened by someone it was not sent to"),
}


def _link_refused(e: AuditEvent, d: dict) -> Entry:
    why = LINK_REFUSALS.get(d.get("reason"), _("refused"))
    if d.get("summary"):
        count = _count(d.get("count"))
        return Entry(
            e,
            ngettext(
                "%(count)s made-up or altered email link refused from one address within %(window)s",
                "%(count)s made-up or altered email links refused from one address within %(window)s",
                count,
            )
            % {"count": d.get("count"), "window": _seconds(d.get("window_seconds"))},
            _("Links whose signature does not verify are counted per address; this is the first over the limit."),
            "warn",
        )
    opener = _("someone not signed in") if e.actor_name == SYSTEM else e.actor_name
    sent_to = d.get("sent_to") or _("an approver")
    return Entry(
        e,
        _("An email decision link sent to %(who)s was refused: %(why)s") % {"who": sent_to, "why": why},
        _("Opened by %(who)s.") % {"who": opener},
        "warn",
    )


# --- Grants ----------------------------------------------------------------------------------------


def _scheduled(e: AuditEvent, d: dict) -> Entry:
    return Entry(
        e,
        _("Grant #%(pk)s created") % {"pk": e.target_id},
        _("From %(since)s until %(until)s") % {"since": _when(d.get("starts_at")), "until": _when(d.get("expires_at"))},
    )


def _activated(e: AuditEvent, d: dict) -> Entry:
    return Entry(
        e, _("Switched on in the target"), _("Until %(until)s") % {"until": _when(d.get("expires_at"))}, "good"
    )


def _extended(e: AuditEvent, d: dict) -> Entry:
    return Entry(
        e,
        _("Extended"),
        _("Expiry moved from %(old)s to %(new)s") % {"old": _when(d.get("from")), "new": _when(d.get("to"))},
        "good",
    )


def _ending(e: AuditEvent, d: dict) -> Entry:
    why = wording.ended_because(d.get("end_reason"))
    return Entry(e, _("End decided; removal from the target in progress"), _capital(why))


def _connector_failed(e: AuditEvent, d: dict) -> Entry:
    switching_on = d.get("operation") == "grant"
    if d.get("attempt"):
        names = {"attempt": d["attempt"]}
        title = (
            _("The target failed while switching it on (attempt %(attempt)s)") % names
            if switching_on
            else _("The target failed while removing it (attempt %(attempt)s)") % names
        )
    else:
        title = (
            _("The target failed while switching it on") if switching_on else _("The target failed while removing it")
        )
    return Entry(e, title, d.get("error", ""), "bad")


def _revoke_failed(e: AuditEvent, d: dict) -> Entry:
    if d.get("attempt"):
        count = _count(d["attempt"])
        title = ngettext(
            "Removal failed %(count)s time; retried daily, security alerted",
            "Removal failed %(count)s times; retried daily, security alerted",
            count,
        ) % {"count": d["attempt"]}
    else:
        title = _("Removal failed for good; retried daily, security alerted")
    return Entry(e, title, d.get("error", ""), "bad")


def _lag(d: dict) -> str:
    lag = d.get("lag_seconds")
    return _("Removed %(lag)s s after its end") % {"lag": f"{lag:.1f}"} if isinstance(lag, int | float) else ""


def _expired_grant(e: AuditEvent, d: dict) -> Entry:
    if d.get("end_reason") == "not_activated":
        return Entry(e, _("Ended without ever being switched on"), "", "bad")
    return Entry(e, _("Expired and removed from the target"), _lag(d))


def _relinquished(e: AuditEvent, d: dict) -> Entry:
    return Entry(
        e, _("%(who)s gave the role back early (relinquished)") % {"who": d.get("by") or _who(e)}, d.get("comment", "")
    )


def _revoked(e: AuditEvent, d: dict) -> Entry:
    reason = d.get("end_reason")
    by = d.get("by") if d.get("by") not in (None, "", SYSTEM) else ""
    if reason == "revoked":
        title = _("Revoked by %(who)s") % {"who": by} if by else _("Revoked by an administrator")
    elif reason == "risk_signal":
        title = _("Revoked by a risk signal reported by %(who)s") % {"who": by} if by else _("Revoked by a risk signal")
    elif reason == "eligibility_lost":
        title = _("Ended: %(who)s is no longer eligible for %(role)s") % {
            "who": _whose(e),
            "role": e.role or _("the role"),
        }
    elif reason == "role_retired":
        title = (
            _("Ended: the role %(role)s was retired") % {"role": e.role} if e.role else _("Ended: the role was retired")
        )
    else:
        title = _("Ended: %(why)s") % {"why": wording.ended_because(reason) or _("ended early")}
    detail = " · ".join(part for part in (d.get("comment", ""), _lag(d)) if part)
    return Entry(e, title, detail, "bad")


def _failed(e: AuditEvent, d: dict) -> Entry:
    if d.get("end_reason") == "conditions_failed":
        return Entry(e, _("Not activated: the role's conditions did not hold"), _refusals(d), "bad")
    return Entry(e, _("Activation failed for good; the grant never gave access"), d.get("comment", ""), "bad")


def _refusals(d: dict) -> str:
    return "; ".join(
        f"{c.get('condition')}: {c.get('reason')}" for c in d.get("conditions") or [] if isinstance(c, dict)
    )


def _request_refused(e: AuditEvent, d: dict) -> Entry:
    names = {"who": _who(e), "role": _on(e.role, d)}
    if d.get("kind") == "extension":
        title = _("%(who)s was refused more time on %(role)s: the role's conditions did not hold") % names
    else:
        title = _("%(who)s was refused %(role)s: the role's conditions did not hold") % names
    return Entry(e, title, _refusals(d), "bad")


def _reviewed(e: AuditEvent, d: dict) -> Entry:
    return Entry(e, _("%(who)s reviewed the break-glass activation") % {"who": _who(e)}, d.get("note", ""), "good")


def _review_reopened(e: AuditEvent, d: dict) -> Entry:
    previous = d.get("previous") or {}
    names = {"until": _when(d.get("expires_at")), "pk": d.get("request")}
    if d.get("expires_at") and d.get("request"):
        title = _("Review reopened: extended until %(until)s (request #%(pk)s)") % names
    elif d.get("expires_at"):
        title = _("Review reopened: extended until %(until)s") % names
    elif d.get("request"):
        title = _("Review reopened: extended (request #%(pk)s)") % names
    else:
        title = _("Review reopened: extended")
    return Entry(
        e,
        title,
        _("The earlier review by %(who)s covered the activation only") % {"who": previous.get("by") or _("someone")},
        "warn",
    )


# --- Targets: drift and reconciliation -------------------------------------------------------------


def _drift_detected(e: AuditEvent, d: dict) -> Entry:
    return Entry(
        e,
        _("%(who)s has %(role)s in the target without a grant; left in place (the target is not authoritative)")
        % {"who": _whose(e), "role": e.role},
        "",
        "warn",
    )


def _drift_removed(e: AuditEvent, d: dict) -> Entry:
    return Entry(
        e,
        _("%(who)s had %(role)s in the target without a grant; the broker removed it")
        % {"who": _whose(e), "role": e.role},
        "",
        "warn",
    )


def _drift_restored(e: AuditEvent, d: dict) -> Entry:
    return Entry(
        e,
        _("%(who)s's %(role)s access was missing from the target; the broker put it back")
        % {"who": _whose(e), "role": e.role},
        "",
        "warn",
    )


def _reconcile_run(e: AuditEvent, d: dict) -> Entry:
    targets, errors = _count(d.get("targets")), _count(d.get("errors"))
    return Entry(
        e,
        ngettext(
            "%(who)s compared %(count)s target with the grants",
            "%(who)s compared %(count)s targets with the grants",
            targets,
        )
        % {"who": _who(e), "count": targets},
        ngettext(
            "%(removed)s removed, %(detected)s found and left, %(restored)s put back, %(count)s error",
            "%(removed)s removed, %(detected)s found and left, %(restored)s put back, %(count)s errors",
            errors,
        )
        % {
            "removed": d.get("removed", 0),
            "detected": d.get("detected", 0),
            "restored": d.get("restored", 0),
            "count": errors,
        },
    )


def _policy_applied(e: AuditEvent, d: dict) -> Entry:
    changes = d.get("changes") or []
    source = d.get("source") or ""
    how = _(" through the API") if source == "api" else (_(" from %(source)s") % {"source": source} if source else "")
    prune = _(" (retiring roles missing from it)") if d.get("prune") else ""
    return Entry(
        e,
        ngettext(
            "%(who)s applied the policy%(how)s%(prune)s: %(count)s change",
            "%(who)s applied the policy%(how)s%(prune)s: %(count)s changes",
            len(changes),
        )
        % {"who": _who(e), "how": how, "prune": prune, "count": len(changes)},
        "\n".join(changes),
    )


def _eligibility_removed(e: AuditEvent, d: dict) -> Entry:
    names = {"who": d.get("who") or e.subject, "role": e.role, "reason": d.get("reason") or "-"}
    detail = d.get("detail") or ""
    if d.get("policy_patch"):
        detail = (detail + "\n" + _("To make in the policy file: %(patch)s") % {"patch": d["policy_patch"]}).strip()
    return Entry(e, _("%(who)s's eligibility for %(role)s was removed (%(reason)s)") % names, detail, "warn")


_REVIEW_TITLES = {
    "opened": gettext_lazy("Review #%(pk)s of %(who)s's eligibility for %(role)s opened"),
    "escalated": gettext_lazy("Review #%(pk)s of %(who)s's eligibility for %(role)s escalated"),
    "expired": gettext_lazy("Review #%(pk)s of %(who)s's eligibility for %(role)s expired unanswered"),
    "confirmed": gettext_lazy("%(actor)s confirmed %(who)s's eligibility for %(role)s (review #%(pk)s)"),
    "removed": gettext_lazy("%(actor)s removed %(who)s's eligibility for %(role)s (review #%(pk)s)"),
}


def _recertification(verb: str, tone: str = ""):
    def describe(e: AuditEvent, d: dict) -> Entry:
        names = {"pk": e.target_id, "who": d.get("who") or e.subject, "role": e.role, "actor": _who(e)}
        detail = d.get("comment") or ""
        if verb == "expired":
            detail = (
                _("The eligibility was removed.") if d.get("eligibility_removed") else _("The eligibility was kept.")
            )
        return Entry(e, str(_REVIEW_TITLES[verb]) % names, detail, tone)

    return describe


# --- People: accounts, sign-in, second factors, tokens ---------------------------------------------


def _risk_signal(e: AuditEvent, d: dict) -> Entry:
    what = wording.risk_event(d.get("event"))
    parts = []
    if e.actor_name != SYSTEM:
        parts.append(_("Reported by %(who)s.") % {"who": _who(e)})
    parts.append(_("Grants revoked, pending requests cancelled, sessions ended, API tokens revoked."))
    if d.get("reason"):
        parts.append(_("Reason: %(reason)s") % {"reason": d["reason"]})
    return Entry(e, _("Risk signal about %(who)s: %(what)s") % {"who": _whose(e), "what": what}, " ".join(parts), "bad")


def _user_created(e: AuditEvent, d: dict) -> Entry:
    title = (
        _("Account %(who)s created at the first single sign-on")
        if e.channel == "oidc"
        else _("Account %(who)s created by the identity provider (SCIM)")
    )
    return Entry(e, title % {"who": _whose(e)})


def _user_deactivated(e: AuditEvent, d: dict) -> Entry:
    why = (wording.risk_event(d["event"]) if d.get("event") else "") or d.get("reason") or ""
    return Entry(e, _("%(who)s's account was deactivated") % {"who": _whose(e)}, _capital(why), "bad")


def _user_reactivated(e: AuditEvent, d: dict) -> Entry:
    return Entry(e, _("%(who)s's account was reactivated by the identity provider") % {"who": _whose(e)})


def _user_deleted(e: AuditEvent, d: dict) -> Entry:
    return Entry(
        e,
        _("The identity provider deleted %(who)s; the account is kept, deactivated") % {"who": _whose(e)},
        "",
        "bad",
    )


def _user_restored(e: AuditEvent, d: dict) -> Entry:
    return Entry(e, _("The identity provider restored %(who)s's account") % {"who": _whose(e)})


def _user_renamed(e: AuditEvent, d: dict) -> Entry:
    return Entry(
        e, _("Account renamed from %(old)s to %(new)s") % {"old": d.get("from") or "?", "new": d.get("to") or _whose(e)}
    )


def _user_updated(e: AuditEvent, d: dict) -> Entry:
    fields = ", ".join(str(f).replace("_", " ") for f in d.get("fields") or []) or _("nothing")
    names = {"who": _whose(e), "old": d.get("renamed_from"), "fields": fields}
    if d.get("renamed_from"):
        return Entry(e, _("The identity provider updated %(who)s (previously %(old)s): %(fields)s") % names)
    return Entry(e, _("The identity provider updated %(who)s: %(fields)s") % names)


def _changes(d: dict) -> str:
    parts = []
    if d.get("added"):
        parts.append(_("added %(names)s") % {"names": _names(d["added"])})
    if d.get("removed"):
        parts.append(_("removed %(names)s") % {"names": _names(d["removed"])})
    return "; ".join(parts) or _("no change")


def _user_groups_changed(e: AuditEvent, d: dict) -> Entry:
    return Entry(e, _("%(who)s's groups changed") % {"who": _whose(e)}, _capital(_changes(d)))


def _group_created(e: AuditEvent, d: dict) -> Entry:
    return Entry(e, _("Group %(group)s created by the identity provider") % {"group": d.get("group") or _whose(e)})


def _group_renamed(e: AuditEvent, d: dict) -> Entry:
    return Entry(
        e, _("Group renamed from %(old)s to %(new)s") % {"old": d.get("from") or "?", "new": d.get("to") or _whose(e)}
    )


def _group_members_changed(e: AuditEvent, d: dict) -> Entry:
    return Entry(
        e,
        _("Members of group %(group)s changed") % {"group": d.get("group") or _whose(e)},
        _capital(_changes(d)),
    )


def _login(e: AuditEvent, d: dict) -> Entry:
    names = {"who": _who(e)}
    if d.get("admin"):
        return Entry(e, _("%(who)s signed in to the admin with a second factor") % names)
    if d.get("method") == "oidc" or e.channel == "oidc":
        if d.get("created"):
            return Entry(e, _("%(who)s signed in through single sign-on (first time)") % names)
        return Entry(e, _("%(who)s signed in through single sign-on") % names)
    return Entry(e, _("%(who)s signed in") % names)


def _login_throttled(e: AuditEvent, d: dict) -> Entry:
    wait = _seconds(d.get("lockout_seconds"))
    names = {"who": _whose(e), "wait": wait}
    title = (
        _("Too many failed sign-ins as %(who)s: sign-in refused for %(wait)s") % names
        if wait
        else _("Too many failed sign-ins as %(who)s: sign-in refused") % names
    )
    return Entry(e, title, "", "warn")


def _password_reset(e: AuditEvent, d: dict) -> Entry:
    return Entry(e, _("%(who)s chose a new password through a reset link") % {"who": _whose(e)})


def _password_revoked(e: AuditEvent, d: dict) -> Entry:
    return Entry(e, _("%(who)s's password was made unusable") % {"who": _whose(e)}, d.get("reason", ""), "bad")


def _sessions_ended(e: AuditEvent, d: dict) -> Entry:
    return Entry(e, _("Every session of %(who)s was ended") % {"who": _whose(e)}, d.get("reason", ""), "warn")


def _sso_refused(e: AuditEvent, d: dict) -> Entry:
    title = (
        _("A single sign-on answer for %(who)s was refused") % {"who": _whose(e)}
        if e.subject
        else _("A single sign-on answer was refused")
    )
    return Entry(e, title, d.get("detail") or d.get("reason", ""), "warn")


def _step_up(e: AuditEvent, d: dict) -> Entry:
    how = d.get("type") or d.get("method")
    if how == "passkey":
        title = _("%(who)s confirmed a second factor with a passkey")
    elif how == "oidc":
        title = _("%(who)s confirmed a second factor through single sign-on")
    else:
        title = _("%(who)s confirmed a second factor with a one-time code")
    return Entry(e, title % {"who": _who(e)})


STEP_UP_FAILURES = {
    "mfa_invalid": gettext_lazy("the code was wrong or already used"),
    "mfa_required": gettext_lazy("no code was given"),
    "mfa_not_enrolled": gettext_lazy("no second factor is set up"),
    "throttled": gettext_lazy("too many wrong codes"),
}


def _step_up_failed(e: AuditEvent, d: dict) -> Entry:
    why = str(STEP_UP_FAILURES.get(d.get("reason"), ""))
    return Entry(e, _("A second-factor check of %(who)s failed") % {"who": _whose(e)}, _capital(why), "warn")


def _device_added(e: AuditEvent, d: dict) -> Entry:
    kind, first, names = d.get("type"), bool(d.get("first")), {"who": _who(e)}
    if kind == "totp":
        title = (
            _("%(who)s added an authenticator app (their first)") if first else _("%(who)s added an authenticator app")
        )
    elif kind == "passkey":
        title = _("%(who)s added a passkey (their first)") if first else _("%(who)s added a passkey")
    else:
        title = _("%(who)s added a second factor (their first)") if first else _("%(who)s added a second factor")
    return Entry(e, title % names)


def _device_removed(e: AuditEvent, d: dict) -> Entry:
    title = (
        _("%(who)s removed the second factor “%(name)s”") % {"who": _who(e), "name": d["name"]}
        if d.get("name")
        else _("%(who)s removed the second factor") % {"who": _who(e)}
    )
    return Entry(e, title, "", "warn")


def _backup_codes(e: AuditEvent, d: dict) -> Entry:
    count = _count(d.get("count"))
    return Entry(
        e,
        ngettext(
            "%(who)s made %(count)s new backup code; older ones stop working",
            "%(who)s made %(count)s new backup codes; older ones stop working",
            count,
        )
        % {"who": _who(e), "count": count},
    )


def _enrolment_code_issued(e: AuditEvent, d: dict) -> Entry:
    withdrawn = _count(d.get("withdrawn"))
    detail = _("Valid until %(until)s") % {"until": _when(d.get("expires_at"))}
    if withdrawn:
        detail += ngettext("; %(count)s older code withdrawn", "; %(count)s older codes withdrawn", withdrawn) % {
            "count": withdrawn
        }
    return Entry(e, _("%(who)s issued an enrolment code for %(whom)s") % {"who": _who(e), "whom": _whose(e)}, detail)


def _enrolment_code_used(e: AuditEvent, d: dict) -> Entry:
    return Entry(e, _("%(who)s used an enrolment code") % {"who": _whose(e)})


def _enrolment_authorised(e: AuditEvent, d: dict) -> Entry:
    title = (
        _("%(who)s confirmed their password and an enrolment code to set up a first second factor")
        if d.get("enrolment_code")
        else _("%(who)s confirmed their password to set up a first second factor")
    )
    return Entry(e, title % {"who": _whose(e)})


def _enrolment_refused(e: AuditEvent, d: dict) -> Entry:
    title = (
        _("Setting up a first second factor for %(who)s was refused: wrong enrolment code")
        if d.get("reason") == "enrolment_code"
        else _("Setting up a first second factor for %(who)s was refused: wrong password")
    )
    return Entry(e, title % {"who": _whose(e)}, "", "warn")


def _token_created(e: AuditEvent, d: dict) -> Entry:
    scopes = ", ".join(d.get("scopes") or []) or _("no scopes")
    names = {"who": _who(e), "whom": _whose(e), "prefix": d.get("prefix", ""), "name": d.get("name")}
    title = (
        _("%(who)s created API token “%(name)s” pab_%(prefix)s… for %(whom)s") % names
        if d.get("name")
        else _("%(who)s created API token pab_%(prefix)s… for %(whom)s") % names
    )
    return Entry(
        e,
        title,
        _("Scopes: %(scopes)s; expires %(when)s")
        % {"scopes": scopes, "when": _when(d.get("expires_at")) or _("never")},
    )


def _token_revoked(e: AuditEvent, d: dict) -> Entry:
    names = {"prefix": d.get("prefix", ""), "whom": _whose(e), "who": e.actor_name}
    title = (
        _("API token pab_%(prefix)s… of %(whom)s revoked") % names
        if e.actor_name == SYSTEM
        else _("API token pab_%(prefix)s… of %(whom)s revoked by %(who)s") % names
    )
    return Entry(e, title, "", "warn")


# --- The trail itself and the admin ----------------------------------------------------------------


def _exported(e: AuditEvent, d: dict) -> Entry:
    filters = d.get("filters") or {}
    kept = ", ".join(f"{k} {v}" for k, v in sorted(filters.items())) or _("everything")
    fmt = {"csv": "CSV", "jsonl": "JSON Lines"}.get(d.get("format"), d.get("format") or _("a file"))
    return Entry(
        e,
        _("%(who)s exported the audit trail as %(format)s") % {"who": _who(e), "format": fmt},
        _("Filter: %(filter)s") % {"filter": kept},
    )


def _archived(e: AuditEvent, d: dict) -> Entry:
    count = _count(d.get("count"))
    span = (
        _(" #%(first)s to #%(last)s") % {"first": d["first_seq"], "last": d["last_seq"]}
        if d.get("first_seq") and d.get("last_seq")
        else ""
    )
    return Entry(
        e,
        ngettext(
            "%(who)s archived %(count)s event%(span)s out of the database",
            "%(who)s archived %(count)s events%(span)s out of the database",
            count,
        )
        % {"who": _who(e), "count": count, "span": span},
        _("File %(file)s, SHA-256 %(sha)s") % {"file": d["file"], "sha": d.get("sha256", "")} if d.get("file") else "",
    )


def _keyed(e: AuditEvent, d: dict) -> Entry:
    count = _count(d.get("unkeyed_events"))
    return Entry(
        e,
        ngettext(
            "The trail written before the audit key existed was sealed (%(count)s event)",
            "The trail written before the audit key existed was sealed (%(count)s events)",
            count,
        )
        % {"count": count},
        _("Checked when sealed: they verified.")
        if d.get("unkeyed_verified")
        else _("Checked when sealed: they did NOT verify."),
        "" if d.get("unkeyed_verified") else "bad",
    )


OPERATIONS = {
    "add": gettext_lazy("%(who)s added %(what)s in the admin"),
    "change": gettext_lazy("%(who)s changed %(what)s in the admin"),
    "delete": gettext_lazy("%(who)s deleted %(what)s in the admin"),
}


def _admin_changed(e: AuditEvent, d: dict) -> Entry:
    sentence = OPERATIONS.get(d.get("operation"), OPERATIONS["change"])
    what = d.get("object") or _whose(e)
    fields = ", ".join(str(f).replace("_", " ") for f in d.get("fields") or [])
    return Entry(
        e,
        str(sentence) % {"who": _who(e), "what": what},
        _("Fields: %(fields)s") % {"fields": fields} if fields else "",
    )


DESCRIBE: dict[str, Callable[[AuditEvent, dict], Entry]] = {
    "request.created": _request_created,
    "request.refused": _request_refused,
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
