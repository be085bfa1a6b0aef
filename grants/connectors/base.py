"""The connector interface: how the broker switches a role on and off in a target system.

A connector is a small class with idempotent operations on one piece of access (a group, a
database role, a receiver of events) for one user at a time:

- ``grant(user, event)`` and ``revoke(user, event)`` succeed quietly when there is nothing to do;
- ``is_granted(user)`` reads the target back after each of them (``None``: the target cannot be
  read, and the operation's own success is the confirmation);
- ``holders()`` lists who holds the access, for reconciliation (``None``: unknown);
- ``validate_config(config)`` names every problem of a role's ``target.config`` with its place;
- ``check()`` looks at the target when a policy is applied (a missing database role, say);
- ``target_key()`` says which roles share one piece of access.

The broker calls them while it holds the grant's row lock and the lock of that piece of access for
that user (``grants.models.AccessLock``), so operations on one grant never interleave and two
grants sharing access never both skip its removal. Every remote call must therefore be bounded:
``timeout`` in the config (``DEFAULT_TIMEOUT``, at most ``MAX_TIMEOUT``), and a target that times
out is cooled down (``grants.connectors.breaker``) so that it cannot stall the others.

Secrets never sit in the policy file: a config names an environment variable (``<x>_env``) or a
file (``<x>_file``) holding them, read at the moment of use (``secret``).

The operations take one user and one event each. Ending a burst of grants calls the batch variants
``revoke_many`` and ``is_granted_many`` (one round trip for many users) once per target; their
defaults below loop over the one-user operations, and ``django_group`` and ``postgres_role``
implement them natively (one statement for the whole batch).
"""

from __future__ import annotations

import os
import re
from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, ClassVar

from django.contrib.auth.models import AbstractBaseUser

from broker.durations import parse_duration

# A place in a role's target.config (("dsn_env",), ("logins", "alice")) and what is wrong there.
Problem = tuple[tuple[str | int, ...], str]

DEFAULT_TIMEOUT = timedelta(seconds=5)
MAX_TIMEOUT = timedelta(seconds=30)
_ENV_NAME = re.compile(r"^[A-Z_][A-Z0-9_]{0,127}$")


class ConnectorError(Exception):
    """The target refused or failed; the broker retries with backoff and records the message."""

    # True when trying again cannot help (a 4xx from a webhook): the broker goes straight to its
    # failure path instead of retrying.
    permanent = False


class PermanentConnectorError(ConnectorError):
    permanent = True


class TargetUnavailable(ConnectorError):
    """The target did not answer in time or refused the connection: it is cooled down for a while."""


@dataclass(frozen=True)
class AccessEvent:
    """What the broker is doing, for connectors that tell another system about it (webhook).

    ``key`` is the same on every retry of one operation (activating grant 7, removing grant 7),
    so that a receiver can drop duplicates.
    """

    type: str  # grant.activated | grant.revoked
    key: str
    username: str
    role: str
    grant_id: int | None = None
    starts_at: datetime | None = None
    expires_at: datetime | None = None
    justification: str = ""
    end_reason: str = ""
    resource: str = ""
    extra: dict[str, Any] = field(default_factory=dict)

    def as_json(self) -> dict[str, Any]:
        def time(value: datetime | None) -> str | None:
            return value.isoformat().replace("+00:00", "Z") if value else None

        return {
            "type": self.type,
            "id": self.key,
            "grant": self.grant_id,
            "user": self.username,
            "role": self.role,
            "starts_at": time(self.starts_at),
            "expires_at": time(self.expires_at),
            "justification": self.justification,
            "end_reason": self.end_reason,
            **({"resource": self.resource} if self.resource else {}),
            **self.extra,
        }


