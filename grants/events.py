"""What a change of a grant is called: the events connectors are told of, and the final status and
audit action of an ended grant. Shared by the one-grant services and the batches."""

from __future__ import annotations

import uuid
from datetime import datetime

from django.contrib.auth.models import AbstractBaseUser

from grants.connectors import AccessEvent
from grants.models import Grant

S = Grant.Status
R = Grant.EndReason

# What a confirmed removal turns a grant into, by why it ended (anything else: revoked).
FINAL_STATUS = {
    R.EXPIRY: S.EXPIRED,
    R.NOT_ACTIVATED: S.EXPIRED,
    R.ACTIVATION_FAILED: S.FAILED,
    R.CONDITIONS_FAILED: S.FAILED,
}
# The audit action written when the removal is confirmed, by why the grant ended (else grant.revoked).
FINAL_ACTION = {
    R.EXPIRY: "grant.expired",
    R.NOT_ACTIVATED: "grant.expired",
    R.RELINQUISHED: "grant.relinquished",
    R.ACTIVATION_FAILED: "grant.failed",
    R.CONDITIONS_FAILED: "grant.failed",
}


def facts(grant: Grant) -> dict:
    """The role and the holder, as every audit event about a grant names them."""
    return {"role": grant.role.slug, "subject": grant.user.get_username()}


def resource_of(grant: Grant) -> dict:
    """The grant's resource, for the payload of its audit events (nothing for a role without resources)."""
    return {"resource": grant.resource} if grant.resource else {}


def ended_data(grant: Grant) -> dict:
    """The payload of the audit event of a confirmed end."""
    lag = (grant.ended_at - grant.expires_at).total_seconds() if grant.end_reason == R.EXPIRY else None
    return {
        "end_reason": grant.end_reason,
        "comment": grant.end_comment,
        "by": grant.ended_by.get_username() if grant.ended_by else "system",
        "expires_at": grant.expires_at,
        "ended_at": grant.ended_at,
        "lag_seconds": round(lag, 3) if lag is not None else None,
        "attempts": grant.attempts + 1,
        **resource_of(grant),
    }


_EVENT_KEYS = uuid.UUID("5b0c3f44-5a35-4d8e-9d43-1d6f0a8e7c21")


def event_key(*parts: object) -> str:
    """An idempotency key for connectors: the same parts give the same key, on every retry."""
    return str(uuid.uuid5(_EVENT_KEYS, ":".join(str(p) for p in parts)))


def grant_event(grant: Grant, kind: str, *, operation: str | None = None) -> AccessEvent:
    """What a connector is told of an operation on a grant; its key is the same on every retry of it."""
    operation = operation or ("activate" if kind == "grant.activated" else "revoke")
    return AccessEvent(
        type=kind,
        key=event_key(grant.pk, grant.created_at.isoformat(), operation),
        username=grant.user.get_username(),
        role=grant.role.slug,
        grant_id=grant.pk,
        starts_at=grant.starts_at,
        expires_at=grant.expires_at,
        justification=grant.request.justification if grant.request_id else "",
        end_reason=grant.end_reason,
        resource=grant.resource,
    )


def drift_event(role, user: AbstractBaseUser, now: datetime, *, resource: str = "") -> AccessEvent:
    """Reconciliation removing standing access that no grant explains (authoritative targets)."""
    return AccessEvent(
        type="grant.revoked",
        key=event_key("drift", role.slug, *([resource] if resource else []), user.pk, now.isoformat()),
        username=user.get_username(),
        role=role.slug,
        end_reason="drift",
        resource=resource,
    )
