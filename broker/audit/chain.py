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
import logging
import threading
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from django.contrib.auth.models import AbstractBaseUser
from django.core.serializers.json import DjangoJSONEncoder
from django.db import connection, models, transaction
from django.db.models import CharField, F, Func
from django.utils import timezone

from broker.audit.boundary import Boundary, current_boundary
from broker.audit.checkpoints import CheckpointError, Checkpoints, read_checkpoints
from broker.audit.keys import GENESIS, Keyring, canonical, mac
from broker.audit.walk import ROW, Anchor, walk
from broker.models import AuditEvent, AuditHead, Channel

SYSTEM = "system"
_log = logging.getLogger("broker.audit")
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


@dataclass(frozen=True)
class Entry:
    """One event to append with ``record_many``: the arguments of ``record``."""

    action: str
    actor: AbstractBaseUser | None
    target: Any
    via: str
    ip: str | None = None
    role: str = ""
    subject: str = ""
    data: dict | None = None


_pending = threading.local()


@contextmanager
def batched() -> Iterator[None]:
    """Append the events recorded inside the block together, when it ends, under one lock of the head.

    The head serialises every writer from the moment it is locked until the commit. A state change
    that records several events (a request created, approved and its grant scheduled) would hold
    it across all of its work; batched, it holds it only from its last statement to the commit.
    Use it inside the transaction of the change (``with transaction.atomic(), audit.batched():``).
    The events are appended in the order they were recorded; ``record`` returns them unsaved (no
    ``seq`` yet) until the block ends. Nested blocks join the outermost one.
    """
    if getattr(_pending, "events", None) is not None:
        yield
        return
    _pending.events = []
    try:
        yield
        events, _pending.events = _pending.events, None
        _append(events)
    finally:
        _pending.events = None


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
    entry = Entry(action, actor=actor, target=target, via=via, ip=ip, role=role, subject=subject, data=data)
    return record_many([entry])[0]


def record_many(entries: Sequence[Entry]) -> list[AuditEvent]:
    """Append several events in order, under one lock of the chain head and with one INSERT.

    What a batch of changes (a burst of expiries) pays for the chain is then one lock, one insert
    and one head update, not one of each per event. The chain is the same as if each event had
    been appended with ``record``: every event links to the one before it and is hashed on its
    own, and verification still checks them one by one. Call it last in the transaction, so that
    the head, which serialises every writer, is held only from here to the commit.
    """
    if not connection.in_atomic_block:
        # An event written outside the change's transaction could survive a rolled-back change
        # (or the change could survive a failed event): refuse, it is a programming error.
        raise RuntimeError("audit.record() must be called inside transaction.atomic()")
    # Everything but the link to the chain is prepared before the head is locked.
    events = [unlinked(entry) for entry in entries]
    pending = getattr(_pending, "events", None)
    if pending is not None:
        pending.extend(events)  # appended when the batched() block ends
        return events
    _append(events)
    return events


def _append(events: list[AuditEvent]) -> None:
    if not events:
        return
    head = AuditHead.objects.select_for_update().filter(pk=1).first()
    if head is None:
        AuditHead.objects.get_or_create(pk=1, defaults={"seq": 0, "hash": GENESIS})
        head = AuditHead.objects.select_for_update().get(pk=1)
    head.seq, head.hash = link(events, after=(head.seq, head.hash), at=timezone.now())
    AuditEvent.objects.bulk_create(events)
    head.save(update_fields=["seq", "hash"])
    for event in events:
        _log_on_commit(event)


def link(
    events: Sequence[AuditEvent], *, after: tuple[int, str], at, keyring: Keyring | None = None
) -> tuple[int, str]:
    """Chain unsaved events after the event (seq, hash) ``after``: number, time, link, key id and
    MAC each (``event_mac``, the one function every event's hash comes from). Returns the new
    (seq, hash) of the head."""
    keyring = keyring or Keyring.from_settings()
    seq, prev = after
    for event in events:
        seq += 1
        event.seq, event.at, event.prev_hash, event.key_id = seq, at, prev, keyring.key_id
        event.hash = prev = event_mac(event, keyring)
    return seq, prev


def unlinked(entry: Entry) -> AuditEvent:
    if entry.via not in Channel.values:
        raise ValueError(f"unknown audit channel {entry.via!r}")
    target_type, target_id = _target_of(entry.target)
    actor = entry.actor
    # Normalise the payload to what the JSON column gives back, so the hash is recomputable.
    payload = json.loads(json.dumps(entry.data or {}, cls=DjangoJSONEncoder))
    return AuditEvent(
        actor=actor if actor is not None and actor.pk else None,
        actor_name=actor.get_username() if actor is not None else SYSTEM,
        action=entry.action,
        target_type=target_type,
        target_id=target_id,
        role=entry.role,
        subject=entry.subject,
        channel=entry.via,
        ip=_normalise_ip(entry.ip),
        data=payload,
    )


