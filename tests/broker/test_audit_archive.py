"""Audit retention: archive the old events, remove them, and verify archives and database as one chain."""

import gzip
import hashlib
import io
import json
import re
from datetime import timedelta

import pytest
from django.core.management import CommandError, call_command
from django.db import transaction
from django.utils import timezone

from broker import audit
from broker.audit.archive import ArchiveError, _file_rows, archive_before, read_archives
from broker.audit.status import chain_status, store_verification
from broker.models import AuditArchive, AuditEvent, Channel

pytestmark = pytest.mark.django_db


def write(n, *, start=0):
    with transaction.atomic():
        return [
            audit.record("test.event", actor=None, target=("thing", i), via=Channel.CLI, data={"i": i, "ü": "é"})
            for i in range(start, start + n)
        ]


def tamper(path):
    """Change event #2's data in an archive file (and recompress it)."""
    text = read_gz(path)
    changed = re.sub(r'"i": ?1,', '"i": 9,', text)
    assert changed != text
    with gzip.open(path, "wt") as out:
        out.write(changed)


def read_gz(path):
    with gzip.open(path, "rt") as packed:
        return packed.read()


def archive(tmp_path, *, before=None, chunk=50_000):
    out = io.StringIO()
    call_command(
        "audit_archive", "--before", (before or timezone.now()).isoformat(), "--dir", str(tmp_path),
        "--chunk", str(chunk), stdout=out,
    )  # fmt: skip
    return out.getvalue()


def verify(*args):
    out = io.StringIO()
    call_command("audit_verify", *args, stdout=out, stderr=out)
    return out.getvalue()


def test_archiving_moves_old_events_to_a_file_and_keeps_the_rest_verifiable(tmp_path, clock):
    write(5)
    clock.shift(timedelta(days=40))
    write(3, start=5)

    printed = archive(tmp_path, before=timezone.now() - timedelta(days=1))

    assert "archived events #1 to #5 (5)" in printed
    assert list(AuditEvent.objects.order_by("seq").values_list("seq", flat=True)) == [6, 7, 8, 9]
    assert AuditEvent.objects.get(seq=9).action == "audit.archived"
    assert audit.verify().ok
    assert "audit chain OK: 4 event(s)" in verify()


def test_the_archive_is_compressed_json_lines_with_a_signed_manifest(tmp_path):
    events = write(3)
    archive(tmp_path)

    lines = [json.loads(line) for line in read_gz(tmp_path / "audit-000000000001-000000000003.jsonl.gz").splitlines()]
    manifest = json.loads((tmp_path / "audit-000000000001-000000000003.json").read_text())

    assert [line["seq"] for line in lines] == [1, 2, 3]
    assert lines[2]["hash"] == events[2].hash and lines[0]["data"] == {"i": 0, "ü": "é"}
    assert manifest["first_seq"] == 1 and manifest["last_seq"] == 3 and manifest["count"] == 3
    assert manifest["last_hash"] == events[2].hash and len(manifest["mac"]) == 64


def test_archives_and_database_verify_as_one_chain_across_the_boundary(tmp_path):
    write(7)
    archive(tmp_path, chunk=3)  # three files: #1-3, #4-6, #7
    write(2, start=7)

    printed = verify("--archive", str(tmp_path))

    # 7 events, 3 audit.archived events (one per file), 2 more: 7 of them from the files.
    assert "audit chain OK: 12 event(s) (7 from 3 archive(s)" in printed


def test_archiving_twice_continues_from_the_boundary(tmp_path):
    write(3)
    archive(tmp_path)
    write(2, start=3)
    archive(tmp_path)

    assert AuditArchive.objects.count() == 2
    assert list(AuditEvent.objects.values_list("seq", flat=True)) == [7]
    assert "audit chain OK: 7 event(s)" in verify("--archive", str(tmp_path))


def test_a_changed_archive_line_is_detected(tmp_path):
    write(3)
    archive(tmp_path)
    path = tmp_path / "audit-000000000001-000000000003.jsonl.gz"
    tamper(path)

    with pytest.raises(CommandError):
        verify("--archive", str(tmp_path))
    with pytest.raises(ArchiveError, match="does not match the checksum"):
        read_archives(tmp_path)


