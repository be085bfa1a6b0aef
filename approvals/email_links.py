"""Approver email links: a signed, single-use token per approver, request and request version.

The token (django.core.signing, salted, keyed by SECRET_KEY) names the request, the approver and
the request's ``version`` when the email was sent; the database keeps only its SHA-256. A link
never decides by itself: opening it shows a page; the decision is a POST from the approver's own
signed-in session after a fresh step-up (approvals/email_views.py), taken here with the request
row locked, so that a link decides at most once and only on the version its email described.
"""

from __future__ import annotations

import hashlib
import logging
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime

from django.conf import settings
from django.contrib.auth.models import AbstractBaseUser
from django.core import signing
from django.db import transaction
from django.utils import timezone
from django.utils.translation import gettext_lazy as _

from accounts import mfa, ratelimit
from approvals import services
from approvals.models import AccessRequest, ApprovalLink
from broker import audit
from broker.errors import Conflict
from broker.models import Channel

SALT = "approvals.email-link"
UNSIGNED_SCOPE = "email-link"

log = logging.getLogger(__name__)


class Outcome:
    OK = "ok"
    INVALID = "invalid"  # tampered, truncated, or not one we issued
    EXPIRED = "expired"  # past the request's TTL
    USED = "used"  # already decided through this link
    OUTDATED = "outdated"  # the request changed (another decision, withdrawn, expired) since the email
    WRONG_USER = "wrong_user"  # opened in someone else's session


class LinkRefused(Conflict):
    def __init__(self, reason: str, detail: str):
        super().__init__(detail, code=f"link_{reason}")
        self.reason = reason


@dataclass(frozen=True)
class LinkCheck:
    outcome: str
    link: ApprovalLink | None = None
    # False when the token's signature does not verify: anyone can make those up, by the thousand.
    signed: bool = True

    @property
    def ok(self) -> bool:
        return self.outcome == Outcome.OK


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def link_issue(*, request: AccessRequest, approver: AbstractBaseUser, now: datetime | None = None) -> str:
    """A new link token for this approver and the request as it is now; only its hash is stored."""
    now = now or timezone.now()
    payload = {
        "r": request.pk,
        "a": approver.pk,
        "v": request.version,
        "e": int(request.expires_at.timestamp()),
        "n": secrets.token_urlsafe(12),
    }
    token = signing.dumps(payload, salt=SALT)
    ApprovalLink.objects.create(
        request=request,
        approver=approver,
        version=request.version,
        token_hash=token_hash(token),
        created_at=now,
        expires_at=request.expires_at,
    )
    return token


def _payload(token: str) -> dict | None:
    if not token or len(token) > 500:
        return None
    try:
        payload = signing.loads(token, salt=SALT)
    except signing.BadSignature:
        return None
    if not isinstance(payload, dict) or not all(isinstance(payload.get(k), int) for k in ("r", "a", "v", "e")):
        return None
    return payload


def link_check(token: str, *, now: datetime | None = None) -> LinkCheck:
    """What a link is worth now (no locks; link_decide checks again under lock)."""
    now = now or timezone.now()
    payload = _payload(token)
    if payload is None:
        return LinkCheck(Outcome.INVALID, signed=False)
    link = (
        ApprovalLink.objects.select_related("request", "request__role", "request__requester", "approver")
        .filter(token_hash=token_hash(token))
        .first()
    )
    if link is None or (link.request_id, link.approver_id, link.version) != (payload["r"], payload["a"], payload["v"]):
        return LinkCheck(Outcome.INVALID)
    if link.used_at is not None:
        return LinkCheck(Outcome.USED, link)
    if now >= min(link.expires_at, datetime.fromtimestamp(payload["e"], tz=UTC)):
        return LinkCheck(Outcome.EXPIRED, link)
    if link.request.version != link.version or link.request.status != AccessRequest.Status.PENDING:
        return LinkCheck(Outcome.OUTDATED, link)
    return LinkCheck(Outcome.OK, link)


REFUSAL_TEXT = {
    Outcome.INVALID: _("This link is not valid. It may have been cut short or altered; open it again from the email."),
    Outcome.EXPIRED: _("This link has expired: the request was not decided within its time limit."),
    Outcome.USED: _("This link has already been used to decide. Each link works once."),
    Outcome.OUTDATED: _(
        "This request has changed since this email was sent (another decision, or it was "
        "withdrawn or expired), so this link no longer works. Check your approvals inbox for the current state."
    ),
    Outcome.WRONG_USER: _("This link was sent to someone else. Sign out and sign in as the person it was sent to."),
}