def lifecycle_ids(target_type: str, target_id: str, data: dict) -> dict:
    """The grant and request ids an event is about, as log fields (``grant_id``, ``access_request_id``)."""
    ids = {}
    if target_type == "grant" and target_id.isdigit():
        ids["grant_id"] = int(target_id)
        if isinstance(data.get("request"), int):
            ids["access_request_id"] = data["request"]
    elif target_type == "request" and target_id.isdigit():
        ids["access_request_id"] = int(target_id)
        if isinstance(data.get("grant"), int):
            ids["grant_id"] = data["grant"]
    return ids


def _log_on_commit(event: AuditEvent) -> None:
    """Every recorded transition is also a log line (once it committed), with its ids as fields."""
    fields = {
        "audit_seq": event.seq,
        "action": event.action,
        "channel": event.channel,
        **lifecycle_ids(event.target_type, event.target_id, event.data),
    }
    if event.role:
        fields["role"] = event.role
    what = f"{event.target_type} {event.target_id}".strip()
    line = f"{event.action}: {what or '-'}" + (f" ({event.role}, {event.subject})" if event.role else "")
    transaction.on_commit(lambda: _log.info(line, extra=fields))


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
    archived: Callable[[], Iterable[tuple]] | None = None,
) -> Verification:
    """Walk the chain in order and report the first event that does not fit.

    From the first event kept in the database by default (after the archive boundary, which must
    verify: broker/audit/boundary.py); ``since=(seq, hash)`` starts at a point verified earlier,
    which must still have that hash. ``archived`` gives the archived events (``audit_verify
    --archive``): the walk then starts at event #1 in the archives and goes on into the database as
    one chain. ``checkpoints`` is a file of signed checkpoints: every one of them must match the
    trail, and the trail must reach the newest.
    """
    keyring = keyring or Keyring.from_settings()
    for _attempt in range(3):
        edge = current_boundary(keyring)
        result = _verify(checkpoints=checkpoints, since=since, keyring=keyring, archived=archived, edge=edge)
        # An archive that committed while this walk ran moves the start: walk again from the new one.
        if result.ok or current_boundary(keyring) == edge:
            return result
    return result


def _verify(
    *,
    checkpoints: Path | str | None,
    since: tuple[int, str] | None,
    keyring: Keyring,
    archived: Callable[[], Iterable[tuple]] | None,
    edge: Boundary,
) -> Verification:
    found = Checkpoints()
    if checkpoints is not None:
        try:
            found = read_checkpoints(checkpoints, keyring)
        except CheckpointError as exc:
            return Verification(ok=False, checked=0, head_seq=0, head_hash=GENESIS, reason=str(exc))
    if not edge.ok:
        return Verification(
            ok=False, checked=0, head_seq=0, head_hash=GENESIS, broken_seq=edge.seq + 1, reason=edge.reason
        )
    anchors = {seq: list(items) for seq, items in found.anchors.items()}
    # The head first: events appended while the walk runs are then simply walked too, never taken
    # for a head that points past the trail.
    head = AuditHead.objects.filter(pk=1).values_list("seq", "hash").first()
    if head is not None and head[0] > 0:
        anchors.setdefault(head[0], []).append(Anchor(head[0], head[1], "the chain head"))
    if archived is None and since is not None and since[0] <= edge.seq:
        since = None  # the point verified earlier was archived since: start at the boundary
    start_seq, start_hash = since if since and since[0] > 0 else (0, GENESIS)
    if archived is None and not start_seq:
        # Archived events are not walked: anchors inside them cannot be compared here.
        anchors = {seq: items for seq, items in anchors.items() if seq > edge.seq}
    if start_seq:
        # Start at the point verified earlier: that event must still be there with the same hash.
        anchors.setdefault(start_seq, []).append(Anchor(start_seq, start_hash, "the last full verification"))
        rows = _rows(start_seq)
        walked = walk(
            rows, keys=keyring.keys, seq=start_seq, prev=None, unkeyed_allowed=False, anchors=anchors, raw=True
        )
    elif archived is not None:
        walked = walk(_archived_then_database(archived, edge), keys=keyring.keys, anchors=anchors, raw=True)
    elif edge.seq:
        walked = walk(
            _rows(edge.seq + 1),
            keys=keyring.keys,
            seq=edge.seq + 1,
            prev=edge.hash,
            unkeyed_allowed=not edge.keyed,
            anchors=anchors,
            raw=True,
        )
        if walked.last_seq == edge.seq:  # nothing left after the boundary: the walk ends where it began
            walked.last_hash = edge.hash
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


def _archived_then_database(archived: Callable[[], Iterable[tuple]], edge: Boundary) -> Iterator[tuple]:
    """The archived events, then the database's from the boundary on (raw rows: ``data`` as JSON text)."""
    dumps = json.dumps
    for row in archived():
        yield (*row[:11], dumps(row[11]), *row[12:])
    yield from _rows(edge.seq + 1) if edge.seq else _rows(0)
