"""Request to effective grant on the auto-approve path, through the API, with the worker activating.

gunicorn -w 2 (production settings) and one Celery worker (prefork x2, beat) on PostgreSQL and
Redis. Each request is `POST /api/v1/requests/` by a different person with their own token, for an
auto-approved `django_group` role; it is effective once the worker has switched it on
(`activated_at`, recorded by the database).

  1 client:   requests one after the other; latency from sending the request to `activated_at`
              target: p95 <= 200 ms
  8 clients:  N requests from 8 threads; throughput from the first request sent to the last grant
              effective                                          target: >= 50 per second, all effective

The baseline, in the same run: the latency of `GET /healthz` (a plain Django view) from one client,
the floor of any request on this server.
"""

from __future__ import annotations

import argparse
import http.client
import json
import threading
import time
from datetime import timedelta

from bench.common import Stack, machine, percentile, table


def make_people(n: int, slug: str) -> list[str]:
    """n people eligible for the auto-approved role `slug`, each with an API token; their tokens."""
    import secrets

    from django.contrib.auth.models import User
    from django.utils import timezone

    from accounts.models import ApiToken
    from accounts.tokens import TOKEN_PREFIX, digest
    from broker.models import Eligibility, Role

    role = Role.objects.create(
        slug=slug, name=slug, max_duration=timedelta(hours=8), default_duration=timedelta(hours=1),
        auto_approve=True, requires_justification=False, connector_config={"group": slug},
    )  # fmt: skip
    users = User.objects.bulk_create(User(username=f"{slug}-{i}", email=f"{slug}-{i}@example.com") for i in range(n))
    Eligibility.objects.bulk_create(Eligibility(role=role, user=u) for u in users)
    texts = [f"{TOKEN_PREFIX}{secrets.token_hex(4)}_{secrets.token_urlsafe(32)}" for _ in users]
    ApiToken.objects.bulk_create(
        ApiToken(user=u, name="bench", prefix=t[4:12], digest=digest(t), scopes=["read", "request"],
                 created_at=timezone.now())
        for u, t in zip(users, texts, strict=True)
    )  # fmt: skip
    return texts


def post(port: int, token: str, body: dict) -> tuple[int, dict]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    conn.request(
        "POST", "/api/v1/requests/", json.dumps(body),
        {"Authorization": f"Bearer {token}", "Content-Type": "application/json"},
    )  # fmt: skip
    answer = conn.getresponse()
    data = json.loads(answer.read() or b"{}")
    conn.close()
    return answer.status, data


def get(port: int, path: str) -> int:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    conn.request("GET", path)
    answer = conn.getresponse()
    answer.read()
    conn.close()
    return answer.status


def activated_at(grant_id: int, deadline: float):
    from grants.models import Grant

    while time.monotonic() < deadline:
        row = Grant.objects.filter(pk=grant_id).values_list("activated_at", flat=True).first()
        if row:
            return row
        time.sleep(0.005)
    return None


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="bench/run.py autoapprove", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)  # fmt: skip
    parser.add_argument("--single", type=int, default=100, help="requests from one client (100)")
    parser.add_argument("--requests", type=int, default=1000, help="requests from 8 clients (1000)")
    parser.add_argument("--clients", type=int, default=8)
    args = parser.parse_args(argv)

    print(f"machine: {machine()}")
    from django.utils import timezone

    with Stack("autoapprove") as stack:
        single = make_people(args.single, "solo")
        many = make_people(args.requests, "crowd")
        stack.worker(concurrency=2)
        _proc, base = stack.gunicorn(workers=2)
        port = int(base.rsplit(":", 1)[1])

        plain = []
        for _ in range(args.single):
            t0 = time.perf_counter()
            get(port, "/healthz")
            plain.append((time.perf_counter() - t0) * 1000)

        latencies, refused = [], 0
        for token in single:
            t0 = timezone.now()
            status, body = post(port, token, {"role": "solo", "duration_seconds": 3600})
            if status != 201:
                refused += 1
                continue
            when = activated_at(body["grant"], time.monotonic() + 30)
            if when:
                latencies.append((when - t0).total_seconds() * 1000)

        from grants.models import Grant

        queue = list(many)
        lock = threading.Lock()
        statuses: dict[int, int] = {}

        def client():
            while True:
                with lock:
                    if not queue:
                        return
                    token = queue.pop()
                status, _ = post(port, token, {"role": "crowd", "duration_seconds": 3600})
                with lock:
                    statuses[status] = statuses.get(status, 0) + 1

        start_wall = timezone.now()
        t0 = time.monotonic()
        threads = [threading.Thread(target=client) for _ in range(args.clients)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        sent = time.monotonic() - t0
        crowd = Grant.objects.filter(role__slug="crowd")
        deadline = time.monotonic() + 120
        while crowd.filter(status="active").count() < statuses.get(201, 0) and time.monotonic() < deadline:
            time.sleep(0.1)
        last = max(crowd.values_list("activated_at", flat=True), default=None, key=lambda v: v or start_wall)
        effective = crowd.effective().count()
        elapsed = (last - start_wall).total_seconds() if last else float("nan")

    print()
    print(table(
        ["path", "n", "p50 ms", "p95 ms", "max ms", "refused"],
        [
            ["baseline: GET /healthz, 1 client", len(plain), percentile(plain, 50), percentile(plain, 95), max(plain), 0],
            ["POST requests/ to effective, 1 client", len(latencies), percentile(latencies, 50),
             percentile(latencies, 95), max(latencies), refused],
        ],
    ))  # fmt: skip
    print()
    rate = effective / elapsed if elapsed == elapsed else 0.0
    print(table(
        ["8 clients", "requests", "answers", "all sent in s", "last effective after s", "effective", "per second"],
        [[f"{args.clients} threads", args.requests, " ".join(f"{k}: {v}" for k, v in sorted(statuses.items())),
          sent, elapsed, effective, rate]],
    ))  # fmt: skip
    print()
    p95 = percentile(latencies, 95)
    print(table(["target", "met", "figure"], [
        ["1 client: p95 <= 200 ms", "yes" if p95 <= 200 else "NO", f"{p95:.0f} ms"],
        ["8 clients: >= 50/s end to end, all effective", "yes" if rate >= 50 and effective == args.requests else "NO",
         f"{rate:.1f}/s, {effective} of {args.requests} effective"],
    ]))  # fmt: skip
