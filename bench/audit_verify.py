"""Benchmark: how fast is a full walk of the keyed audit chain, against plain SHA-256 over the same bytes?

    python bench/audit_verify.py --events 200000                    # embedded: SQLite in a scratch folder
    DATABASE_URL=postgresql://postgres@127.0.0.1:5432/bench python bench/audit_verify.py --events 1000000
    DATABASE_URL=... python bench/audit_verify.py --events 0          # walk what an earlier run wrote

It migrates the database it is given (use a scratch one: it appends N events to its trail), writes
N chained, keyed events in bulk, then measures in the same run:

- full walk: ``audit.verify()``, what ``audit_verify`` and the scheduled check do (database read,
  canonical JSON, HMAC-SHA256, every check);
- the baselines over the same canonical bytes, already in memory: plain SHA-256 (the unkeyed
  scheme) and HMAC-SHA256 alone, so the cost of the key itself shows;
- the walk over model instances (``AuditEvent.objects.iterator()``), as the verifier did before;
- the audit log page's check (``chain_status()``) after the scheduled walk, with 100 newer events.
"""

from __future__ import annotations

import argparse
import hashlib
import hmac
import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def rate(count: int, seconds: float) -> str:
    return f"{count / seconds:>12,.0f} events/s  ({seconds * 1e6 / max(count, 1):6.2f} µs/event, {seconds:7.2f} s)"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--events", type=int, default=200_000)
    args = parser.parse_args()

    scratch = Path(tempfile.mkdtemp(prefix="broker-bench-"))
    os.environ.setdefault("BROKER_VAR_DIR", str(scratch / "var"))
    os.environ.setdefault("SECRET_KEY", "bench-only-" + "x" * 32)
    os.environ.setdefault("AUDIT_KEY", "bench-only-audit-key-" + "y" * 32)
    os.environ.setdefault("ALLOWED_HOSTS", "localhost")
    os.environ.setdefault("LOG_LEVEL", "WARNING")
    os.environ["DJANGO_SETTINGS_MODULE"] = "broker.settings"

    import django

    django.setup()
    from django.core.management import call_command
    from django.db import connection, transaction
    from django.utils import timezone

    from broker import audit
    from broker.audit.keys import GENESIS, Keyring, canonical, mac
    from broker.audit.status import chain_status, store_verification
    from broker.audit.walk import ROW
    from broker.models import AuditEvent, AuditHead, Channel

    call_command("migrate", verbosity=0)
    keyring = Keyring.from_settings()
    head = AuditHead.objects.filter(pk=1).first()
    seq, prev = (head.seq, head.hash) if head else (0, GENESIS)
    now = timezone.now()
    data = {"justification": "nightly maintenance of the billing database", "duration_seconds": 3600, "ticket": "OPS-1"}

    t0 = time.perf_counter()
    batch: list[AuditEvent] = []
    for i in range(args.events):
        seq += 1
        fields = (seq, now, f"user{i % 50}", "request.created", "request", str(i), "db-admin", f"user{i % 50}")
        payload = canonical(*fields, Channel.API, "192.0.2.10", data, prev, keyring.key_id)
        digest = mac(keyring.current, payload)
        batch.append(
            AuditEvent(
                seq=seq, at=now, actor_name=fields[2], action=fields[3], target_type="request", target_id=str(i),
                role="db-admin", subject=fields[7], channel=Channel.API, ip="192.0.2.10", data=data,
                prev_hash=prev, hash=digest, key_id=keyring.key_id,
            )
        )  # fmt: skip
        prev = digest
        if len(batch) == 5000:
            AuditEvent.objects.bulk_create(batch)
            batch = []
    AuditEvent.objects.bulk_create(batch)
    AuditHead.objects.update_or_create(pk=1, defaults={"seq": seq, "hash": prev})
    total = AuditEvent.objects.count()
    print(f"database: {connection.vendor}; {total:,} events in the trail ({time.perf_counter() - t0:.1f} s to write)")

    t0, cpu0 = time.perf_counter(), time.process_time()
    result = audit.verify()
    walk_seconds, cpu_seconds = time.perf_counter() - t0, time.process_time() - cpu0
    assert result.ok and result.checked == total, result
    print(f"full walk (audit.verify)         {rate(total, walk_seconds)}")
    # On a shared machine the wall clock also counts time spent waiting for a core.
    print(f"  the same, this process's CPU   {rate(total, cpu_seconds)}")

    rows = list(AuditEvent.objects.order_by("seq").values_list(*ROW))
    payloads = [canonical(*row[1:13], row[14]) for row in rows]
    del rows
    t0 = time.perf_counter()
    for payload in payloads:
        hashlib.sha256(payload).hexdigest()
    print(f"baseline: SHA-256, same bytes    {rate(total, time.perf_counter() - t0)}")
    key = keyring.current
    t0 = time.perf_counter()
    for payload in payloads:
        hmac.digest(key, payload, "sha256").hex()
    print(f"baseline: HMAC-SHA256, same bytes{rate(total, time.perf_counter() - t0)}")
    del payloads

    t0 = time.perf_counter()
    for event in AuditEvent.objects.order_by("seq").iterator(chunk_size=2000):
        payload = canonical(
            event.seq, event.at, event.actor_name, event.action, event.target_type, event.target_id, event.role,
            event.subject, event.channel, event.ip, event.data, event.prev_hash, event.key_id,
        )  # fmt: skip
        hmac.digest(key, payload, "sha256")
    print(f"walk over model instances        {rate(total, time.perf_counter() - t0)}")

    store_verification(result)
    with transaction.atomic():
        for i in range(100):
            audit.record("bench.event", actor=None, target=("thing", i), via=Channel.CLI)
    t0 = time.perf_counter()
    status = chain_status()
    assert status.ok and status.walked_now == 101, status
    print(
        f"audit log page's check: {status.walked_now} events from the stored point in {(time.perf_counter() - t0) * 1000:.1f} ms"
    )


if __name__ == "__main__":
    main()
