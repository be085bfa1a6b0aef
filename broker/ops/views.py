"""``/healthz`` (the process answers), ``/readyz`` (what the broker needs answers) and ``/metrics``."""

from __future__ import annotations

import hmac
import ipaddress
import logging
import os
import time
from collections.abc import Callable
from pathlib import Path

from django.conf import settings
from django.db import connection
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.utils import timezone
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET
from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, CollectorRegistry, generate_latest, multiprocess

from broker.audit.boundary import current_boundary
from broker.audit.status import stored_verification
from broker.http import client_ip
from broker.models import Heartbeat
from broker.ops.figures import DatabaseFigures
from broker.telemetry import metrics

log = logging.getLogger(__name__)

# Each dependency is asked with a short timeout: /readyz answers within a few seconds, whatever is down.
_REDIS_TIMEOUT = 2.0


@never_cache
@require_GET
def healthz(request: HttpRequest) -> JsonResponse:
    """Liveness: the process answers. Touches nothing else (a database outage is /readyz's business)."""
    return JsonResponse({"status": "ok"})


# --- /readyz ------------------------------------------------------------------------------------------


class _Down(Exception):
    """A check failed: the message says what, for operators (never a password or a host's secret)."""


def _database() -> str:
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1")
    return f"{connection.vendor} answers"


def _celery_broker() -> str:
    url = settings.CELERY_BROKER_URL
    if url.startswith(("redis://", "rediss://")):
        import redis

        client = redis.Redis.from_url(url, socket_connect_timeout=_REDIS_TIMEOUT, socket_timeout=_REDIS_TIMEOUT)
        try:
            client.ping()
        except redis.RedisError as exc:
            raise _Down(f"Redis does not answer ({type(exc).__name__})") from None
        finally:
            client.close()
        return "Redis answers"
    if url.startswith("filesystem"):
        folder = Path(settings.CELERY_BROKER_TRANSPORT_OPTIONS["data_folder_in"])
        if not (folder.is_dir() and os.access(folder, os.W_OK)):
            raise _Down(f"the queue folder {folder} is missing or not writable")
        return "the queue folder is writable"
    return "in-memory broker"


def _worker() -> str:
    beat = Heartbeat.objects.filter(name="worker").first()
    if beat is None:
        raise _Down("no worker heartbeat yet: is beat running, and a worker taking the default queue?")
    age = (timezone.now() - beat.at).total_seconds()
    if age > settings.HEARTBEAT_MAX_AGE.total_seconds():
        raise _Down(
            f"the last worker heartbeat is {age:.0f} s old (beat or every worker is down, or the queue is stuck)"
        )
    return f"heartbeat {age:.1f} s ago from {beat.worker or 'a worker'}"


def _audit_chain() -> str:
    edge = current_boundary()
    if not edge.ok:
        raise _Down(edge.reason)
    stored, authentic = stored_verification()
    if stored is None:
        return "not verified yet (the scheduled walk has not run)"
    if not authentic:
        raise _Down("the stored outcome of the scheduled verification lacks a valid MAC")
    if not stored.ok:
        raise _Down(f"broken at event #{stored.broken_seq} (found {stored.at:%Y-%m-%d %H:%M:%S} UTC)")
    return f"verified up to event #{stored.seq}"


_CHECKS: list[tuple[str, Callable[[], str], bool]] = [
    # (name, check, needs the database)
    ("database", _database, False),
    ("celery_broker", _celery_broker, False),
    ("worker", _worker, True),
    ("audit_chain", _audit_chain, True),
]


@never_cache
@require_GET
def readyz(request: HttpRequest) -> JsonResponse:
    """Readiness: the database, the Celery broker, a fresh worker heartbeat, an audit chain not known
    broken. 200 or 503, JSON naming what is down; never cached."""
    checks: dict[str, dict] = {}
    down: list[str] = []
    for name, check, needs_database in _CHECKS:
        if needs_database and "database" in down:
            checks[name] = {"ok": None, "detail": "not checked: the database is down"}
            continue
        start = time.perf_counter()
        try:
            detail = check()
            ok = True
        except _Down as exc:
            ok, detail = False, str(exc)
        except Exception as exc:  # noqa: BLE001 - any failure of a dependency is "down", never a 500
            ok, detail = False, f"{type(exc).__name__}: cannot be reached"
            log.warning("readyz: %s is down: %s", name, exc)
        checks[name] = {"ok": ok, "detail": detail, "ms": round((time.perf_counter() - start) * 1000, 1)}
        if not ok:
            down.append(name)
    if "database" in down:
        connection.close_if_unusable_or_obsolete()
    return JsonResponse(
        {"status": "unavailable" if down else "ok", "down": down, "checks": checks}, status=503 if down else 200
    )


# --- /metrics ------------------------------------------------------------------------------------------


def _refusal(request: HttpRequest) -> HttpResponse | None:
    """None when the scraper may read the metrics: METRICS_TOKEN and/or METRICS_ALLOWED_IPS."""
    token, networks = settings.METRICS_TOKEN, settings.METRICS_ALLOWED_IPS
    try:
        address = ipaddress.ip_address(client_ip(request) or "")
    except ValueError:
        address = None
    if not token and not networks:
        if settings.DEBUG and address is not None and address.is_loopback:
            return None
        return HttpResponse(
            "metrics are off: set METRICS_TOKEN or METRICS_ALLOWED_IPS\n", status=403, content_type="text/plain"
        )
    if networks and (address is None or not any(address in network for network in networks)):
        return HttpResponse("not an allowed address\n", status=403, content_type="text/plain")
    if token:
        given = request.headers.get("Authorization", "")
        scheme, _, value = given.partition(" ")
        if scheme.lower() != "bearer" or not hmac.compare_digest(value.strip().encode(), token.encode()):
            response = HttpResponse("a bearer token is required\n", status=401, content_type="text/plain")
            response["WWW-Authenticate"] = 'Bearer realm="metrics"'
            return response
    return None


@never_cache
@require_GET
def metrics_view(request: HttpRequest) -> HttpResponse:
    refused = _refusal(request)
    if refused is not None:
        return refused
    figures = CollectorRegistry(auto_describe=False)
    figures.register(DatabaseFigures())
    if metrics.MULTIPROCESS:
        # The sum of every process on this host that wrote to PROMETHEUS_MULTIPROC_DIR.
        processes = CollectorRegistry()
        multiprocess.MultiProcessCollector(processes)
    else:
        processes = REGISTRY
    body = generate_latest(processes) + generate_latest(figures)
    return HttpResponse(body, content_type=CONTENT_TYPE_LATEST)
