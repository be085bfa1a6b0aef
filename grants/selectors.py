"""Reads of grants, each with its permission filter built in; the decision point for systems that
pull (``grant_check``); and the figures of the elevation review.

Visibility: whoever may see a grant's request sees the grant (the holder, the role's approvers,
auditors, administrators; see ``approvals.selectors``); the ``security`` group also sees every
break-glass grant, which it reviews. Anything else is a 404.
"""

from __future__ import annotations

import json
import time
from collections import defaultdict
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from functools import cache
from zoneinfo import ZoneInfo

import psycopg
from django.contrib.auth import get_user_model
from django.contrib.auth.models import AbstractBaseUser, Group
from django.db import InterfaceError, OperationalError, connection
from django.db.models import Exists, OuterRef, Q, QuerySet, Subquery
from django.utils import timezone
from django.utils.dateparse import parse_datetime

from accounts.models import ApiToken
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
    # The roles the user approves and the requests they decided are small sets, looked up first and
    # written into the query, so that each branch is an index scan: with subqueries in the OR,
    # PostgreSQL scans every grant (1,000,000 for a requester's first page).
    approves = list(stages_naming(user).values_list("role_id", flat=True).distinct())
    decided = Grant.objects.filter(request__decisions__approver=user).values_list("pk", flat=True)
    decided_ids = list(decided[: _LISTED + 1])
    visible = Q(user=user) | Q(role_id__in=approves) | Q(pk__in=decided_ids if len(decided_ids) <= _LISTED else decided)
    escalated = list(roles_escalated_to(user).values_list("pk", flat=True))
    if escalated:
        visible |= Q(request__escalated_at__isnull=False, role_id__in=escalated)
    if is_security(user):
        # Security reviews every break-glass activation after the fact.
        visible |= Q(break_glass=True)
    return Grant.objects.filter(visible)


_LISTED = 5000


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


def grant_check(
    *, viewer: AbstractBaseUser, username: str, role_slug: str, resource: str = "", now: datetime | None = None
) -> Check:
    """Does ``username`` hold ``role_slug`` (on ``resource``, for a role with resources) right now, by
    the effective rule (docs/design.md)? Without a resource only a grant of the role as a whole
    counts, which a role with resources never gives.

    One query, whoever asks: the effective grant and whether the viewer is an auditor come back
    in the same row (the viewer's), so the caller can refuse to answer about someone else.
    """
    now = now or timezone.now()
    effective = Grant.objects.effective(now, resource=resource).filter(user__username=username, role__slug=role_slug)
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


# The same answer for a caller with a bearer token, its token checked in the same query: one round
# trip, and SQL compiled by the ORM once per process rather than on every call (the compilation
# of the three subqueries cost more than the query itself). Used by the check endpoint's lean path.


@dataclass(frozen=True)
class TokenCheck:
    token_id: int
    scopes: list[str]
    last_used_at: datetime | None
    viewer_id: int
    viewer_username: str
    viewer_is_staff: bool
    check: Check


_DIGEST, _USER, _ROLE, _RESOURCE = "\x00digest", "\x00user", "\x00role", "\x00resource"
_NOW = datetime(1999, 12, 31, 23, 59, 58, 123457, tzinfo=UTC)


