"""Benchmark: how late after expires_at does a real worker remove access, with many grants at once?

    python bench/revocation_lag.py --grants 200                      # embedded: SQLite + filesystem broker
    DATABASE_URL=postgresql://postgres@127.0.0.1:5432/bench \\
    CELERY_BROKER_URL=redis://127.0.0.1:6379/14 python bench/revocation_lag.py --grants 500

It migrates the database it is given (use a scratch one: it creates users, roles and grants),
starts `celery -A broker worker --beat` as a subprocess, creates N auto-approved grants that all
expire at the same moment, waits until every one has ended, and prints the distribution of
activation latency (activated_at - starts_at) and revocation lag (ended_at - expires_at).
"""

from __future__ import annotations

import argparse
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(p / 100 * (len(ordered) - 1)))]


def describe(name: str, seconds: list[float]) -> str:
    ms = [s * 1000 for s in seconds]
    return (
        f"{name:<18} n={len(ms):<5} p50={percentile(ms, 50):8.1f} ms  p95={percentile(ms, 95):8.1f} ms  "
        f"max={max(ms):8.1f} ms  mean={statistics.fmean(ms):8.1f} ms"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--grants", type=int, default=200)
    parser.add_argument(
        "--lead", type=float, help="seconds from now until they all expire (default: 15, plus 0.1 per grant)"
    )
    parser.add_argument("--concurrency", type=int, default=4)
    parser.add_argument("--pool", default="prefork", choices=["prefork", "threads", "solo"])
    args = parser.parse_args()
    if args.lead is None:
        args.lead = 15.0 + 0.1 * args.grants

    scratch = Path(tempfile.mkdtemp(prefix="broker-bench-"))
    os.environ.setdefault("BROKER_VAR_DIR", str(scratch / "var"))
    os.environ.setdefault("SECRET_KEY", "bench-only-" + "x" * 32)
    os.environ.setdefault("ALLOWED_HOSTS", "localhost")
    os.environ.setdefault("LOG_LEVEL", "WARNING")
    os.environ["DJANGO_SETTINGS_MODULE"] = "broker.settings"

    import django

    django.setup()
    from django.core.management import call_command
    from django.utils import timezone

    from approvals.services import request_create
    from broker.models import Channel, Eligibility, Role
    from grants.models import Grant
    from tests.factories import UserFactory

    call_command("migrate", verbosity=0)
    suffix = str(int(time.time()))
    role = Role.objects.create(
        slug=f"bench-{suffix}",
        name="bench",
        max_duration=timedelta(hours=1),
        default_duration=timedelta(minutes=1),
        auto_approve=True,
        requires_justification=False,
        connector_config={"group": f"bench-{suffix}"},
    )
    users = [UserFactory(username=f"bench-{suffix}-{i}") for i in range(args.grants)]
    Eligibility.objects.bulk_create([Eligibility(role=role, user=u) for u in users])

    worker = subprocess.Popen(
        [sys.executable, "-m", "celery", "-A", "broker", "worker", "--beat", "--loglevel", "WARNING",
         "--pool", args.pool, "--concurrency", str(args.concurrency), "--schedule", str(scratch / "beat")],
        cwd=ROOT, start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        time.sleep(3)
        deadline = timezone.now() + timedelta(seconds=args.lead)
        t0 = time.monotonic()
        for user in users:
            if timezone.now() >= deadline:
                sys.exit(f"creating the grants took longer than --lead {args.lead:g}s; run again with a larger --lead")
            request_create(requester=user, role=role, duration=deadline - timezone.now(), via=Channel.CLI)
        print(f"created {args.grants} grants in {time.monotonic() - t0:.2f}s; all expire at {deadline:%H:%M:%S.%f}")
        grants = Grant.objects.filter(role=role)
        while grants.exclude(status__in=("expired", "revoked", "failed")).exists():
            if time.monotonic() - t0 > args.lead + 120:
                print("timed out waiting for every grant to end", file=sys.stderr)
                break
            time.sleep(0.2)
        rows = list(grants.values_list("starts_at", "activated_at", "expires_at", "ended_at", "status"))
    finally:
        os.killpg(worker.pid, signal.SIGTERM)
        worker.wait(timeout=30)

    from django.db import connection

    print(
        f"database: {connection.vendor}; broker: {os.environ.get('CELERY_BROKER_URL', 'filesystem')}; "
        f"pool: {args.pool} x {args.concurrency}"
    )
    print(describe("activation latency", [(a - s).total_seconds() for s, a, _, _, _ in rows if a]))
    print(describe("revocation lag", [(e - x).total_seconds() for _, _, x, e, st in rows if e and st == "expired"]))
    print(f"statuses: { {st: sum(1 for *_, s in rows if s == st) for st in {r[4] for r in rows}} }")


if __name__ == "__main__":
    main()
