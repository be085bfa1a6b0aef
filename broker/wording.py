"""What people read for the broker's codes: a grant's state, why it ended, the channel of an event.

One place for the portal's badges, the timelines (broker/audit/timeline.py) and the emails
(notifications/messages.py), so that an end reason reads the same wherever it is shown. The codes
themselves stay what the API and the audit trail carry (``end_reason: "relinquished"``); only
what people read lives here.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class EndReason:
    badge: str  # the grant's state once it ended for this reason
    why: str  # said of the grant by anyone: "ended because ..."
    to_holder: str  # said to the holder, in their emails


END_REASONS: dict[str, EndReason] = {
    "expiry": EndReason("expired", "its time ran out", "its time was up"),
    "relinquished": EndReason("relinquished", "the holder gave it back early", "you gave it back early"),
    "revoked": EndReason("revoked", "an administrator revoked it", "an administrator revoked it"),
    "risk_signal": EndReason(
        "revoked (risk signal)",
        "a risk signal about the holder's account revoked it",
        "a security signal about your account revoked it",
    ),
    "eligibility_lost": EndReason(
        "ended (no longer eligible)",
        "the holder is no longer eligible for the role",
        "you are no longer eligible for the role",
    ),
    "role_retired": EndReason("ended (role retired)", "the role was retired", "the role was retired"),
    "activation_failed": EndReason(
        "activation failed",
        "it could not be switched on in the target",
        "it could not be switched on in the target system",
    ),
    "conditions_failed": EndReason(
        "not activated (conditions)",
        "the role's conditions did not hold when it was due to start",
        "the role's conditions did not hold when it was due to start",
    ),
    "not_activated": EndReason(
        "ended (never switched on)",
        "it was never switched on before its end",
        "it was never switched on before its end",
    ),
}

# A grant's state while it has not ended (and the ended states when the reason is unknown).
GRANT_STATES: dict[str, str] = {
    "scheduled": "scheduled",
    "active": "active",
    "revoking": "ending",
    "expired": "expired",
    "revoked": "revoked",
    "revoke_failed": "removal failing",
    "failed": "activation failed",
}

REQUEST_STATES: dict[str, str] = {
    "pending": "pending",
    "approved": "approved",
    "denied": "denied",
    "cancelled": "cancelled",
    "expired": "expired",
}

# The events of a risk signal (POST signals/), said of the person.
RISK_EVENTS: dict[str, str] = {
    "account_disabled": "the account was disabled",
    "credential_compromised": "the credentials were compromised",
    "risk_high": "the account is at high risk",
}

CHANNELS: dict[str, str] = {
    "portal": "in the portal",
    "api": "through the API",
    "email": "by email link",
    "worker": "by the broker",
    "cli": "on the command line",
    "oidc": "through single sign-on",
    "scim": "through SCIM provisioning",
}


def end_reason(code: str | None) -> EndReason | None:
    return END_REASONS.get(code or "")


def ended_because(code: str | None) -> str:
    """Why a grant ended, for anyone: "the holder gave it back early"; "" when unknown or none."""
    reason = end_reason(code)
    return reason.why if reason else (code or "").replace("_", " ")


def ended_to_holder(code: str | None) -> str:
    reason = end_reason(code)
    return reason.to_holder if reason else (code or "it ended").replace("_", " ")


def grant_state(status: str, end_reason_code: str | None = None) -> str:
    """The badge of a grant: its state, and once it has ended (expired, revoked), why."""
    if status in ("expired", "revoked") and end_reason_code in END_REASONS:
        return END_REASONS[end_reason_code].badge
    return GRANT_STATES.get(status, status.replace("_", " "))


def request_state(status: str) -> str:
    return REQUEST_STATES.get(status, status.replace("_", " "))


def risk_event(code: str | None) -> str:
    return RISK_EVENTS.get(code or "", (code or "a risk").replace("_", " "))


def channel(code: str) -> str:
    return CHANNELS.get(code, code)
