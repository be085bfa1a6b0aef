"""The hot paths with 1,000,000 historical grants, 1,100,000 requests and 1,000,000 audit events,
against the same paths on nearly empty tables, in the same run.

First a small world (10,000 people, 20 roles, a few live grants and pending requests) is measured;
then the history is written with COPY (each historical grant with the approved request it came
from, 100,000 further requests denied, expired or cancelled, and 1,000,000 chained audit events),
the tables are analysed, and the same paths are measured again:

- a sweep with nothing due (grants, requests, eligibility, notification scan);
- `GET /api/v1/check/` with a bearer token;
- the first page of each list endpoint, as a requester and as an auditor;
- the portal's pages, as a requester and as an auditor.

Each is the median of several calls, in this process through Django's test client (production
settings). Every SQL statement a path runs is EXPLAINed on the full tables: a sequential scan of
the grants, requests or audit tables on a hot path is reported.

Target (issue 11, benchmark 6): as fast as with empty tables; no sequential scan on the hot paths.
"""

from __future__ import annotations

import argparse
import random
import statistics
import time
from datetime import timedelta

from bench.common import Stack, machine, table

BIG = ("grants_grant", "approvals_accessrequest", "broker_auditevent")


def small_world():
    from django.contrib.auth.models import Group, User
    from django.utils import timezone

    from accounts.tokens import token_create
    from approvals import services as approvals
    from broker.catalog import AUDITORS_GROUP
    from broker.models import ApprovalStage, Channel, Eligibility, Role
    from grants import services as grants

    users = User.objects.bulk_create(User(username=f"user{i}", email=f"user{i}@example.com") for i in range(10_000))
    staff = Group.objects.create(name="staff")
    staff.user_set.add(*users)
    carol = User.objects.create(username="carol", email="carol@example.com")
    erin = User.objects.create(username="erin", email="erin@example.com")
    erin.groups.add(Group.objects.create(name=AUDITORS_GROUP))
    roles = []
    for i in range(20):
        role = Role.objects.create(
            slug=f"role{i}", name=f"role {i}", max_duration=timedelta(hours=8), default_duration=timedelta(hours=1),
            auto_approve=i % 2 == 0, requires_justification=False, connector_config={"group": f"role{i}"},
        )  # fmt: skip
        if i % 2:
            stage = ApprovalStage.objects.create(role=role, position=0, required=1)
            stage.users.add(carol)
        Eligibility.objects.create(role=role, group=staff)
        roles.append(role)
    alice = users[0]
    for role in roles[:4]:
        req = approvals.request_create(requester=alice, role=role, duration=timedelta(hours=2), via=Channel.API)
        if req.grant_id if hasattr(req, "grant_id") else getattr(req, "grant", None):
            grants.grant_activate(grant_id=req.grant.pk)
    _, alice_token = token_create(user=alice, scopes=["read", "request"], via=Channel.CLI)
    _, erin_token = token_create(user=erin, scopes=["read"], via=Channel.CLI)
    return {"alice": alice, "erin": erin, "carol": carol, "alice_token": alice_token, "erin_token": erin_token,
            "users": users, "roles": roles, "now": timezone.now()}  # fmt: skip


