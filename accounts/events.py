"""One way to write a fact about a person's sign-in or credentials to the audit trail."""

from __future__ import annotations

from django.contrib.auth.models import AbstractBaseUser
from django.db import transaction

from broker import audit
from broker.models import AuditEvent, Channel

_UNSET = object()


def record_auth_event(
    action: str,
    *,
    user: AbstractBaseUser | None,
    ip: str | None,
    via: str = Channel.PORTAL,
    data: dict | None = None,
    actor: AbstractBaseUser | object | None = _UNSET,
    username: str = "",
) -> AuditEvent:
    """Audit ``action`` about ``user`` (or, before anyone is known, about the ``username`` typed).

    The person is the subject and, unless ``actor`` says otherwise, also the actor. Written in its
    own transaction when the caller has none open: a sign-in or a failed code changes nothing else.
    """
    subject = user.get_username() if user is not None else username[:150]
    with transaction.atomic():
        return audit.record(
            action,
            actor=user if actor is _UNSET else actor,
            target=("user", user.pk) if user is not None else None,
            via=via,
            ip=ip,
            subject=subject,
            data=data or {},
        )
