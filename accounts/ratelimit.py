"""Counting failures in a fixed window, in the shared cache, to slow down guessing.

Used for failed bearer tokens (per client address) and wrong one-time codes (per user). Only
failures are counted, so a caller with valid credentials never pays a cache round trip. The
window starts at the first failure; after ``limit`` failures within it the caller waits for the
rest of the window (429 with Retry-After). With Redis (CACHE_URL) every web process sees the same counters.
"""

from __future__ import annotations

import hashlib
import time

from django.core.cache import cache


def _keys(scope: str, ident: str) -> tuple[str, str]:
    # Hash the identifier: cache keys must be short and free of odd characters (IPv6, usernames).
    digest = hashlib.sha256(ident.encode("utf-8", "replace")).hexdigest()[:32]
    return f"rl:{scope}:{digest}:n", f"rl:{scope}:{digest}:t"


def retry_after(scope: str, ident: str, *, limit: int, window: float) -> int | None:
    """Seconds to wait if ``ident`` has used up its failures in this window, else None."""
    count_key, start_key = _keys(scope, ident)
    values = cache.get_many([count_key, start_key])
    count = values.get(count_key) or 0
    if count < limit:
        return None
    started = values.get(start_key) or time.time()
    return max(1, int(started + window - time.time()) + 1)


def fail(scope: str, ident: str, *, limit: int, window: float) -> int | None:
    """Count one failure; return the seconds to wait once more than ``limit`` failures were counted."""
    count_key, start_key = _keys(scope, ident)
    timeout = max(1, int(window))
    if cache.add(start_key, time.time(), timeout=timeout):
        cache.set(count_key, 0, timeout=timeout)
    try:
        count = cache.incr(count_key)
    except ValueError:  # the counter expired between the two calls
        cache.set(count_key, 1, timeout=timeout)
        count = 1
    if count > limit:
        return retry_after(scope, ident, limit=limit, window=window)
    return None


def reset(scope: str, ident: str) -> None:
    cache.delete_many(list(_keys(scope, ident)))
