"""Reads of the catalog: who is eligible for what, and who may approve a stage."""

from __future__ import annotations

from datetime import datetime

from django.conf import settings
from django.contrib.auth import get_user_model
from django.contrib.auth.models import AbstractBaseUser, Group
from django.db.models import Exists, OuterRef, Q, QuerySet

from broker.conditions import Context, Outcome, evaluate, from_stored, risk_of_events
from broker.models import ApprovalStage, AuditEvent, Eligibility, Role

User = get_user_model()

AUDITORS_GROUP = "auditors"
SECURITY_GROUP = "security"


def eligible_roles(user: AbstractBaseUser) -> QuerySet[Role]:
    """Live roles the user may request, directly or through one of their groups."""
    if not user.is_authenticated or not user.is_active:
        return Role.objects.none()
    eligible = Eligibility.objects.filter(Q(user=user) | Q(group__user=user)).values("role_id")
    return Role.objects.live().filter(pk__in=eligible)


def is_eligible(user: AbstractBaseUser, role: Role) -> bool:
    return why_not_eligible(user, role) is None


def why_not_eligible(user: AbstractBaseUser, role: Role) -> str | None:
    """None when ``user`` may request and hold ``role``; otherwise why not, in a few words."""
    if role.is_retired:
        return "the role was retired"
    if not user.is_active:
        return "account deactivated"
    mine = Eligibility.objects.filter(role=role)
    if not (mine.filter(user=user).exists() or mine.filter(group__in=user.groups.values("pk")).exists()):
        return "no longer eligible for the role"
    return None


def not_eligible(person: str) -> Q:
    """The rule of ``why_not_eligible`` as a filter on rows with a ``role`` and a user field named
    ``person`` (grants: "user"; requests: "requester"): the rows whose person may not hold the role."""
    # Two EXISTS rather than one with an OR across the join: each is then an index lookup
    # (eligibility by role and user; group membership by user), not a scan of the role's
    # eligibility rows per row checked (10,000 grants of one role took 24 s, now milliseconds).
    directly = Eligibility.objects.filter(role=OuterRef("role"), user=OuterRef(person))
    through_group = Eligibility.objects.filter(role=OuterRef("role"), group__user=OuterRef(person))
    return (
        Q(role__retired_at__isnull=False)
        | Q(**{f"{person}__is_active": False})
        | (~Exists(directly) & ~Exists(through_group))
    )


def stage_approvers(stage: ApprovalStage) -> QuerySet:
    """Active users named in the stage, directly or through a group."""
    return User.objects.filter(
        Q(pk__in=stage.users.values("pk")) | Q(groups__in=stage.groups.all()), is_active=True
    ).distinct()


def is_stage_approver(user: AbstractBaseUser, stage: ApprovalStage) -> bool:
    if not user.is_active:
        return False
    return stage.users.filter(pk=user.pk).exists() or stage.groups.filter(pk__in=user.groups.values("pk")).exists()


# --- Escalation: who may decide a stage that waited too long -----------------------------------


def _own_escalation() -> Q:
    """Roles that name their own escalation approvers (approval.escalation.approvers)."""
    users = Role.escalation_users.through.objects.filter(role=OuterRef("pk"))
    groups = Role.escalation_groups.through.objects.filter(role=OuterRef("pk"))
    return Q(Exists(users)) | Q(Exists(groups))


def escalation_approvers(role: Role) -> QuerySet:
    """Active users a stage of ``role`` is escalated to: the role's own escalation approvers, or,
    when it names none, the members of the ESCALATION_GROUP setting's group (nobody if unset)."""
    users, groups = role.escalation_users.all(), role.escalation_groups.all()
    if users.exists() or groups.exists():
        named = Q(pk__in=users.values("pk")) | Q(groups__in=groups)
    elif settings.ESCALATION_GROUP:
        named = Q(groups__name=settings.ESCALATION_GROUP)
    else:
        return User.objects.none()
    return User.objects.filter(named, is_active=True).distinct()


def is_escalation_approver(user: AbstractBaseUser, role: Role) -> bool:
    return user.is_active and escalation_approvers(role).filter(pk=user.pk).exists()


