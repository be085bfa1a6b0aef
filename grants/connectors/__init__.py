"""Registry of connectors by the name used in the policy file (`target.connector`)."""

from __future__ import annotations

from typing import Any

from django.contrib.auth.models import AbstractBaseUser
from django.db import transaction

from grants.connectors.base import Connector, ConnectorError
from grants.connectors.django_group import DjangoGroupConnector

REGISTRY: dict[str, type[Connector]] = {
    DjangoGroupConnector.name: DjangoGroupConnector,
}


def connector_class(name: str) -> type[Connector]:
    try:
        return REGISTRY[name]
    except KeyError:
        raise ConnectorError(f"unknown connector {name!r}") from None


def connector_for(role: Any) -> Connector:
    return connector_class(role.connector)(role.connector_config)


def set_access(connector: Connector, user: AbstractBaseUser, *, present: bool) -> None:
    """Grant (``present``) or revoke, then read the target back: only a confirmed result counts.

    Raises ConnectorError when the target does not show the result. In a savepoint of its own, so
    that a connector writing to the broker's database rolls back cleanly when it fails.
    """
    with transaction.atomic():
        if present:
            connector.grant(user)
        else:
            connector.revoke(user)
        if connector.is_granted(user) != present:
            shown = (
                "does not show the access after granting it" if present else "still shows the access after removing it"
            )
            raise ConnectorError(f"the target {shown}")


__all__ = ["REGISTRY", "Connector", "ConnectorError", "connector_class", "connector_for", "set_access"]
