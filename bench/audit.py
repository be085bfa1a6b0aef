"""The audit chain on PostgreSQL: appends per second with concurrent writers, and verification speed.

Appends: 4 writers (threads, each with its own connection) for a few seconds each way:
  - `record` in a transaction of its own per event (what one state change does);
  - `record_many` of 50 events per transaction (what a batch of expiries does);
  - baseline: the same rows inserted without the chain (no head lock, no hashing).
Target (issue 11, benchmark 4): >= 2,000 appends per second with 4 writers.

Verification: N events (1,000,000 by default) are written with COPY, chained exactly as `record`
chains them (broker.audit.chain.link: HMAC under AUDIT_KEY), then `audit.verify()` walks them all,
as `audit_verify` and the scheduled check do. Baseline in the same run: the MAC function alone
over the same events, in memory. Target: >= 100,000 events per second. (`bench/audit_verify.py`
measures the walk alone, against plain SHA-256, in more detail.)
"""

from __future__ import annotations

import argparse
import threading
import time
from datetime import timedelta

from bench.common import Stack, machine, table

BATCH = 50


def writers(n: int, seconds: float, work) -> int:
    """Run work() in n threads for `seconds`; return the number of events appended."""
    from django.db import connection

    counts = [0] * n
    stop = time.monotonic() + seconds
    barrier = threading.Barrier(n)

    def run(i):
        try:
            barrier.wait()
            while time.monotonic() < stop:
                counts[i] += work(i)
        finally:
            connection.close()

    threads = [threading.Thread(target=run, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return sum(counts)


def one_event(i: int) -> int:
    from django.db import transaction

    from broker import audit
    from broker.models import Channel

    with transaction.atomic():
        audit.record("bench.append", actor=None, target=("bench", i), via=Channel.WORKER, data={"writer": i})
    return 1


def many_events(i: int) -> int:
    from django.db import transaction

    from broker import audit
    from broker.models import Channel

    entries = [audit.Entry("bench.append", actor=None, target=("bench", i), via=Channel.WORKER, data={"n": k})
               for k in range(BATCH)]  # fmt: skip
    with transaction.atomic():
        audit.record_many(entries)
    return BATCH


def unchained(i: int) -> int:
    from django.db import transaction
    from django.utils import timezone

    from broker.models import AuditEvent

    with transaction.atomic():
        AuditEvent.objects.create(
            seq=-(time.monotonic_ns() * 10 + i), at=timezone.now(), actor_name="system", action="bench.plain",
            target_type="bench", target_id=str(i), channel="worker", data={"writer": i}, prev_hash="",
            hash=f"plain-{time.monotonic_ns()}-{i}",
        )  # fmt: skip
    return 1


def fill(n: int) -> float:
    """Append n chained events with COPY; return the seconds it took."""
    from django.db import connection, transaction
    from django.utils import timezone

    from broker.audit.chain import Entry, link, unlinked
    from broker.models import AuditEvent, AuditHead, Channel

    started = time.perf_counter()
    head = AuditHead.objects.filter(pk=1).values_list("seq", "hash").first() or (0, "0" * 64)
    columns = ["seq", "at", "actor_name", "action", "target_type", "target_id", "role", "subject", "channel", "ip",
               "data", "prev_hash", "hash", "key_id"]  # fmt: skip
    at = timezone.now() - timedelta(days=365)
    chunk = 20_000
    import json

    with transaction.atomic(), connection.cursor() as cursor:
        raw = cursor.connection
        with raw.cursor().copy(f"COPY {AuditEvent._meta.db_table} ({', '.join(columns)}) FROM STDIN") as copy:
            for start in range(0, n, chunk):
                events = [
                    unlinked(Entry("grant.expired", actor=None, target=("grant", k), via=Channel.WORKER,
                                   role="bench", subject=f"user{k % 1000}",
                                   data={"end_reason": "expiry", "lag_seconds": 0.05, "attempts": 1}))
                    for k in range(start, min(n, start + chunk))
                ]  # fmt: skip
                head = link(events, after=head, at=at + timedelta(seconds=start))
                for e in events:
                    copy.write_row([e.seq, e.at, e.actor_name, e.action, e.target_type, e.target_id, e.role,
                                    e.subject, e.channel, e.ip, json.dumps(e.data), e.prev_hash, e.hash,
                                    e.key_id])  # fmt: skip
        AuditHead.objects.update_or_create(pk=1, defaults={"seq": head[0], "hash": head[1]})
    return time.perf_counter() - started


def hash_only(limit: int) -> tuple[int, float]:
    """The baseline: the chain's hash function over the stored events' content, already in memory."""
    from broker.audit.chain import event_mac
    from broker.audit.keys import Keyring
    from broker.models import AuditEvent

    keyring = Keyring.from_settings()
    events = list(AuditEvent.objects.order_by("seq")[:limit])
    started = time.perf_counter()
    for event in events:
        event_mac(event, keyring)
    return len(events), time.perf_counter() - started


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="bench/run.py audit", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)  # fmt: skip
    parser.add_argument("--writers", type=int, default=4)
    parser.add_argument("--seconds", type=float, default=5)
    parser.add_argument("--events", type=int, default=1_000_000, help="events for the verification (1,000,000)")
    args = parser.parse_args(argv)

    print(f"machine: {machine()}")
    with Stack("audit") as stack:  # noqa: F841 - keeps the scratch database for the run
        from broker import audit
        from broker.models import AuditEvent

        appends = {}
        for name, work in (("record, one event per transaction", one_event),
                           (f"record_many, {BATCH} events per transaction", many_events),
                           ("baseline: plain INSERT, no chain", unchained)):  # fmt: skip
            appends[name] = writers(args.writers, args.seconds, work) / args.seconds
        AuditEvent.objects.filter(action="bench.plain").delete()
        assert audit.verify().ok

        filled = fill(args.events)
        total = AuditEvent.objects.count()
        started = time.perf_counter()
        result = audit.verify()
        walked = time.perf_counter() - started
        assert result.ok, result
        hashed, hash_seconds = hash_only(200_000)

    print()
    print(table([f"appends, {args.writers} writers, {args.seconds:g} s each", "events/s"],
                [[k, v] for k, v in appends.items()]))  # fmt: skip
    print()
    print(table(
        ["verification", "events", "seconds", "events/s"],
        [
            ["audit.verify() over the whole trail", result.checked, walked, result.checked / walked],
            ["baseline: event_mac alone over model instances, in memory", hashed, hash_seconds, hashed / hash_seconds],
            ["(writing them with COPY, chained)", args.events, filled, args.events / filled],
        ],
    ))  # fmt: skip
    print(f"trail: {total:,} events")
    print()
    single = appends["record, one event per transaction"]
    batched = appends[f"record_many, {BATCH} events per transaction"]
    rate = result.checked / walked
    print(table(["target", "met", "figure"], [
        [f"appends >= 2,000/s with {args.writers} writers (one event per transaction)", "yes" if single >= 2000 else "NO", f"{single:,.0f}/s"],
        [f"appends >= 2,000/s with {args.writers} writers (batches of {BATCH})", "yes" if batched >= 2000 else "NO", f"{batched:,.0f}/s"],
        ["verification >= 100,000 events/s", "yes" if rate >= 100_000 else "NO", f"{rate:,.0f}/s"],
    ]))  # fmt: skip
