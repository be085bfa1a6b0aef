from django.core.management.base import BaseCommand, CommandError

from broker import audit


class Command(BaseCommand):
    help = "Walk the audit hash chain; name the first event that was edited, deleted or reordered."

    def handle(self, *args, **options):
        result = audit.verify()
        if not result.ok:
            self.stderr.write(
                f"audit chain BROKEN at event #{result.broken_seq}"
                f"{f' (row id {result.broken_id})' if result.broken_id else ''}: {result.reason}"
            )
            self.stderr.write(f"the {result.checked} event(s) before it verify; last good event #{result.head_seq}")
            raise CommandError("audit chain verification failed")
        self.stdout.write(
            self.style.SUCCESS(f"audit chain OK: {result.checked} event(s) verified")
            + f"; head #{result.head_seq} sha256 {result.head_hash}"
        )
