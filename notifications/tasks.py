"""Celery tasks: thin, idempotent. Running one twice sends nothing twice (services.claim)."""

from __future__ import annotations

from celery import shared_task
from django.conf import settings

from notifications import services


@shared_task(name="notifications.tasks.notify", bind=True, max_retries=None)
def notify(self, kind: str, object_id: int, revision: int = 0) -> int:
    """Send one kind of message about one object; retry (with backoff) what the mail server refused."""
    try:
        return services.notify(kind=kind, object_id=object_id, revision=revision)
    except services.SendFailed as exc:
        if self.request.retries + 1 >= settings.NOTIFY_MAX_ATTEMPTS:
            return 0  # given up: the rows stay `failed` with their error, for a person to see
        raise self.retry(exc=exc, countdown=min(600, 10 * 2**self.request.retries)) from None


@shared_task(name="notifications.tasks.notify_many", bind=True, max_retries=None)
def notify_many(self, kind: str, object_ids: list[int]) -> int:
    """The same for a batch of objects (the grants a burst ended); only the failed ones are retried."""
    sent, failed = 0, []
    for object_id in object_ids:
        try:
            sent += services.notify(kind=kind, object_id=object_id)
        except services.SendFailed:
            failed.append(object_id)
    if failed:
        if self.request.retries + 1 >= settings.NOTIFY_MAX_ATTEMPTS:
            return sent
        raise self.retry(args=(kind, failed), countdown=min(600, 10 * 2**self.request.retries))
    return sent


@shared_task(name="notifications.tasks.scan")
def scan() -> dict:
    """Periodic: reminders for requests half-way through their TTL, warnings for grants about to expire."""
    return services.scan()