def roles_escalated_to(user: AbstractBaseUser) -> QuerySet[Role]:
    """The roles whose escalated stages ``user`` may decide (see ``escalation_approvers``)."""
    if not user.is_authenticated or not user.is_active:
        return Role.objects.none()
    named = Q(escalation_users=user) | Q(escalation_groups__in=Group.objects.filter(user=user))
    default = settings.ESCALATION_GROUP
    if default and user.groups.filter(name=default).exists():
        named |= ~_own_escalation()
    return Role.objects.filter(pk__in=Role.objects.filter(named).values("pk"))


# --- Recertification: who reviews a role's eligibilities -----------------------------------------


def review_owners(role: Role) -> QuerySet:
    """Active users who review ``role``'s eligibilities: its owners (policy ``owners``) or, when it
    names none, the approvers of its first stage (nobody for a role with neither)."""
    users, groups = role.owner_users.all(), role.owner_groups.all()
    if users.exists() or groups.exists():
        return User.objects.filter(Q(pk__in=users.values("pk")) | Q(groups__in=groups), is_active=True).distinct()
    first = role.stages.order_by("position").first()
    return stage_approvers(first) if first is not None else User.objects.none()


def is_review_owner(user: AbstractBaseUser, role: Role) -> bool:
    return user.is_active and review_owners(role).filter(pk=user.pk).exists()


def roles_owned_by(user: AbstractBaseUser) -> QuerySet[Role]:
    """The roles whose eligibilities ``user`` reviews (see ``review_owners``)."""
    if not user.is_authenticated or not user.is_active:
        return Role.objects.none()
    groups = Group.objects.filter(user=user)
    named = Role.objects.filter(Q(owner_users=user) | Q(owner_groups__in=groups)).values("pk")
    users = Role.owner_users.through.objects.filter(role=OuterRef("pk"))
    owner_groups = Role.owner_groups.through.objects.filter(role=OuterRef("pk"))
    first_stage = ApprovalStage.objects.filter(position=0).filter(Q(users=user) | Q(groups__in=groups))
    by_stage = Role.objects.filter(~Exists(users), ~Exists(owner_groups), pk__in=first_stage.values("role"))
    return Role.objects.filter(Q(pk__in=named) | Q(pk__in=by_stage.values("pk")))


def is_auditor(user: AbstractBaseUser) -> bool:
    return user.is_active and user.groups.filter(name=AUDITORS_GROUP).exists()


def is_security(user: AbstractBaseUser) -> bool:
    return user.is_active and user.groups.filter(name=SECURITY_GROUP).exists()


def stages_naming(user: AbstractBaseUser) -> QuerySet[ApprovalStage]:
    """The approval stages that name the user, directly or through a group."""
    return ApprovalStage.objects.filter(Q(users=user) | Q(groups__user=user))


def sees_everything(user: AbstractBaseUser, *, admin: bool | None = None) -> bool:
    """Auditors and administrators read every request, grant and event. ``admin`` says whether staff
    powers are in force (an API token without the admin scope does not carry them); by default they
    are for staff."""
    if not user.is_authenticated or not user.is_active:
        return False
    if user.is_staff if admin is None else admin:
        return True
    return is_auditor(user)


def risk_level(user: AbstractBaseUser, now: datetime) -> str:
    """The person's current risk level for role conditions (``max_risk``): the highest of the risk
    signals about them in the last RISK_LEVEL_MEMORY, "low" when there was none."""
    events = AuditEvent.objects.filter(
        action="risk.signal", subject=user.get_username(), at__gt=now - settings.RISK_LEVEL_MEMORY
    ).values_list("data__event", flat=True)
    return risk_of_events(e for e in events if isinstance(e, str))


def check_conditions(
    role: Role,
    user: AbstractBaseUser,
    *,
    now: datetime,
    ip: str | None = None,
    posture: str | None = None,
    at_activation: bool = False,
) -> Outcome:
    """The role's conditions evaluated for ``user`` now (``broker.conditions.evaluate``)."""
    conditions = from_stored(role.conditions)
    if conditions.empty:
        return evaluate(conditions, Context(now=now))
    risk = risk_level(user, now) if conditions.max_risk else "low"
    return evaluate(conditions, Context(now=now, client_ip=ip, posture=posture, risk=risk, at_activation=at_activation))
