"""Messages to people: the kinds there are, and how a service asks for one once its change commits.

Services of every app call ``notify_on_commit``; the notifications app (which reads their rows to
write the messages, so it sits above them) takes the task. Nothing imports it upward.
"""

from __future__ import annotations

from django.db import models

from broker.jobs import enqueue, enqueue_on_commit

NOTIFY_TASK = "notifications.tasks.notify"
NOTIFY_MANY_TASK = "notifications.tasks.notify_many"


class Message(models.TextChoices):
    DECISION_NEEDED = "decision_needed"
    REMINDER = "reminder"
    # object: the request; revision: the stage (0-based) that waited too long and was escalated
    ESCALATED = "escalated"
    APPROVED = "approved"
    DENIED = "denied"
    EXPIRED = "expired"
    GRANT_ACTIVE = "grant_active"
    GRANT_EXPIRING = "grant_expiring"
    GRANT_ENDED = "grant_ended"
    BREAK_GLASS = "break_glass"
    REVOKE_FAILED = "revoke_failed"
    AUDIT_BROKEN = "audit_broken"
    # object: the audit event "mfa.device_added" (the person, the kind of device, when, from where)
    MFA_DEVICE_ADDED = "mfa_device_added"
    # object: the recertification (a review of one eligibility); to the role's owners, then the
    # escalation approvers
    REVIEW_DUE = "review_due"
    REVIEW_REMINDER = "review_reminder"
    REVIEW_ESCALATED = "review_escalated"


def notify_on_commit(kind: str, object_id: int, revision: int = 0) -> None:
    """Have the messages of ``kind`` about the object sent after the current transaction commits."""
    enqueue_on_commit(NOTIFY_TASK, kind, object_id, revision)


def notify_many_on_commit(kind: str, object_ids: list[int]) -> None:
    """``notify_on_commit`` for many objects (a batch of ended grants): one task for all of them."""
    if object_ids:
        enqueue_on_commit(NOTIFY_MANY_TASK, kind, list(object_ids))


def notify(kind: str, object_id: int, revision: int = 0) -> None:
    """The same, now: for callers outside any transaction (periodic tasks)."""
    enqueue(NOTIFY_TASK, kind, object_id, revision)
