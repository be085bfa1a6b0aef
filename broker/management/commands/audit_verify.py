import json
from datetime import datetime
from pathlib import Path

from django.core.management.base import BaseCommand, CommandError

from broker import audit
from broker.audit.archive import ArchiveError, read_archives
from broker.audit.checkpoints import CheckpointError, read_checkpoints
from broker.audit.keys import GENESIS, Keyring
from broker.audit.status import stored_verification
from broker.audit.walk import walk

_EXPORT_FIELDS = ("seq", "at", "actor", "action", "target_type", "target_id", "role", "subject", "channel", "ip")


class Command(BaseCommand):
    help = (
        "Walk the audit chain and check every event's MAC under the audit keys; name the first event that was "
        "edited, deleted or reordered. With --checkpoints, also prove the trail matches every signed checkpoint."
    )

    def add_arguments(self, parser):
        parser.add_argument(
            "--checkpoints",
            metavar="FILE",
            help="a file of signed checkpoints (AUDIT_CHECKPOINT_FILE): every one must match the trail",
        )
        parser.add_argument(
            "--incremental",
            action="store_true",
            help="start from the point the scheduled check last verified instead of the first event",
        )
        parser.add_argument(
            "--archive",
            metavar="DIR",
            help="also walk the archives audit_archive wrote to DIR: archives and database as one chain from event #1",
        )
        parser.add_argument(
            "--export",
            metavar="FILE",
            help="verify a JSON Lines export offline instead of the database (needs only the keys)",
        )

    def handle(self, *args, checkpoints=None, incremental=False, export=None, archive=None, **options):
        if export:
            self._verify_export(Path(export), checkpoints)
            return
        archived = None
        if archive:
            if incremental:
                raise CommandError("--archive walks everything from event #1: leave out --incremental")
            try:
                archives = read_archives(Path(archive))
            except ArchiveError as exc:
                self._broken(None, None, str(exc), 0, 0)
            for name in archives.ignored:
                self.stdout.write(f"note: {name} is not recorded as archived (its events are still in the database)")
            archived = archives.rows
        since = None
        if incremental:
            stored, authentic = stored_verification()
            if not authentic:
                raise CommandError(
                    "the stored outcome of the scheduled verification has no valid MAC (changed in the database, "
                    "or the key changed): run a full walk, without --incremental"
                )
            if stored is not None and stored.ok:
                since = (stored.seq, stored.hash)
                self.stdout.write(f"starting from event #{stored.seq}, verified by the scheduled check at {stored.at}")
            else:
                self.stdout.write("no verified point stored: walking the whole chain")
        try:
            result = audit.verify(checkpoints=checkpoints, since=since, archived=archived)
        except ArchiveError as exc:
            self._broken(None, None, str(exc), 0, 0)
        if not result.ok:
            self._broken(result.broken_seq, result.broken_id, result.reason, result.checked, result.head_seq)
        keys = ", ".join(result.key_ids) or "none"
        extra = f"; {result.unkeyed} unkeyed event(s) from before the key, sealed" if result.unkeyed else ""
        anchored = f"; {result.checkpoints} checkpoint(s) match" if checkpoints else ""
        start = f" after #{result.since_seq}" if result.since_seq else ""
        if archived is not None:
            start += f" ({archives.count} from {len(archives.manifests)} archive(s), the rest in the database)"
        self.stdout.write(
            self.style.SUCCESS(f"audit chain OK: {result.checked} event(s){start} verified")
            + f" (HMAC-SHA256, key id(s) {keys}{extra}); head #{result.head_seq} hash {result.head_hash}{anchored}"
        )

    def _broken(self, seq, row_id, reason, checked, last_good) -> None:
        if seq is None:
            self.stderr.write(f"audit chain verification FAILED: {reason}")
        else:
            self.stderr.write(f"audit chain BROKEN at event #{seq}{f' (row id {row_id})' if row_id else ''}: {reason}")
            self.stderr.write(f"the {checked} event(s) before it verify; last good event #{last_good}")
        raise CommandError("audit chain verification failed")

    def _verify_export(self, path: Path, checkpoints: str | None) -> None:
        keyring = Keyring.from_settings()
        anchors = {}
        if checkpoints:
            try:
                anchors = read_checkpoints(checkpoints, keyring).anchors
            except CheckpointError as exc:
                self._broken(None, None, str(exc), 0, 0)
        try:
            rows = [_export_row(number, line) for number, line in enumerate(path.open(), start=1) if line.strip()]
        except OSError as exc:
            raise CommandError(f"cannot read {path}: {exc.strerror}") from None
        if not rows:
            raise CommandError(f"{path} holds no events")
        first = rows[0][1]
        walked = walk(
            rows, keys=keyring.keys, seq=first, prev=GENESIS if first == 1 else None, anchors=anchors, gaps=True
        )
        if not walked.ok:
            self._broken(walked.broken_seq, None, walked.reason, walked.checked, walked.last_seq)
        contiguous = walked.last_seq - first + 1 == walked.checked
        shape = (
            f"#{first} to #{walked.last_seq}, contiguous"
            if contiguous
            else f"#{first} to #{walked.last_seq} with gaps (a filtered export: links checked between neighbours only)"
        )
        self.stdout.write(
            self.style.SUCCESS(f"export OK: {walked.checked} event(s) verified")
            + f" ({shape}; key id(s) {', '.join(sorted(walked.key_ids)) or 'none'}); last hash {walked.last_hash}"
        )


def _export_row(number: int, line: str) -> tuple:
    """A line of a JSON Lines export as a row of the walk (broker.audit.walk.ROW order)."""
    try:
        item = json.loads(line)
        values = [item[name] for name in _EXPORT_FIELDS]
        values[1] = datetime.fromisoformat(values[1])
        return (None, *values, item["data"], item["prev_hash"], item["hash"], item.get("key_id", ""))
    except (ValueError, KeyError, TypeError) as exc:
        raise CommandError(f"line {number} is not an event of a JSON Lines audit export: {exc}") from None
