"""The decision point under load: GET /api/v1/check/ against a plain Django view, same server, same run.

gunicorn (sync workers, production settings: DEBUG off, SECRET_KEY set) on PostgreSQL; `wrk`
(Debian's package: apt-get install wrk) on loopback. The plain view is `/healthz`: a Django view
that returns a constant, behind the same middleware. The check is answered with a bearer token for
a person who holds the role (allowed: true), so the measured path does all of its work. The two
are measured in alternating rounds, and the median round of each is reported.

Target (issue 11, benchmark 2): check's requests per second at least half the plain view's.
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import statistics
import subprocess
import sys
import urllib.request
from datetime import timedelta

from bench.common import Stack, machine, table


def wrk(url: str, *, seconds: int, connections: int, threads: int, token: str | None) -> dict:
    command = ["wrk", "-t", str(threads), "-c", str(connections), "-d", f"{seconds}s", "--latency", url]
    if token:
        command[1:1] = ["-H", f"Authorization: Bearer {token}"]
    out = subprocess.run(command, capture_output=True, text=True, check=True).stdout
    rate = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    latency = {p: _ms(re.search(rf"^\s+{p}%\s+(\S+)", out, re.M).group(1)) for p in ("50", "99")}
    return {"rate": rate, "p50": latency["50"], "p99": latency["99"], "non2xx": int(errors.group(1)) if errors else 0}


def _ms(text: str) -> float:
    value, unit = re.match(r"([\d.]+)(us|ms|s)", text).groups()
    return float(value) * {"us": 0.001, "ms": 1.0, "s": 1000.0}[unit]


def make_world() -> str:
    from django.contrib.auth.models import User
    from django.utils import timezone

    from accounts.tokens import token_create
    from approvals.models import AccessRequest
    from broker.models import Channel, Eligibility, Role
    from grants.models import Grant

    role = Role.objects.create(
        slug="sandbox", name="sandbox", max_duration=timedelta(days=1), default_duration=timedelta(hours=1),
        auto_approve=True, requires_justification=False, connector_config={"group": "sandbox"},
    )  # fmt: skip
    alice = User.objects.create(username="alice", email="alice@example.com")
    Eligibility.objects.create(role=role, user=alice)
    now = timezone.now()
    req = AccessRequest.objects.create(
        role=role, requester=alice, status="approved", duration=timedelta(hours=2), channel=Channel.API,
        created_at=now, stage_started_at=now, expires_at=now + timedelta(hours=1), decided_at=now,
    )  # fmt: skip
    Grant.objects.create(
        request=req, user=alice, role=role, status="active", starts_at=now, expires_at=now + timedelta(hours=2),
        created_at=now, activated_at=now,
    )  # fmt: skip
    _row, text = token_create(user=alice, scopes=["read"], via=Channel.CLI)
    return text


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="bench/run.py check", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)  # fmt: skip
    parser.add_argument("--seconds", type=int, default=8, help="length of one round (default 8)")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--workers", type=int, default=2, help="gunicorn workers (default 2)")
    parser.add_argument("--connections", type=int, default=8)
    args = parser.parse_args(argv)
    if not shutil.which("wrk"):
        sys.exit("wrk is needed: apt-get install wrk")

    print(f"machine: {machine()}")
    with Stack("check") as stack:
        token = make_world()
        _proc, base = stack.gunicorn(workers=args.workers)
        check_url = base + "/api/v1/check/?role=sandbox"
        request = urllib.request.Request(check_url, headers={"Authorization": f"Bearer {token}"})  # noqa: S310
        with urllib.request.urlopen(request) as answer:  # noqa: S310 - loopback only
            sample = json.load(answer)
        assert sample["allowed"] is True, sample
        plain_url = base + "/healthz"
        common = {"seconds": args.seconds, "connections": args.connections, "threads": 2}
        wrk(plain_url, **{**common, "seconds": 2}, token=None)  # warm up both
        wrk(check_url, **{**common, "seconds": 2}, token=token)
        plain, check = [], []
        for _ in range(args.rounds):
            plain.append(wrk(plain_url, **common, token=None))
            check.append(wrk(check_url, **common, token=token))

    def median(runs: list[dict]) -> dict:
        return sorted(runs, key=lambda r: r["rate"])[len(runs) // 2]

    p, c = median(plain), median(check)
    ratio = c["rate"] / p["rate"]
    print(
        f"\ngunicorn -w {args.workers} (sync), wrk -t2 -c{args.connections}, {args.rounds} rounds of {args.seconds} s each; median round:\n"
    )
    print(table(
        ["endpoint", "req/s", "p50 ms", "p99 ms", "non-2xx", "rounds req/s"],
        [
            ["plain Django view (/healthz)", p["rate"], p["p50"], p["p99"], p["non2xx"], " ".join(f"{r['rate']:.0f}" for r in plain)],
            ["GET /api/v1/check/ (allowed)", c["rate"], c["p50"], c["p99"], c["non2xx"], " ".join(f"{r['rate']:.0f}" for r in check)],
        ],
    ))  # fmt: skip
    print()
    ratios = [cr["rate"] / pr["rate"] for pr, cr in zip(plain, check, strict=True)]
    print(table(["target", "met", "figure"], [[
        "check / plain >= 0.5", "yes" if ratio >= 0.5 else "NO",
        f"{ratio:.2f} (rounds: {' '.join(f'{r:.2f}' for r in ratios)}; median of ratios {statistics.median(ratios):.2f})",
    ]]))  # fmt: skip
