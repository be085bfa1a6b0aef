"""The tamper-evident audit trail.

Every event stores the hash of the event before it and its own hash over its content, so that an
edited, deleted or reordered row breaks the chain at that row. Writers lock the single
``AuditHead`` row before appending, which serialises them: the chain cannot fork under concurrency,
and because the lock is taken inside the caller's transaction, the event commits or rolls back
together with the state change it describes.

The chain proves integrity against edits made without the application's code path; anchor the
head hash printed by ``audit_verify`` somewhere outside the database (a ticket, a WORM bucket) to
also detect a rewrite of the whole tail.
"""

from __future__ import annotations

import hashlib
import ipaddress
import json
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from django.contrib.auth.models import AbstractBaseUser
from django.core.serializers.json import DjangoJSONEncoder
from django.db import connection, models
from django.utils import timezone

from broker.models import AuditEvent, AuditHead, Channel

GENESIS = "0" * 64
SYSTEM = "system"


def _normalise_ip(ip: str | None) -> str:
    if not ip:
        return ""
    try:
        return str(ipaddress.ip_address(ip))
    except ValueError:
        return ""


def _canonical_time(at: datetime) -> str:
    return at.astimezone(UTC).isoformat(timespec="microseconds")


def event_hash(
    *,
    seq: int,
    at: datetime,
    actor_name: str,
    action: str,
    target_type: str,
    target_id: str,
    role: str,
    subject: str,
    channel: str,
    ip: str,
    data: Any,
    prev_hash: str,
) -> str:
    content = {
        "seq": seq,
        "at": _canonical_time(at),
        "actor": actor_name,
        "action": action,
        "target_type": target_type,
        "target_id": target_id,
        "role": role,
        "subject": subject,
        "channel": channel,
        "ip": ip,
        "data": data,
        "prev": prev_hash,
    }
    text = json.dumps(content, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(text.encode()).hexdigest()


def _hash_of(event: AuditEvent) -> str:
    return event_hash(
        seq=event.seq,
        at=event.at,
        actor_name=event.actor_name,
        action=event.action,
        target_type=event.target_type,
        target_id=event.target_id,
        role=event.role,
        subject=event.subject,
        channel=event.channel,
        ip=event.ip,
        data=event.data,
        prev_hash=event.prev_hash,
    )


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


def link(events: Sequence[AuditEvent], *, after: tuple[int, str], at) -> tuple[int, str]:
    """Chain unsaved events after the event (seq, hash) ``after``: number, time, link and hash
    each, exactly as ``record`` does. Returns the new (seq, hash) of the head."""
    seq, prev = after
    for event in events:
        seq += 1
        event.seq, event.at, event.prev_hash = seq, at, prev
        event.hash = prev = _hash_of(event)
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


@dataclass(frozen=True)
class Verification:
    ok: bool
    checked: int
    head_seq: int
    head_hash: str
    broken_seq: int | None = None
    broken_id: int | None = None
    reason: str = ""


def _events() -> Iterator[AuditEvent]:
    return AuditEvent.objects.order_by("seq").iterator(chunk_size=2000)


def verify() -> Verification:
    """Walk the chain from the first event and report the first one that does not fit."""
    expected_seq, expected_prev, checked = 1, GENESIS, 0
    last: AuditEvent | None = None
    for event in _events():
        reason = ""
        if event.seq != expected_seq:
            reason = (
                f"expected event #{expected_seq} next but found #{event.seq}: "
                "the event(s) in between were deleted or renumbered"
            )
        elif event.prev_hash != expected_prev:
            reason = "its link to the previous event does not match: an earlier event was edited, deleted or reordered"
        elif _hash_of(event) != event.hash:
            reason = "its content does not match its hash: the event was edited"
        if reason:
            return Verification(
                ok=False,
                checked=checked,
                head_seq=last.seq if last else 0,
                head_hash=last.hash if last else GENESIS,
                broken_seq=event.seq,
                broken_id=event.pk,
                reason=reason,
            )
        expected_seq, expected_prev, checked, last = event.seq + 1, event.hash, checked + 1, event

    last_seq, last_hash = (last.seq, last.hash) if last else (0, GENESIS)
    head = AuditHead.objects.filter(pk=1).first()
    if head is not None and (head.seq, head.hash) != (last_seq, last_hash):
        return Verification(
            ok=False,
            checked=checked,
            head_seq=last_seq,
            head_hash=last_hash,
            broken_seq=last_seq + 1,
            reason=f"the chain head says #{head.seq} is the newest event but the trail ends at #{last_seq}: "
            "the newest events were deleted",
        )
    return Verification(ok=True, checked=checked, head_seq=last_seq, head_hash=last_hash)
