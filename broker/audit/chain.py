"""The tamper-evident audit trail.

Every event stores the hash of the event before it and its own HMAC-SHA256 over its content, under
a key that is not in the database (``AUDIT_KEY``; its id is stored with the event). An edited,
deleted or reordered row breaks the chain at that row, and without the key nobody can recompute
the MACs after an edit. Writers lock the single ``AuditHead`` row before appending, which
serialises them: the chain cannot fork under concurrency, and because the lock is taken inside the
caller's transaction, the event commits or rolls back together with the state change it describes.

Deleting the newest events and moving the head back needs no key: signed checkpoints of the head,
kept outside the database (broker/audit/checkpoints.py), detect that.
"""

from __future__ import annotations

import ipaddress
import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from django.contrib.auth.models import AbstractBaseUser
from django.core.serializers.json import DjangoJSONEncoder
from django.db import connection, models
from django.db.models import CharField, F, Func
from django.utils import timezone

from broker.audit.checkpoints import CheckpointError, Checkpoints, read_checkpoints
from broker.audit.keys import GENESIS, Keyring, canonical, mac
from broker.audit.walk import ROW, Anchor, walk
from broker.models import AuditEvent, AuditHead, Channel

SYSTEM = "system"
_CHUNK = 5000


def _normalise_ip(ip: str | None) -> str:
    if not ip:
        return ""
    try:
        return str(ipaddress.ip_address(ip))
    except ValueError:
        return ""


def event_mac(event: AuditEvent, keyring: Keyring) -> str:
    payload = canonical(
        event.seq,
        event.at,
        event.actor_name,
        event.action,
        event.target_type,
        event.target_id,
        event.role,
        event.subject,
        event.channel,
        event.ip,
        event.data,
        event.prev_hash,
        keyring.key_id,
    )
    return mac(keyring.current, payload)


def _target_of(target: Any) -> tuple[str, str]:
    if target is None:
        return "", ""
    if isinstance(target, tuple):
        kind, ident = target
        return str(kind), str(ident)
    if isinstance(target, models.Model):
        kind = getattr(target, "audit_type", target._meta.model_name)
        return kind, str(target.pk)
    raise TypeError(f"cannot audit a target of type {type(target).__name__}")


def record(
    action: str,
    *,
    actor: AbstractBaseUser | None,
    target: Any,
    via: str,
    ip: str | None = None,
    role: str = "",
    subject: str = "",
    data: dict | None = None,
) -> AuditEvent:
    """Append one event. Must run inside the transaction of the change it records."""
    if not connection.in_atomic_block:
        # An event written outside the change's transaction could survive a rolled-back change
        # (or the change could survive a failed event): refuse, it is a programming error.
        raise RuntimeError("audit.record() must be called inside transaction.atomic()")
    if via not in Channel.values:
        raise ValueError(f"unknown audit channel {via!r}")
    head = AuditHead.objects.select_for_update().filter(pk=1).first()
    if head is None:
        AuditHead.objects.get_or_create(pk=1, defaults={"seq": 0, "hash": GENESIS})
        head = AuditHead.objects.select_for_update().get(pk=1)

    target_type, target_id = _target_of(target)
    # Normalise the payload to what the JSON column gives back, so the hash is recomputable.
    payload = json.loads(json.dumps(data or {}, cls=DjangoJSONEncoder))
    keyring = Keyring.from_settings()
    event = AuditEvent(
        seq=head.seq + 1,
        at=timezone.now(),
        actor=actor if actor is not None and actor.pk else None,
        actor_name=actor.get_username() if actor is not None else SYSTEM,
        action=action,
        target_type=target_type,
        target_id=target_id,
        role=role,
        subject=subject,
        channel=via,
        ip=_normalise_ip(ip),
        data=payload,
        prev_hash=head.hash,
        key_id=keyring.key_id,
    )
    event.hash = event_mac(event, keyring)
    event.save(force_insert=True)
    head.seq, head.hash = event.seq, event.hash
    head.save(update_fields=["seq", "hash"])
    return event


@dataclass(frozen=True)
class Verification:
    ok: bool
    checked: int  # events walked
    head_seq: int  # the last event that verifies
    head_hash: str
    broken_seq: int | None = None
    broken_id: int | None = None
    reason: str = ""
    unkeyed: int = 0  # events from before the trail was keyed, sealed by the first keyed one
    key_ids: tuple[str, ...] = ()
    checkpoints: int = 0  # checkpoints the trail was compared with
    since_seq: int = 0  # the walk started after this event (0: from the first event)


