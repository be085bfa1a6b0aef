"""Demo users, groups and policy for README command 1. Idempotent: run it as often as you like."""

import json
import os
import secrets
from datetime import timedelta
from pathlib import Path

from django.conf import settings
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group
from django.core.management.base import BaseCommand, CommandError
from django.utils import timezone
from django_otp.plugins.otp_totp.models import TOTPDevice

from approvals import recertification
from approvals.models import AccessRequest, Recertification
from broker import policy
from broker.catalog import AUDITORS_GROUP, SECURITY_GROUP
from broker.management import demo
from broker.models import Channel, Eligibility, Role

DEMO_POLICY = Path(settings.BASE_DIR) / "demo" / "policy.yaml"

# username: (groups, is_staff, is_superuser, what they are for)
PEOPLE = {
    "admin": ([], True, True, "administrator (Django admin, revokes any grant)"),
    "alice": (["dba", "developers", "oncall"], False, False, "requester (dba, developers, on call)"),
    "bob": (["developers"], False, False, "requester (developers)"),
    "carol": (["dba-leads"], False, False, "approver (dba-leads; change manager for prod-deploy)"),
    "dave": (["sre-leads"], False, False, "approver (sre-leads)"),
    "erin": ([AUDITORS_GROUP], False, False, "auditor (reads everything, changes nothing)"),
    "frank": ([SECURITY_GROUP], False, False, "security (notified of break-glass)"),
}
TOTP_USERS = ("carol", "dave", "alice", "admin")
# Demo users with a login on the demo's PostgreSQL target (demo_alice, demo_bob).
PG_USERS = ("alice", "bob")


class Command(BaseCommand):
    help = "Create demo users, groups and the demo policy; print the demo credentials."

    def add_arguments(self, parser):
        parser.add_argument("--quiet", action="store_true", help="do not print the credentials")

    def handle(self, *args, quiet=False, **options):
        if not settings.DEBUG:
            raise CommandError("seed_demo creates users with known passwords; it runs only with DEBUG=1")
        store = Path(settings.VAR_DIR) / "demo-credentials.json"
        saved = json.loads(store.read_text()) if store.exists() else {}
        User = get_user_model()
        for username, (groups, staff, superuser, _) in PEOPLE.items():
            user = User.objects.filter(username=username).first()
            if user is None or username not in saved:
                saved[username] = {"password": secrets.token_urlsafe(9)}
                user = user or User(username=username, email=f"{username}@example.com")
                user.is_staff, user.is_superuser = staff, superuser
                user.set_password(saved[username]["password"])
                user.save()
            for name in groups:
                user.groups.add(Group.objects.get_or_create(name=name)[0])
            if username in TOTP_USERS:
                device = TOTPDevice.objects.filter(user=user, name="demo authenticator").first()
                if device is None:
                    device = TOTPDevice.objects.create(user=user, name="demo authenticator", confirmed=True)
                saved[username]["totp_secret"] = _base32(device.bin_key)
        for name in ("sre-leads", "dba-leads", "dba", "developers", "oncall", AUDITORS_GROUP, SECURITY_GROUP):
            Group.objects.get_or_create(name=name)
        demo.webhook_secret()
        dsn = demo.postgres_dsn()
        if dsn:
            for username in PG_USERS:
                saved[username].setdefault("pg_password", secrets.token_urlsafe(12))
            os.environ.setdefault(demo.PG_DSN_ENV, dsn)
            demo.prepare_postgres(dsn, {u: saved[u]["pg_password"] for u in PG_USERS})
        store.write_text(json.dumps(saved, indent=2))
        store.chmod(0o600)

        self._apply_policy(postgres=bool(dsn))
        self._insight_story()
        if quiet:
            return
        self.stdout.write("")
        self.stdout.write(self.style.WARNING("Demo users (local demo only; stored in var/demo-credentials.json):"))
        for username, (_, _, _, what) in PEOPLE.items():
            line = f"  {username:<6} password {saved[username]['password']:<14} {what}"
            if "totp_secret" in saved[username]:
                line += (
                    f"\n         TOTP secret {saved[username]['totp_secret']} (python manage.py totp_code {username})"
                )
            if "pg_password" in saved[username] and dsn:
                line += f"\n         PostgreSQL login demo_{username}, password {saved[username]['pg_password']}"
            self.stdout.write(line)

    def _apply_policy(self, *, postgres: bool) -> None:
        """Apply demo/policy.yaml; its postgres_role roles only when the broker's database is PostgreSQL."""
        loaded = policy.load(DEMO_POLICY.read_text(encoding="utf-8"))
        if not postgres:
            skipped = [r.slug for r in loaded.roles if r.target.connector == "postgres_role"]
            loaded.roles = [r for r in loaded.roles if r.slug not in skipped]
            loaded.eligibility = [e for e in loaded.eligibility if e.role not in skipped]
            for slug in skipped:
                self.stdout.write(
                    self.style.WARNING(
                        f"  skipped  {slug}: a postgres_role role, tried only when DATABASE_URL points at PostgreSQL "
                        "(README: Real targets in the demo)"
                    )
                )
        for change in policy.apply(loaded, via="cli", source=str(DEMO_POLICY)):
            self.stdout.write(f"  {change}")

    def _insight_story(self) -> None:
        """Issue 15's story (README, "Adaptive least privilege"): alice has a habit (sandbox-admin from
        this machine, these past days), so her first request for prod-deploy is flagged as unusual and
        asks for her code; and her eligibility for prod-deploy is due for review by carol."""
        User = get_user_model()
        alice = User.objects.get(username="alice")
        now = timezone.now()
        sandbox = Role.objects.filter(slug="sandbox-admin").first()
        if sandbox is not None and not AccessRequest.objects.filter(requester=alice).exists():
            AccessRequest.objects.bulk_create(
                AccessRequest(
                    role=sandbox, requester=alice, status=AccessRequest.Status.CANCELLED, duration=timedelta(minutes=2),
                    justification="", channel=Channel.PORTAL, created_at=now - timedelta(days=day),
                    stage_started_at=now - timedelta(days=day), expires_at=now - timedelta(days=day) + timedelta(hours=1),
                    decided_at=now - timedelta(days=day), closed_reason="demo history (seed_demo)",
                    network="127.0.0.0/24",
                )
                for day in range(1, 7)
            )  # fmt: skip
            self.stdout.write("  history  alice: 6 requests for sandbox-admin over the past week (anomaly scoring)")
        eligibility = Eligibility.objects.filter(role__slug="prod-deploy", user=alice).first()
        if eligibility is not None and not Recertification.objects.filter(eligibility=eligibility).exists():
            Eligibility.objects.filter(pk=eligibility.pk).update(created_at=now - timedelta(days=91))
            if recertification.recertifications_open(now=now):
                self.stdout.write("  review   alice's eligibility for prod-deploy is due: carol reviews it (/reviews/)")


def _base32(key: bytes) -> str:
    import base64

    return base64.b32encode(key).decode().rstrip("=")
