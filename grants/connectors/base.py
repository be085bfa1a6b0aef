"""The connector interface: how the broker switches a role on and off in a target system.

A connector is a small class with three idempotent operations. The broker calls them while it
holds the grant's row lock, so operations on one grant never interleave (an activation racing a
revocation could otherwise leave access behind); keep them short and give remote calls a timeout.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Any, ClassVar

from django.contrib.auth.models import AbstractBaseUser


class ConnectorError(Exception):
    """The target refused or failed; the broker retries with backoff and records the message."""


class Connector(ABC):
    name: ClassVar[str]

    def __init__(self, config: dict[str, Any]):
        self.config = config

    @classmethod
    def validate_config(cls, config: Any) -> list[str]:
        """Problems with a role's `target.config`, as readable sentences (empty when fine)."""
        return []

    def prepare(self) -> None:
        """Make the target ready when a policy is applied (create a group, say). Idempotent."""
        return None

    @abstractmethod
    def grant(self, user: AbstractBaseUser) -> None:
        """Give the user the access; succeed quietly if they already have it."""

    @abstractmethod
    def revoke(self, user: AbstractBaseUser) -> None:
        """Take the access away; succeed quietly if it is already gone."""

    @abstractmethod
    def is_granted(self, user: AbstractBaseUser) -> bool:
        """Read back from the target whether the user holds the access now."""

    def holders(self) -> set[str] | None:
        """Usernames holding the access in the target, for reconciliation; None if unknown."""
        return None

    def target_key(self) -> tuple:
        """Two roles with the same key share one piece of access in the target."""
        return (self.name, tuple(sorted((k, str(v)) for k, v in self.config.items())))