@cache
def _token_check_sql(vendor: str, yourself: bool) -> tuple[str, tuple[str | None, ...], tuple]:
    """The query of ``token_check``, which input each of its parameters takes (None: fixed), and
    the fixed values. ``yourself``: about the token's holder, else about the user named."""
    holder = Q(user=OuterRef("user")) if yourself else Q(user__username=_USER)
    effective = (
        Grant.objects.effective(_NOW, resource=_RESOURCE).filter(holder, role__slug=_ROLE).order_by("expires_at")
    )
    query = (
        ApiToken.objects.filter(digest=_DIGEST, revoked_at__isnull=True, user__is_active=True)
        .filter(Q(expires_at__isnull=True) | Q(expires_at__gt=_NOW))
        .annotate(
            viewer_is_auditor=Exists(Group.objects.filter(user=OuterRef("user"), name=AUDITORS_GROUP)),
            grant_id=Subquery(effective.values("pk")[:1]),
            grant_expires_at=Subquery(effective.values("expires_at")[:1]),
        )
        .values_list(
            "pk", "scopes", "last_used_at", "user_id", "user__username", "user__is_staff",
            "viewer_is_auditor", "grant_id", "grant_expires_at",
        )
        .order_by()[:1]
    )  # fmt: skip
    sql, params = query.query.sql_with_params()
    now = Grant._meta.get_field("expires_at").get_db_prep_value(_NOW, connection)
    slots = {_DIGEST: "digest", _USER: "username", _ROLE: "role", _RESOURCE: "resource", now: "now"}
    return sql, tuple(slots.get(p) if isinstance(p, str | datetime) else None for p in params), params


def token_check(
    *, digest: str, username: str | None, role_slug: str, now: datetime, resource: str = ""
) -> TokenCheck | None:
    """``grant_check`` by the holder of the live token with this digest, about ``username`` (None:
    about themselves); None when there is no such token."""
    sql, slots, fixed = _token_check_sql(connection.vendor, username is None)
    inputs = {
        "digest": digest,
        "username": username,
        "role": role_slug,
        "resource": resource,
        "now": Grant._meta.get_field("expires_at").get_db_prep_value(now, connection),
    }
    params = [inputs[slot] if slot else value for slot, value in zip(slots, fixed, strict=True)]
    row = _prepared_row(sql, params) if connection.vendor == "postgresql" else _row(sql, params)
    if row is None:
        return None
    token_id, scopes, last_used, viewer_id, viewer_name, is_staff, auditor, grant_id, grant_expires = row
    return TokenCheck(
        token_id=token_id,
        scopes=json.loads(scopes) if isinstance(scopes, str) else scopes,
        last_used_at=_aware(last_used),
        viewer_id=viewer_id,
        viewer_username=viewer_name,
        viewer_is_staff=bool(is_staff),
        check=Check(
            allowed=grant_id is not None,
            grant_id=grant_id,
            expires_at=_aware(grant_expires),
            viewer_is_auditor=bool(auditor),
        ),
    )


def _row(sql: str, params: list) -> tuple | None:
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        return cursor.fetchone()


def _prepared_row(sql: str, params: list) -> tuple | None:
    """The row, from a statement PostgreSQL keeps prepared on this connection (no planning per call).

    On psycopg's own cursor with server-side binding, since Django's cursors bind on the client and
    never prepare. Without Django's per-request health check of the connection (a round trip):
    a connection found broken is replaced and the statement run once more, which is safe for a read.
    """
    for attempt in (1, 2):
        try:
            with connection.wrap_database_errors:
                connection.ensure_connection()
                started = time.monotonic()
                with psycopg.Cursor(connection.connection) as cursor:
                    cursor.execute(sql, params, prepare=True)
                    row = cursor.fetchone()
                if connection.queries_logged:  # as Django's own cursors do (DEBUG, tests)
                    text = psycopg.ClientCursor(connection.connection).mogrify(sql, params)
                    connection.queries_log.append({"sql": text, "time": f"{time.monotonic() - started:.3f}"})
                return row
        except (OperationalError, InterfaceError):
            if attempt == 2 or connection.in_atomic_block:
                raise
            connection.close()
    return None


def _aware(value) -> datetime | None:
    """A timestamp as the driver gave it (SQLite: text in UTC) as an aware datetime."""
    if value is None or isinstance(value, datetime):
        return value if value is None or timezone.is_aware(value) else timezone.make_aware(value, UTC)
    parsed = parse_datetime(value)
    return parsed if timezone.is_aware(parsed) else timezone.make_aware(parsed, UTC)


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
