"""Seal the events written before the audit trail was keyed (see broker/audit/legacy.py)."""

from django.db import migrations
from django.utils import timezone

from broker.audit.keys import Keyring
from broker.audit.legacy import seal_unkeyed


def seal(apps, schema_editor):
    data = seal_unkeyed(
        apps.get_model("broker", "AuditEvent"),
        apps.get_model("broker", "AuditHead"),
        keyring=Keyring.from_settings(),
        now=timezone.now(),
    )
    if data is not None:
        state = "verified" if data["unkeyed_verified"] else f"did NOT verify (at #{data['unkeyed_broken_at']})"
        print(f"\n  sealed {data['unkeyed_events']} unkeyed audit event(s) under the audit key; they {state}")


class Migration(migrations.Migration):
    dependencies = [("broker", "0003_audit_keyed")]

    operations = [migrations.RunPython(seal, migrations.RunPython.noop)]