def test_a_changed_archive_with_its_checksum_updated_fails_the_manifest_mac(tmp_path):
    write(3)
    archive(tmp_path)
    path = tmp_path / "audit-000000000001-000000000003.jsonl.gz"
    tamper(path)
    manifest_path = tmp_path / "audit-000000000001-000000000003.json"
    manifest = json.loads(manifest_path.read_text())
    manifest["sha256"] = hashlib.sha256(path.read_bytes()).hexdigest()
    manifest_path.write_text(json.dumps(manifest))

    with pytest.raises(ArchiveError, match=r"manifest .* does not verify"):
        read_archives(tmp_path)


def test_an_archived_event_rewritten_in_a_consistent_archive_fails_its_mac(tmp_path, settings):
    """Whoever rewrites an event, its file and the manifest's checksum still lacks the key for the MAC."""
    write(3)
    archive(tmp_path)
    path = tmp_path / "audit-000000000001-000000000003.jsonl.gz"
    tamper(path)
    # Skip the file checks (as if the manifest had been rewritten too), and walk the events themselves.
    result = audit.verify(archived=lambda: _file_rows(path))
    assert not result.ok and result.broken_seq == 2


def test_a_missing_archive_file_is_named(tmp_path):
    write(4)
    archive(tmp_path, chunk=2)
    (tmp_path / "audit-000000000001-000000000002.jsonl.gz").unlink()
    (tmp_path / "audit-000000000001-000000000002.json").unlink()

    with pytest.raises(ArchiveError, match=r"#1 to #2 were archived to audit-000000000001-000000000002\.jsonl\.gz"):
        read_archives(tmp_path)


def test_deleting_the_first_events_left_in_the_database_breaks_the_chain_at_the_boundary(tmp_path):
    write(6)
    archive(tmp_path, before=AuditEvent.objects.get(seq=4).at)  # #1-3 archived
    AuditEvent.objects.filter(seq=4).delete()

    result = audit.verify()

    assert not result.ok
    assert "expected event #4 next but found #5" in result.reason


def test_a_boundary_row_forged_in_the_database_is_refused(tmp_path):
    write(6)
    archive(tmp_path, before=AuditEvent.objects.get(seq=4).at)
    AuditEvent.objects.filter(seq__lte=5).delete()
    AuditArchive.objects.update(last_seq=5, last_hash=AuditEvent.objects.get(seq=6).prev_hash)

    result = audit.verify()

    assert not result.ok
    assert "does not carry a valid MAC" in result.reason


def test_nothing_is_archived_when_the_chain_does_not_verify(tmp_path):
    write(4)
    AuditEvent.objects.filter(seq=2).update(data={"i": 99})

    with pytest.raises(CommandError, match="does not verify at event #2"):
        archive(tmp_path)
    assert AuditEvent.objects.count() == 4
    assert not list(tmp_path.iterdir())


def test_the_audit_page_status_starts_after_the_boundary(tmp_path):
    write(4)
    store_verification(audit.verify())
    archive(tmp_path)
    write(1, start=4)

    status = chain_status()

    assert status.ok and status.verified_seq == 6


def test_the_scheduled_walk_after_archiving_verifies(tmp_path):
    write(4)
    archive(tmp_path)

    result = audit.verify()

    assert result.ok and result.head_seq == 5 and result.checked == 1


def test_archive_before_refuses_an_existing_file(tmp_path):
    write(2)
    (tmp_path / "audit-000000000001-000000000002.jsonl.gz").write_bytes(b"")

    with pytest.raises(ArchiveError, match="exists already"):
        archive_before(timezone.now(), tmp_path)
    assert AuditEvent.objects.count() == 2


def test_a_walk_that_an_archive_overtakes_walks_again_from_the_new_boundary(tmp_path, monkeypatch):
    """The walk read "no boundary", then an archive committed and removed the events it expected:
    it must not report the trail broken, but walk again from the new boundary."""
    from broker.audit import boundary, chain

    write(6)
    archive(tmp_path, before=AuditEvent.objects.get(seq=4).at)  # #1-3 archived meanwhile
    real, seen = boundary.current_boundary, []

    def stale_first(keyring=None):
        seen.append(1)
        return boundary.NONE if len(seen) == 1 else real(keyring)

    monkeypatch.setattr(chain, "current_boundary", stale_first)

    result = audit.verify()

    assert result.ok, result.reason
    assert len(seen) >= 3  # the stale read, the check that it moved, the walk again