class _CanonicalTime(Func):
    """The event's time as ``canonical_time`` writes it, formatted by the database.

    Loading timestamps through the driver and Django's converters, then formatting them, is the
    largest single cost of a walk on PostgreSQL; the database formats them for free.
    """

    output_field = CharField()

    def as_postgresql(self, compiler, connection, **extra):
        template = "to_char(%(expressions)s AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.US') || '+00:00'"
        return self.as_sql(compiler, connection, template=template, **extra)

    def as_sqlite(self, compiler, connection, **extra):
        # Django keeps "YYYY-MM-DD HH:MM:SS[.ffffff]" in UTC, without the fraction when it is zero.
        template = (
            "(CASE WHEN length(%(expressions)s) = 19 THEN replace(%(expressions)s, ' ', 'T') || '.000000' "
            "ELSE replace(%(expressions)s, ' ', 'T') END) || '+00:00'"
        )
        return self.as_sql(compiler, connection, template=template, **extra)


_COLUMNS = [F(name) if name != "at" else _CanonicalTime("at") for name in ROW]


def _rows(since: int) -> Iterator[tuple]:
    """The events from #``since`` on (all of them for 0) in order, as the driver returns them.

    Read in keyset-paged chunks on a plain cursor: no model instances and none of the ORM's per-value
    converters (the walk decodes ``data``, see ``walk(raw=True)``), and memory bounded however long
    the trail is.
    """
    events = AuditEvent.objects.filter(seq__gte=since) if since else AuditEvent.objects.all()
    while True:
        query = events.order_by("seq").values_list(*_COLUMNS)[:_CHUNK].query
        sql, params = query.sql_with_params()
        with connection.cursor() as cursor:
            cursor.execute(sql, params)
            rows = cursor.fetchall()
        yield from rows
        if len(rows) < _CHUNK:
            return
        events = AuditEvent.objects.filter(seq__gt=rows[-1][1])


def verify(
    *,
    checkpoints: Path | str | None = None,
    since: tuple[int, str] | None = None,
    keyring: Keyring | None = None,
) -> Verification:
    """Walk the chain in order and report the first event that does not fit.

    From the first event by default; ``since=(seq, hash)`` starts at a point verified earlier,
    which must still have that hash. ``checkpoints`` is a file of signed checkpoints: every one of
    them must match the trail, and the trail must reach the newest.
    """
    keyring = keyring or Keyring.from_settings()
    found = Checkpoints()
    if checkpoints is not None:
        try:
            found = read_checkpoints(checkpoints, keyring)
        except CheckpointError as exc:
            return Verification(ok=False, checked=0, head_seq=0, head_hash=GENESIS, reason=str(exc))
    anchors = {seq: list(items) for seq, items in found.anchors.items()}
    # The head first: events appended while the walk runs are then simply walked too, never taken
    # for a head that points past the trail.
    head = AuditHead.objects.filter(pk=1).values_list("seq", "hash").first()
    if head is not None and head[0] > 0:
        anchors.setdefault(head[0], []).append(Anchor(head[0], head[1], "the chain head"))
    start_seq, start_hash = since if since and since[0] > 0 else (0, GENESIS)
    if start_seq:
        # Start at the point verified earlier: that event must still be there with the same hash.
        anchors.setdefault(start_seq, []).append(Anchor(start_seq, start_hash, "the last full verification"))
        rows = _rows(start_seq)
        walked = walk(
            rows, keys=keyring.keys, seq=start_seq, prev=None, unkeyed_allowed=False, anchors=anchors, raw=True
        )
    else:
        walked = walk(_rows(0), keys=keyring.keys, anchors=anchors, raw=True)
    common = {
        "checked": walked.checked,
        "head_seq": walked.last_seq,
        "head_hash": walked.last_hash,
        "unkeyed": walked.unkeyed,
        "key_ids": tuple(sorted(walked.key_ids)),
        "checkpoints": found.count,
        "since_seq": start_seq,
    }
    if not walked.ok:
        return Verification(
            ok=False, broken_seq=walked.broken_seq, broken_id=walked.broken_id, reason=walked.reason, **common
        )
    last_seq = walked.last_seq
    if start_seq and not walked.checked:
        return Verification(
            ok=False,
            broken_seq=start_seq,
            reason=f"event #{start_seq}, which the last full verification saw, is gone: the newest events were deleted",
            **{**common, "head_seq": start_seq - 1, "head_hash": GENESIS},
        )
    if head is None and last_seq:
        return Verification(
            ok=False,
            broken_seq=last_seq,
            reason="the chain head row is missing: it was deleted in the database",
            **common,
        )
    if head is not None and head[0] > last_seq:
        return Verification(
            ok=False,
            broken_seq=last_seq + 1,
            reason=f"the chain head says #{head[0]} is the newest event but the trail ends at #{last_seq}: "
            "the newest events were deleted",
            **common,
        )
    newest = found.newest
    if newest is not None and newest.seq > last_seq:
        return Verification(
            ok=False,
            broken_seq=last_seq + 1,
            reason=f"{newest.source} saw event #{newest.seq}, but the trail ends at #{last_seq}: "
            "the newest events were deleted and the head rewritten",
            **common,
        )
    return Verification(ok=True, **common)
