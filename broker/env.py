"""Strict readers for configuration from the environment.

Every reader names the variable in its error, so that a typo in a deployment fails at start with
a message an operator can act on, instead of falling back silently to a default.
"""

from __future__ import annotations

import ipaddress
import os
import re
from datetime import timedelta
from pathlib import Path
from urllib.parse import urlsplit

from django.core.exceptions import ImproperlyConfigured

from broker.durations import parse_duration

_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off", ""}


def _raw(name: str) -> str | None:
    """The value of NAME, or the contents of the file named by NAME_FILE (for secrets)."""
    value = os.environ.get(name)
    file_name = os.environ.get(f"{name}_FILE")
    if value is not None and file_name:
        raise ImproperlyConfigured(f"{name} and {name}_FILE are both set; set only one of them")
    if file_name:
        try:
            return Path(file_name).read_text().strip()
        except OSError as exc:
            raise ImproperlyConfigured(f"{name}_FILE: cannot read {file_name!r}: {exc.strerror}") from exc
    return value


def env_str(name: str, default: str = "") -> str:
    value = _raw(name)
    return default if value is None else value


def env_bool(name: str, default: bool = False) -> bool:
    value = _raw(name)
    if value is None:
        return default
    lowered = value.strip().lower()
    if lowered in _TRUE:
        return True
    if lowered in _FALSE:
        return False
    raise ImproperlyConfigured(f"{name}: expected true or false, got {value!r}")


def env_int(name: str, default: int, *, minimum: int | None = None, maximum: int | None = None) -> int:
    value = _raw(name)
    if value is None or value.strip() == "":
        return default
    try:
        number = int(value)
    except ValueError:
        raise ImproperlyConfigured(f"{name}: expected a whole number, got {value!r}") from None
    if minimum is not None and number < minimum:
        raise ImproperlyConfigured(f"{name}: must be at least {minimum}, got {number}")
    if maximum is not None and number > maximum:
        raise ImproperlyConfigured(f"{name}: must be at most {maximum}, got {number}")
    return number


def env_duration(name: str, default: str) -> timedelta:
    value = _raw(name)
    text = default if value is None or value.strip() == "" else value.strip()
    try:
        return parse_duration(text)
    except ValueError as exc:
        raise ImproperlyConfigured(f"{name}: {exc}") from None


def env_list(name: str, default: list[str] | None = None) -> list[str]:
    value = _raw(name)
    if value is None:
        return list(default or [])
    return [item.strip() for item in value.split(",") if item.strip()]


def env_database(name: str, default: dict) -> dict:
    """DATABASE_URL: only PostgreSQL (through psycopg 3) and SQLite are supported."""
    import dj_database_url

    value = _raw(name)
    if value is None or value.strip() == "":
        return default
    scheme = urlsplit(value).scheme
    if scheme not in {"postgres", "postgresql", "pgsql", "sqlite"}:
        raise ImproperlyConfigured(f"{name}: unsupported scheme {scheme!r}; use postgresql://user:pass@host:5432/db")
    try:
        config = dj_database_url.parse(value, conn_max_age=60, conn_health_checks=True)
    except ValueError as exc:
        raise ImproperlyConfigured(f"{name}: {exc}") from None
    if config["ENGINE"].endswith("postgresql"):
        if not config.get("NAME"):
            raise ImproperlyConfigured(f"{name}: the URL names no database")
        options = config.setdefault("OPTIONS", {})
        # Never wait for an unreachable server longer than this (libpq waits forever by default):
        # a request answers 503 and /readyz says "database" within seconds. ?connect_timeout= wins.
        options.setdefault("connect_timeout", env_int("DATABASE_CONNECT_TIMEOUT", 5, minimum=1, maximum=120))
        # No JIT compilation: the broker's queries are short, and a filter PostgreSQL misjudges as
        # expensive (visibility's ORs) spent 0.3-0.9 s compiling before running in 30 ms.
        options["options"] = " ".join(filter(None, [options.get("options", ""), "-c jit=off"]))
    return config


def env_url(name: str, default: str, *, schemes: set[str]) -> str:
    value = _raw(name)
    if value is None or value.strip() == "":
        return default
    scheme = urlsplit(value).scheme
    if scheme not in schemes:
        raise ImproperlyConfigured(
            f"{name}: unsupported scheme {scheme!r}; expected one of {', '.join(sorted(schemes))}"
        )
    return value


# A key id is stored with every audit event: short, and free of the separators of a key list.
KEY_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,15}")


def env_key_id(name: str, default: str) -> str:
    value = _raw(name)
    text = default if value is None or value.strip() == "" else value.strip()
    if not KEY_ID.fullmatch(text):
        raise ImproperlyConfigured(
            f"{name}: expected a key id of 1 to 16 letters, digits, dots, hyphens or underscores, got {text!r}"
        )
    return text


def _check_key(name: str, key: str, *, min_length: int, where: str = "") -> None:
    # The messages never include the key: they end up in logs.
    if len(key) < min_length:
        raise ImproperlyConfigured(f"{name}: {where}must be at least {min_length} characters long, got {len(key)}")
    if key != key.strip():
        raise ImproperlyConfigured(f"{name}: {where}must not start or end with whitespace")
    if "," in key or "\n" in key:
        raise ImproperlyConfigured(f"{name}: {where}must not contain a comma or a line break (key lists use them)")


def env_key(name: str, *, min_length: int) -> str:
    """A secret key from NAME or NAME_FILE, or "" when neither is set."""
    value = _raw(name)
    if value is None or value == "":
        return ""
    _check_key(name, value, min_length=min_length)
    return value


def env_keys(name: str, *, min_length: int) -> dict[str, str]:
    """Keys by id from NAME or NAME_FILE: ``id:key`` entries separated by commas or line breaks."""
    value = _raw(name)
    keys: dict[str, str] = {}
    if value is None:
        return keys
    entries = [item.strip() for item in value.replace("\n", ",").split(",") if item.strip()]
    for position, entry in enumerate(entries, start=1):
        key_id, colon, key = entry.partition(":")
        if not colon:
            raise ImproperlyConfigured(f"{name}: entry {position} is not of the form id:key")
        if not KEY_ID.fullmatch(key_id):
            raise ImproperlyConfigured(
                f"{name}: entry {position} has the key id {key_id!r}; "
                "use 1 to 16 letters, digits, dots, hyphens or underscores"
            )
        if key_id in keys:
            raise ImproperlyConfigured(f"{name}: key id {key_id!r} is listed twice")
        _check_key(name, key, min_length=min_length, where=f"the key of id {key_id!r} ")
        keys[key_id] = key
    return keys


def env_networks(name: str) -> list[ipaddress.IPv4Network | ipaddress.IPv6Network]:
    """Comma-separated addresses or networks (``10.0.0.0/8, ::1``); an address is a network of one."""
    networks = []
    for item in env_list(name):
        try:
            networks.append(ipaddress.ip_network(item, strict=False))
        except ValueError:
            raise ImproperlyConfigured(f"{name}: {item!r} is not an IP address or network") from None
    return networks
