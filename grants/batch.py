"""Ending many grants at once: a burst costs per batch what one grant costs, not per grant.

A shift change, an incident, a policy prune or a risk signal on a team ends hundreds of grants
within a second. Ending them one by one costs about fifteen queries and a lock of the audit head
each; ``end_batch`` ends a batch of them in the caller's transaction with a handful of statements:

1. the grant rows are already locked by the caller (``select_for_update(skip_locked=True)``,
   ordered, bounded: ``due_for_expiry``), so two workers take disjoint batches;
2. the access locks (``AccessLock``) of every (target, holder) pair of the batch are taken at once,
   sorted, so that shared access is decided on committed state exactly as for one grant, and two
   batches never deadlock;
3. one query finds which holders still need the access through another active grant;
4. each target is called once for the whole batch (``revoke_confirmed``: the connector's
   ``revoke_many`` and one read-back, in a savepoint);
5. the confirmed grants are ended by one UPDATE, and their audit events appended with
   ``audit.record_many`` (one lock of the head, taken last);
6. their "grant ended" messages are queued as one task after the commit.

A grant whose removal fails is left untouched here and returned: the caller ends it afterwards on
the one-grant path (``grants.services``), with its retries, ``revoking`` and ``revoke_failed``.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from collections.abc import Sequence
from datetime import datetime

from django.conf import settings
from django.contrib.auth.models import AbstractBaseUser
from django.db.models import QuerySet
from django.utils import timezone

from broker import audit
from broker.models import Channel
from broker.notify import Message, notify_many_on_commit
from grants.connectors import Connector, connector_for_grant, revoke_confirmed
from grants.events import FINAL_ACTION, FINAL_STATUS, ended_data, facts, grant_event
from grants.models import AccessLock, Grant

log = logging.getLogger(__name__)

S = Grant.Status
R = Grant.EndReason


def batch_size() -> int:
    """Grants ended in one transaction (REVOKE_BATCH_SIZE, 200): large enough that a burst costs a
    few transactions, small enough that several workers share a burst and one transaction holds
    few locks."""
    return settings.REVOKE_BATCH_SIZE


def due_for_expiry(now: datetime, limit: int) -> list[Grant]:
    """Lock the active grants past their expiry, oldest first, skipping those another worker holds."""
    return list(
        Grant.objects.select_for_update(skip_locked=True, of=("self",))
        .select_related("role", "user", "request")
        .filter(status=S.ACTIVE, expires_at__lte=now)
        .order_by("expires_at", "pk")[:limit]
    )


def locked(grant_ids: Sequence[int]) -> QuerySet[Grant]:
    """The grants, locked in id order, skipping those another worker holds."""
    return (
        Grant.objects.select_for_update(skip_locked=True, of=("self",))
        .select_related("role", "user", "request")
        .filter(pk__in=list(grant_ids))
        .order_by("pk")
    )


def end_batch(
    grants: Sequence[Grant],
    *,
    reason: str,
    now: datetime,
    actor: AbstractBaseUser | None = None,
    via: str = Channel.WORKER,
    comments: dict[int, str] | None = None,
) -> list[Grant]:
    """End live grants the caller holds locked, in its transaction; return those whose removal failed.

    ``comments`` gives a grant's ``end_comment`` by id (the reason a person gave, or why the holder
    is no longer eligible). The failed grants are not changed: end them on the one-grant path.
    """
    comments = comments or {}
    connectors: dict[tuple[int, str], Connector] = {}

    def connector_of(grant: Grant) -> Connector:
        key = (grant.role_id, grant.resource)
        if key not in connectors:
            connectors[key] = connector_for_grant(grant)
        return connectors[key]

    failed: list[Grant] = []
    targets: dict[tuple, list[Grant]] = defaultdict(list)
    for grant in grants:
        try:
            targets[connector_of(grant).target_key()].append(grant)
        except Exception:  # noqa: BLE001 - an unknown connector: the one-grant path records it
            failed.append(grant)
        grant.end_reason = reason
        grant.end_comment = comments.get(grant.pk, "")
        grant.ended_by = actor
    if not targets:
        return failed

    AccessLock.objects.hold_many((key, grant.user_id) for key, members in targets.items() for grant in members)
    # Asked under the access locks, as on the one-grant path: a sibling's activation or removal
    # that started earlier has committed by now, and one that starts later waits for this batch.
    ending = {grant.pk for grant in grants}
    others = (
        Grant.objects.filter(user_id__in={grant.user_id for grant in grants}, status=S.ACTIVE)
        .exclude(pk__in=ending)
        .select_related("role")
    )
    needed = {(other.user_id, connector_of(other).target_key()) for other in others}

    confirmed: list[Grant] = []
    # Targets in the broker's own database first: a remote target that hangs until its timeout
    # then delays only the remote targets after it in this batch, never these.
    in_order = sorted(targets.items(), key=lambda item: not connector_of(item[1][0]).local)
    for key, members in in_order:
        removing = [grant for grant in members if (grant.user_id, key) not in needed]
        items = [(grant.user, grant_event(grant, "grant.revoked")) for grant in removing]
        errors = dict(zip((g.pk for g in removing), revoke_confirmed(connector_of(members[0]), items), strict=True))
        for grant in members:
            error = errors.get(grant.pk)
            if error is None:
                confirmed.append(grant)
            else:
                failed.append(grant)
                log.warning("grant %s: removal in a batch failed, trying it alone: %s", grant.pk, error)
    if confirmed:
        _finish(confirmed, reason=reason, now=now, actor=actor, via=via)
    return failed


def _finish(grants: list[Grant], *, reason: str, now: datetime, actor: AbstractBaseUser | None, via: str) -> None:
    ended_at = timezone.now()
    status = FINAL_STATUS.get(reason, S.REVOKED)
    by_comment: dict[str, list[int]] = defaultdict(list)
    for grant in grants:
        grant.status, grant.ended_at, grant.end_requested_at = status, ended_at, now
        grant.attempts, grant.next_attempt_at = 0, None
        by_comment[grant.end_comment].append(grant.pk)
    for comment, ids in by_comment.items():
        Grant.objects.filter(pk__in=ids).update(
            status=status,
            end_reason=reason,
            end_requested_at=now,
            ended_at=ended_at,
            ended_by=actor,
            end_comment=comment,
            attempts=0,
            next_attempt_at=None,
        )
    action = FINAL_ACTION.get(reason, "grant.revoked")
    audit.record_many(
        [
            audit.Entry(action, actor=actor, target=grant, via=via, **facts(grant), data=ended_data(grant))
            for grant in grants
        ]
    )
    notify_many_on_commit(Message.GRANT_ENDED, [grant.pk for grant in grants])
    log.info("%s grant(s) ended (%s) in one batch", len(grants), reason)
