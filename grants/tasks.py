"""Celery tasks: take a primary key, call one service. Safe to run twice, late, or after the state moved on."""

from celery import shared_task

from grants import reconcile as reconciliation
from grants import services, sweeper


@shared_task(name="grants.tasks.activate_grant")
def activate_grant(grant_id: int) -> None:
    services.grant_activate(grant_id=grant_id)


@shared_task(name="grants.tasks.expire_due")
def expire_due() -> int:
    """An expiry tick (grants/push.py): end everything due now, in batches shared with idle workers."""
    return sweeper.expire_all_due()


@shared_task(name="grants.tasks.expire_grant")
def expire_grant(grant_id: int) -> None:
    # Queued by earlier versions, one per grant: ends everything due now, that grant included.
    sweeper.expire_all_due()


@shared_task(name="grants.tasks.remove_grant")
def remove_grant(grant_id: int) -> None:
    services.grant_remove(grant_id=grant_id)


@shared_task(name="grants.tasks.sweep")
def sweep(rearm: bool = False) -> dict:
    return sweeper.sweep(rearm=rearm)


@shared_task(name="grants.tasks.reconcile")
def reconcile() -> dict:
    report = reconciliation.reconcile()
    return {"targets": report.targets, "removed": report.removed, "detected": report.detected,
            "restored": report.restored, "errors": report.errors}  # fmt: skip
