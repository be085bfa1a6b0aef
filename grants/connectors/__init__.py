"""Registry of connectors by the name used in the policy file (`target.connector`)."""

from __future__ import annotations

from typing import Any

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


__all__ = ["REGISTRY", "Connector", "ConnectorError", "connector_class", "connector_for"]
