"""Walking the chain: the one loop that every verification runs (full, incremental, offline, migration).

It takes plain tuples in ``ROW`` order (a ``values_list`` of the events, or lines of an export),
never model instances: at a million events the verifier's cost is this loop, so it builds no
objects and calls nothing it does not need (measured in bench/audit_verify.py).
"""

from __future__ import annotations

import hashlib
import hmac
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from broker.audit.keys import GENESIS, canonical

# The columns the walk reads, in this order.
ROW = (
    "id",
    "seq",
    "at",
    "actor_name",
    "action",
    "target_type",
    "target_id",
    "role",
    "subject",
    "channel",
    "ip",
    "data",
    "prev_hash",
    "hash",
    "key_id",
)
# One event as exports and archives write it: the walk's columns without the row id, and the
# actor's name as `actor`.
RECORD_FIELDS = ("seq", "at", "actor", *ROW[4:])


@dataclass(frozen=True)
class Anchor:
    """A hash that some record outside the walk says event ``seq`` has (a checkpoint, the stored point)."""

    seq: int
    hash: str
    source: str  # for the message: "the checkpoint of <time> (line 3 of FILE)"


@dataclass
class Walked:
    ok: bool = True
    checked: int = 0
    last_seq: int = 0
    last_hash: str = GENESIS
    broken_seq: int | None = None
    broken_id: int | None = None
    reason: str = ""
    unkeyed: int = 0  # events from before the trail was keyed
    key_ids: set[str] = field(default_factory=set)

    def fail(self, seq: int | None, row_id: int | None, reason: str) -> Walked:
        self.ok, self.broken_seq, self.broken_id, self.reason = False, seq, row_id, reason
        return self


def walk(
    rows: Iterable[tuple],
    *,
    keys: Mapping[str, bytes],
    seq: int = 1,
    prev: str | None = GENESIS,
    unkeyed_allowed: bool = True,
    anchors: Mapping[int, list[Anchor]] | None = None,
    gaps: bool = False,
    seal_required: bool = True,
    raw: bool = False,
) -> Walked:
    """Check each row's sequence, link to the previous one and MAC; stop at the first that does not fit.

    ``seq`` and ``prev`` are what the first row must have (``prev=None``: its link is not checked,
    when the walk starts from a point verified earlier and that point is an anchor). Unkeyed events
    are accepted only before the first keyed one (``unkeyed_allowed``), and a trail that has unkeyed
    events must have a keyed one after them: it seals them. ``gaps`` (a filtered export) lets the
    sequence jump, checking links only between neighbours. ``seal_required=False`` accepts a trail of
    unkeyed events only: the upgrade checks the old trail that way before sealing it. ``raw``: the
    rows come straight from the database driver, ``data`` as JSON text (decoded here, at a fraction
    of the cost of the ORM's converters). ``at`` is a datetime, or a str already canonical.
    """
    result = Walked()
    expected_seq, expected_prev, checked, last_hash, unkeyed = seq, prev, 0, GENESIS, 0
    seen_keys: set[str] = set()
    anchors = anchors or {}
    sha256, loads, compare = hashlib.sha256, json.loads, hmac.compare_digest
    # One HMAC state per key, keyed once and copied for each event.
    macs: dict[str, Any] = {}

    for row in rows:
        _id, row_seq, at, actor, action, ttype, tid, role, subject, channel, ip, data, prev_hash, row_hash, kid = row
        reason = ""
        if row_seq != expected_seq and not (gaps and row_seq > expected_seq):
            reason = (
                f"expected event #{expected_seq} next but found #{row_seq}: "
                "the event(s) in between were deleted or renumbered"
            )
        elif expected_prev is not None and prev_hash != expected_prev and row_seq == expected_seq:
            reason = "its link to the previous event does not match: an earlier event was edited, deleted or reordered"
        if not reason:
            if raw:
                data = loads(data)  # the column's own check (jsonb, JSON_VALID) keeps it valid
            payload = canonical(
                row_seq, at, actor, action, ttype, tid, role, subject, channel, ip, data, prev_hash, kid
            )
            if kid:
                state = macs.get(kid)
                if state is None and kid in keys:
                    state = macs[kid] = hmac.new(keys[kid], digestmod="sha256")
                    seen_keys.add(kid)
                if state is None:
                    reason = (
                        f"it names the key id {kid!r}, which is neither AUDIT_KEY_ID nor in AUDIT_OLD_KEYS: "
                        "the key is missing from the configuration, or the key id was forged"
                    )
                else:
                    unkeyed_allowed = False
                    state = state.copy()
                    state.update(payload)
                    if not compare(state.hexdigest(), row_hash):
                        reason = (
                            f"its content does not match its MAC under key id {kid!r}: the event was edited, "
                            "or the configured key is not the one it was written with"
                        )
            elif not unkeyed_allowed:
                reason = (
                    "it has no key id, but unkeyed events can only come before the first keyed one: "
                    "it was written or rewritten without the key"
                )
            else:
                unkeyed += 1
                if sha256(payload).hexdigest() != row_hash:
                    reason = (
                        "its content does not match its hash (unkeyed, from before the trail was keyed): "
                        "the event was edited"
                    )
        if not reason and row_seq in anchors:
            for anchor in anchors[row_seq]:
                if anchor.hash != row_hash:
                    reason = (
                        f"its hash differs from the one {anchor.source} recorded: "
                        "the trail was rewritten from here on after that"
                    )
                    break
        if reason:
            result.checked, result.last_seq, result.last_hash = checked, expected_seq - 1, last_hash
            return result.fail(row_seq, _id, reason)
        expected_seq, expected_prev, last_hash, checked = row_seq + 1, row_hash, row_hash, checked + 1

    result.checked, result.last_seq, result.last_hash = checked, expected_seq - 1, last_hash
    result.unkeyed, result.key_ids = unkeyed, seen_keys
    if unkeyed and unkeyed_allowed and seal_required:
        # Only unkeyed events: nothing seals them, anyone can have rewritten them all.
        return result.fail(
            expected_seq - 1,
            None,
            "the trail ends with unkeyed events and no keyed event after them: "
            "it was rewritten without the key (the upgrade seals older events with a keyed one)",
        )
    return result
