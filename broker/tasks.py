"""Celery tasks of the broker app: thin, idempotent."""

from __future__ import annotations

import logging
from datetime import datetime
from pathlib import Path

from celery import shared_task
from django.conf import settings
from django.utils import timezone

from broker import audit
from broker.audit.checkpoints import checkpoint_head
from broker.audit.status import store_verification
from broker.models import Heartbeat
from broker.notify import Message, notify
from broker.telemetry.context import message_header

log = logging.getLogger(__name__)


@shared_task(name="broker.tasks.verify_audit")
def verify_audit() -> dict:
    """Periodic: walk the whole audit chain and store the outcome; a break is reported to security once.

    The walk also compares the trail with the checkpoint file when this worker has it.
    """
    path = settings.AUDIT_CHECKPOINT_FILE
    result = audit.verify(checkpoints=path if path and Path(path).exists() else None)
    store_verification(result)
    if result.ok:
        log.info("audit chain OK: %s event(s) verified, head #%s", result.checked, result.head_seq)
    else:
        log.error("audit chain BROKEN at event #%s: %s", result.broken_seq, result.reason)
        notify(Message.AUDIT_BROKEN, result.broken_seq or 0)
    return {"ok": result.ok, "checked": result.checked, "head_seq": result.head_seq, "broken_seq": result.broken_seq}


@shared_task(name="broker.tasks.audit_checkpoint")
def audit_checkpoint() -> dict:
    """Periodic: append a signed checkpoint of the chain's head outside the database."""
    written = checkpoint_head()
    return {"seq": written.record["seq"], "delivered": written.delivered, "failed": written.failed}


@shared_task(name="broker.tasks.heartbeat", bind=True, ignore_result=True)
def heartbeat(self) -> None:
    """Periodic (beat): prove that beat queues and a worker runs tasks; /readyz and the metrics read it."""
    queued = message_header(self.request, "published_at")
    try:
        queued_at = datetime.fromisoformat(queued) if isinstance(queued, str) else None
    except ValueError:
        queued_at = None
    Heartbeat.objects.update_or_create(
        name="worker",
        defaults={"at": timezone.now(), "queued_at": queued_at, "worker": (self.request.hostname or "")[:200]},
    )
