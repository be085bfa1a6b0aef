"""Memory of the worker and of Redis with 100,000 grants expiring within the ETA horizon, in two waves.

A Celery worker holds every task it has taken with an ETA in memory, and Redis keeps each one
unacknowledged until it runs. The push layer queues one task per expiry tick (0.1 s), not one per
grant (grants/push.py), so what is held is bounded by the horizon, not by the number of grants.

One worker (prefork x2, beat) takes the `broker` queue. A wave is 100,000 active grants whose
expiries are spread over the next `--spread` seconds (within the 10-minute horizon), with their
ticks queued as activation queues them. The resident memory of all the worker's processes and
Redis's `used_memory` are printed idle, at the peak of each wave (every tick taken, none run yet)
and after each wave has ended. The notifications the ends queue stay in Redis (no notification
worker runs here), so Redis's figure includes them.

Target (issue 11, benchmark 5): the worker grows by at most 100 MB over its idle baseline, and not
at all over a second wave.
"""

from __future__ import annotations

import argparse
import time

from bench.common import REDIS_URL, Stack, machine, rss_of_tree, table
from bench.revocation import make_grants

MB = 1024 * 1024


def queued(stack: Stack) -> int:
    import redis

    return redis.Redis.from_url(REDIS_URL).llen(stack.queue)


def redis_memory() -> int:
    import redis

    return redis.Redis.from_url(REDIS_URL).info("memory")["used_memory"]


def wave(stack: Stack, worker, *, n: int, spread: float, tag: str) -> dict:
    from grants.models import Grant
    from grants.push import tick_of

    lead = 20  # seconds from the end of the writing to the first expiry
    role, group, _last = make_grants(n, first=lead, spread=spread, tag=tag)
    # Peak: the worker has taken every tick (the queue is empty) and none has run yet.
    deadline = time.monotonic() + 25
    while queued(stack) and time.monotonic() < deadline:
        time.sleep(0.2)
    time.sleep(1)
    expiries = Grant.objects.filter(role=role).values_list("expires_at", flat=True)
    peak = {"worker": rss_of_tree(worker.pid), "redis": redis_memory(), "ticks": len({tick_of(e) for e in expiries})}
    end = time.monotonic() + lead + spread + 300
    while Grant.objects.filter(role=role, status="active").exists() and time.monotonic() < end:
        peak["worker"] = max(peak["worker"], rss_of_tree(worker.pid))
        time.sleep(1)
    time.sleep(3)
    left = Grant.objects.filter(role=role).exclude(status="expired").count()
    return {**peak, "after_worker": rss_of_tree(worker.pid), "after_redis": redis_memory(), "left": left,
            "in_group": group.user_set.count()}  # fmt: skip


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="bench/run.py memory", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)  # fmt: skip
    parser.add_argument("--grants", type=int, default=100_000)
    parser.add_argument("--spread", type=float, default=120, help="seconds over which a wave expires (120)")
    args = parser.parse_args(argv)

    print(f"machine: {machine()}")
    with Stack("memory") as stack:
        worker = stack.worker(concurrency=2, queues="broker")
        time.sleep(5)
        idle = {"worker": rss_of_tree(worker.pid), "redis": redis_memory()}
        first = wave(stack, worker, n=args.grants, spread=args.spread, tag="w1")
        second = wave(stack, worker, n=args.grants, spread=args.spread, tag="w2")

    rows = [["idle", "", "", idle["worker"] / MB, idle["redis"] / MB, ""]]
    for name, w in (("wave 1", first), ("wave 2", second)):
        rows.append([f"{name}: every tick held", args.grants, w["ticks"], w["worker"] / MB, w["redis"] / MB, ""])
        rows.append([f"{name}: ended", args.grants, "", w["after_worker"] / MB, w["after_redis"] / MB,
                     f"{w['left']} not ended, {w['in_group']} left in group"])  # fmt: skip
    print()
    print(table(["moment", "grants", "expiry ticks", "worker RSS MB (all processes)", "Redis MB", "check"], rows))
    growth = (first["worker"] - idle["worker"]) / MB
    second_growth = (second["worker"] - first["worker"]) / MB
    print()
    print(table(["target", "met", "figure"], [
        ["worker grows <= 100 MB over idle", "yes" if growth <= 100 else "NO", f"{growth:+.1f} MB"],
        ["no growth over a second wave", "yes" if second_growth <= 5 else "NO", f"{second_growth:+.1f} MB (peak 2 - peak 1)"],
    ]))  # fmt: skip
