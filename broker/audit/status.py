"""Incremental verification: the scheduled walk's stored outcome, and the chain status pages show.

The scheduled task walks the whole chain and stores where it got to (``AuditVerification``: the
last event that verified, its hash, when, and the break if there was one), with a MAC under the
audit key. A page then verifies only the events after that point, starting from it (that event
must still have the stored hash), and at most ``PAGE_VERIFY_LIMIT`` of them: past that it says how
many are waiting for the next scheduled walk instead of making someone wait a minute.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from django.db import IntegrityError, transaction
from django.utils import timezone

from broker.audit.boundary import current_boundary
from broker.audit.chain import Verification, verify
from broker.audit.keys import GENESIS, Keyring, canonical_time, record_mac_ok, sign_record
from broker.models import AuditHead, AuditVerification

# About a fifth of a second of walking (bench/audit_verify.py): what a page may spend.
PAGE_VERIFY_LIMIT = 20_000
_TYPE = "audit-verification"


def _signed(row: AuditVerification) -> dict:
    return {
        "type": _TYPE,
        "seq": row.seq,
        "hash": row.hash,
        "at": canonical_time(row.at),
        "ok": row.ok,
        "checked": row.checked,
        "broken_seq": row.broken_seq,
        "reason": row.reason,
        "key_id": row.key_id,
    }


def store_verification(result: Verification, *, now: datetime | None = None) -> AuditVerification:
    """Record the outcome of a full walk (the scheduled task calls this)."""
    keyring = Keyring.from_settings()
    row = AuditVerification(
        pk=1,
        seq=result.head_seq,
        hash=result.head_hash,
        at=now or timezone.now(),
        ok=result.ok,
        checked=result.checked,
        broken_seq=result.broken_seq,
        reason=result.reason,
        key_id=keyring.key_id,
    )
    row.mac = sign_record(keyring, _signed(row))
    fields = {f.attname: getattr(row, f.attname) for f in AuditVerification._meta.concrete_fields if not f.primary_key}
    if not AuditVerification.objects.filter(pk=1).update(**fields):
        try:
            with transaction.atomic():
                row.save(force_insert=True)
        except IntegrityError:  # another walk stored its outcome at the same moment: the later one wins
            AuditVerification.objects.filter(pk=1).update(**fields)
    return row


def stored_verification() -> tuple[AuditVerification | None, bool]:
    """The stored outcome and whether its MAC verifies (False: it was written without the key)."""
    row = AuditVerification.objects.filter(pk=1).first()
    if row is None:
        return None, True
    return row, record_mac_ok(Keyring.from_settings(), _signed(row), row.key_id, row.mac)


@dataclass(frozen=True)
class ChainStatus:
    ok: bool
    verified_seq: int  # every event up to this one verifies
    head_seq: int  # the newest event
    head_hash: str
    walked_now: int = 0  # events this call walked
    waiting: int = 0  # newer events left to the scheduled walk (too many to walk now)
    full_walk_at: datetime | None = None  # when the scheduled walk last ran
    broken_seq: int | None = None
    reason: str = ""


def chain_status(*, limit: int | None = None) -> ChainStatus:
    """The chain's state for a page: the stored walk, plus the newer events (up to ``limit``) verified now.

    Costs four queries and at most ``limit`` + 1 rows, however long the trail is.
    """
    limit = PAGE_VERIFY_LIMIT if limit is None else limit
    stored, authentic = stored_verification()
    head_seq, head_hash = AuditHead.objects.filter(pk=1).values_list("seq", "hash").first() or (0, GENESIS)
    at = stored.at if stored else None
    if stored is not None and not authentic:
        return ChainStatus(
            ok=False,
            verified_seq=0,
            head_seq=head_seq,
            head_hash=head_hash,
            full_walk_at=at,
            reason="the stored outcome of the scheduled verification does not carry a valid MAC: it was "
            "changed in the database (or the audit key was changed); run manage.py audit_verify",
        )
    if stored is not None and not stored.ok:
        return ChainStatus(
            ok=False,
            verified_seq=stored.seq,
            head_seq=head_seq,
            head_hash=head_hash,
            full_walk_at=at,
            broken_seq=stored.broken_seq,
            reason=stored.reason,
        )
    since = (stored.seq, stored.hash) if stored is not None else (0, GENESIS)
    edge = current_boundary()
    if edge.ok and since[0] < edge.seq:
        since = (edge.seq, edge.hash)  # older events were archived (verified first): start after them
    if head_seq - since[0] > limit:
        return ChainStatus(
            ok=True,
            verified_seq=since[0],
            head_seq=head_seq,
            head_hash=head_hash,
            waiting=head_seq - since[0],
            full_walk_at=at,
        )
    result = verify(since=since if since[0] > edge.seq else None)
    return ChainStatus(
        ok=result.ok,
        verified_seq=result.head_seq,
        head_seq=head_seq,
        head_hash=result.head_hash if result.ok else head_hash,
        walked_now=result.checked,
        full_walk_at=at,
        broken_seq=result.broken_seq,
        reason=result.reason,
    )
