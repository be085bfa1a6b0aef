"""Celery tasks of requests: thin and idempotent."""

from celery import shared_task

from approvals import services


@shared_task(name="approvals.tasks.expire_requests")
def expire_requests() -> int:
    """Periodic: close requests nobody decided within the role's TTL, and extensions of ended grants."""
    return services.requests_sweep()
