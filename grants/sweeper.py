"""The safety net and the burst path: act on everything that is due, whatever happened to the
pushed tasks, ending due grants in batches (grants/batch.py).

Safe to run from several workers at once: grants are taken with ``skip_locked``, and every
transition re-checks the state after taking the lock.
"""

from __future__ import annotations

import logging
from datetime import datetime

from django.conf import settings
from django.db import transaction
from django.db.models import F, Q
from django.utils import timezone

from broker.jobs import enqueue_safely
from grants import batch as batches
from grants.models import Grant
from grants.push import EXPIRE_DUE_TASK, queue_ticks, tick_of
from grants.services import grant_activate, grant_expire, grant_remove

log = logging.getLogger(__name__)

S = Grant.Status
R = Grant.EndReason

# Batches one sweep ends at most (more are left to the next sweep and to the helpers it sends).
MAX_BATCHES = 50


def expire_due(*, now: datetime | None = None, limit: int | None = None, fan_out: bool = False) -> tuple[int, bool]:
    """End one batch of the active grants past their expiry, oldest first.

    Returns how many ended and whether the batch was full (more may be due). With ``fan_out``, a
    full batch first sends an ``expire_due`` task, so that an idle worker process (on this machine
    or another) takes the next batch while this one works: a burst is shared by every worker, not
    queued behind one. The grants whose removal failed in the batch are then ended one by one,
    with their retries.
    """
    now = now or timezone.now()
    limit = limit or batches.batch_size()
    with transaction.atomic():
        grants = batches.due_for_expiry(now, limit)
        full = len(grants) >= limit
        if full and fan_out:
            # Sent now, not on commit: it carries nothing of this transaction, and the rows this
            # batch holds are skipped by the helper (skip_locked).
            enqueue_safely(EXPIRE_DUE_TASK)
        failed = batches.end_batch(grants, reason=R.EXPIRY, now=now) if grants else []
    for grant in failed:
        grant_expire(grant_id=grant.pk, now=now, skip_locked=True)
    return len(grants) - len(failed), full


def expire_all_due(*, now: datetime | None = None, max_batches: int = MAX_BATCHES) -> int:
    """End everything due, batch after batch, asking for one helper when the first batch is full.

    One helper per task, not one per batch: each helper that finds a full batch asks for one more,
    so every idle worker process joins a burst, and the queue never fills with helpers that would
    find nothing. The loop does not wait for helpers: a message takes a moment to be delivered, and
    a batch takes a fraction of a second.
    """
    total = 0
    for i in range(max_batches):
        ended, full = expire_due(now=now, fan_out=i == 0)
        total += ended
        if not full:
            break
    return total


def sweep(*, now: datetime | None = None, batch: int = 500, rearm: bool = False) -> dict[str, int]:
    """Activate what is due, end what is overdue, retry removals, and queue the expiry ticks of
    grants that came within the horizon. ``rearm`` queues the ticks of every grant within the
    horizon again: a worker that starts does so, because the tasks queued before it may have died
    with the worker that held them.
    """
    now = now or timezone.now()
    counts = {}

    due = (
        Grant.objects.filter(status=S.SCHEDULED, starts_at__lte=now)
        .filter(Q(next_attempt_at__isnull=True) | Q(next_attempt_at__lte=now))
        .values_list("pk", flat=True)[:batch]
    )
    counts["activated"] = sum(
        1 for pk in due if (g := grant_activate(grant_id=pk, now=now, skip_locked=True)) and g.status == S.ACTIVE
    )

    counts["expired"] = expire_all_due(now=now)

    retry = Grant.objects.ending().filter(next_attempt_at__lte=now)
    counts["removal_retried"] = sum(
        1 for pk in retry.values_list("pk", flat=True)[:batch] if grant_remove(grant_id=pk, now=now, skip_locked=True)
    )
    counts["eta_queued"] = _queue_upcoming(now, batch=batch, rearm=rearm)
    return counts


def _queue_upcoming(now: datetime, *, batch: int, rearm: bool) -> int:
    """The push layer for grants that came within the horizon since they were activated or extended."""
    upcoming = Grant.objects.filter(
        status=S.ACTIVE, expires_at__gt=now, expires_at__lte=now + settings.REVOKE_ETA_HORIZON
    )
    with transaction.atomic():
        if rearm:
            rows = list(upcoming.values_list("pk", "expires_at"))
        else:
            # Locked and marked in one transaction: of two sweepers, one queues each tick.
            rows = list(
                upcoming.select_for_update(skip_locked=True)
                .exclude(eta_queued_for=F("expires_at"))
                .values_list("pk", "expires_at")[:batch]
            )
        fresh = [pk for pk, _ in rows]
        if fresh:
            Grant.objects.filter(pk__in=fresh).update(eta_queued_for=F("expires_at"))
    # After the commit (the sweeper runs outside any transaction).
    queue_ticks(sorted({tick_of(expires_at) for _, expires_at in rows}), again=rearm)
    return len(rows)
