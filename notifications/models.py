"""The outbox: one row per message that must go out at most once. Sending lives in services.py."""

from __future__ import annotations

from django.conf import settings
from django.db import models
from django.db.models import Q

from broker.notify import Message


class Notification(models.Model):
    """A message to one person (email) or to one chat webhook about one object, claimed before it is sent.

    The unique key (kind, object_id, recipient, revision) is what makes a task that runs twice
    (a redelivered Celery message, two sweeps) send nothing the second time. ``revision`` tells
    apart messages that legitimately repeat for the same object: the request version an approver
    link is bound to, the approval stage of a reminder, the expiry a warning is about.
    """

    # The kinds are declared where services ask for messages (broker.notify), not here.
    Kind = Message

    class Status(models.TextChoices):
        # claimed by a worker that is sending it now (a crash leaves it here: never sent twice)
        SENDING = "sending"
        SENT = "sent"
        # the mail server refused or was unreachable; a retry may claim it again
        FAILED = "failed"
        # nothing to send: the recipient has no address
        SKIPPED = "skipped"

    class Channel(models.TextChoices):
        EMAIL = "email"
        CHAT = "chat"

    kind = models.CharField(max_length=32, choices=Kind.choices)
    object_id = models.BigIntegerField()
    channel = models.CharField(max_length=8, choices=Channel.choices, default=Channel.EMAIL)
    # email: the person; chat: none, and the webhook is named by `destination`
    recipient = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.CASCADE, related_name="+"
    )
    # chat: which webhook, by name (never its URL, which is a secret): "slack", "teams", "teams:DBA_TEAMS_URL"
    destination = models.CharField(max_length=200, blank=True)
    revision = models.BigIntegerField(default=0)
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.SENDING)
    attempts = models.PositiveSmallIntegerField(default=1)
    created_at = models.DateTimeField()
    sent_at = models.DateTimeField(null=True, blank=True)
    last_error = models.TextField(blank=True)

    class Meta:
        ordering = ["-created_at", "-pk"]
        constraints = [
            models.UniqueConstraint(
                fields=["kind", "object_id", "recipient", "revision"], name="notification_once_per_key"
            ),
            models.UniqueConstraint(
                fields=["kind", "object_id", "destination", "revision"],
                condition=Q(channel="chat"),
                name="notification_chat_once_per_key",
            ),
            models.CheckConstraint(
                condition=(Q(channel="email") & Q(recipient__isnull=False))
                | (Q(channel="chat") & Q(recipient__isnull=True) & ~Q(destination="")),
                name="notification_channel_has_address",
            ),
            models.CheckConstraint(
                condition=Q(status__in=["sending", "sent", "failed", "skipped"]), name="notification_status_valid"
            ),
        ]
        indexes = [models.Index(fields=["kind", "object_id"], name="notification_object")]

    def __str__(self) -> str:
        to = self.recipient if self.channel == self.Channel.EMAIL else f"chat {self.destination}"
        return f"{self.kind} #{self.object_id} to {to} ({self.status})"
