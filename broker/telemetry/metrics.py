"""Counters and histograms kept by the code paths, in every process (prometheus-client).

Correct under several processes through prometheus-client's multiprocess mode: when
``PROMETHEUS_MULTIPROC_DIR`` is set (production: one folder per host, shared by the web processes and
the Celery worker there; ``make run``: ``var/metrics``), every process writes its values to files in
that folder and ``/metrics`` adds them up, so a scrape that lands on any gunicorn worker sees the sum
of all of them, and of the worker's connector calls. Without it (tests, a single process) the values
live in this process's default registry.

What the database knows (grants by state, overdue removals, the revocation lag of every expired
grant, requests, the audit chain, the heartbeat) is not counted here at all: ``broker/ops/figures.py``
reads it at scrape time, which is right whatever process or host did the work (docs/operations.md).
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from django.conf import settings

_DIR = settings.PROMETHEUS_MULTIPROC_DIR
if not _DIR:
    # Set but empty would turn prometheus-client's file mode on with the working directory as the
    # folder: metrics files of every process would land wherever it was started.
    os.environ.pop("PROMETHEUS_MULTIPROC_DIR", None)
    os.environ.pop("prometheus_multiproc_dir", None)
else:
    # prometheus-client reads the folder from the environment when a process first writes a value.
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = _DIR
    Path(_DIR).mkdir(parents=True, exist_ok=True)

from prometheus_client import Counter, Histogram, values  # noqa: E402 - after the folder is set

if _DIR and values.ValueClass is values.MutexValue:
    # prometheus_client was imported before the folder was known: switch to files now, before any
    # of the metrics below exists.
    values.ValueClass = values.MultiProcessValue()
elif not _DIR and values.ValueClass is not values.MutexValue:
    values.ValueClass = values.MutexValue

MULTIPROCESS = bool(_DIR)

_LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30)

http_responses = Counter(
    "broker_http_responses",
    "HTTP responses by surface (api, portal, admin, email_link, scim, ops, other), method and status code.",
    ["surface", "method", "status"],
)
http_duration = Histogram(
    "broker_http_request_duration_seconds",
    "Time to answer an HTTP request, by surface.",
    ["surface"],
    buckets=_LATENCY_BUCKETS,
)
connector_duration = Histogram(
    "broker_connector_call_duration_seconds",
    "Time of a connector operation on a target (the call and its read-back), by connector and operation.",
    ["connector", "operation"],
    buckets=_LATENCY_BUCKETS,
)
connector_errors = Counter(
    "broker_connector_call_errors",
    "Connector operations that failed, by connector, operation and kind "
    "(unavailable: timeout or refused; cooling_down: not tried; permanent; error).",
    ["connector", "operation", "kind"],
)


def _surface(path: str) -> str:
    for prefix, surface in (
        ("/api/", "api"),
        ("/scim/", "scim"),
        ("/admin/", "admin"),
        ("/email-link/", "email_link"),
        ("/static/", "static"),
    ):
        if path.startswith(prefix):
            return surface
    if path in ("/metrics", "/healthz", "/readyz"):
        return "ops"
    return "portal"


def observe_response(path: str, method: str, status: int, seconds: float) -> None:
    surface = _surface(path)
    method = method if method in {"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"} else "other"
    http_responses.labels(surface, method, str(status)).inc()
    http_duration.labels(surface).observe(seconds)


def _error_kind(exc: BaseException) -> str:
    text = str(exc)
    if text.startswith("not tried:"):
        return "cooling_down"
    if type(exc).__name__ == "TargetUnavailable":
        return "unavailable"
    if getattr(exc, "permanent", False):
        return "permanent"
    return "error"


@contextmanager
def connector_call(connector: str, operation: str) -> Iterator[None]:
    """Time one connector operation and count its failure: ``with connector_call("webhook", "revoke"):``."""
    start = time.perf_counter()
    try:
        yield
    except BaseException as exc:
        connector_failed(connector, operation, exc)
        raise
    finally:
        connector_duration.labels(connector, operation).observe(time.perf_counter() - start)


def connector_failed(connector: str, operation: str, exc: BaseException) -> None:
    """Count a failed connector operation whose error the caller handles instead of raising."""
    connector_errors.labels(connector, operation, _error_kind(exc)).inc()
