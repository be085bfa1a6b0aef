"""Signed checkpoints of the chain's head, kept outside the database.

The MACs stop anyone without the key from rewriting events; they cannot stop someone who deletes
the newest events and moves the head back (that needs no key), nor show that the database was
restored to an older state. So every ``AUDIT_CHECKPOINT_INTERVAL`` the scheduler appends the head
(sequence number, hash, time, key id and a MAC over them) to ``AUDIT_CHECKPOINT_FILE`` (JSON Lines,
append-only), and optionally sends the same line to syslog and to a webhook.
``audit_verify --checkpoints FILE`` then proves that every checkpoint's event still exists with
that hash and that the trail reaches the newest checkpoint.

A destination that fails is logged and skipped: checkpoints never block the trail, and each
destination is tried on its own with a timeout.
"""

from __future__ import annotations

import json
import logging
import os
import re
import socket
import urllib.error
import urllib.request
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from urllib.parse import urlsplit

from django.conf import settings
from django.core import checks
from django.utils import timezone

from broker.audit.keys import GENESIS, Keyring, canonical_time, record_mac_ok, sign_record
from broker.audit.walk import Anchor
from broker.models import AuditHead

log = logging.getLogger(__name__)

TYPE = "audit-checkpoint"
_HASH = re.compile(r"[0-9a-f]{64}")
# syslog priority: facility authpriv (10), severity info (6).
_SYSLOG_PRIORITY = 10 * 8 + 6


@checks.register(checks.Tags.security, deploy=True)
def check_checkpoint_destination(app_configs, **kwargs) -> list[checks.CheckMessage]:
    """``manage.py check --deploy``: a production trail whose head is anchored nowhere is flagged."""
    if settings.AUDIT_CHECKPOINT_FILE or settings.AUDIT_CHECKPOINT_SYSLOG or settings.AUDIT_CHECKPOINT_WEBHOOK_URL:
        return []
    return [
        checks.Warning(
            "No destination for audit checkpoints: deleting the newest audit events and moving the chain's head "
            "back would go unnoticed.",
            hint="Set AUDIT_CHECKPOINT_FILE (on storage the database's administrators cannot rewrite), "
            "AUDIT_CHECKPOINT_SYSLOG or AUDIT_CHECKPOINT_WEBHOOK_URL.",
            id="broker.W001",
        )
    ]


class CheckpointError(Exception):
    """The checkpoint file cannot be read, or a line of it is not a valid signed checkpoint."""


def checkpoint(*, seq: int, hash: str, at: datetime, keyring: Keyring) -> dict:
    record = {"type": TYPE, "seq": seq, "hash": hash, "at": canonical_time(at), "key_id": keyring.key_id}
    record["mac"] = sign_record(keyring, record)
    return record


def line_of(record: Mapping) -> str:
    return json.dumps(record, sort_keys=True, separators=(",", ":"))


def _append(path: str, line: str) -> None:
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o640)
    try:
        os.write(fd, (line + "\n").encode())
        os.fsync(fd)
    finally:
        os.close(fd)


def _to_syslog(address: str, line: str, timeout: float) -> None:
    message = f"<{_SYSLOG_PRIORITY}>broker-audit: {line}".encode()
    if address.startswith("/"):
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
            sock.settimeout(timeout)
            sock.sendto(message, address)
        return
    parts = urlsplit(address)
    family, kind, proto, _name, target = socket.getaddrinfo(parts.hostname, parts.port, type=socket.SOCK_DGRAM)[0]
    with socket.socket(family, kind, proto) as sock:
        sock.settimeout(timeout)
        sock.sendto(message, target)


class _NoRedirects(urllib.request.HTTPRedirectHandler):
    # A redirected POST would arrive as a GET without the checkpoint: count it as a failure.
    def redirect_request(self, *args, **kwargs):
        return None


def _to_webhook(url: str, line: str, timeout: float) -> None:
    request = urllib.request.Request(  # noqa: S310 - the operator's http(s) URL, checked in settings
        url,
        data=line.encode(),
        method="POST",
        headers={"Content-Type": "application/json", "User-Agent": "access-broker audit checkpoint"},
    )
    with urllib.request.build_opener(_NoRedirects).open(request, timeout=timeout) as response:
        if not 200 <= response.status < 300:
            raise urllib.error.HTTPError(url, response.status, "not a 2xx answer", response.headers, None)