class Connector(ABC):
    name: ClassVar[str]
    # True when the target is the broker's own database (nothing remote that could hang): a batch
    # of ends removes such access first, so a remote target that does not answer never delays it.
    local: ClassVar[bool] = False

    def __init__(self, config: dict[str, Any], *, role_slug: str = "", resource: str = ""):
        self.config = config
        # The broker role this connector acts for (a webhook names it in its events), and the
        # resource of a resource-scoped role ("" for a role without resources); the config has
        # already had {resource} replaced by it (grants.connectors.connector_for).
        self.role_slug = role_slug
        self.resource = resource

    @classmethod
    def validate_config(cls, config: Any) -> list[str | Problem]:
        """Problems with a role's ``target.config``: a sentence, or (place in the config, sentence)."""
        return []

    def prepare(self) -> None:
        """Make the target ready when a policy is applied (create a group, say). Idempotent."""
        return None

    def check(self) -> list[str]:
        """Problems seen in the target when a policy is applied (its role is missing): reported, not fatal."""
        return []

    @abstractmethod
    def grant(self, user: AbstractBaseUser, event: AccessEvent) -> None:
        """Give the user the access; succeed quietly if they already have it."""

    @abstractmethod
    def revoke(self, user: AbstractBaseUser, event: AccessEvent) -> None:
        """Take the access away; succeed quietly if it is already gone."""

    @abstractmethod
    def is_granted(self, user: AbstractBaseUser) -> bool | None:
        """Read back from the target whether the user holds the access now (None: cannot be read)."""

    def holders(self) -> set[str] | None:
        """Usernames holding the access in the target, for reconciliation; None if unknown."""
        return None

    def revoke_many(self, items: Sequence[tuple[AbstractBaseUser, AccessEvent]]) -> list[Exception | None]:
        """Revoke for several users; the error of each, or None. One call each unless a connector batches.

        A connector that batches (one statement or round trip for all) may raise instead of
        returning: the broker then counts the error for every user of the call.
        """
        outcomes: list[Exception | None] = []
        unavailable: TargetUnavailable | None = None
        for user, event in items:
            if unavailable is not None:
                # A target that did not answer for one user is not called again for the next ones
                # of the batch (each would wait its own timeout); they go to the one-grant path.
                outcomes.append(TargetUnavailable(f"not tried: {self.describe()} did not answer: {unavailable}"))
                continue
            try:
                self.revoke(user, event)
            except TargetUnavailable as exc:
                unavailable = exc
                outcomes.append(exc)
            except Exception as exc:  # noqa: BLE001 - each user's outcome is reported on its own
                outcomes.append(exc)
            else:
                outcomes.append(None)
        return outcomes

    def is_granted_many(self, users: Sequence[AbstractBaseUser]) -> dict[Any, bool | None]:
        """``is_granted`` for several users, by user pk. One call each unless a connector batches."""
        return {user.pk: self.is_granted(user) for user in users}

    def overrides(self, base: type[Connector], *names: str) -> bool:
        """True when a subclass replaced one of these methods of ``base``: a native batch operation
        of ``base`` must then defer to the one-user operations it would otherwise bypass."""
        return any(getattr(type(self), name) is not getattr(base, name) for name in names)

    def target_key(self) -> tuple:
        """Two roles with the same key share one piece of access in the target."""
        return (self.name, tuple(sorted((k, str(v)) for k, v in self.config.items() if k != "timeout")))

    @property
    def timeout(self) -> float:
        """Seconds any one remote call may take."""
        value = self.config.get("timeout")
        return (parse_duration(value) if isinstance(value, str) else DEFAULT_TIMEOUT).total_seconds()

    def describe(self) -> str:
        """The target in a few words, for messages ("webhook https://hooks.example.com/access")."""
        return self.name


# --- Helpers for validate_config and for reading secrets ---------------------------------------------


def check_keys(config: dict, *, required: set[str], optional: set[str]) -> list[Problem]:
    problems: list[Problem] = []
    for key in sorted(required - set(config)):
        problems.append(((), f"{key} is required"))
    known = required | optional
    for key in sorted(set(config) - known, key=str):
        problems.append(((key,), f"unknown key (expected one of: {', '.join(sorted(known))})"))
    return problems


def check_text(config: dict, key: str, *, max_length: int = 500) -> list[Problem]:
    value = config.get(key)
    if key not in config:
        return []
    if not isinstance(value, str) or not value.strip():
        return [((key,), f"must be text, got {value!r}")]
    if len(value) > max_length:
        return [((key,), f"at most {max_length} characters")]
    return []


def check_bool(config: dict, key: str) -> list[Problem]:
    if key in config and not isinstance(config[key], bool):
        return [((key,), f"must be true or false, got {config[key]!r}")]
    return []


def check_timeout(config: dict) -> list[Problem]:
    if "timeout" not in config:
        return []
    value = config["timeout"]
    try:
        seconds = parse_duration(value) if isinstance(value, str) else None
    except ValueError as exc:
        return [(("timeout",), str(exc))]
    if seconds is None:
        return [(("timeout",), f"must be a duration such as 5s, got {value!r}")]
    if seconds > MAX_TIMEOUT:
        return [(("timeout",), f"at most {int(MAX_TIMEOUT.total_seconds())}s: a connector call holds a grant's lock")]
    return []


def check_secret(config: dict, what: str, *, required: bool = True) -> list[Problem]:
    """``<what>_env`` (a variable's name) or ``<what>_file`` (a path), never the secret itself."""
    env_key, file_key = f"{what}_env", f"{what}_file"
    problems: list[Problem] = []
    if what in config:
        problems.append(
            (
                (what,),
                f"secrets never go in the policy file: name an environment variable ({env_key}) or a file ({file_key})",
            )
        )
    given = [k for k in (env_key, file_key) if k in config]
    if len(given) > 1:
        problems.append(((file_key,), f"give {env_key} or {file_key}, not both"))
    elif not given and required and what not in config:
        problems.append(((), f"{env_key} (an environment variable's name) or {file_key} (a path) is required"))
    if env_key in config and (not isinstance(config[env_key], str) or not _ENV_NAME.match(config[env_key])):
        problems.append(
            ((env_key,), f"must be an environment variable's name such as TARGET_SECRET, got {config[env_key]!r}")
        )
    if file_key in config and (not isinstance(config[file_key], str) or not config[file_key].strip()):
        problems.append(((file_key,), f"must be a path, got {config[file_key]!r}"))
    return problems


def secret(config: dict, what: str) -> str | None:
    """The secret a config names (environment variable or file), read now; None when it names none."""
    env_key, file_key = f"{what}_env", f"{what}_file"
    if env_key in config:
        value = os.environ.get(config[env_key])
        if not value:
            raise PermanentConnectorError(f"the environment variable {config[env_key]} ({env_key}) is not set")
        return value
    if file_key in config:
        try:
            value = Path(config[file_key]).read_text(encoding="utf-8").strip()
        except OSError as exc:
            raise PermanentConnectorError(f"cannot read {file_key} {config[file_key]!r}: {exc.strerror}") from None
        if not value:
            raise PermanentConnectorError(f"{file_key} {config[file_key]!r} is empty")
        return value
    return None
