import sys
from pathlib import Path

from django.core.management.base import BaseCommand, CommandError

from broker import policy
from broker.policy import suggest as policy_suggest


class Command(BaseCommand):
    help = "Validate a policy file (roles and eligibility) and make the catalog match it."

    def add_arguments(self, parser):
        parser.add_argument("file", help="the YAML policy file, or - for standard input")
        parser.add_argument("--dry-run", action="store_true", help="print the changes without writing anything")
        parser.add_argument(
            "--prune", action="store_true", help="also retire the roles missing from the file (their grants end)"
        )
        parser.add_argument(
            "--suggest",
            action="store_true",
            help="print the file without the eligibilities nobody used (and those the broker removed); change nothing",
        )

    def handle(self, *args, file, dry_run, prune, suggest=False, **options):
        try:
            text = sys.stdin.read() if file == "-" else Path(file).read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise CommandError(f"cannot read {file}: {exc}") from None
        try:
            loaded = policy.load(text)
        except policy.PolicyInvalid as exc:
            for error in exc.errors:
                self.stderr.write(f"{file}: {error}")
            raise CommandError(f"{len(exc.errors)} error(s) in {file}; nothing was changed") from None

        if suggest:
            text_out, dropped = policy_suggest.suggest(text, loaded)
            self.stdout.write(text_out, ending="")
            for (slug, who), why in sorted(dropped.items()):
                self.stderr.write(f"left out: {who} from {slug}: {why}")
            self.stderr.write(
                f"{len(dropped)} eligibilit{'y' if len(dropped) == 1 else 'ies'} left out; nothing was changed"
            )
            return
        changes = policy.apply(loaded, prune=prune, dry_run=dry_run, via="cli", source=str(file))
        real = [c for c in changes if c.kind not in policy.NOT_CHANGES]
        for change in changes:
            self.stdout.write(f"  {change}")
        if dry_run:
            self.stdout.write(f"dry run: {len(real)} change(s) would be made; nothing was written")
        elif real:
            self.stdout.write(self.style.SUCCESS(f"applied {file}: {len(real)} change(s)"))
        else:
            self.stdout.write(f"{file}: already up to date, nothing changed")
