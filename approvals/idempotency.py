"""``Idempotency-Key`` for creating requests: a retry never makes a second request.

- Same user, same key, same input (the validated input with the defaults of the fields left out
  applied, so that `"ticket": ""` and no ticket are the same request; the one-time code left out:
  a retry must be free to bring a fresh one) → the first answer again, with
  ``Idempotent-Replayed: true``.
- Same key, other input → 409 ``idempotency_key_reused``.
- Only successful answers are kept. A failed attempt (invalid input, not eligible, wrong code)
  leaves the key free, so the client may fix the request and retry with the same key.
- Keys are kept for KEY_TTL; an older key counts as new.

Concurrency: the key row is inserted in the same transaction as the request, before it, so a
second attempt with the same key waits on the unique constraint until the first commits, and
then replays its answer (or, if the first failed and rolled back, goes ahead itself).
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Callable
from datetime import timedelta

from django.contrib.auth.models import AbstractBaseUser
from django.db import IntegrityError, transaction
from django.utils import timezone

from approvals.models import IdempotencyKey
from broker.errors import Conflict, Invalid

KEY_TTL = timedelta(hours=24)
HEADER = "Idempotency-Key"
_KEY = re.compile(r"^[\x21-\x7e]{1,200}$")  # visible ASCII, as header values safely are


def clean_key(raw: str | None) -> str | None:
    if raw is None:
        return None
    key = raw.strip()
    if not _KEY.match(key):
        raise Invalid(
            "the Idempotency-Key header must be 1 to 200 visible ASCII characters",
            fields={HEADER: ["1 to 200 visible ASCII characters, e.g. a UUID."]},
        )
    return key


def fingerprint(body: dict, *, ignore: tuple[str, ...] = ("otp",)) -> str:
    """SHA-256 of the validated input as canonical JSON (times in UTC, as validation leaves them)."""
    content = {name: value for name, value in body.items() if name not in ignore}
    text = json.dumps(content, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str)
    return hashlib.sha256(text.encode()).hexdigest()


def _stored(user: AbstractBaseUser, key: str, print_: str) -> IdempotencyKey | None:
    row = IdempotencyKey.objects.filter(user=user, key=key).first()
    if row is None:
        return None
    if row.created_at <= timezone.now() - KEY_TTL:
        row.delete()
        return None
    if row.fingerprint != print_:
        raise Conflict(
            "this Idempotency-Key was already used with a different body; use a new key for a new request",
            code="idempotency_key_reused",
        )
    return row


def replay(user: AbstractBaseUser, key: str | None, print_: str) -> IdempotencyKey | None:
    """The stored answer for this key, checked before anything else happens (no code is spent)."""
    return _stored(user, key, print_) if key else None


def run_once(
    user: AbstractBaseUser, key: str | None, print_: str, action: Callable[[], tuple[int, dict]]
) -> tuple[int, dict, bool]:
    """Run ``action`` (returning status and body) once per key; return (status, body, replayed)."""
    if not key:
        status, body = action()
        return status, body, False
    now = timezone.now()
    with transaction.atomic():
        try:
            with transaction.atomic():
                row = IdempotencyKey.objects.create(
                    user=user, key=key, fingerprint=print_, status_code=0, response={}, created_at=now
                )
        except IntegrityError:
            earlier = _stored(user, key, print_)
            if earlier is None:  # expired and just deleted: this attempt goes ahead
                row = IdempotencyKey.objects.create(
                    user=user, key=key, fingerprint=print_, status_code=0, response={}, created_at=now
                )
            else:
                return earlier.status_code, earlier.response, True
        status, body = action()
        row.status_code, row.response = status, body
        row.save(update_fields=["status_code", "response"])
        # Opportunistic clean-up of this user's old keys keeps the table small without a task.
        IdempotencyKey.objects.filter(user=user, created_at__lte=now - KEY_TTL).delete()
    return status, body, False
