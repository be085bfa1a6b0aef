"""Registry of connectors by the name used in the policy file (`target.connector`).

The built-in connectors are always there. A deployment adds its own without editing the broker:
the setting ``BROKER_CONNECTORS`` (environment variable, comma-separated dotted paths of classes)
or an installed package's entry point in the group ``access_broker.connectors``. They are loaded
once, when the app starts (``GrantsConfig.ready``), so that a typo stops the start with a message.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Sequence
from importlib import import_module
from importlib.metadata import entry_points
from typing import Any

from django.conf import settings
from django.contrib.auth.models import AbstractBaseUser
from django.core.exceptions import ImproperlyConfigured
from django.db import transaction

from broker.telemetry.metrics import connector_call, connector_failed
from grants.connectors import breaker
from grants.connectors.base import (
    AccessEvent,
    Connector,
    ConnectorError,
    PermanentConnectorError,
    TargetUnavailable,
)
from grants.connectors.django_group import DjangoGroupConnector
from grants.connectors.ldap_group import LdapGroupConnector
from grants.connectors.postgres_role import PostgresRoleConnector
from grants.connectors.webhook import WebhookConnector

log = logging.getLogger(__name__)

ENTRY_POINT_GROUP = "access_broker.connectors"
BUILT_IN: tuple[type[Connector], ...] = (
    DjangoGroupConnector,
    PostgresRoleConnector,
    LdapGroupConnector,
    WebhookConnector,
)
REGISTRY: dict[str, type[Connector]] = {cls.name: cls for cls in BUILT_IN}
_NAME = re.compile(r"^[a-z][a-z0-9_]{0,63}$")
_loaded = False


def _register(cls: Any, source: str) -> None:
    if not (isinstance(cls, type) and issubclass(cls, Connector)):
        raise ImproperlyConfigured(f"{source}: {cls!r} is not a subclass of grants.connectors.base.Connector")
    name = getattr(cls, "name", None)
    if not isinstance(name, str) or not _NAME.match(name):
        raise ImproperlyConfigured(
            f"{source}: {cls.__name__}.name must be lowercase letters, digits and _, got {name!r}"
        )
    if REGISTRY.get(name, cls) is not cls:
        raise ImproperlyConfigured(f"{source}: a connector named {name!r} is already registered ({REGISTRY[name]!r})")
    REGISTRY[name] = cls


def _import(path: str) -> Any:
    module_name, _, attribute = path.rpartition(".")
    if not module_name:
        raise ImproperlyConfigured(
            f"BROKER_CONNECTORS: {path!r} is not a dotted path such as mypackage.module.MyConnector"
        )
    try:
        return getattr(import_module(module_name), attribute)
    except (ImportError, AttributeError) as exc:
        raise ImproperlyConfigured(f"BROKER_CONNECTORS: cannot import {path!r}: {exc}") from None


def load() -> dict[str, type[Connector]]:
    """Add the deployment's connectors (setting, then entry points) to the registry, once."""
    global _loaded
    if _loaded:
        return REGISTRY
    for path in settings.BROKER_CONNECTORS:
        _register(_import(path), f"BROKER_CONNECTORS {path!r}")
    for entry in entry_points(group=ENTRY_POINT_GROUP):
        try:
            cls = entry.load()
        except Exception as exc:  # noqa: BLE001 - a broken plugin stops the start with its name
            raise ImproperlyConfigured(f"entry point {entry.name!r} ({entry.value}): cannot load: {exc}") from None
        _register(cls, f"entry point {entry.name!r} ({entry.value})")
    _loaded = True
    return REGISTRY


def connector_class(name: str) -> type[Connector]:
    try:
        return load()[name]
    except KeyError:
        raise ConnectorError(f"unknown connector {name!r}") from None


def connector_for(role: Any) -> Connector:
    return connector_class(role.connector)(role.connector_config, role_slug=role.slug)


def set_access(connector: Connector, user: AbstractBaseUser, *, present: bool, event: AccessEvent) -> None:
    """Grant (``present``) or revoke, then read the target back: only a confirmed result counts.

    Raises ConnectorError when the target does not show the result, and at once, without calling
    it, while the target is cooling down after a timeout (``breaker``). In a savepoint of its own,
    so that a connector writing to the broker's database rolls back cleanly when it fails.
    """
    with connector_call(connector.name, "grant" if present else "revoke"):
        _set_access(connector, user, present=present, event=event)


def _set_access(connector: Connector, user: AbstractBaseUser, *, present: bool, event: AccessEvent) -> None:
    breaker.ensure_closed(connector)
    try:
        with transaction.atomic():
            if present:
                connector.grant(user, event)
            else:
                connector.revoke(user, event)
            shown = connector.is_granted(user)
            # None: the target cannot be read back; the operation's own success is the confirmation.
            if shown is not None and shown != present:
                what = (
                    "does not show the access after granting it"
                    if present
                    else "still shows the access after removing it"
                )
                raise ConnectorError(f"the target {what}")
    except TargetUnavailable as exc:
        breaker.trip(connector, exc)
        raise


def revoke_confirmed(
    connector: Connector, items: Sequence[tuple[AbstractBaseUser, AccessEvent]]
) -> list[Exception | None]:
    """``set_access(present=False)`` for several users of one target at once: the connector's
    ``revoke_many``, then one read-back (``is_granted_many``). The error of each user, or None when
    the removal is confirmed. An error of the whole call (the target down, a statement refused)
    is every user's error; callers fall back to one removal at a time for those.
    """
    if not items:
        return []
    # Timed and counted like set_access, as one "revoke_many" operation: the metrics see batched
    # ends as they see single ones (an error of one user in the batch counts as a "revoke" error).
    with connector_call(connector.name, "revoke_many"):
        try:
            breaker.ensure_closed(connector)
            with transaction.atomic():
                outcomes = list(connector.revoke_many(items))
                if len(outcomes) != len(items):
                    raise ConnectorError(
                        f"{connector.describe()}: revoke_many answered {len(outcomes)} of {len(items)}"
                    )
                done = [user for (user, _), error in zip(items, outcomes, strict=True) if error is None]
                shown = connector.is_granted_many(done) if done else {}
        except Exception as exc:  # noqa: BLE001 - any failure of the batch is every item's failure
            if isinstance(exc, TargetUnavailable):
                breaker.trip(connector, exc)
            connector_failed(connector.name, "revoke_many", exc)
            return [exc] * len(items)
    result: list[Exception | None] = []
    for (user, _), error in zip(items, outcomes, strict=True):
        if error is None and shown.get(user.pk):
            error = ConnectorError("the target still shows the access after removing it")
        if isinstance(error, TargetUnavailable):
            breaker.trip(connector, error)
        if error is not None:
            connector_failed(connector.name, "revoke", error)
        result.append(error)
    return result


__all__ = [
    "ENTRY_POINT_GROUP",
    "REGISTRY",
    "AccessEvent",
    "Connector",
    "ConnectorError",
    "PermanentConnectorError",
    "TargetUnavailable",
    "connector_class",
    "connector_for",
    "load",
    "revoke_confirmed",
    "set_access",
]
