"""Where the trail kept in the database starts, once older events were archived (audit_archive).

Each archive is recorded in ``AuditArchive`` with a MAC under the audit key over the same record as
its manifest file. The newest one is the boundary: the first event left in the database must be
its ``last_seq + 1`` and link to its ``last_hash``. A database writer can neither move the boundary
(to hide deleted oldest events) nor forge an archive record, without the key.
"""

from __future__ import annotations

from dataclasses import dataclass

from broker.audit.keys import GENESIS, Keyring, canonical_time, record_mac_ok, sign_record
from broker.models import AuditArchive

TYPE = "audit-archive"


def archive_record(row: AuditArchive) -> dict:
    """The signed content of an archive: the manifest file's fields but ``mac`` (and the row's)."""
    return {
        "type": TYPE,
        "first_seq": row.first_seq,
        "last_seq": row.last_seq,
        "first_prev_hash": row.first_prev_hash,
        "last_hash": row.last_hash,
        "last_key_id": row.last_key_id,
        "count": row.count,
        "file": row.name,
        "sha256": row.sha256,
        "created_at": canonical_time(row.created_at),
        "key_id": row.key_id,
    }


def sign(row: AuditArchive, keyring: Keyring) -> None:
    row.key_id = keyring.key_id
    row.mac = sign_record(keyring, archive_record(row))


@dataclass(frozen=True)
class Boundary:
    seq: int  # the newest archived event (0: nothing archived)
    hash: str  # its hash: the first event in the database links to it
    keyed: bool  # whether that event was keyed (unkeyed events may follow only unkeyed ones)
    ok: bool = True
    reason: str = ""


NONE = Boundary(0, GENESIS, False)


def current_boundary(keyring: Keyring | None = None) -> Boundary:
    """The newest archive's end, once its MAC verifies; ``ok=False`` with the reason when it does not."""
    row = AuditArchive.objects.order_by("-last_seq").first()
    if row is None:
        return NONE
    keyring = keyring or Keyring.from_settings()
    if not record_mac_ok(keyring, archive_record(row), row.key_id, row.mac):
        return Boundary(
            row.last_seq,
            row.last_hash,
            bool(row.last_key_id),
            ok=False,
            reason=f"the record of the archive of events #{row.first_seq} to #{row.last_seq} does not carry a "
            "valid MAC: it was written or changed in the database without the audit key",
        )
    return Boundary(row.last_seq, row.last_hash, bool(row.last_key_id))
