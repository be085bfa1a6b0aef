"""Benchmark: the cost of a /metrics scrape with many grants, and the speed of audit_archive.

    DATABASE_URL=postgresql://postgres@127.0.0.1:5432/bench_ops python bench/operations.py
    python bench/operations.py --grants 20000 --events 50000       # embedded: SQLite in a scratch folder

Use a scratch database: it migrates it and fills it. In the same run it measures:

- the scrape (the /metrics view through Django's test client, token checked, every figure read
  from the database) with an empty grants table, then with ``--grants`` grants (default 100,000:
  ended ones with a revocation lag, plus active ones and pending requests), median of 7;
  the baseline beside it is ``SELECT count(*)`` over the same table, the floor of any figure that
  looks at every row (the lag histogram and the grants by state do);
- ``audit_archive``: ``--events`` keyed events (default 200,000) archived in chunks of 50,000
  (walk first, write and re-read the gzip file, delete, record the boundary), in events per second,
  beside the full walk of the same events (``audit.verify()``) and the walk of the archives and
  database as one chain (``audit_verify --archive``).
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from datetime import timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--grants", type=int, default=100_000)
    parser.add_argument("--events", type=int, default=200_000)
    args = parser.parse_args()

    scratch = Path(tempfile.mkdtemp(prefix="broker-bench-ops-"))
    os.environ.setdefault("BROKER_VAR_DIR", str(scratch / "var"))
    os.environ.setdefault("SECRET_KEY", "bench-only-" + "x" * 32)
    os.environ.setdefault("AUDIT_KEY", "bench-only-audit-key-" + "y" * 32)
    os.environ.setdefault("ALLOWED_HOSTS", "localhost,testserver")
    os.environ["METRICS_TOKEN"] = "bench-only-metrics-token-0123456789"  # noqa: S105 - a bench-only value
    os.environ.setdefault("LOG_LEVEL", "WARNING")
    os.environ["DJANGO_SETTINGS_MODULE"] = "broker.settings"

    import django

    django.setup()
    from django.contrib.auth.models import User
    from django.core.management import call_command
    from django.db import connection, transaction
    from django.test import Client
    from django.utils import timezone

    from approvals.models import AccessRequest
    from broker import audit
    from broker.audit.archive import archive_before, read_archives
    from broker.audit.keys import GENESIS, Keyring, canonical, mac
    from broker.models import AuditEvent, AuditHead, Channel, Role
    from grants.models import Grant

    call_command("migrate", verbosity=0)
    print(f"database: {connection.vendor} ({connection.settings_dict['NAME']})")
    client = Client()
    header = {"HTTP_AUTHORIZATION": f"Bearer {os.environ['METRICS_TOKEN']}"}

    def scrape() -> float:
        start = time.perf_counter()
        response = client.get("/metrics", **header)
        assert response.status_code == 200, response.status_code
        return time.perf_counter() - start

    def count_rows() -> float:
        start = time.perf_counter()
        with connection.cursor() as cursor:
            cursor.execute(f"SELECT count(*) FROM {Grant._meta.db_table}")  # noqa: S608
            cursor.fetchone()
        return time.perf_counter() - start

    def median(measure, n: int = 7) -> float:
        measure()  # warm up
        return statistics.median(measure() for _ in range(n))

    # --- the scrape -----------------------------------------------------------------------------
    Grant.objects.all().delete()
    AccessRequest.objects.all().delete()
    empty = median(scrape)
    empty_count = median(count_rows)

    users = [User.objects.get_or_create(username=f"bench{i}")[0] for i in range(50)]
    roles = [
        Role.objects.get_or_create(
            slug=f"bench-{i}", defaults={"name": f"bench {i}", "max_duration": timedelta(hours=4),
                                         "default_duration": timedelta(hours=1), "auto_approve": True},
        )[0]
        for i in range(10)
    ]  # fmt: skip
    now = timezone.now()
    t0 = time.perf_counter()
    made = 0
    while made < args.grants:
        with transaction.atomic():
            n = min(5000, args.grants - made)
            requests = AccessRequest.objects.bulk_create(
                AccessRequest(
                    requester=users[(made + i) % 50], role=roles[(made + i) % 10], duration=timedelta(hours=1),
                    justification="bench", status=AccessRequest.Status.APPROVED, channel=Channel.API, created_at=now,
                    expires_at=now, decided_at=now,
                )
                for i in range(n)
            )  # fmt: skip
            Grant.objects.bulk_create(
                Grant(
                    request=req, user=req.requester, role=req.role, created_at=now - timedelta(days=1),
                    starts_at=now - timedelta(days=1), expires_at=now - timedelta(hours=23),
                    ended_at=now - timedelta(hours=23) + timedelta(milliseconds=20 + (made + i) % 400),
                    activated_at=now - timedelta(days=1), status=Grant.Status.EXPIRED, end_reason=Grant.EndReason.EXPIRY,
                    end_requested_at=now - timedelta(hours=23),
                )
                for i, req in enumerate(requests)
            )  # fmt: skip
            made += n
    print(f"filled {made:,} grants and requests in {time.perf_counter() - t0:.1f} s")
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute("ANALYZE")
    full = median(scrape)
    full_count = median(count_rows)
    print()
    print(f"{'/metrics scrape (median of 7)':<44}{'empty tables':>14}{f'{made:,} grants':>18}")
    print(f"{'  the scrape (every figure, token checked)':<44}{empty * 1000:>11.1f} ms{full * 1000:>15.1f} ms")
    print(f"{'  baseline: count(*) of the grants':<44}{empty_count * 1000:>11.1f} ms{full_count * 1000:>15.1f} ms")

    # --- audit_archive ------------------------------------------------------------------------------
    keyring = Keyring.from_settings()
    head = AuditHead.objects.filter(pk=1).first()
    seq, prev = (head.seq, head.hash) if head else (0, GENESIS)
    old = timezone.now() - timedelta(days=400)
    data = {"justification": "nightly maintenance of the billing database", "duration_seconds": 3600}
    batch: list[AuditEvent] = []
    for i in range(args.events):
        seq += 1
        payload = canonical(seq, old, "bench", "request.created", "request", str(i), "bench-0", "bench",
                            Channel.API, "192.0.2.10", data, prev, keyring.key_id)  # fmt: skip
        digest = mac(keyring.current, payload)
        batch.append(
            AuditEvent(seq=seq, at=old, actor_name="bench", action="request.created", target_type="request",
                       target_id=str(i), role="bench-0", subject="bench", channel=Channel.API, ip="192.0.2.10",
                       data=data, prev_hash=prev, hash=digest, key_id=keyring.key_id)
        )  # fmt: skip
        prev = digest
        if len(batch) == 5000:
            AuditEvent.objects.bulk_create(batch)
            batch.clear()
    AuditEvent.objects.bulk_create(batch)
    AuditHead.objects.update_or_create(pk=1, defaults={"seq": seq, "hash": prev})
    total = AuditEvent.objects.count()

    start = time.perf_counter()
    walked = audit.verify()
    walk_seconds = time.perf_counter() - start
    assert walked.ok, walked.reason

    folder = scratch / "archive"
    start = time.perf_counter()
    outcome = archive_before(timezone.now() - timedelta(days=1), folder)
    archive_seconds = time.perf_counter() - start
    chunks = sum(a.seconds for a in outcome.archives)
    size = sum(p.stat().st_size for p in folder.iterdir())

    start = time.perf_counter()
    archives = read_archives(folder)
    joined = audit.verify(archived=archives.rows)
    joined_seconds = time.perf_counter() - start
    assert joined.ok, joined.reason

    print()
    print(f"audit_archive of {outcome.count:,} events ({len(outcome.archives)} files, {size / 1e6:.1f} MB gzip)")
    print(f"  {'full walk of the database (baseline)':<52}{walked.checked / walk_seconds:>10,.0f} events/s")
    print(
        f"  {'audit_archive, each chunk (read, walk, write, re-read, delete)':<52}{outcome.count / chunks:>10,.0f} events/s"
    )
    print(
        f"  {'audit_archive, whole command (with the walk first)':<52}{outcome.count / archive_seconds:>10,.0f} events/s"
    )
    print(f"  {'audit_verify --archive (files and database)':<52}{joined.checked / joined_seconds:>10,.0f} events/s")
    print(f"  ({total:,} events in the trail before archiving)")


if __name__ == "__main__":
    main()
