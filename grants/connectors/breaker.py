"""A target that times out is left alone for a while, so that it cannot stall everything else.

Each connector call is bounded by the connector's timeout, and the broker makes it while holding
a grant's row lock. Without this, a sweeper with fifty grants on a hanging target would wait fifty
timeouts before reaching the grants of healthy targets. After one call to a target times out (or
its connection is refused), further calls to the same target fail at once for
``CONNECTOR_COOLDOWN``, as a failed attempt with the usual backoff, and the grant is retried
later like any other failure. The state lives in Django's cache, shared by every worker when the
cache is Redis; if the cache itself fails, calls simply go ahead.
"""

from __future__ import annotations

import hashlib
import logging
import time

from django.conf import settings
from django.core.cache import cache

from grants.connectors.base import Connector, TargetUnavailable

log = logging.getLogger(__name__)


def _key(connector: Connector) -> str:
    return "connector-cooldown:" + hashlib.sha256(repr(connector.target_key()).encode()).hexdigest()[:32]


def ensure_closed(connector: Connector) -> None:
    """Raise TargetUnavailable without calling the target while it is cooling down."""
    try:
        state = cache.get(_key(connector))
    except Exception:
        log.warning("connector cool-down state unreadable; calling the target", exc_info=True)
        return
    if state:
        until, reason = state
        left = until - time.time()
        if left > 0:
            raise TargetUnavailable(
                f"not tried: {connector.describe()} is cooling down for {left:.0f} more second(s) after: {reason}"
            )


def trip(connector: Connector, exc: TargetUnavailable) -> None:
    cooldown = settings.CONNECTOR_COOLDOWN.total_seconds()
    if cooldown <= 0 or str(exc).startswith("not tried:"):
        return
    try:
        cache.set(_key(connector), (time.time() + cooldown, str(exc)[:300]), timeout=cooldown)
    except Exception:
        log.warning("cannot record the cool-down of %s", connector.describe(), exc_info=True)
        return
    log.warning("%s: %s; calls to it fail at once for %.0f s", connector.describe(), exc, cooldown)
