"""Celery tasks of the broker app: thin, idempotent."""

from __future__ import annotations

import logging

from celery import shared_task

from broker import audit
from broker.notify import Message, notify

log = logging.getLogger(__name__)


@shared_task(name="broker.tasks.verify_audit")
def verify_audit() -> dict:
    """Periodic: walk the audit chain; a break is logged and reported to the security group once."""
    result = audit.verify()
    if result.ok:
        log.info("audit chain OK: %s event(s) verified, head #%s", result.checked, result.head_seq)
    else:
        log.error("audit chain BROKEN at event #%s: %s", result.broken_seq, result.reason)
        notify(Message.AUDIT_BROKEN, result.broken_seq)
    return {"ok": result.ok, "checked": result.checked, "head_seq": result.head_seq, "broken_seq": result.broken_seq}
