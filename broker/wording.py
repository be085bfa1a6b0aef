"""What people read for the broker's codes: a grant's state, why it ended, the channel of an event.

One place for the portal's badges, the timelines (broker/audit/timeline.py) and the emails
(notifications/messages.py), so that an end reason reads the same wherever it is shown. The codes
themselves stay what the API and the audit trail carry (``end_reason: "relinquished"``); only
what people read lives here, translatable (the functions answer in the active language).
"""

from __future__ import annotations

from dataclasses import dataclass

from django.utils.functional import Promise
from django.utils.translation import gettext_lazy as _


@dataclass(frozen=True)
class EndReason:
    badge: Promise  # the grant's state once it ended for this reason
    why: Promise  # said of the grant by anyone: "ended because ..."
    to_holder: Promise  # said to the holder, in their emails


END_REASONS: dict[str, EndReason] = {
    "expiry": EndReason(_("expired"), _("its time ran out"), _("its time was up")),
    "relinquished": EndReason(_("relinquished"), _("the holder gave it back early"), _("you gave it back early")),
    "revoked": EndReason(_("revoked"), _("an administrator revoked it"), _("an administrator revoked it")),
    "risk_signal": EndReason(
        _("revoked (risk signal)"),
        _("a risk signal about the holder's account revoked it"),
        _("a security signal about your account revoked it"),
    ),
    "eligibility_lost": EndReason(
        _("ended (no longer eligible)"),
        _("the holder is no longer eligible for the role"),
        _("you are no longer eligible for the role"),
    ),
    "role_retired": EndReason(_("ended (role retired)"), _("the role was retired"), _("the role was retired")),
    "activation_failed": EndReason(
        _("activation failed"),
        _("it could not be switched on in the target"),
        _("it could not be switched on in the target system"),
    ),
    "not_activated": EndReason(
        _("ended (never switched on)"),
        _("it was never switched on before its end"),
        _("it was never switched on before its end"),
    ),
}

# A grant's state while it has not ended (and the ended states when the reason is unknown).
GRANT_STATES: dict[str, Promise] = {
    "scheduled": _("scheduled"),
    "active": _("active"),
    "revoking": _("ending"),
    "expired": _("expired"),
    "revoked": _("revoked"),
    "revoke_failed": _("removal failing"),
    "failed": _("activation failed"),
}

REQUEST_STATES: dict[str, Promise] = {
    "pending": _("pending"),
    "approved": _("approved"),
    "denied": _("denied"),
    "cancelled": _("cancelled"),
    "expired": _("expired"),
}

# The events of a risk signal (POST signals/), said of the person.
RISK_EVENTS: dict[str, Promise] = {
    "account_disabled": _("the account was disabled"),
    "credential_compromised": _("the credentials were compromised"),
    "risk_high": _("the account is at high risk"),
}

CHANNELS: dict[str, Promise] = {
    "portal": _("in the portal"),
    "api": _("through the API"),
    "email": _("by email link"),
    "worker": _("by the broker"),
    "cli": _("on the command line"),
    "oidc": _("through single sign-on"),
    "scim": _("through SCIM provisioning"),
}


def end_reason(code: str | None) -> EndReason | None:
    return END_REASONS.get(code or "")


def ended_because(code: str | None) -> str:
    """Why a grant ended, for anyone: "the holder gave it back early"; "" when unknown or none."""
    reason = end_reason(code)
    return str(reason.why) if reason else (code or "").replace("_", " ")


def ended_to_holder(code: str | None) -> str:
    reason = end_reason(code)
    return str(reason.to_holder) if reason else (code or "").replace("_", " ") or _("it ended")


def grant_state(status: str, end_reason_code: str | None = None) -> str:
    """The badge of a grant: its state, and once it has ended (expired, revoked), why."""
    if status in ("expired", "revoked") and end_reason_code in END_REASONS:
        return str(END_REASONS[end_reason_code].badge)
    return str(GRANT_STATES.get(status, status.replace("_", " ")))


def request_state(status: str) -> str:
    return str(REQUEST_STATES.get(status, status.replace("_", " ")))


def risk_event(code: str | None) -> str:
    return str(RISK_EVENTS.get(code or "", (code or "").replace("_", " ") or _("a risk")))


def channel(code: str) -> str:
    return str(CHANNELS.get(code, code))
