"""Every change that can remove someone's eligibility queues ``approvals.eligibility`` on commit.

The receivers only work out who may be concerned and queue ``approvals.tasks.enforce_eligibility``
with ``broker.jobs.enqueue_on_commit``: nothing happens if the change rolls back, and the work
(locks, connectors, audit) runs in the worker right after the commit, in its own transactions.
The changes watched, whoever makes them (admin, SCIM, a shell, another app):

- a user leaves a group that makes people eligible: ``user.groups.remove/clear/set`` and
  ``group.user_set.remove/clear/set`` alike (the connector's target groups, approver groups and
  the like are not eligibility groups, so the broker's own changes through the ``django_group``
  connector queue nothing; if a target group is also an eligibility group, the re-check it queues
  can only end other grants, never loop);
- a group that makes people eligible is deleted (its eligibility rows go with it, below);
- an account is deactivated;
- an eligibility row is deleted or changed (the admin, a policy, a cascade);
- a role is retired.

Adding rights sends nothing. Changes that send no signal at all (``QuerySet.update``, SQL) are
caught by the periodic ``approvals.tasks.sweep_eligibility``. Callers that act on the loss
themselves (a policy apply, a risk signal) wrap their change in ``handled_by_caller()``.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar

from django.contrib.auth import get_user_model
from django.db.models.signals import m2m_changed, post_save, pre_delete, pre_save

from broker.jobs import enqueue_on_commit
from broker.models import Eligibility, Role

ENFORCE_TASK = "approvals.tasks.enforce_eligibility"

User = get_user_model()

_handled_by_caller: ContextVar[bool] = ContextVar("eligibility_handled_by_caller", default=False)


@contextmanager
def handled_by_caller() -> Iterator[None]:
    """Within this block the caller acts on the eligibility it removes itself: no task is queued."""
    token = _handled_by_caller.set(True)
    try:
        yield
    finally:
        _handled_by_caller.reset(token)


def _queue(user_ids: Iterable[int], *, role_ids: Iterable[int] = (), cause: str) -> None:
    if _handled_by_caller.get():
        return
    users, roles = sorted(set(user_ids)), sorted(set(role_ids))
    if users or roles:
        enqueue_on_commit(ENFORCE_TASK, users, roles, cause)


def _members(group_id: int) -> set[int]:
    return set(User.objects.filter(groups=group_id).values_list("pk", flat=True))


def _people(user_id: int | None, group_id: int | None) -> set[int]:
    """Who an eligibility row (one user, or every member of one group) concerns."""
    if user_id is not None:
        return {user_id}
    return _members(group_id) if group_id is not None else set()


def membership_changed(sender, instance, action, reverse, pk_set, **kwargs) -> None:
    # reverse=False: user.groups.<action>(groups); reverse=True: group.user_set.<action>(users).
    if action == "post_remove":
        user_ids, group_ids = (set(pk_set), {instance.pk}) if reverse else ({instance.pk}, set(pk_set))
    elif action == "pre_clear":  # who was in, before the rows go
        if reverse:
            user_ids, group_ids = _members(instance.pk), {instance.pk}
        else:
            user_ids, group_ids = {instance.pk}, set(instance.groups.values_list("pk", flat=True))
    else:
        return
    if user_ids and group_ids and Eligibility.objects.filter(group_id__in=group_ids).exists():
        _queue(user_ids, cause="left a group that made them eligible")


def account_saved(sender, instance, created, update_fields, raw=False, **kwargs) -> None:
    if raw or created or instance.is_active:
        return
    if update_fields is not None and "is_active" not in update_fields:
        return
    _queue({instance.pk}, cause="account deactivated")


def eligibility_changing(sender, instance, raw=False, **kwargs) -> None:
    if raw or instance.pk is None:
        return
    old = Eligibility.objects.filter(pk=instance.pk).values_list("user_id", "group_id", "role_id").first()
    if old is None or old == (instance.user_id, instance.group_id, instance.role_id):
        return
    _queue(_people(old[0], old[1]), cause="eligibility changed")


def eligibility_deleted(sender, instance, **kwargs) -> None:
    # pre_delete: a group's members are still there, even when the group itself is being deleted.
    _queue(_people(instance.user_id, instance.group_id), cause="eligibility removed")


def role_saved(sender, instance, created, update_fields, raw=False, **kwargs) -> None:
    if raw or instance.retired_at is None:
        return
    if update_fields is not None and "retired_at" not in update_fields:
        return
    _queue((), role_ids={instance.pk}, cause="role retired")


def connect() -> None:
    """Called once from ApprovalsConfig.ready()."""
    m2m_changed.connect(membership_changed, sender=User.groups.through, dispatch_uid="eligibility-membership")
    post_save.connect(account_saved, sender=User, dispatch_uid="eligibility-account")
    pre_save.connect(eligibility_changing, sender=Eligibility, dispatch_uid="eligibility-changed")
    pre_delete.connect(eligibility_deleted, sender=Eligibility, dispatch_uid="eligibility-deleted")
    post_save.connect(role_saved, sender=Role, dispatch_uid="eligibility-role")
