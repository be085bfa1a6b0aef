"""Reads of grants, with who may see them, and the decision point for systems that pull.

Visibility: the holder sees their grants; whoever may see a grant's request (its approvers, see
``approvals.selectors``) sees the grant; auditors and administrators see all. The API answers 404
for anything else.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from django.contrib.auth import get_user_model
from django.contrib.auth.models import AbstractBaseUser, Group
from django.db.models import Exists, OuterRef, Q, QuerySet, Subquery
from django.utils import timezone

from approvals.selectors import requests_visible_to, sees_everything
from broker.catalog import AUDITORS_GROUP
from grants.models import Grant


def grants_visible_to(user: AbstractBaseUser, *, admin: bool | None = None) -> QuerySet[Grant]:
    if not user.is_authenticated or not user.is_active:
        return Grant.objects.none()
    if sees_everything(user, admin=admin):
        return Grant.objects.all()
    return Grant.objects.filter(Q(user=user) | Q(request__in=requests_visible_to(user, admin=admin).values("pk")))


@dataclass(frozen=True)
class Check:
    allowed: bool
    grant_id: int | None
    expires_at: datetime | None
    viewer_is_auditor: bool


def grant_check(*, viewer: AbstractBaseUser, username: str, role_slug: str, now: datetime | None = None) -> Check:
    """Does ``username`` hold ``role_slug`` right now, by the effective rule (DESIGN.md)?

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
