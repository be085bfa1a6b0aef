"""The one counter of failures, in the shared cache, that slows down guessing everywhere.

Used for sign-in (per username and per client address), bearer tokens (per client address),
one-time codes (per user) and approver email links that fail their signature (per client address). Only failures are counted, so a caller with valid credentials never
pays a cache round trip. A window opens at the first failure; once ``limit`` failures were counted
in it, the caller waits for the rest of the window (429 with Retry-After). With Redis (CACHE_URL)
every web process sees the same counters; without it each process counts alone.

Why not a library: django-axes covers only the sign-in form (bearer tokens and one-time codes
would still need this), and django-ratelimit counts requests in windows aligned to the clock, not
failures from the first one; both would leave two limiters where one does.
"""

from __future__ import annotations

import hashlib
import math
import time

from django.core.cache import cache


def _keys(scope: str, ident: str) -> tuple[str, str]:
    # Hash the identifier: cache keys must be short and free of odd characters (IPv6, usernames).
    digest = hashlib.sha256(ident.strip().lower().encode("utf-8", "replace")).hexdigest()[:32]
    return f"rl:{scope}:{digest}:n", f"rl:{scope}:{digest}:t"


def retry_after(scope: str, ident: str, *, limit: int, window: float) -> int | None:
    """Seconds to wait if ``ident`` has used up its failures in this window, else None."""
    count_key, start_key = _keys(scope, ident)
    values = cache.get_many([count_key, start_key])
    if (values.get(count_key) or 0) < limit:
        return None
    started = values.get(start_key) or time.time()
    return max(1, math.ceil(started + window - time.time()))


def fail(scope: str, ident: str, *, limit: int, window: float) -> int | None:
    """Count one failure; return the seconds to wait once more than ``limit`` failures were counted."""
    if count_failure(scope, ident, window=window) > limit:
        return retry_after(scope, ident, limit=limit, window=window)
    return None


def count_failure(scope: str, ident: str, *, window: float) -> int:
    """Count one failure; return how many were counted in the current window, this one included."""
    count_key, start_key = _keys(scope, ident)
    timeout = max(1, math.ceil(window))
    if cache.add(start_key, time.time(), timeout=timeout):
        cache.set(count_key, 0, timeout=timeout)
    try:
        return cache.incr(count_key)
    except ValueError:  # the counter expired between the two calls
        cache.set(count_key, 1, timeout=timeout)
        return 1


def reset(scope: str, ident: str) -> None:
    """Forget the failures of ``ident`` (a successful sign-in clears its username's count)."""
    cache.delete_many(list(_keys(scope, ident)))
