"""Reads of grants, each with its permission filter built in; the decision point for systems that
pull (``grant_check``); and the figures of the elevation review.

Visibility: whoever may see a grant's request sees the grant (the holder, the role's approvers,
auditors, administrators; see ``approvals.selectors``); the ``security`` group also sees every
break-glass grant, which it reviews. Anything else is a 404.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from zoneinfo import ZoneInfo

from django.contrib.auth import get_user_model
from django.contrib.auth.models import AbstractBaseUser, Group
from django.db.models import Exists, OuterRef, Q, QuerySet, Subquery
from django.utils import timezone

from broker.catalog import AUDITORS_GROUP, is_security, roles_escalated_to, sees_everything, stages_naming
from grants.models import Grant


def grants_visible_to(user: AbstractBaseUser, *, admin: bool | None = None) -> QuerySet[Grant]:
    """Whoever may see the request a grant came from; security also sees every break-glass grant.

    That is the rule of ``approvals.selectors.requests_visible_to`` read from the grant's side (its
    holder is the requester, its role the request's role): the holder, the approvers of the role's
    stages, whoever decided its request, the role's escalation approvers once its request was
    escalated, auditors and administrators. Spelled here with the
    catalog's rule and the database relation to the request's decisions, because approvals sits
    above grants and is never imported from here.
    """
    if not user.is_authenticated or not user.is_active:
        return Grant.objects.none()
    if sees_everything(user, admin=admin):
        return Grant.objects.all()
    approves_role = stages_naming(user).filter(role=OuterRef("role"))
    decided = Grant.objects.filter(pk=OuterRef("pk"), request__decisions__approver=user)
    escalated = Q(request__escalated_at__isnull=False, role__in=roles_escalated_to(user))
    visible = Q(user=user) | Exists(approves_role) | Exists(decided) | escalated
    if is_security(user):
        # Security reviews every break-glass activation after the fact.
        visible |= Q(break_glass=True)
    return Grant.objects.filter(visible)


def grants_live_for(user: AbstractBaseUser) -> QuerySet[Grant]:
    """The user's grants that give access now, will soon, or are still being removed."""
    return Grant.objects.unfinished().filter(user=user).order_by("expires_at", "pk")


def break_glass_awaiting_review(viewer: AbstractBaseUser, *, admin: bool | None = None) -> QuerySet[Grant]:
    """Break-glass grants ``viewer`` may see that nobody reviewed yet (or whose review an extension reopened)."""
    return (
        grants_visible_to(viewer, admin=admin)
        .filter(break_glass=True, reviewed_at__isnull=True)
        .exclude(status=Grant.Status.FAILED)
    )


# --- The decision point ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Check:
    allowed: bool
    grant_id: int | None
    expires_at: datetime | None
    viewer_is_auditor: bool


def grant_check(*, viewer: AbstractBaseUser, username: str, role_slug: str, now: datetime | None = None) -> Check:
    """Does ``username`` hold ``role_slug`` right now, by the effective rule (docs/design.md)?

    One query, whoever asks: the effective grant and whether the viewer is an auditor come back
    in the same row (the viewer's), so the caller can refuse to answer about someone else.
    """
    now = now or timezone.now()
    effective = Grant.objects.effective(now).filter(user__username=username, role__slug=role_slug)
    row = (
        get_user_model()
        .objects.filter(pk=viewer.pk)
        .annotate(
            viewer_is_auditor=Exists(Group.objects.filter(user=OuterRef("pk"), name=AUDITORS_GROUP)),
            grant_id=Subquery(effective.order_by("expires_at").values("pk")[:1]),
            grant_expires_at=Subquery(effective.order_by("expires_at").values("expires_at")[:1]),
        )
        .values("viewer_is_auditor", "grant_id", "grant_expires_at")
        .first()
    )
    if row is None:
        return Check(allowed=False, grant_id=None, expires_at=None, viewer_is_auditor=False)
    return Check(
        allowed=row["grant_id"] is not None,
        grant_id=row["grant_id"],
        expires_at=row["grant_expires_at"],
        viewer_is_auditor=bool(row["viewer_is_auditor"]),
    )


# --- Elevation review ------------------------------------------------------------------------------


def grants_in_period(viewer: AbstractBaseUser, start: datetime, end: datetime) -> QuerySet[Grant]:
    """Grants ``viewer`` may see whose holding overlapped [start, end): started before the end, not
    ended before the start. Auditors and administrators get every grant; security, the break-glass
    ones (and any other it may see, as everywhere: ``grants_visible_to``)."""
    return (
        grants_visible_to(viewer)
        .filter(starts_at__lt=end)
        .filter(Q(ended_at__isnull=True) | Q(ended_at__gt=start))
        .exclude(status=Grant.Status.FAILED)
    )


def held_interval(grant, now: datetime) -> tuple[datetime, datetime] | None:
    """When the role was really held in the target: from activation to the confirmed removal."""
    held_from = grant.activated_at
    if held_from is None:
        return None
    held_until = grant.ended_at or now
    return (held_from, held_until) if held_until > held_from else None


@dataclass
class Review:
    days: list[date]
    per_day: dict[str, list[int]]  # role -> grants started each day
    hours_per_user: list[tuple[str, float]]  # most elevated first
    total_grants: int
    total_hours: float


def elevation_review(
    viewer: AbstractBaseUser, start: datetime, end: datetime, tz: ZoneInfo, *, now: datetime | None = None
) -> Review:
    """Grants started per day by role, and hours held per user, within [start, end) (one query), counting
    only the grants ``viewer`` may see."""
    now = now or timezone.now()
    first = start.astimezone(tz).date()
    last = (end - timedelta(microseconds=1)).astimezone(tz).date()
    days = [first + timedelta(days=i) for i in range((last - first).days + 1)]
    index = {day: i for i, day in enumerate(days)}
    per_day: dict[str, list[int]] = defaultdict(lambda: [0] * len(days))
    seconds: dict[str, float] = defaultdict(float)
    total = 0
    rows = grants_in_period(viewer, start, end).values_list(
        "role__slug", "user__username", "starts_at", "activated_at", "ended_at"
    )
    for role, username, starts_at, activated_at, ended_at in rows:
        total += 1
        if start <= starts_at < end:
            per_day[role][index[starts_at.astimezone(tz).date()]] += 1
        if activated_at is None:
            continue
        held_until = ended_at or now
        lo, hi = max(activated_at, start), min(held_until, end, now)
        if hi > lo:
            seconds[username] += (hi - lo).total_seconds()
    hours = sorted(((u, s / 3600) for u, s in seconds.items()), key=lambda item: (-item[1], item[0]))
    return Review(
        days=days,
        per_day=dict(sorted(per_day.items())),
        hours_per_user=hours,
        total_grants=total,
        total_hours=sum(h for _, h in hours),
    )
