"""Reads of access requests, each with its permission filter built in.

Every portal page and API answer goes through these, so that "who may see what" is decided in
one place; a person who may not see a request gets a 404, never a hint that it exists:

- the requester sees their own requests;
- an approver sees every request for a role whose approval policy names them in any stage,
  directly or through a group, and every request they decided themselves;
- an escalation approver of a role sees its requests that were escalated;
- auditors (the ``auditors`` group) and administrators see all requests.

Seeing a request is not deciding it: ``approvals.services`` checks the current stage,
self-approval and MFA when someone approves.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

from django.contrib.auth import get_user_model
from django.contrib.auth.models import AbstractBaseUser
from django.db.models import Exists, F, OuterRef, Prefetch, Q, QuerySet, Subquery
from django.utils import timezone

from approvals.models import AccessRequest, Decision
from approvals.policy import StageSpec, Vote, evaluate
from broker.catalog import roles_escalated_to, sees_everything, stages_naming

User = get_user_model()


def requests_visible_to(user: AbstractBaseUser, *, admin: bool | None = None) -> QuerySet[AccessRequest]:
    """Own requests; requests for roles the user approves or has decided; escalated requests of roles
    the user is an escalation approver of; everything for auditors and staff."""
    base = AccessRequest.objects.all()
    if not user.is_authenticated or not user.is_active:
        return base.none()
    if sees_everything(user, admin=admin):
        return base
    return base.filter(
        Q(requester=user)
        | Q(role_id__in=_ids(stages_naming(user).values_list("role_id", flat=True)))
        | Q(pk__in=_ids(Decision.objects.filter(approver=user).values_list("request_id", flat=True)))
        | Q(escalated_at__isnull=False, role_id__in=_ids(roles_escalated_to(user).values_list("pk", flat=True)))
    )


# Up to this many ids are written into the query as a list (each branch of the filter is then an
# index scan, combined by PostgreSQL with a BitmapOr); beyond it, a subquery.
_LISTED = 5000


def _ids(query: QuerySet):
    """The ids of a small set, looked up now so the outer query can use its indexes (a subquery in
    an OR makes PostgreSQL scan the whole table: 1,000,000 grants for a requester's first page)."""
    ids = list(query.distinct()[: _LISTED + 1])
    return ids if len(ids) <= _LISTED else query


def with_details(requests: QuerySet[AccessRequest]) -> QuerySet[AccessRequest]:
    """Everything an API answer shows, in a constant number of queries whatever the page size."""
    return requests.select_related("role", "requester", "grant").prefetch_related(
        Prefetch("decisions", queryset=Decision.objects.select_related("approver").order_by("created_at", "pk"))
    )


def requests_awaiting(user: AbstractBaseUser, *, now: datetime | None = None) -> QuerySet[AccessRequest]:
    """Pending requests whose current stage waits for this user's decision (as one of its approvers,
    or as an escalation approver once it was escalated), oldest first."""
    if not user.is_authenticated or not user.is_active:
        return AccessRequest.objects.none()
    now = now or timezone.now()
    current_stage = stages_naming(user).filter(role=OuterRef("role"), position=OuterRef("current_stage"))
    decided = Decision.objects.filter(request=OuterRef("pk"), approver=user)
    escalated = Q(escalated_stage=F("current_stage"), role__in=roles_escalated_to(user))
    return (
        AccessRequest.objects.filter(status=AccessRequest.Status.PENDING, expires_at__gt=now)
        .exclude(requester=user)
        .filter(Q(Exists(current_stage)) | escalated)
        .exclude(Exists(decided))
        .order_by("created_at", "pk")
    )


def requests_decided_by(user: AbstractBaseUser) -> QuerySet[AccessRequest]:
    """Requests this user approved or denied, most recent decision first."""
    if not user.is_authenticated:
        return AccessRequest.objects.none()
    mine = Decision.objects.filter(request=OuterRef("pk"), approver=user)
    return (
        AccessRequest.objects.filter(Exists(mine))
        .annotate(
            my_verdict=Subquery(mine.values("verdict")[:1]),
            my_decided_at=Subquery(mine.values("created_at")[:1]),
            my_comment=Subquery(mine.values("comment")[:1]),
        )
        .order_by("-my_decided_at", "-pk")
    )


def requests_of(user: AbstractBaseUser) -> QuerySet[AccessRequest]:
    return AccessRequest.objects.filter(requester=user)


# --- Progress of a request through its stages ----------------------------------------------------


@dataclass
class StageView:
    number: int
    required: int
    approved_by: list[str]
    approvers: list[str]
    groups: list[str]
    current: bool
    satisfied: bool

    @property
    def missing(self) -> int:
        return max(0, self.required - len(self.approved_by))


@dataclass
class Progress:
    stages: list[StageView] = field(default_factory=list)
    denied_by: str | None = None


def request_progress(req: AccessRequest) -> Progress:
    """Who approved which stage, who may still approve, and which stage decides now (a few queries)."""
    stages = list(req.role.stages.order_by("position").prefetch_related("users", "groups"))
    decisions = list(req.decisions.select_related("approver"))
    outcome = evaluate(
        [StageSpec(position=s.position, required=s.required) for s in stages],
        [Vote(stage=d.stage, approver=d.approver.get_username(), approve=d.verdict == "approve") for d in decisions],
    )
    by_position = {p.position: p for p in outcome.stages}
    pending = req.status == AccessRequest.Status.PENDING
    people = _stage_people(stages, requester=req.requester)
    views = []
    for stage in stages:
        progress = by_position[stage.position]
        views.append(
            StageView(
                number=stage.position + 1,
                required=stage.required,
                approved_by=list(progress.approved_by),
                approvers=people[stage.pk],
                groups=sorted(g.name for g in stage.groups.all()),
                current=pending and stage.position == req.current_stage,
                satisfied=progress.satisfied,
            )
        )
    return Progress(stages=views, denied_by=outcome.denied_by)


def role_approvers(role, *, requester: AbstractBaseUser) -> list[StageView]:
    """Who would decide a new request of ``requester`` for ``role``, stage by stage (a few queries):
    the active people each stage names, directly or through its groups, never the requester."""
    stages = list(role.stages.order_by("position").prefetch_related("users", "groups"))
    people = _stage_people(stages, requester=requester)
    return [
        StageView(
            number=stage.position + 1,
            required=stage.required,
            approved_by=[],
            approvers=people[stage.pk],
            groups=sorted(g.name for g in stage.groups.all()),
            current=stage.position == 0,
            satisfied=False,
        )
        for stage in stages
    ]


def _stage_people(stages, *, requester: AbstractBaseUser) -> dict[int, list[str]]:
    """For each stage (by id), the usernames of the active people it names, without the requester."""
    group_ids = {g.pk for s in stages for g in s.groups.all()}
    members: dict[int, list[str]] = {}
    if group_ids:
        for username, group_id in (
            User.objects.filter(groups__in=group_ids, is_active=True)
            .values_list("username", "groups")
            .order_by("username")
        ):
            if group_id in group_ids:
                members.setdefault(group_id, []).append(username)
    people = {}
    for stage in stages:
        names = {u.get_username() for u in stage.users.all() if u.is_active}
        for group in stage.groups.all():
            names.update(members.get(group.pk, []))
        names.discard(requester.get_username())
        people[stage.pk] = sorted(names)
    return people
