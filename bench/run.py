#!/usr/bin/env python
"""Run one benchmark: `bench/run.py NAME [options]` (`bench/run.py NAME --help` for its options).

    revocation   revocation lag with a real worker: bursts, spread expiries, a crash, scale-out
    check        GET /api/v1/check/ against a plain Django view, same gunicorn, same run
    autoapprove  request to effective grant through the API, 1 and 8 clients
    audit        audit appends per second (4 writers) and verification speed
    memory       worker and Redis memory with 100,000 grants expiring within the horizon
    scale        a sweep, check, list endpoints and portal pages with 1,000,000 grants vs empty tables
    anomaly      scoring one new request for anomalies with 1,000,000 past requests vs an empty table

Each prints the machine, a table, and each target met or missed. They need PostgreSQL
(BENCH_DATABASE_URL, default postgresql://postgres@127.0.0.1:5432/postgres: a scratch database is
created and dropped) and Redis (BENCH_REDIS_URL, default redis://127.0.0.1:6379/7: emptied at the
start and the end, so give it a database of its own). `make bench` runs them all.
"""

import importlib
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

NAMES = ("revocation", "check", "autoapprove", "audit", "memory", "scale", "anomaly")

if __name__ == "__main__":
    if len(sys.argv) < 2 or sys.argv[1] not in NAMES:
        sys.exit(__doc__)
    importlib.import_module(f"bench.{sys.argv[1]}").main(sys.argv[2:])