def history(world, *, grants: int, requests: int, events: int) -> dict[str, float]:
    """COPY the history in; seconds per table."""
    from django.db import connection, transaction

    from approvals.models import AccessRequest
    from bench.audit import fill
    from grants.models import Grant

    rng = random.Random(11)
    users, roles, now = world["users"], world["roles"], world["now"]
    timings = {}

    def copy(model, columns, rows):
        with transaction.atomic(), connection.cursor() as cursor:
            table_ = model._meta.db_table
            with cursor.connection.cursor().copy(f"COPY {table_} ({', '.join(columns)}) FROM STDIN") as out:
                for row in rows:
                    out.write_row(row)

    started = time.perf_counter()
    first_request = (AccessRequest.objects.order_by("-pk").values_list("pk", flat=True).first() or 0) + 1
    req_columns = ["id", "role_id", "requester_id", "status", "kind", "duration", "justification", "ticket",
                   "break_glass", "current_stage", "version", "channel", "created_at", "expires_at", "decided_at",
                   "closed_reason", "stage_started_at", "network", "flagged", "flag_reasons"]  # fmt: skip
    # In time order, as a running broker appends them: the physical order then follows the time,
    # which is what makes one period's rows cheap to read by index.
    starts = sorted(
        now - timedelta(days=400) + timedelta(seconds=rng.randrange(0, 400 * 86400 - 7200)) for _ in range(grants)
    )
    people = [rng.choice(users).pk for _ in range(grants)]
    kinds = [rng.choice(roles).pk for _ in range(grants)]

    def approved():
        for k in range(grants):
            s = starts[k]
            yield [first_request + k, kinds[k], people[k], "approved", "new", timedelta(hours=1), "history", "",
                   False, 0, 1, "api", s, s + timedelta(days=1), s, "", s, "", False, "[]"]  # fmt: skip

    def others():
        for k in range(requests):
            s = now - timedelta(days=400) + timedelta(seconds=rng.randrange(0, 399 * 86400))
            status = ("denied", "expired", "cancelled")[k % 3]
            yield [first_request + grants + k, rng.choice(roles).pk, rng.choice(users).pk, status, "new",
                   timedelta(hours=1), "history", "", False, 0, 1, "portal", s, s + timedelta(days=1), s, "", s, "",
                   False, "[]"]  # fmt: skip

    copy(AccessRequest, req_columns, approved())
    copy(AccessRequest, req_columns, others())
    timings["requests"] = time.perf_counter() - started

    started = time.perf_counter()
    grant_columns = ["request_id", "user_id", "role_id", "status", "starts_at", "expires_at", "created_at",
                     "activated_at", "end_requested_at", "ended_at", "end_reason", "end_comment", "attempts",
                     "last_error", "break_glass", "review_note"]  # fmt: skip

    def ended():
        for k in range(grants):
            s = starts[k]
            revoked = k % 10 == 0
            end = s + (timedelta(minutes=20) if revoked else timedelta(hours=1))
            yield [first_request + k, people[k], kinds[k], "revoked" if revoked else "expired", s, s + timedelta(hours=1),
                   s, s, end, end + timedelta(milliseconds=50), "relinquished" if revoked else "expiry", "", 0, "",
                   False, ""]  # fmt: skip

    copy(Grant, grant_columns, ended())
    timings["grants"] = time.perf_counter() - started
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT setval(pg_get_serial_sequence(%s, 'id'), (SELECT max(id) FROM approvals_accessrequest))",
            ["approvals_accessrequest"],
        )
    timings["audit events"] = fill(events)
    started = time.perf_counter()
    with connection.cursor() as cursor:
        cursor.execute("VACUUM ANALYZE") if not connection.in_atomic_block else None
    timings["vacuum analyze"] = time.perf_counter() - started
    return timings


