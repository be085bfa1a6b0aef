"""Reads of access requests, with who may see them.

Visibility (the API answers 404 for anything outside it):

- the requester sees their own requests;
- an approver sees every request for a role whose approval policy names them in any stage,
  directly or through a group (pending at their stage, at an earlier or later stage, or already
  decided), and every request they decided themselves (even after leaving the stage);
- auditors (the ``auditors`` group) and administrators see all requests.

Seeing a request is not deciding it: ``approvals.services`` checks the current stage, self-approval
and MFA when someone approves.
"""

from __future__ import annotations

from django.contrib.auth.models import AbstractBaseUser
from django.db.models import Prefetch, Q, QuerySet

from approvals.models import AccessRequest, Decision
from broker.catalog import is_auditor
from broker.models import ApprovalStage


def sees_everything(user: AbstractBaseUser, *, admin: bool | None = None) -> bool:
    """Auditors and administrators. ``admin`` says whether staff powers are in force (an API
    token without the admin scope does not carry them); by default they are for staff."""
    if not user.is_authenticated or not user.is_active:
        return False
    if user.is_staff if admin is None else admin:
        return True
    return is_auditor(user)


def requests_visible_to(user: AbstractBaseUser, *, admin: bool | None = None) -> QuerySet[AccessRequest]:
    if not user.is_authenticated or not user.is_active:
        return AccessRequest.objects.none()
    if sees_everything(user, admin=admin):
        return AccessRequest.objects.all()
    approver_of = ApprovalStage.objects.filter(Q(users=user) | Q(groups__in=user.groups.all())).values("role_id")
    decided = Decision.objects.filter(approver=user).values("request_id")
    return AccessRequest.objects.filter(Q(requester=user) | Q(role_id__in=approver_of) | Q(pk__in=decided))


def with_details(requests: QuerySet[AccessRequest]) -> QuerySet[AccessRequest]:
    """Everything an answer shows, in a constant number of queries whatever the page size."""
    return requests.select_related("role", "requester", "grant").prefetch_related(
        Prefetch("decisions", queryset=Decision.objects.select_related("approver").order_by("created_at", "pk"))
    )
