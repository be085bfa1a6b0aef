"""Acting at once when someone may no longer hold a role: eligibility removed, account deactivated,
role retired.

``eligibility_enforce`` is the one function that does it. It re-checks people (and roles) against
the catalog (``broker.catalog.why_not_eligible``) and, for whatever is no longer allowed, cancels
the pending requests (``request.cancelled``) and ends the live grants (``grant.revoked`` once the
target confirms, end reason ``eligibility_lost`` or ``role_retired``). It is idempotent and
re-checks each row under its lock, so running it twice, late, or for people who lost nothing is
harmless. Lock order as everywhere: requests first (an approval creates a grant), then grants;
each row in a transaction of its own, so that one target failing does not keep the rest alive.

Who calls it:

- ``approvals.signals``: every change of the catalog or of people that can remove eligibility
  (group membership, from either side; deactivation; an eligibility row deleted or changed; a role
  retired) queues ``approvals.tasks.enforce_eligibility`` once its transaction commits;
- ``broker.policy.apply``, right after a policy is committed;
- ``approvals.tasks.sweep_eligibility`` every SWEEP_INTERVAL, for everyone: the safety net for
  changes that send no signal (``QuerySet.update``, SQL, a lost task).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime

from django.contrib.auth.models import AbstractBaseUser
from django.db.models import Q, QuerySet
from django.utils import timezone

from approvals import services
from approvals.models import AccessRequest
from broker.catalog import not_eligible
from broker.models import Channel
from grants import services as grant_services
from grants.models import Grant

log = logging.getLogger(__name__)

Status = AccessRequest.Status


@dataclass
class Enforcement:
    requests_cancelled: list[int] = field(default_factory=list)
    grants_ended: list[int] = field(default_factory=list)

    def __bool__(self) -> bool:
        return bool(self.requests_cancelled or self.grants_ended)


def _scope(person: str, user_ids: Iterable[int] | None, role_ids: Iterable[int] | None) -> Q:
    if user_ids is None and role_ids is None:
        return Q()  # everyone
    return Q(**{f"{person}_id__in": list(user_ids or ())}) | Q(role_id__in=list(role_ids or ()))


def lost_requests(user_ids: Iterable[int] | None = None, role_ids: Iterable[int] | None = None) -> QuerySet:
    """Pending requests of these people or roles (None and None: everyone's) that may no longer be granted."""
    scope = _scope("requester", user_ids, role_ids)
    return AccessRequest.objects.filter(scope, status=Status.PENDING).filter(not_eligible("requester"))


def lost_grants(user_ids: Iterable[int] | None = None, role_ids: Iterable[int] | None = None) -> QuerySet:
    """Live grants of these people or roles (None and None: everyone's) whose holder may no longer hold them."""
    return Grant.objects.live().filter(_scope("user", user_ids, role_ids)).filter(not_eligible("user"))


def eligibility_enforce(
    *,
    user_ids: Iterable[int] | None = None,
    role_ids: Iterable[int] | None = None,
    cause: str,
    actor: AbstractBaseUser | None = None,
    via: str = Channel.WORKER,
    now: datetime | None = None,
    skip_locked: bool = False,
) -> Enforcement:
    """Re-check ``user_ids`` and ``role_ids`` (both None: everyone) against the catalog and act on what
    is no longer allowed: pending requests cancelled, live grants ended. ``cause`` (what changed,
    in a few words) is recorded with each cancellation."""
    now = now or timezone.now()
    user_ids = None if user_ids is None else sorted(set(user_ids))
    role_ids = None if role_ids is None else sorted(set(role_ids))
    done = Enforcement()
    for request_id in lost_requests(user_ids, role_ids).order_by("pk").values_list("pk", flat=True):
        cancelled = services.request_cancel_if_not_eligible(
            request_id=request_id, cause=cause, actor=actor, via=via, now=now, skip_locked=skip_locked
        )
        if cancelled is not None:
            done.requests_cancelled.append(request_id)
    # Queried after the requests: a request approved meanwhile has its grant by now.
    for grant_id in lost_grants(user_ids, role_ids).order_by("pk").values_list("pk", flat=True):
        ended = grant_services.grant_end_if_not_eligible(
            grant_id=grant_id, actor=actor, via=via, now=now, skip_locked=skip_locked
        )
        if ended is not None:
            done.grants_ended.append(grant_id)
    if done:
        log.warning(
            "eligibility lost (%s): request(s) %s cancelled, grant(s) %s ended",
            cause,
            done.requests_cancelled,
            done.grants_ended,
        )
    return done


def eligibility_sweep(*, now: datetime | None = None) -> Enforcement:
    """The safety net: everyone's pending requests and live grants, against the catalog as it is now."""
    return eligibility_enforce(cause="periodic check", now=now, skip_locked=True)
