"""The outbox: every message goes out at most once; and the periodic scan for reminders and warnings.

What each message says and who gets it is messages.py.

``notify(kind, object_id, revision)`` is what the Celery task calls. For each recipient it first
claims the (kind, object, recipient, revision) row of the outbox with a conditional insert (or a
conditional update of a failed row), and only the claimer renders and sends. A task that runs
twice, or two tasks racing, therefore send one message. A worker that dies between the claim and
the send leaves the row `sending`: that message is lost rather than sent twice (an admin sees it).
"""

from __future__ import annotations

import logging
from datetime import datetime

from django.conf import settings
from django.contrib.auth.models import AbstractBaseUser
from django.core.mail import EmailMultiAlternatives
from django.db import IntegrityError, transaction
from django.db.models import F, Q
from django.template.loader import render_to_string
from django.utils import timezone, translation
from django.utils.translation import gettext as _

from approvals.models import AccessRequest
from broker.notify import notify as notify_later
from grants.models import Grant
from notifications import chat, messages
from notifications.messages import Draft, expiry_warning_applies, reminder_due_at
from notifications.models import Notification

log = logging.getLogger(__name__)

Kind = Notification.Kind


class SendFailed(Exception):
    """Some messages could not be handed to the mail server; their rows are `failed`."""


# --- The outbox -------------------------------------------------------------------------------------


def claim(*, kind: str, object_id: int, recipient: AbstractBaseUser, revision: int, now: datetime) -> bool:
    """Take the right to send this message; False if it was sent, is being sent, or was given up."""
    key = {"kind": kind, "object_id": object_id, "recipient": recipient, "revision": revision}
    try:
        with transaction.atomic():
            Notification.objects.create(**key, status=Notification.Status.SENDING, created_at=now)
        return True
    except IntegrityError:
        pass
    # Only a failed send may be tried again, and only by one worker (conditional update).
    return bool(
        Notification.objects.filter(
            **key, status=Notification.Status.FAILED, attempts__lt=settings.NOTIFY_MAX_ATTEMPTS
        ).update(status=Notification.Status.SENDING, attempts=F("attempts") + 1)
    )


def _finish(kind: str, object_id: int, recipient, revision: int, **fields) -> None:
    Notification.objects.filter(kind=kind, object_id=object_id, recipient=recipient, revision=revision).update(**fields)


def _render(draft: Draft) -> EmailMultiAlternatives:
    """The email of a draft, in the language the draft was written in (its recipient's)."""
    context = {
        "draft": draft,
        "recipient": draft.recipient,
        "site_url": settings.SITE_URL,
    }
    with translation.override(draft.language or settings.LANGUAGE_CODE):
        text = render_to_string("email/message.txt", context)
        html = render_to_string("email/message.html", context)
        subject = _("[Access broker] %(subject)s") % {"subject": draft.subject}
    message = EmailMultiAlternatives(
        subject=subject,
        body=text,
        from_email=settings.DEFAULT_FROM_EMAIL,
        to=[draft.recipient.email],
        headers={"Auto-Submitted": "auto-generated", "X-Auto-Response-Suppress": "All"},
    )
    message.attach_alternative(html, "text/html")
    return message


def notify(*, kind: str, object_id: int, revision: int = 0, now: datetime | None = None) -> int:
    """Send the messages of one kind about one object (emails, then chat); return how many went out now."""
    now = now or timezone.now()
    drafts = messages.build(kind, object_id, revision, now)
    sent, failed = 0, []
    for draft in drafts:
        if not claim(kind=kind, object_id=object_id, recipient=draft.recipient, revision=draft.revision, now=now):
            continue
        if not draft.recipient.email:
            _finish(
                kind,
                object_id,
                draft.recipient,
                draft.revision,
                status=Notification.Status.SKIPPED,
                last_error="no email address",
            )
            continue
        try:
            if draft.late:
                for name, value in draft.late().items():
                    setattr(draft, name, value)
            _render(draft).send()
        except Exception as exc:  # noqa: BLE001 - any mail failure is recorded and retried
            log.warning("%s #%s to %s not sent: %s", kind, object_id, draft.recipient, exc)
            _finish(
                kind,
                object_id,
                draft.recipient,
                draft.revision,
                status=Notification.Status.FAILED,
                last_error=f"{type(exc).__name__}: {exc}"[:2000],
            )
            failed.append(draft.recipient.get_username())
        else:
            _finish(
                kind,
                object_id,
                draft.recipient,
                draft.revision,
                status=Notification.Status.SENT,
                sent_at=timezone.now(),
                last_error="",
            )
            sent += 1
    # Chat after the emails, each webhook on its own: a failing or slow webhook never holds up an email.
    chat_sent, chat_failed = chat.send(kind=kind, object_id=object_id, revision=revision, now=now)
    failed += [f"chat {name}" for name in chat_failed]
    if failed:
        raise SendFailed(f"{kind} #{object_id}: not sent to {', '.join(failed)}")
    return sent + chat_sent


# --- The periodic scan ------------------------------------------------------------------------------


def scan(*, now: datetime | None = None, batch: int = 500) -> dict[str, int]:
    """Queue reminders and expiry warnings that are due and not sent yet (the outbox dedups the rest)."""
    now = now or timezone.now()
    reminders = 0
    pending = AccessRequest.objects.filter(status=AccessRequest.Status.PENDING, expires_at__gt=now).only(
        "pk", "created_at", "expires_at", "current_stage"
    )
    for req in pending.order_by("expires_at")[:batch]:
        if now < reminder_due_at(req):
            continue
        if Notification.objects.filter(kind=Kind.REMINDER, object_id=req.pk, revision=req.current_stage).exists():
            continue
        notify_later(Kind.REMINDER, req.pk, req.current_stage)
        reminders += 1

    lead = settings.NOTIFY_EXPIRY_LEAD
    warnings = 0
    ending = Grant.objects.filter(Q(status=Grant.Status.ACTIVE), expires_at__gt=now, expires_at__lte=now + lead).only(
        "pk", "starts_at", "expires_at"
    )
    for grant in ending[:batch]:
        revision = int(grant.expires_at.timestamp())
        if not expiry_warning_applies(grant):
            continue
        if Notification.objects.filter(kind=Kind.GRANT_EXPIRING, object_id=grant.pk, revision=revision).exists():
            continue
        notify_later(Kind.GRANT_EXPIRING, grant.pk, revision)
        warnings += 1
    return {"reminders": reminders, "expiry_warnings": warnings}
