"""Revocation lag with a real worker: PostgreSQL, Redis, one Celery worker with beat, `django_group`.

Scenarios (issue 11, benchmark 1), each on fresh grants in one scratch database:

  a  2,000 grants whose expiries are spread over 60 s                      target: p99 <= 0.5 s
  b  1,000 grants expiring within the same second                         target: all removed within 2 s
  c  as (a), the worker SIGKILLed half-way and started again              target: max <= SWEEP_INTERVAL + 2 s, none missed
  d  (b) with worker concurrency 1, then 2: removals per second            target: ratio >= 1.6

The worker takes the `broker` queue (activations and removals), as production runs it beside a
worker for the `notifications` queue (README, Production); one row shows (b) with a single worker
taking both queues, as `make run` does. The baseline, measured in the same run: (b) with REVOKE_BATCH_SIZE=1, every grant ended in a
transaction of its own as before batching (``--no-baseline`` skips it).

Grants are written straight into the database as an activation leaves them (active, the person in
the group, the expiry tick queued as activation queues it), so that creating them costs seconds
and does not compete with the worker. The lag is ``ended_at - expires_at`` of each grant, as the
database recorded it; a grant counts as removed only when its status is ``expired`` and its holder
is out of the group.
"""

from __future__ import annotations

import argparse
import random
import signal
import time
from datetime import timedelta

from bench.common import Stack, machine, summary, table

SWEEP = 10.0


def make_grants(n: int, *, first: float, spread: float, tag: str):
    """n active grants of role `bench-<tag>` whose expiries are spread over [first, first+spread) s from now."""
    from django.contrib.auth.models import Group, User
    from django.utils import timezone

    from approvals.models import AccessRequest
    from broker.models import Channel, Eligibility, Role
    from grants.models import Grant
    from grants.push import queue_ticks, tick_of

    role = Role.objects.create(
        slug=f"bench-{tag}",
        name=f"bench {tag}",
        max_duration=timedelta(hours=1),
        default_duration=timedelta(minutes=5),
        auto_approve=True,
        requires_justification=False,
        connector="django_group",
        connector_config={"group": f"bench-{tag}"},
    )
    group = Group.objects.create(name=f"bench-{tag}")
    users = User.objects.bulk_create([User(username=f"{tag}-{i}", email=f"{tag}-{i}@example.com") for i in range(n)])
    Eligibility.objects.bulk_create([Eligibility(role=role, user=u) for u in users])
    # In the target first, as activation does: a grant is never active without its access.
    group.user_set.add(*users)
    now = timezone.now()
    requests = AccessRequest.objects.bulk_create(
        AccessRequest(role=role, requester=u, status="approved", duration=timedelta(minutes=10), justification="bench",
                      channel=Channel.API, created_at=now, stage_started_at=now, expires_at=now + timedelta(hours=1),
                      decided_at=now)
        for u in users
    )  # fmt: skip
    # The expiries count from the end of the writing, so none is due before its grant exists.
    now = timezone.now()
    base = now + timedelta(seconds=first)
    expiries = [base + timedelta(seconds=spread * i / n) for i in range(n)]
    random.Random(7).shuffle(expiries)
    Grant.objects.bulk_create(
        Grant(request=r, user=u, role=role, status="active", starts_at=now, expires_at=e, created_at=now,
              activated_at=now, eta_queued_for=e)
        for r, u, e in zip(requests, users, expiries, strict=True)
    )  # fmt: skip
    queue_ticks(sorted({tick_of(e) for e in expiries}))
    return role, group, max(expiries)


def wait_all_ended(role, deadline: float) -> None:
    from grants.models import Grant

    while Grant.objects.filter(role=role).exclude(status__in=("expired", "revoked", "failed")).exists():
        if time.monotonic() > deadline:
            return
        time.sleep(0.25)


def measure(role, group) -> dict:
    from grants.models import Grant

    rows = list(Grant.objects.filter(role=role).values_list("expires_at", "ended_at", "status"))
    ended = [(x, e) for x, e, s in rows if s == "expired" and e]
    lags = [(e - x).total_seconds() for x, e in ended]
    first = min(x for x, _, _ in rows)
    last = max(e for _, e in ended) if ended else first
    still = group.user_set.count()
    return {
        "n": len(rows),
        "removed": len(ended) if still == 0 else len(ended) - still,
        "left_in_group": still,
        "lag": summary(lags),
        "rate": len(ended) / max((last - first).total_seconds(), 1e-6),
    }


def scenario(stack: Stack, tag: str, *, n: int, spread: float, concurrency: int = 2, kill_at: float | None = None,
             env: dict | None = None, queues: str = "broker") -> dict:  # fmt: skip
    stack.purge()
    options = {"concurrency": concurrency, "queues": queues, "env": {"SWEEP_INTERVAL": f"{SWEEP:g}s", **(env or {})}}
    worker = stack.worker(**options)
    lead = 5.0 + n / 2000  # creating the grants must end before the first expires
    role, group, _last = make_grants(n, first=lead, spread=spread, tag=tag)
    start = time.monotonic()
    if kill_at is not None:
        time.sleep(max(0.0, lead + kill_at - (time.monotonic() - start)))
        from bench.common import stop

        stop(worker, signal.SIGKILL)
        worker = stack.worker(**options)
    wait_all_ended(role, time.monotonic() + lead + spread + 90)
    from bench.common import stop

    stop(worker)
    return measure(role, group)


