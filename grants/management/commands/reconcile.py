from django.core.management.base import BaseCommand

from grants.reconcile import reconcile


class Command(BaseCommand):
    help = "Compare every target with the effective grants now: report drift, fix authoritative targets."

    def handle(self, *args, **options):
        report = reconcile()
        self.stdout.write(f"{report.targets} target(s) checked")
        for label, items in (("removed", report.removed), ("drift", report.detected), ("restored", report.restored)):
            for item in items:
                self.stdout.write(f"  {label:<8} {item}")
        for error in report.errors:
            self.stderr.write(f"  error    {error}")
        if not (report.removed or report.detected or report.restored or report.errors):
            self.stdout.write("no drift: every member holds an effective grant")
