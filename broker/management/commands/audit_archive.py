from datetime import UTC, datetime, time
from pathlib import Path

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError
from django.utils import timezone

from broker.audit.archive import CHUNK, ArchiveError, archive_before


def _when(text: str) -> datetime:
    try:
        value = datetime.fromisoformat(text)
    except ValueError:
        raise CommandError(f"--before: expected a date (2026-01-01) or a time with a zone, got {text!r}") from None
    if len(text) <= 10:  # a date: its midnight, UTC
        value = datetime.combine(value.date(), time(0), tzinfo=UTC)
    elif value.tzinfo is None:
        raise CommandError("--before: give the time with its zone (2026-01-01T00:00:00+00:00), or a date")
    return value


class Command(BaseCommand):
    help = (
        "Move the audit events older than --before into compressed, signed JSON Lines archives and remove them "
        "from the database; the chain is verified first and stays verifiable from the archive boundary."
    )

    def add_arguments(self, parser):
        parser.add_argument("--before", required=True, help="archive events older than this date or time (UTC)")
        parser.add_argument(
            "--dir", default=settings.AUDIT_ARCHIVE_DIR, help="where archives go (AUDIT_ARCHIVE_DIR by default)"
        )
        parser.add_argument("--chunk", type=int, default=CHUNK, help=f"events per archive file (default {CHUNK})")

    def handle(self, *args, before, dir, chunk, **options):
        if not dir:
            raise CommandError("give --dir, or set AUDIT_ARCHIVE_DIR")
        if chunk < 1:
            raise CommandError("--chunk: must be at least 1")
        when = _when(before)
        if when > timezone.now():
            raise CommandError("--before: must not be in the future")
        try:
            outcome = archive_before(when, Path(dir), chunk=chunk, checkpoints=settings.AUDIT_CHECKPOINT_FILE or None)
        except ArchiveError as exc:
            raise CommandError(str(exc)) from None
        self.stdout.write(f"the chain verified first: {outcome.verified} event(s)")
        for item in outcome.archives:
            rate = item.count / item.seconds if item.seconds else 0
            self.stdout.write(
                f"archived events #{item.first_seq} to #{item.last_seq} ({item.count}) to {Path(dir) / item.name} "
                f"in {item.seconds:.2f} s ({rate:,.0f} events/s)"
            )
        if not outcome.archives:
            self.stdout.write(f"nothing to archive before {when.isoformat()}")
        else:
            self.stdout.write(
                self.style.SUCCESS(
                    f"archived {outcome.count} event(s); keep {dir} with its manifests, and verify "
                    "with: manage.py audit_verify --archive " + str(dir)
                )
            )
