"""Recertification: the role's owners confirm or remove each eligibility that carries a review period.

An eligibility whose policy entry says ``recertify: {every: 90d, grace: 14d, expire: true}`` is due
``every`` after it was last confirmed (or created). When due, a review (``Recertification``) opens
and the role's owners (``broker.catalog.review_owners``) are told; at a third of the grace period
they are reminded; at two thirds the review is escalated and the escalation approvers of the role
may decide it too; at the end of the grace period it expires, and with ``expire`` the eligibility
is removed. Removing (by an owner, or on expiry) goes through ``rightsizing.eligibility_remove``:
the reaction to lost eligibility runs at once, and the policy file cannot add it back until it is
taken out of the file (``apply_policy --suggest``, or the review's ``policy_patch``).

Every transition is one function: locked, re-checked, audited in the same transaction.
"""

from __future__ import annotations

from datetime import datetime

from django.contrib.auth.models import AbstractBaseUser
from django.db import IntegrityError, transaction
from django.db.models import Q, QuerySet
from django.utils import timezone

from approvals import rightsizing
from approvals.models import Recertification
from broker import audit
from broker.catalog import escalation_approvers, review_owners, roles_escalated_to, roles_owned_by, sees_everything
from broker.errors import Conflict, Invalid, NotAllowed, NotFound
from broker.models import Eligibility, EligibilityExclusion
from broker.notify import Message, notify_on_commit

Status = Recertification.Status
MAX_COMMENT = 2000


def _facts(task: Recertification) -> dict:
    return {"role": task.role.slug, "subject": task.user.get_username() if task.user_id else ""}


def due_at(eligibility: Eligibility) -> datetime:
    return (eligibility.reviewed_at or eligibility.created_at) + eligibility.recertify_every


# --- Who sees and who decides ----------------------------------------------------------------------


def may_decide(task: Recertification, user: AbstractBaseUser) -> bool:
    if not task.is_pending or not user.is_active or task.user_id == user.pk:
        return False
    if review_owners(task.role).filter(pk=user.pk).exists():
        return True
    return task.escalated_at is not None and escalation_approvers(task.role).filter(pk=user.pk).exists()


def reviews_for(user: AbstractBaseUser) -> QuerySet[Recertification]:
    """Reviews ``user`` may decide or has decided (owners, escalation approvers once escalated);
    auditors and administrators see every review."""
    rows = Recertification.objects.select_related("role", "user", "group", "decided_by")
    if sees_everything(user):
        return rows
    owned = Q(role__in=roles_owned_by(user))
    escalated = Q(escalated_at__isnull=False, role__in=roles_escalated_to(user))
    return rows.filter(owned | escalated | Q(decided_by=user)).exclude(user=user)


# --- Opening and chasing (periodic) ---------------------------------------------------------------------


def recertifications_open(*, now: datetime | None = None) -> int:
    """Open a review for every eligibility that is due and has none open. Idempotent."""
    now = now or timezone.now()
    opened = 0
    candidates = Eligibility.objects.filter(recertify_every__isnull=False, role__retired_at__isnull=True).exclude(
        recertifications__status=Status.PENDING
    )
    for eligibility in candidates.select_related("role", "user", "group"):
        due = due_at(eligibility)
        if due > now:
            continue
        try:
            with transaction.atomic():
                task = Recertification.objects.create(
                    eligibility=eligibility,
                    role=eligibility.role,
                    user=eligibility.user,
                    group=eligibility.group,
                    due_at=due,
                    grace_until=due + eligibility.recertify_grace,
                    created_at=now,
                )
                audit.record(
                    "recertification.opened",
                    actor=None,
                    target=task,
                    via="worker",
                    **_facts(task),
                    data={"who": task.who, "due_at": due, "grace_until": task.grace_until},
                )
                notify_on_commit(Message.REVIEW_DUE, task.pk)
        except IntegrityError:
            continue  # another run opened it first (the one-pending constraint decided)
        opened += 1
    return opened


def recertifications_chase(*, now: datetime | None = None) -> dict[str, int]:
    """Remind, escalate and expire the open reviews whose time has come. Idempotent."""
    now = now or timezone.now()
    done = {"reminded": 0, "escalated": 0, "expired": 0}
    for task_id in Recertification.objects.filter(status=Status.PENDING, due_at__lte=now).values_list("pk", flat=True):
        step = _chase_one(task_id, now)
        if step:
            done[step] += 1
    return done


def _chase_one(task_id: int, now: datetime) -> str | None:
    with transaction.atomic():
        task = (
            Recertification.objects.select_for_update(skip_locked=True, of=("self",))
            .select_related("role", "user", "group", "eligibility")
            .filter(pk=task_id, status=Status.PENDING)
            .first()
        )
        if task is None:
            return None
        grace = task.grace_until - task.due_at
        if now >= task.grace_until:
            return _expire(task, now)
        if task.escalated_at is None and now >= task.due_at + grace * 2 / 3:
            task.escalated_at = now
            task.save(update_fields=["escalated_at"])
            audit.record(
                "recertification.escalated",
                actor=None,
                target=task,
                via="worker",
                **_facts(task),
                data={"who": task.who},
            )
            notify_on_commit(Message.REVIEW_ESCALATED, task.pk)
            return "escalated"
        if task.reminded_at is None and task.escalated_at is None and now >= task.due_at + grace / 3:
            task.reminded_at = now
            task.save(update_fields=["reminded_at"])
            notify_on_commit(Message.REVIEW_REMINDER, task.pk)
            return "reminded"
    return None