@dataclass
class Written:
    record: dict
    delivered: list[str] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)


def write_checkpoint(*, seq: int, hash: str, now: datetime | None = None) -> Written:
    """Send a checkpoint of (seq, hash) to every configured destination; failures are logged, never raised."""
    record = checkpoint(seq=seq, hash=hash, at=now or timezone.now(), keyring=Keyring.from_settings())
    line = line_of(record)
    written = Written(record)
    timeout = settings.AUDIT_CHECKPOINT_WEBHOOK_TIMEOUT.total_seconds()
    destinations = [
        ("file", settings.AUDIT_CHECKPOINT_FILE, lambda target: _append(target, line)),
        ("syslog", settings.AUDIT_CHECKPOINT_SYSLOG, lambda target: _to_syslog(target, line, timeout)),
        ("webhook", settings.AUDIT_CHECKPOINT_WEBHOOK_URL, lambda target: _to_webhook(target, line, timeout)),
    ]
    for name, target, send in destinations:
        if not target:
            continue
        try:
            send(target)
        except (OSError, ValueError) as exc:  # urllib's errors and socket timeouts are OSErrors
            written.failed.append(name)
            log.error("audit checkpoint #%s: the %s destination failed: %s", seq, name, exc)
        else:
            written.delivered.append(name)
    return written


def checkpoint_head(*, now: datetime | None = None) -> Written:
    """The periodic task: a checkpoint of the committed head (an empty trail is checkpointed as #0)."""
    seq, hash_ = AuditHead.objects.filter(pk=1).values_list("seq", "hash").first() or (0, GENESIS)
    return write_checkpoint(seq=seq, hash=hash_, now=now)


@dataclass
class Checkpoints:
    """The checkpoints of a file, as anchors by sequence number, and the newest of them."""

    anchors: dict[int, list[Anchor]] = field(default_factory=dict)
    newest: Anchor | None = None
    count: int = 0


def _bad(path, number: int, why: str) -> CheckpointError:
    return CheckpointError(f"line {number} of the checkpoint file {path} {why}")


def read_checkpoints(path: Path | str, keyring: Keyring) -> Checkpoints:
    """Read and check every line: each must be a checkpoint whose MAC verifies under a configured key."""
    found = Checkpoints()
    try:
        text = Path(path).read_text()
    except (OSError, UnicodeDecodeError) as exc:
        raise CheckpointError(f"cannot read the checkpoint file {path}: {exc}") from None
    for number, raw in enumerate(text.splitlines(), start=1):
        if not raw.strip():
            continue
        try:
            record = json.loads(raw)
        except ValueError:
            raise _bad(path, number, "is not JSON: the file was damaged or edited") from None
        if not isinstance(record, dict) or record.get("type") != TYPE:
            raise _bad(path, number, f"is not an {TYPE}")
        seq, hash_, at, key_id, given = (record.get(name) for name in ("seq", "hash", "at", "key_id", "mac"))
        if not (
            isinstance(seq, int)
            and not isinstance(seq, bool)
            and seq >= 0
            and isinstance(hash_, str)
            and (_HASH.fullmatch(hash_) or hash_ == GENESIS)
            and isinstance(at, str)
            and isinstance(key_id, str)
            and isinstance(given, str)
            and set(record) == {"type", "seq", "hash", "at", "key_id", "mac"}
        ):
            raise _bad(path, number, "lacks a field or has one of the wrong type: the file was edited")
        signed = {name: value for name, value in record.items() if name != "mac"}
        if not record_mac_ok(keyring, signed, key_id, given):
            why = "unknown key id" if key_id not in keyring.keys else "wrong MAC"
            raise _bad(
                path,
                number,
                f"does not verify ({why}, key id {key_id!r}): it was forged or edited, or its key is not configured",
            )
        found.count += 1
        if seq == 0:
            continue  # written while the trail was still empty: nothing to compare
        anchor = Anchor(seq, hash_, f"the checkpoint of {at} (line {number} of {path})")
        found.anchors.setdefault(seq, []).append(anchor)
        if found.newest is None or seq > found.newest.seq:
            found.newest = anchor
    return found