def record_refusal(
    reason: str, *, link: ApprovalLink | None, user: AbstractBaseUser | None, ip: str | None, method: str
) -> None:
    """Audit a refused link in a transaction of its own (nothing else changed)."""
    actor = user if user is not None and user.is_authenticated else None
    target = ("request", link.request_id) if link is not None else None
    data = {"reason": reason, "method": method}
    if link is not None:
        data.update({"link": link.pk, "sent_to": link.approver.get_username(), "version": link.version})
    with transaction.atomic():
        audit.record(
            "approval_link.refused",
            actor=actor,
            target=target,
            via=Channel.EMAIL,
            ip=ip,
            role=link.request.role.slug if link is not None else "",
            subject=link.request.requester.get_username() if link is not None else "",
            data=data,
        )


def record_unsigned(*, ip: str | None, method: str) -> int | None:
    """Count a link whose signature does not verify, per client address; audit one summary per window.

    Such links are made up, cut short or altered: anyone can send them without limit, so each one
    is only logged and counted (accounts.ratelimit). Past ``EMAIL_LINK_FAILURE_LIMIT`` in the
    window, the first one over writes one ``approval_link.refused`` event with the count, and the
    answer is the seconds to wait (429); before that, None.
    """
    limit = settings.EMAIL_LINK_FAILURE_LIMIT
    window = settings.EMAIL_LINK_FAILURE_WINDOW.total_seconds()
    ident = ip or "unknown"
    count = ratelimit.count_failure(UNSIGNED_SCOPE, ident, window=window)
    log.warning("approver email link with a bad signature from %s (%s in this window)", ident, count)
    if count <= limit:
        return None
    if count == limit + 1:
        with transaction.atomic():
            audit.record(
                "approval_link.refused",
                actor=None,
                target=None,
                via=Channel.EMAIL,
                ip=ip,
                data={
                    "reason": Outcome.INVALID,
                    "method": method,
                    "count": count,
                    "limit": limit,
                    "window_seconds": int(window),
                    "summary": True,
                },
            )
    return ratelimit.retry_after(UNSIGNED_SCOPE, ident, limit=limit, window=window) or 1


def link_decide(
    *,
    token: str,
    user: AbstractBaseUser,
    approve: bool,
    comment: str = "",
    mfa_at: datetime | None,
    ip: str | None = None,
    now: datetime | None = None,
) -> AccessRequest:
    """Approve or deny through a link, as its approver, with a fresh step-up. Uses the link up.

    Raises LinkRefused (invalid, used, expired, outdated, wrong user), NotAllowed (no fresh
    step-up) or the errors of request_approve / request_deny.
    """
    now = now or timezone.now()
    check = link_check(token, now=now)
    if not check.ok:
        raise LinkRefused(check.outcome, REFUSAL_TEXT[check.outcome])
    if check.link.approver_id != user.pk:
        raise LinkRefused(Outcome.WRONG_USER, REFUSAL_TEXT[Outcome.WRONG_USER])
    mfa.ensure_fresh(mfa_at, action="deciding by email link", now=now)
    with transaction.atomic():
        # Lock order as everywhere: the request first, then what hangs off it.
        req = AccessRequest.objects.select_for_update(of=("self",)).get(pk=check.link.request_id)
        link = ApprovalLink.objects.select_for_update().get(pk=check.link.pk)
        if link.used_at is not None:
            raise LinkRefused(Outcome.USED, REFUSAL_TEXT[Outcome.USED])
        if req.version != link.version:
            raise LinkRefused(Outcome.OUTDATED, REFUSAL_TEXT[Outcome.OUTDATED])
        if approve:
            req = services.request_approve(
                request_id=req.pk, approver=user, comment=comment, via=Channel.EMAIL, ip=ip, mfa_at=mfa_at, now=now
            )
        else:
            req = services.request_deny(
                request_id=req.pk, approver=user, comment=comment, via=Channel.EMAIL, ip=ip, mfa_at=mfa_at, now=now
            )
        link.used_at = now
        link.used_for = "approve" if approve else "deny"
        link.save(update_fields=["used_at", "used_for"])
    return req
