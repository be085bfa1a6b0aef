"""Celery tasks of requests: thin and idempotent."""

from celery import shared_task

from approvals import eligibility, recertification, rightsizing, services


@shared_task(name="approvals.tasks.expire_requests")
def expire_requests() -> int:
    """Periodic: close requests nobody decided within the role's TTL, and extensions of ended grants."""
    return services.requests_sweep()


@shared_task(name="approvals.tasks.enforce_eligibility")
def enforce_eligibility(user_ids: list[int], role_ids: list[int], cause: str) -> dict:
    """Queued on commit by a change that may have removed eligibility (approvals.signals)."""
    done = eligibility.eligibility_enforce(user_ids=user_ids, role_ids=role_ids, cause=cause)
    return {"requests_cancelled": done.requests_cancelled, "grants_ended": done.grants_ended}


@shared_task(name="approvals.tasks.sweep_eligibility")
def sweep_eligibility() -> dict:
    """Periodic safety net: everyone against the catalog, for changes that sent no signal."""
    done = eligibility.eligibility_sweep()
    return {"requests_cancelled": done.requests_cancelled, "grants_ended": done.grants_ended}


@shared_task(name="approvals.tasks.escalate_requests")
def escalate_requests() -> int:
    """Periodic: escalate pending requests whose current stage waited past the role's escalation delay."""
    return services.requests_escalate()


@shared_task(name="approvals.tasks.remove_unused")
def remove_unused() -> int:
    """Periodic: remove unused eligibilities of the roles whose policy sets review.remove_unused."""
    return rightsizing.remove_unused()


@shared_task(name="approvals.tasks.recertify")
def recertify() -> dict:
    """Periodic: open the reviews of eligibilities that are due; remind, escalate and expire open ones."""
    opened = recertification.recertifications_open()
    return {"opened": opened, **recertification.recertifications_chase()}
