"""Retention without loss: old events move to compressed, signed archives, and the chain stays whole.

``archive_before(before, directory)`` (``manage.py audit_archive``):

1. walks the whole chain kept in the database (and the checkpoint file when there is one): nothing is
   archived that does not verify;
2. for each chunk of the oldest events before ``before`` (at most ``chunk`` events), writes
   ``audit-<first>-<last>.jsonl.gz`` (one event per line, the JSON Lines export's fields) and its
   manifest ``audit-<first>-<last>.json`` (range, first link, last hash, count, SHA-256 of the file,
   and a MAC under the audit key over all of it), each synced and renamed into place;
3. reads the file back and walks it again (so what is on disk is what verified);
4. in one transaction, under the chain head's lock: deletes exactly those events, records the archive
   (``AuditArchive``: the same signed record, the new boundary) and appends ``audit.archived``.

``verify(archived=read_archives(directory).rows)`` then walks archives and database as one chain
(``audit_verify --archive DIR``): a file changed after the fact fails its checksum, a manifest
changed fails its MAC, a missing archive leaves a gap, and an archive forged whole would need the key.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import os
import re
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime
from json.encoder import encode_basestring as _quote
from pathlib import Path

from django.db import transaction
from django.utils import timezone

from broker.audit import chain
from broker.audit.boundary import TYPE, archive_record, current_boundary, sign
from broker.audit.keys import Keyring, record_mac_ok
from broker.audit.walk import RECORD_FIELDS as FIELDS
from broker.audit.walk import walk
from broker.models import AuditArchive, AuditEvent, AuditHead, Channel

_NAME = re.compile(r"audit-(\d{12})-(\d{12})\.json")
CHUNK = 50_000


class ArchiveError(Exception):
    """Nothing was archived (or the archives do not verify): the message says why."""


@dataclass
class Archived:
    name: str
    first_seq: int
    last_seq: int
    count: int
    seconds: float


@dataclass
class Outcome:
    archives: list[Archived] = field(default_factory=list)
    verified: int = 0  # events walked before anything was archived

    @property
    def count(self) -> int:
        return sum(a.count for a in self.archives)


def _line(row: tuple) -> bytes:
    """A raw database row (broker.audit.walk.ROW order, ``data`` as JSON text) as an archive line.

    Written field by field (the walk reads it back as JSON; ``data`` stays the column's own JSON
    text), which is several times faster than decoding and encoding each row.
    """
    _id, seq, at, actor, action, ttype, tid, role, subject, channel, ip, data, prev, digest, kid = row
    return (
        f'{{"action":{_quote(action)},"actor":{_quote(actor)},"at":{_quote(at)},"channel":{_quote(channel)},'
        f'"data":{data},"hash":{_quote(digest)},"ip":{_quote(ip)},"key_id":{_quote(kid)},"prev_hash":{_quote(prev)},'
        f'"role":{_quote(role)},"seq":{int(seq)},"subject":{_quote(subject)},"target_id":{_quote(tid)},'
        f'"target_type":{_quote(ttype)}}}\n'
    ).encode()


def _row(values: dict) -> tuple:
    """An archive line back as a row of the walk (``data`` decoded, ``at`` the canonical text)."""
    return (None, *(values[name] for name in FIELDS))


def _sync_write(path: Path, write) -> str:
    """Write through ``write(file)`` to a temporary file, sync it and rename it into place; its SHA-256."""
    tmp = path.with_name(path.name + ".tmp")
    with tmp.open("wb") as out:
        write(out)
        out.flush()
        os.fsync(out.fileno())
    os.replace(tmp, path)
    digest = hashlib.sha256()
    with path.open("rb") as done:
        for block in iter(lambda: done.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _sync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _file_rows(path: Path) -> Iterator[tuple]:
    with gzip.open(path, "rt", encoding="utf-8") as lines:
        for number, line in enumerate(lines, start=1):
            try:
                yield _row(json.loads(line))
            except (ValueError, KeyError, TypeError):
                raise ArchiveError(
                    f"{path.name}, line {number}: not an archived event (the file was changed)"
                ) from None


def archive_before(
    before: datetime, directory: Path, *, actor=None, chunk: int = CHUNK, checkpoints: str | None = None
) -> Outcome:
    """Archive every event older than ``before`` (see the module's docstring); nothing on any doubt."""
    keyring = Keyring.from_settings()
    directory.mkdir(parents=True, exist_ok=True)
    result = chain.verify(checkpoints=checkpoints if checkpoints and Path(checkpoints).exists() else None)
    if not result.ok:
        where = f" at event #{result.broken_seq}" if result.broken_seq else ""
        raise ArchiveError(f"the audit chain does not verify{where}: {result.reason}; nothing was archived")
    outcome = Outcome(verified=result.checked)
    last = AuditEvent.objects.filter(at__lt=before).order_by("-seq").values_list("seq", flat=True).first()
    while last is not None:
        edge = current_boundary(keyring)
        if edge.seq >= last:
            break
        end = min(last, edge.seq + chunk)
        outcome.archives.append(_archive_chunk(edge, end, directory, keyring, actor=actor))
    return outcome


def _archive_chunk(edge, end: int, directory: Path, keyring: Keyring, *, actor) -> Archived:
    started = time.perf_counter()
    first = edge.seq + 1
    rows = _chunk_rows(first, end)
    name = f"audit-{first:012d}-{end:012d}"
    data_path, manifest_path = directory / f"{name}.jsonl.gz", directory / f"{name}.json"
    if data_path.exists() or manifest_path.exists():
        raise ArchiveError(f"{data_path.name} or its manifest exists already in {directory}; move it away first")
    if not rows or rows[0][1] != first or rows[-1][1] != end or len(rows) != end - first + 1:
        raise ArchiveError(f"events #{first} to #{end} changed while being archived (a gap); nothing was archived")
    last_hash = rows[-1][13]

    def write(out) -> None:
        with gzip.GzipFile(fileobj=out, mode="wb", compresslevel=6, mtime=0) as packed:
            for row in rows:
                packed.write(_line(row))

    written = []
    try:
        sha = _sync_write(data_path, write)
        written.append(data_path)
        record = AuditArchive(
            first_seq=first,
            last_seq=end,
            first_prev_hash=edge.hash,
            last_hash=last_hash,
            last_key_id=rows[-1][-1],
            count=len(rows),
            name=data_path.name,
            sha256=sha,
            created_at=timezone.now(),
        )
        sign(record, keyring)
        manifest = {**archive_record(record), "mac": record.mac}
        _sync_write(
            manifest_path, lambda out: out.write((json.dumps(manifest, sort_keys=True, indent=1) + "\n").encode())
        )
        written.append(manifest_path)
        _sync_dir(directory)
        # What is on disk must verify on its own: read it back and walk it from the boundary (the whole
        # chain was walked before; this walk covers these bytes, and rows changed since then).
        again = walk(
            _file_rows(data_path), keys=keyring.keys, seq=first, prev=edge.hash, unkeyed_allowed=not edge.keyed,
            seal_required=False,
        )  # fmt: skip
        if not again.ok or again.last_seq != end or again.last_hash != last_hash:
            raise ArchiveError(f"{data_path.name} does not read back as written: {again.reason}")
        _commit(record, edge, actor=actor)
    except BaseException:
        for path in written:
            path.unlink(missing_ok=True)
        raise
    return Archived(data_path.name, first, end, len(rows), time.perf_counter() - started)


def _chunk_rows(first: int, end: int) -> list[tuple]:
    rows = []
    for row in chain._rows(first):
        if row[1] > end:
            break
        rows.append(row)
    return rows


def _commit(record: AuditArchive, edge, *, actor) -> None:
    with transaction.atomic():
        AuditHead.objects.select_for_update().filter(pk=1).first()
        if current_boundary() != edge:
            raise ArchiveError("another audit_archive ran at the same time; nothing was archived by this one")
        gone, _ = AuditEvent.objects.filter(seq__gte=record.first_seq, seq__lte=record.last_seq).delete()
        if gone != record.count:
            raise ArchiveError(
                f"expected to remove {record.count} event(s) from the database but found {gone}; nothing was archived"
            )
        record.save(force_insert=True)
        chain.record(
            "audit.archived",
            actor=actor,
            target=None,
            via=Channel.CLI,
            data={
                "first_seq": record.first_seq,
                "last_seq": record.last_seq,
                "count": record.count,
                "last_hash": record.last_hash,
                "file": record.name,
                "sha256": record.sha256,
            },
        )


# --- Reading archives back --------------------------------------------------------------------------


@dataclass
class Archives:
    directory: Path
    manifests: list[dict] = field(default_factory=list)  # verified, oldest first, up to the boundary
    ignored: list[str] = field(default_factory=list)  # archives whose events are still in the database

    def rows(self) -> Iterator[tuple]:
        for manifest in self.manifests:
            yield from _file_rows(self.directory / manifest["file"])

    @property
    def count(self) -> int:
        return sum(m["count"] for m in self.manifests)


def read_archives(directory: Path, keyring: Keyring | None = None) -> Archives:
    """Check every manifest's MAC and every file's checksum, and that they are the archives the
    database recorded; the events themselves are walked by ``chain.verify(archived=...)``."""
    keyring = keyring or Keyring.from_settings()
    if not directory.is_dir():
        raise ArchiveError(f"{directory} is not a directory")
    found = Archives(directory)
    recorded = {row.last_seq: row for row in AuditArchive.objects.all()}
    edge = max(recorded, default=0)
    by_file: dict[str, dict] = {}
    for path in sorted(directory.glob("audit-*.json")):
        if not _NAME.fullmatch(path.name):
            continue
        try:
            manifest = json.loads(path.read_text())
            signed = {name: value for name, value in manifest.items() if name != "mac"}
            ok = manifest.get("type") == TYPE and record_mac_ok(
                keyring, signed, str(manifest.get("key_id")), str(manifest.get("mac"))
            )
        except (OSError, ValueError, AttributeError):
            ok = False
        if not ok:
            raise ArchiveError(
                f"the manifest {path.name} does not verify: it was changed, or its key is not configured"
            )
        data = directory / manifest["file"]
        digest = hashlib.sha256()
        try:
            with data.open("rb") as packed:
                for block in iter(lambda: packed.read(1 << 20), b""):
                    digest.update(block)
        except OSError as exc:
            raise ArchiveError(f"{manifest['file']}, listed by {path.name}, cannot be read: {exc.strerror}") from None
        if digest.hexdigest() != manifest["sha256"]:
            raise ArchiveError(f"{manifest['file']} does not match the checksum of its manifest: the file was changed")
        if manifest["last_seq"] > edge:
            found.ignored.append(manifest["file"])
            continue
        by_file[manifest["file"]] = manifest
    for last_seq in sorted(recorded):
        row = recorded[last_seq]
        manifest = by_file.get(row.name)
        if manifest is None:
            raise ArchiveError(
                f"the database records that events #{row.first_seq} to #{row.last_seq} were archived to {row.name}, "
                f"which is not in {directory}"
            )
        if {k: manifest.get(k) for k in ("sha256", "first_seq", "last_seq", "last_hash", "mac")} != {
            "sha256": row.sha256,
            "first_seq": row.first_seq,
            "last_seq": row.last_seq,
            "last_hash": row.last_hash,
            "mac": row.mac,
        }:
            raise ArchiveError(
                f"{row.name} is not the archive the database recorded for events #{row.first_seq}-#{row.last_seq}"
            )
        found.manifests.append(manifest)
    extra = set(by_file) - {m["file"] for m in found.manifests}
    if extra:
        raise ArchiveError(f"{', '.join(sorted(extra))}: archives the database has no record of")
    return found