def progress(key: str, result: dict) -> dict:
    """Print each scenario's figures as soon as it ends (a long run is never lost to a late error)."""
    lag = result["lag"]
    print(f"  {key}: {result['removed']}/{result['n']} removed, {result['left_in_group']} left in the group; lag p50 "
          f"{lag['p50']:.3f} p99 {lag['p99']:.3f} max {lag['max']:.3f} s; {result['rate']:.0f} removals/s", flush=True)  # fmt: skip
    return result


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="bench/run.py revocation", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)  # fmt: skip
    parser.add_argument("--only", default="abcd", help="which scenarios, e.g. `b` or `ad` (default: abcd)")
    parser.add_argument("--scale", type=float, default=1.0, help="multiply the numbers of grants (quick runs: 0.25)")
    parser.add_argument("--no-baseline", action="store_true")
    parser.add_argument(
        "--burst", type=int, default=10000, help="grants expiring at one instant for the throughput of (d) (10,000)"
    )
    args = parser.parse_args(argv)

    print(f"machine: {machine()}")
    rows, verdicts = [], []
    with Stack("revocation") as stack:
        n_a, n_b, n_burst = int(2000 * args.scale), int(1000 * args.scale), int(args.burst * args.scale)
        results = {}
        if "a" in args.only:
            results["a"] = progress("a", scenario(stack, "a", n=n_a, spread=60))
        if "b" in args.only or "d" in args.only:
            results["b"] = progress("b", scenario(stack, "b", n=n_b, spread=1))
        if "b" in args.only:
            results["b-both"] = progress("b-both", scenario(stack, "bboth", n=n_b, spread=1, queues="both"))
        if not args.no_baseline and ("b" in args.only or "d" in args.only):
            results["b-baseline"] = progress(
                "b-baseline", scenario(stack, "bbase", n=n_b, spread=1, env={"REVOKE_BATCH_SIZE": "1"})
            )
        if "c" in args.only:
            results["c"] = progress("c", scenario(stack, "c", n=n_a, spread=60, kill_at=30))
        if "d" in args.only:
            results["d-1"] = progress("d-1", scenario(stack, "d1", n=n_b, spread=1, concurrency=1))
            results["d-2"] = progress("d-2", scenario(stack, "d2", n=n_b, spread=1, concurrency=2))
            results["d-1-instant"] = progress("d-1-instant", scenario(stack, "d1i", n=n_burst, spread=0, concurrency=1))
            results["d-2-instant"] = progress("d-2-instant", scenario(stack, "d2i", n=n_burst, spread=0, concurrency=2))

    labels = {
        "a": f"(a) {n_a} spread over 60 s, prefork x2",
        "b": f"(b) {n_b} within one second, prefork x2",
        "b-both": "(b) the worker also sending the messages (make run)",
        "b-baseline": "baseline: (b) one grant per transaction (REVOKE_BATCH_SIZE=1)",
        "c": "(c) (a) + SIGKILL at 30 s, restart",
        "d-1": "(d) (b) with concurrency 1",
        "d-2": "(d) (b) with concurrency 2",
        "d-1-instant": f"(d) {n_burst} at one instant, concurrency 1",
        "d-2-instant": f"(d) {n_burst} at one instant, concurrency 2",
    }
    for key, r in results.items():
        lag = r["lag"]
        rows.append(
            [
                labels[key],
                r["n"],
                r["removed"],
                r["left_in_group"],
                lag["p50"],
                lag["p90"],
                lag["p99"],
                lag["max"],
                r["rate"],
            ]
        )
    print()
    print(
        table(
            ["scenario", "grants", "removed", "left in group", "p50 s", "p90 s", "p99 s", "max s", "removals/s"], rows
        )
    )
    print()
    if "a" in results:
        verdicts.append(("(a) p99 <= 0.5 s", results["a"]["lag"]["p99"] <= 0.5, f"{results['a']['lag']['p99']:.3f} s"))
    if "b" in results:
        ok = results["b"]["lag"]["max"] <= 2.0 and results["b"]["left_in_group"] == 0
        verdicts.append(("(b) all removed within 2 s", ok, f"max {results['b']['lag']['max']:.3f} s"))
    if "c" in results:
        r = results["c"]
        ok = r["lag"]["max"] <= SWEEP + 2 and r["removed"] == r["n"]
        verdicts.append(
            (
                f"(c) max <= {SWEEP + 2:g} s, none missed",
                ok,
                f"max {r['lag']['max']:.3f} s, {r['n'] - r['removed']} missed",
            )
        )
    if "d-1" in results:
        for suffix in ("", "-instant"):
            ratio = results["d-2" + suffix]["rate"] / results["d-1" + suffix]["rate"]
            verdicts.append((f"(d{suffix}) concurrency 2 / 1 >= 1.6", ratio >= 1.6, f"{ratio:.2f}x"))
    if "b-baseline" in results and "b" in results:
        verdicts.append(
            ("batched vs baseline, removals/s", True, f"{results['b']['rate'] / results['b-baseline']['rate']:.1f}x")
        )
    print(table(["target", "met", "figure"], [[name, "yes" if ok else "NO", fig] for name, ok, fig in verdicts]))
