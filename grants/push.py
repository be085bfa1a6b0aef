"""The push layer of expiry: tasks that fire at a grant's expires_at, one per tick, not one per grant.

A Celery worker holds every task it has taken with an ETA in memory, and Redis keeps each one
unacknowledged until it runs. One task per grant made both grow with the number of grants in the
horizon (100,000 grants: 100,000 tasks). A task is queued per *tick* instead: expiries are rounded
up to ``TICK`` (0.1 s), and the task of a tick ends everything due when it fires, in batches
(``grants.sweeper.expire_due``). However many grants expire, at most ``horizon / TICK`` tasks wait
(6,000 for 10 minutes), and a burst of a thousand expiries in one second is ten tasks.

A tick is queued once: the first grant that needs it takes a key in the cache (Redis in production,
shared by the workers and web processes) with ``cache.add``; the others see the key and queue
nothing. A lost key or a cache that fails only queues a tick twice, which is harmless: the second
task finds nothing due. A lost task is the sweeper's to catch up, within SWEEP_INTERVAL.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from datetime import UTC, datetime, timedelta

from django.conf import settings
from django.core.cache import cache
from django.db import transaction
from django.utils import timezone

from broker.jobs import enqueue_safely

log = logging.getLogger(__name__)

EXPIRE_DUE_TASK = "grants.tasks.expire_due"
TICK = timedelta(milliseconds=100)
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_STEP = TICK // timedelta(microseconds=1)


def tick_of(when: datetime) -> datetime:
    """The tick that ends a grant expiring at ``when``: ``when`` rounded up to a multiple of TICK."""
    micros = (when - _EPOCH) // timedelta(microseconds=1)
    return _EPOCH + timedelta(microseconds=-(-micros // _STEP) * _STEP)


def within_horizon(when: datetime, now: datetime) -> bool:
    return when - now <= settings.REVOKE_ETA_HORIZON


def queue_ticks_on_commit(expiries: Iterable[datetime], *, again: bool = False) -> None:
    """Have the ticks of these expiries queued once the current transaction commits.

    ``again`` queues them even if the cache says they are queued (a worker that starts cannot know
    whether the worker that queued them is still alive to run them).
    """
    ticks = sorted({tick_of(when) for when in expiries})
    if ticks:
        transaction.on_commit(lambda: queue_ticks(ticks, again=again))


def queue_ticks(ticks: Iterable[datetime], *, again: bool = False) -> int:
    """Queue the task of each tick not queued yet; return how many were queued."""
    ttl = int((settings.REVOKE_ETA_HORIZON + timedelta(minutes=10)).total_seconds())
    queued = 0
    now = timezone.now()
    for tick in ticks:
        if not again:
            try:
                if not cache.add(f"grants:expiry-tick:{tick.timestamp():.1f}", 1, timeout=ttl):
                    continue
            except Exception:
                log.warning("expiry tick cache unreadable; queuing the tick anyway", exc_info=True)
        if enqueue_safely(EXPIRE_DUE_TASK, eta=tick if tick > now else None):
            queued += 1
    return queued
