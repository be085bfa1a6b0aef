"""The cost of scoring one new request (approvals/anomaly.py) with 1,000,000 past requests in the table,
against the same scoring on nearly empty tables, in the same run, on PostgreSQL.

A world of 10,000 people and 20 roles is made; the scoring of a sample of requests (random people
and roles, plus the heaviest requester) is timed on the nearly empty table; then 1,000,000 past
requests are written with COPY over 400 days (one person in a hundred asks ten times as often, and
one person asks 20,000 times), the tables are analysed, and the same sample is timed again. Each
sample is one ``anomaly.assess`` call: its four indexed reads and the pure scoring. Every SQL
statement of a call is EXPLAINed on the full table: a sequential scan of the requests is reported.

Target (issue 15): p95 ≤ 20 ms with 1,000,000 past requests; no sequential scan.
"""

from __future__ import annotations

import argparse
import random
import time
from datetime import timedelta

from bench.common import Stack, machine, percentile, table

TABLE = "approvals_accessrequest"


def world(people: int, roles: int):
    from django.contrib.auth.models import User
    from django.utils import timezone

    from broker.models import Role

    users = User.objects.bulk_create(User(username=f"user{i}", email=f"user{i}@example.com") for i in range(people))
    catalog = Role.objects.bulk_create(
        Role(slug=f"role{i}", name=f"role {i}", max_duration=timedelta(hours=8), default_duration=timedelta(hours=1))
        for i in range(roles)
    )
    return {"users": users, "roles": catalog, "now": timezone.now()}


def history(w, *, count: int, heavy: int) -> float:
    """COPY ``count`` past requests in time order; ``heavy`` of them by users[0]. Seconds taken."""
    from django.db import connection, transaction

    rng = random.Random(15)
    users, roles, now = w["users"], w["roles"], w["now"]
    frequent = users[1 : 1 + len(users) // 100]
    columns = ["role_id", "requester_id", "status", "kind", "duration", "justification", "ticket", "break_glass",
               "current_stage", "version", "channel", "created_at", "expires_at", "decided_at", "closed_reason",
               "stage_started_at", "network", "flagged", "flag_reasons"]  # fmt: skip
    heavy_at = set(rng.sample(range(count), heavy))
    starts = sorted(now - timedelta(seconds=rng.randrange(60, 400 * 86400)) for _ in range(count))

    def rows():
        for k, s in enumerate(starts):
            if k in heavy_at:
                who = users[0]
            elif rng.random() < 0.5:
                who = rng.choice(frequent)
            else:
                who = rng.choice(users)
            net = f"10.{who.pk % 200}.{rng.randrange(3)}.0/24"
            yield [rng.choice(roles).pk, who.pk, "approved", "new", timedelta(minutes=rng.choice((30, 60, 120))),
                   "history", "", False, 0, 1, "api", s, s + timedelta(days=1), s, "", s, net, False, "[]"]  # fmt: skip

    started = time.perf_counter()
    copy = f"COPY {TABLE} ({', '.join(columns)}) FROM STDIN"
    with transaction.atomic(), connection.cursor() as cursor, cursor.connection.cursor().copy(copy) as out:
        for row in rows():
            out.write_row(row)
    with connection.cursor() as cursor:
        cursor.execute(f"VACUUM ANALYZE {TABLE}")
    return time.perf_counter() - started


def sample(w, n: int) -> list[tuple]:
    rng = random.Random(150)
    picks = [(w["users"][0], rng.choice(w["roles"]))]  # the heaviest requester
    picks += [(rng.choice(w["users"]), rng.choice(w["roles"])) for _ in range(n - 1)]
    return picks


def score_all(picks, now) -> list[float]:
    from approvals import anomaly

    for user, role in picks[:5]:  # warm
        anomaly.assess(requester=user, role=role, duration=timedelta(hours=1), network="10.0.0.0/24", now=now)
    samples = []
    for user, role in picks:
        started = time.perf_counter()
        anomaly.assess(requester=user, role=role, duration=timedelta(hours=1), network="10.0.0.0/24", now=now)
        samples.append((time.perf_counter() - started) * 1000)
    return samples


def seq_scans(picks, now) -> list[str]:
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    from approvals import anomaly

    found = set()
    for user, role in picks[:3]:
        with CaptureQueriesContext(connection) as captured:
            anomaly.assess(requester=user, role=role, duration=timedelta(hours=1), network="", now=now)
        for query in captured.captured_queries:
            with connection.cursor() as cursor:
                cursor.execute("EXPLAIN " + query["sql"])
                plan = "\n".join(row[0] for row in cursor.fetchall())
            if f"Seq Scan on {TABLE}" in plan:
                found.add(query["sql"][:120])
    return sorted(found)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="bench/run.py anomaly", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)  # fmt: skip
    parser.add_argument("--requests", type=int, default=1_000_000)
    parser.add_argument("--heavy", type=int, default=20_000, help="past requests of the heaviest requester")
    parser.add_argument("--samples", type=int, default=500)
    args = parser.parse_args(argv)

    print(f"machine: {machine()}")
    with Stack("anomaly"):
        w = world(10_000, 20)
        picks = sample(w, args.samples)
        now = w["now"]
        empty = score_all(picks, now)
        seconds = history(w, count=args.requests, heavy=args.heavy)
        full = score_all(picks, now)
        scans = seq_scans(picks, now)

    print(f"\nwriting {args.requests:,} past requests: {seconds:.0f} s")
    print(f"\nscoring one request (anomaly.assess), {args.samples} requests, ms:\n")
    rows = [
        [name, percentile(v, 50), percentile(v, 95), percentile(v, 99), max(v)]
        for name, v in (("nearly empty table", empty), (f"{args.requests:,} past requests", full))
    ]
    print(table(["table", "p50", "p95", "p99", "max"], rows))
    p95 = percentile(full, 95)
    print()
    print(table(["target", "met", "figure"], [
        ["p95 ≤ 20 ms with the full table", "yes" if p95 <= 20 else "NO", f"{p95:.2f} ms"],
        ["no sequential scan of the requests", "yes" if not scans else "NO", "; ".join(scans) or "none"],
    ]))  # fmt: skip
