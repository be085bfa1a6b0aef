"""Right-sizing: eligibilities nobody used for a long time, listed, and (where the policy says so) removed.

An eligibility (a user, or a group, for a role) is **unused** when it is older than the role's
``unused_after`` (policy ``review.unused_after``; default the UNUSED_ELIGIBILITY_AFTER setting) and
nobody it covers asked for the role within that time: no request by that user, or by any member of
that group. Each role is one query with an EXISTS per eligibility on the
``request_requester_role_made`` index.

Removing one (``eligibility_remove``) deletes the row, which ends what it allowed within seconds
like any loss of eligibility (approvals.signals → approvals.tasks.enforce_eligibility), and writes an
``EligibilityExclusion``, so that applying the unchanged policy file does not add it back
(broker/policy/apply.py reports it instead, and ``apply_policy --suggest`` prints the file without it).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from django.conf import settings
from django.contrib.auth.models import AbstractBaseUser
from django.db import transaction
from django.db.models import Exists, OuterRef, Subquery
from django.utils import timezone

from approvals.models import AccessRequest
from broker import audit
from broker.models import Eligibility, EligibilityExclusion, Role


@dataclass(frozen=True)
class Unused:
    eligibility: Eligibility
    role: Role
    who: str  # as the policy file writes it: the username, or group:NAME
    since: timedelta  # the role's unused_after
    last_asked: datetime | None  # the newest request it covers, ever (None: never used)


def unused_after(role: Role) -> timedelta:
    return role.unused_after or settings.UNUSED_ELIGIBILITY_AFTER


def _requests_covered() -> tuple:
    """Requests for the eligibility's role by its user, and by members of its group."""
    by_user = AccessRequest.objects.filter(role=OuterRef("role"), requester=OuterRef("user"))
    by_group = AccessRequest.objects.filter(role=OuterRef("role"), requester__groups=OuterRef("group"))
    return by_user, by_group


def unused_eligibilities(*, now: datetime | None = None, role: Role | None = None) -> list[Unused]:
    """Every unused eligibility of the live roles (or of ``role``), by role then who."""
    now = now or timezone.now()
    roles = Role.objects.live().order_by("slug") if role is None else [role]
    found = []
    for r in roles:
        window = unused_after(r)
        cutoff = now - window
        by_user, by_group = _requests_covered()

        def last(**whose):
            newest = AccessRequest.objects.filter(role=OuterRef("role"), **whose).order_by("-created_at")
            return Subquery(newest.values("created_at")[:1])

        rows = (
            Eligibility.objects.filter(role=r, created_at__lte=cutoff)
            .annotate(
                used_user=Exists(by_user.filter(created_at__gte=cutoff)),
                used_group=Exists(by_group.filter(created_at__gte=cutoff)),
                last_user=last(requester=OuterRef("user")),
                last_group=last(requester__groups=OuterRef("group")),
            )
            .filter(used_user=False, used_group=False)
            .select_related("user", "group")
        )
        for e in rows:
            who = e.user.get_username() if e.user_id else f"group:{e.group.name}"
            found.append(Unused(e, r, who, window, e.last_user or e.last_group))
    return sorted(found, key=lambda u: (u.role.slug, u.who))


def eligibility_remove(
    *,
    eligibility_id: int,
    reason: str,
    detail: str,
    actor: AbstractBaseUser | None = None,
    via: str,
    ip: str | None = None,
    now: datetime | None = None,
) -> EligibilityExclusion | None:
    """Remove one eligibility and keep the policy file from adding it back; None if it is already gone."""
    now = now or timezone.now()
    with transaction.atomic():
        row = Eligibility.objects.select_for_update(of=("self",)).select_related("role", "user", "group")
        eligibility = row.filter(pk=eligibility_id).first()
        if eligibility is None:
            return None
        exclusion, _ = EligibilityExclusion.objects.update_or_create(
            role=eligibility.role,
            user=eligibility.user,
            group=eligibility.group,
            defaults={"reason": reason, "detail": detail[:300], "created_at": now},
        )
        who = exclusion.who
        # Deleting the row queues the reaction to lost eligibility after the commit (approvals.signals).
        eligibility.delete()
        audit.record(
            "eligibility.removed",
            actor=actor,
            target=("eligibility", f"{eligibility.role.slug}:{who}"),
            via=via,
            ip=ip,
            role=eligibility.role.slug,
            subject=eligibility.user.get_username() if eligibility.user_id else "",
            data={
                "who": who,
                "reason": reason,
                "detail": detail,
                "policy_patch": f"remove {who} from {eligibility.role.slug}",
            },
        )
    return exclusion


def remove_unused(*, now: datetime | None = None) -> int:
    """Periodic: remove the unused eligibilities of roles whose policy sets ``review.remove_unused``."""
    now = now or timezone.now()
    removed = 0
    for r in Role.objects.live().filter(remove_unused=True).order_by("slug"):
        for unused in unused_eligibilities(now=now, role=r):
            last = f"last asked {unused.last_asked:%Y-%m-%d}" if unused.last_asked else "never asked"
            detail = f"unused for {unused.since.days} days ({last})"
            if eligibility_remove(
                eligibility_id=unused.eligibility.pk, reason=EligibilityExclusion.Reason.UNUSED, detail=detail,
                via="worker", now=now,
            ):  # fmt: skip
                removed += 1
    return removed