def paths(world) -> dict[str, callable]:
    from django.test import Client

    from approvals.services import requests_sweep
    from approvals.tasks import sweep_eligibility
    from grants.sweeper import sweep
    from notifications.services import scan

    def api(token):
        return Client(HTTP_AUTHORIZATION=f"Bearer {world[token]}", HTTP_HOST="localhost")

    def portal(user):
        client = Client(HTTP_HOST="localhost")
        client.force_login(world[user])
        return client

    alice_api, erin_api = api("alice_token"), api("erin_token")
    alice, erin = portal("alice"), portal("erin")

    def get(client, path):
        def call():
            answer = client.get(path)
            assert answer.status_code == 200, (path, answer.status_code)

        return call

    return {
        "sweep: grants (nothing due)": lambda: sweep(),
        "sweep: requests (nothing due)": lambda: requests_sweep(),
        "sweep: eligibility": lambda: sweep_eligibility(),
        "sweep: notification scan": lambda: scan(),
        "API check/ (token)": get(alice_api, "/api/v1/check/?role=role0"),
        "API requests/ page 1, requester": get(alice_api, "/api/v1/requests/"),
        "API requests/ page 1, auditor": get(erin_api, "/api/v1/requests/"),
        "API grants/ page 1, requester": get(alice_api, "/api/v1/grants/"),
        "API grants/ page 1, auditor": get(erin_api, "/api/v1/grants/"),
        "API grants/?active=true, auditor": get(erin_api, "/api/v1/grants/?active=true"),
        "API audit/ page 1, auditor": get(erin_api, "/api/v1/audit/"),
        "API roles/, requester": get(alice_api, "/api/v1/roles/"),
        "portal home, requester": get(alice, "/"),
        "portal requests, requester": get(alice, "/requests/"),
        "portal grants, requester": get(alice, "/grants/"),
        "portal requests, auditor": get(erin, "/requests/"),
        "portal grants, auditor": get(erin, "/grants/"),
        "portal approvals inbox, auditor": get(erin, "/approvals/"),
        "portal audit log, auditor": get(erin, "/audit/"),
        "portal review, auditor": get(erin, "/review/"),
    }


def measure(calls: dict, repeat: int) -> dict[str, float]:
    out = {}
    for name, call in calls.items():
        call()  # warm
        samples = []
        for _ in range(repeat):
            started = time.perf_counter()
            call()
            samples.append((time.perf_counter() - started) * 1000)
        out[name] = statistics.median(samples)
    return out


def seq_scans(calls: dict) -> dict[str, list[str]]:
    """For each path, the big tables its queries read with a sequential scan."""
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    found = {}
    for name, call in calls.items():
        with CaptureQueriesContext(connection) as captured:
            call()
        scans = set()
        for query in captured.captured_queries:
            sql = query["sql"]
            if not sql.lstrip().upper().startswith("SELECT"):
                continue
            with connection.cursor() as cursor:
                cursor.execute("EXPLAIN " + sql)
                plan = "\n".join(row[0] for row in cursor.fetchall())
            scans |= {t for t in BIG if f"Seq Scan on {t}" in plan}
        found[name] = sorted(scans)
    return found


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="bench/run.py scale", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)  # fmt: skip
    parser.add_argument("--grants", type=int, default=1_000_000)
    parser.add_argument("--requests", type=int, default=100_000)
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--repeat", type=int, default=7)
    args = parser.parse_args(argv)

    print(f"machine: {machine()}")
    with Stack("scale") as stack:  # noqa: F841 - keeps the scratch database for the run
        world = small_world()
        calls = paths(world)
        empty = measure(calls, args.repeat)
        loaded = history(world, grants=args.grants, requests=args.requests, events=args.events)
        full = measure(calls, args.repeat)
        scans = seq_scans(calls)

    print("\nwriting the history: " + ", ".join(f"{k} {v:.0f} s" for k, v in loaded.items()))
    print(f"\nmedian of {args.repeat} calls, ms:\n")
    rows = []
    for name in calls:
        ratio = full[name] / empty[name] if empty[name] else float("nan")
        rows.append([name, empty[name], full[name], ratio, ", ".join(scans[name]) or "none"])
    print(table(["path", "small tables", f"{args.grants:,} grants", "ratio", "seq scan on big tables"], rows))
    slow = [r[0] for r in rows if r[3] > 2 and r[2] - r[1] > 5]
    scanned = [r[0] for r in rows if r[4] != "none"]
    print()
    print(table(["target", "met", "figure"], [
        ["as fast as with empty tables (within 2x or 5 ms)", "yes" if not slow else "NO", ", ".join(slow) or "all"],
        ["no sequential scan of a big table", "yes" if not scanned else "NO", ", ".join(scanned) or "none"],
    ]))  # fmt: skip
