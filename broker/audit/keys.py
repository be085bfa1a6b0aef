"""The audit trail's keys, and the exact bytes that an event's MAC covers.

Pure functions of their arguments (no models), so that the walk, the migration that sealed the
unkeyed trail and offline checks of an export compute exactly the same bytes.

The bytes of an event are the canonical JSON of its content: an object with the keys ``action``,
``actor``, ``at`` (UTC, ISO 8601 with microseconds and ``+00:00``), ``channel``, ``data``, ``ip``,
``key_id``, ``prev``, ``role``, ``seq``, ``subject``, ``target_id`` and ``target_type``, keys sorted,
no whitespace, non-ASCII characters as themselves, encoded as UTF-8 (Python's
``json.dumps(content, sort_keys=True, separators=(",", ":"), ensure_ascii=False)``). The event's
``hash`` is HMAC-SHA256 of these bytes under the key named by ``key_id``, in hex. Events written
before the trail was keyed have an empty ``key_id``: their bytes lack that key and their hash is
plain SHA-256 (see docs/architecture.md for how they stay trustworthy).
"""

from __future__ import annotations

import hashlib
import hmac
import json
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from json.encoder import encode_basestring as _quote
from typing import Any

from django.conf import settings

GENESIS = "0" * 64

_encode = json.JSONEncoder(sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode


@dataclass(frozen=True)
class Keyring:
    """The key new events are written with (``key_id``) and every key that verifies, by id."""

    key_id: str
    keys: Mapping[str, bytes]

    @property
    def current(self) -> bytes:
        return self.keys[self.key_id]

    @classmethod
    def from_settings(cls) -> Keyring:
        keys = {key_id: key.encode() for key_id, key in settings.AUDIT_OLD_KEYS.items()}
        keys[settings.AUDIT_KEY_ID] = settings.AUDIT_KEY.encode()
        return cls(key_id=settings.AUDIT_KEY_ID, keys=keys)


def canonical_time(at: datetime) -> str:
    # A naive time is UTC (how Django keeps times on SQLite), never the machine's local time.
    return (at.replace(tzinfo=UTC) if at.tzinfo is None else at.astimezone(UTC)).isoformat(timespec="microseconds")


def canonical(
    seq: int,
    at: datetime | str,
    actor: str,
    action: str,
    target_type: str,
    target_id: str,
    role: str,
    subject: str,
    channel: str,
    ip: str,
    data: Any,
    prev: str,
    key_id: str,
) -> bytes:
    """The bytes the event's MAC covers: the module docstring's canonical JSON, built without a dict.

    The verifier runs this once per event, so it writes the sorted object directly (every string
    quoted by the json module's own encoder, so the result is byte for byte what json.dumps gives:
    a test holds them equal).
    """
    key = f'"key_id":{_quote(key_id)},' if key_id else ""
    when = at if at.__class__ is str else canonical_time(at)  # a str is canonical already (from the database)
    return (
        f'{{"action":{_quote(action)},"actor":{_quote(actor)},"at":{_quote(when)},'
        f'"channel":{_quote(channel)},"data":{_encode(data)},"ip":{_quote(ip)},{key}"prev":{_quote(prev)},'
        f'"role":{_quote(role)},"seq":{int(seq)},"subject":{_quote(subject)},"target_id":{_quote(target_id)},'
        f'"target_type":{_quote(target_type)}}}'
    ).encode()


def mac(key: bytes, payload: bytes) -> str:
    return hmac.digest(key, payload, "sha256").hex()


def unkeyed_hash(payload: bytes) -> str:
    """How events were hashed before the trail was keyed (plain SHA-256)."""
    return hashlib.sha256(payload).hexdigest()


def sign_record(keyring: Keyring, record: Mapping[str, Any]) -> str:
    """MAC of a small record (a checkpoint, a stored verification) under the current key."""
    return mac(keyring.current, _encode(dict(record)).encode())


def record_mac_ok(keyring: Keyring, record: Mapping[str, Any], key_id: str, given: str) -> bool:
    key = keyring.keys.get(key_id)
    return key is not None and hmac.compare_digest(mac(key, _encode(dict(record)).encode()), given)