def _expire(task: Recertification, now: datetime) -> str:
    removes = task.eligibility is not None and task.eligibility.recertify_expire
    task.status = Status.EXPIRED
    task.decided_at = now
    task.save(update_fields=["status", "decided_at"])
    audit.record(
        "recertification.expired",
        actor=None,
        target=task,
        via="worker",
        **_facts(task),
        data={"who": task.who, "eligibility_removed": removes},
    )
    if removes:
        rightsizing.eligibility_remove(
            eligibility_id=task.eligibility_id,
            reason=EligibilityExclusion.Reason.REVIEW,
            detail=f"review #{task.pk} unanswered by {task.grace_until:%Y-%m-%d}",
            via="worker",
            now=now,
        )
    elif task.eligibility is not None:
        # Kept: the next review counts from now, so that it does not reopen at once.
        Eligibility.objects.filter(pk=task.eligibility_id).update(reviewed_at=now)
    return "expired"


# --- Deciding ----------------------------------------------------------------------------------------------


def recertification_decide(
    *,
    task_id: int,
    reviewer: AbstractBaseUser,
    verdict: str,
    comment: str = "",
    via: str,
    ip: str | None = None,
    now: datetime | None = None,
) -> Recertification:
    """``verdict`` "confirm" keeps the eligibility (the next review counts from now); "remove" removes it at once."""
    now = now or timezone.now()
    if verdict not in ("confirm", "remove"):
        raise Invalid("verdict must be confirm or remove", fields={"verdict": ["Choose confirm or remove."]})
    comment = (comment or "").strip()
    if verdict == "remove" and not comment:
        raise Invalid("say why the eligibility is removed", fields={"comment": ["A comment is required to remove."]})
    if len(comment) > MAX_COMMENT:
        raise Invalid("the comment is too long", fields={"comment": [f"At most {MAX_COMMENT} characters."]})
    with transaction.atomic():
        task = (
            Recertification.objects.select_for_update(of=("self",))
            .select_related("role", "user", "group")
            .filter(pk=task_id)
            .first()
        )
        if task is None:
            raise NotFound(f"review {task_id} does not exist")
        if task.user_id == reviewer.pk:
            raise NotAllowed("nobody reviews their own eligibility", code="self_review")
        if not task.is_pending:
            raise Conflict(f"review #{task.pk} is already {task.status}", code="already_reviewed")
        if not may_decide(task, reviewer):
            raise NotAllowed(f"you do not review the eligibilities of {task.role.slug}", code="not_reviewer")
        task.status = Status.CONFIRMED if verdict == "confirm" else Status.REMOVED
        task.decided_at, task.decided_by, task.comment = now, reviewer, comment
        task.save(update_fields=["status", "decided_at", "decided_by", "comment"])
        audit.record(
            "recertification.confirmed" if verdict == "confirm" else "recertification.removed",
            actor=reviewer,
            target=task,
            via=via,
            ip=ip,
            **_facts(task),
            data={"who": task.who, "comment": comment},
        )
        if verdict == "confirm":
            Eligibility.objects.filter(pk=task.eligibility_id).update(reviewed_at=now)
        elif task.eligibility_id is not None:
            rightsizing.eligibility_remove(
                eligibility_id=task.eligibility_id,
                reason=EligibilityExclusion.Reason.REVIEW,
                detail=f"removed by {reviewer.get_username()} in review #{task.pk}: {comment}",
                actor=reviewer,
                via=via,
                ip=ip,
                now=now,
            )
    return task


# --- The review's result as a policy patch ---------------------------------------------------------------


def policy_patch(tasks: QuerySet[Recertification]) -> str:
    """The removals among ``tasks``, as the change to make in the policy file's eligibility (YAML)."""
    removed: dict[str, dict[str, list[str]]] = {}
    for task in tasks.filter(status__in=[Status.REMOVED, Status.EXPIRED]).select_related("role", "user", "group"):
        if (
            task.status == Status.EXPIRED
            and not EligibilityExclusion.objects.filter(role=task.role, user=task.user, group=task.group).exists()
        ):
            continue  # expired but kept: nothing to change in the file
        entry = removed.setdefault(task.role.slug, {"users": [], "groups": []})
        (entry["users"] if task.user_id else entry["groups"]).append(
            task.user.get_username() if task.user_id else task.group.name
        )
    lines = [
        "# Take these out of the policy file's eligibility (apply_policy FILE --suggest prints the file without them)."
    ]
    for slug in sorted(removed):
        lines.append(f"- role: {slug}")
        for kind in ("users", "groups"):
            if removed[slug][kind]:
                lines.append(f"  remove_{kind}: [{', '.join(sorted(set(removed[slug][kind])))}]")
    return "\n".join(lines) + "\n"
