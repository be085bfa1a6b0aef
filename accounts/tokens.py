"""Personal API tokens: shown once, stored as a keyed hash, scoped, expiring, revocable.

A token looks like ``pab_<8-char prefix>_<secret>``. The prefix is stored in clear so people can
tell their tokens apart; the whole token is stored only as HMAC-SHA256 keyed with SECRET_KEY, a
fast hash that is safe here because the secret part carries 256 bits of entropy (no password
hashing needed per request). Rotating SECRET_KEY therefore invalidates every token.
"""

from __future__ import annotations

import hmac
import secrets
from datetime import datetime, timedelta

from django.contrib.auth import get_user_model
from django.contrib.auth.models import AbstractBaseUser
from django.db import transaction
from django.utils import timezone
from django.utils.crypto import salted_hmac

from accounts import mfa
from accounts.models import ApiToken
from broker import audit
from broker.errors import Conflict, Invalid, NotAllowed, NotFound

TOKEN_PREFIX = "pab_"  # noqa: S105 - a label, not a secret
DEFAULT_SCOPES = ("read", "request", "approve")
ALL_SCOPES = tuple(ApiToken.Scope.values)
MAX_LIFETIME = timedelta(days=366)
# Live (unrevoked, unexpired) tokens one person may hold; a leaked token cannot mint without end.
MAX_LIVE_TOKENS = 50


def digest(token: str) -> str:
    return salted_hmac("broker.api-token", token, algorithm="sha256").hexdigest()


def clean_scopes(scopes) -> list[str]:
    if isinstance(scopes, str):
        scopes = [s.strip() for s in scopes.split(",") if s.strip()]
    if not scopes:
        raise Invalid("give at least one scope", fields={"scopes": [f"Choose from {', '.join(ALL_SCOPES)}."]})
    unknown = sorted(set(scopes) - set(ALL_SCOPES))
    if unknown:
        raise Invalid(
            f"unknown scope(s): {', '.join(unknown)}", fields={"scopes": [f"Choose from {', '.join(ALL_SCOPES)}."]}
        )
    return [s for s in ALL_SCOPES if s in scopes]


def token_create(
    *,
    user: AbstractBaseUser,
    scopes=DEFAULT_SCOPES,
    expires_in: timedelta | None = None,
    name: str = "",
    via: str,
    actor: AbstractBaseUser | None = None,
    ip: str | None = None,
    now: datetime | None = None,
) -> tuple[ApiToken, str]:
    """Create a token; return the row and the token text, which is never stored or shown again."""
    now = now or timezone.now()
    scopes = clean_scopes(scopes)
    if "admin" in scopes and not user.is_staff:
        raise Invalid("only administrators can hold the admin scope", fields={"scopes": ["admin needs a staff user."]})
    if expires_in is not None and not timedelta(0) < expires_in <= MAX_LIFETIME:
        raise Invalid("a token expires within 366 days", fields={"expires_in": ["Between 1s and 366d."]})
    name = (name or "").strip()[:100]
    prefix = secrets.token_hex(4)
    text = f"{TOKEN_PREFIX}{prefix}_{secrets.token_urlsafe(32)}"
    with transaction.atomic():
        token = ApiToken.objects.create(
            user=user,
            name=name,
            prefix=prefix,
            digest=digest(text),
            scopes=scopes,
            expires_at=now + expires_in if expires_in else None,
        )
        audit.record(
            "token.created",
            actor=actor or user,
            target=token,
            via=via,
            ip=ip,
            subject=user.get_username(),
            data={"prefix": prefix, "scopes": scopes, "expires_at": token.expires_at, "name": name},
        )
    return token, text


def token_create_for_self(
    *,
    user: AbstractBaseUser,
    scopes=DEFAULT_SCOPES,
    expires_in: timedelta | None = None,
    name: str = "",
    parent: ApiToken | None = None,
    mfa_at: datetime | None,
    via: str,
    ip: str | None = None,
    now: datetime | None = None,
) -> tuple[ApiToken, str]:
    """A person makes a token for themselves through the API (the CLI is for operators).

    A new credential is a sensitive step: it needs a fresh second factor (``mfa_at``). Made with
    another token (``parent``), it can hold no scope the parent lacks and cannot outlive it, so a
    leaked token cannot turn itself into a stronger or longer-lived one.
    """
    now = now or timezone.now()
    mfa.ensure_fresh(mfa_at, action="creating an API token", now=now)
    scopes = clean_scopes(scopes)
    if parent is not None:
        extra = [s for s in scopes if s not in parent.scopes]
        if extra:
            raise NotAllowed(
                f"a token cannot create a token with scopes it lacks itself: {', '.join(extra)}",
                code="scope_escalation",
            )
        if parent.expires_at is not None:
            limit = parent.expires_at - now
            if expires_in is None or expires_in > limit:
                raise Invalid(
                    "a token made with a token cannot outlive it",
                    fields={"expires_in_seconds": [f"At most {max(0, int(limit.total_seconds()))} s."]},
                )
    with transaction.atomic():
        # Count and create under a lock on the person's row: two creations at once would otherwise
        # both count 49 and both create, passing the cap. Creations of one person queue here;
        # nobody else waits.
        get_user_model().objects.select_for_update().filter(pk=user.pk).values_list("pk", flat=True).first()
        live = ApiToken.objects.filter(user=user, revoked_at__isnull=True).exclude(expires_at__lte=now).count()
        if live >= MAX_LIVE_TOKENS:
            raise Conflict(f"you already have {live} live tokens; revoke some first", code="too_many_tokens")
        return token_create(user=user, scopes=scopes, expires_in=expires_in, name=name, via=via, ip=ip, now=now)


def token_authenticate(text: str, *, now: datetime | None = None) -> ApiToken | None:
    """The live token row for this text, or None. One indexed query; no password hashing."""
    if not text.startswith(TOKEN_PREFIX) or len(text) > 200:
        return None
    now = now or timezone.now()
    wanted = digest(text)
    token = ApiToken.objects.select_related("user").filter(digest=wanted).first()
    if token is None or not hmac.compare_digest(token.digest, wanted):
        return None
    if token.revoked_at is not None or (token.expires_at is not None and token.expires_at <= now):
        return None
    if not token.user.is_active:
        return None
    return token


def token_revoke(
    *,
    token_id: int,
    owner: AbstractBaseUser,
    actor: AbstractBaseUser | None = None,
    via: str,
    ip: str | None = None,
    now: datetime | None = None,
    by_system: bool = False,
) -> ApiToken:
    """Revoke one of owner's tokens (by the owner, or by ``actor``, an administrator; ``by_system``:
    by the broker itself, such as a SCIM leaver, written with no actor)."""
    now = now or timezone.now()
    with transaction.atomic():
        token = ApiToken.objects.select_for_update().filter(pk=token_id, user=owner, revoked_at__isnull=True).first()
        if token is None:
            raise NotFound(f"token {token_id} does not exist")
        token.revoked_at = now
        token.save(update_fields=["revoked_at"])
        audit.record(
            "token.revoked",
            actor=None if by_system else (actor or owner),
            target=token,
            via=via,
            ip=ip,
            subject=owner.get_username(),
            data={"prefix": token.prefix},
        )
    return token
