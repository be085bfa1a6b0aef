"""What services call to have a message sent once their transaction has committed."""

from __future__ import annotations

from django.db import transaction


def notify_on_commit(kind: str, object_id: int, revision: int = 0) -> None:
    """Queue the notification task after the current transaction commits (never from inside it)."""
    from notifications import tasks

    transaction.on_commit(lambda: tasks.notify.delay(kind, object_id, revision))
