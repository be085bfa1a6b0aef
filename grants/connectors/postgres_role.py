"""Membership of a role on a PostgreSQL server: ``GRANT role TO login`` and back.

On removal the login's open sessions on that server are ended (``pg_terminate_backend``), so that
access does not outlive the grant in a ``psql`` left open. Every identifier goes through
``psycopg.sql.Identifier``; every statement runs under ``statement_timeout`` and ``lock_timeout``
on a connection opened with ``connect_timeout``. The server's address and credentials come from
an environment variable or a file (``dsn_env`` / ``dsn_file``), never from the policy file.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import psycopg
from django.contrib.auth.models import AbstractBaseUser
from psycopg import errors, sql

from grants.connectors.base import (
    AccessEvent,
    Connector,
    ConnectorError,
    PermanentConnectorError,
    Problem,
    TargetUnavailable,
    check_bool,
    check_keys,
    check_secret,
    check_timeout,
    secret,
)

PLACEHOLDER = "{username}"
MAX_NAME = 63  # bytes: PostgreSQL's NAMEDATALEN - 1


def _name_problems(key: tuple, value: Any, what: str) -> list[Problem]:
    if not isinstance(value, str) or not value:
        return [(key, f"must be the name of a {what}, got {value!r}")]
    if len(value.encode()) > MAX_NAME:
        return [(key, f"at most {MAX_NAME} bytes (PostgreSQL truncates longer names)")]
    return []


class PostgresRoleConnector(Connector):
    name = "postgres_role"

    @classmethod
    def validate_config(cls, config: Any) -> list[str | Problem]:
        if not isinstance(config, dict):
            return ["must be a mapping with `role` and `dsn_env` (or `dsn_file`)"]
        problems: list[str | Problem] = []
        problems += check_keys(
            config,
            required={"role"},
            optional={"dsn", "dsn_env", "dsn_file", "login", "logins", "terminate_sessions", "timeout"},
        )
        problems += check_secret(config, "dsn")
        if "role" in config:
            problems += _name_problems(("role",), config["role"], "role on the target server")
        template = config.get("login", PLACEHOLDER)
        if not isinstance(template, str) or template.count(PLACEHOLDER) != 1:
            problems.append(
                (("login",), f"must contain {PLACEHOLDER} exactly once, such as 'app_{{username}}', got {template!r}")
            )
        elif "{" in template.replace(PLACEHOLDER, "") or "}" in template.replace(PLACEHOLDER, ""):
            problems.append((("login",), f"only {PLACEHOLDER} may stand in braces, got {template!r}"))
        logins = config.get("logins", {})
        if not isinstance(logins, dict):
            problems.append((("logins",), "must be a mapping of username: login"))
        else:
            for username, login in logins.items():
                problems += _name_problems(("logins", username), login, "login on the target server")
        problems += check_bool(config, "terminate_sessions")
        problems += check_timeout(config)
        return problems

    # --- Names -------------------------------------------------------------------------------------

    @property
    def role(self) -> str:
        return self.config["role"]

    def login_of(self, user: AbstractBaseUser) -> str:
        """The login a user has on the target: the per-user mapping, else the rule (``login``)."""
        username = user.get_username()
        mapped = self.config.get("logins", {}).get(username)
        login = mapped or self.config.get("login", PLACEHOLDER).replace(PLACEHOLDER, username)
        if len(login.encode()) > MAX_NAME:
            raise PermanentConnectorError(f"the login {login!r} for {username} is longer than {MAX_NAME} bytes")
        return login

    def _username_of(self, login: str) -> str | None:
        for username, mapped in self.config.get("logins", {}).items():
            if mapped == login:
                return username
        prefix, _, suffix = self.config.get("login", PLACEHOLDER).partition(PLACEHOLDER)
        if login.startswith(prefix) and login.endswith(suffix) and len(login) > len(prefix) + len(suffix):
            return login[len(prefix) : len(login) - len(suffix)]
        return None

    def target_key(self) -> tuple:
        server = self.config.get("dsn_env") or self.config.get("dsn_file")
        return (self.name, server, self.role)

    def describe(self) -> str:
        where = self.config.get("dsn_env") or self.config.get("dsn_file")
        return f"PostgreSQL role {self.role!r} (server from {where})"

    # --- The connection ------------------------------------------------------------------------------

    @contextmanager
    def _cursor(self) -> Iterator[psycopg.Cursor]:
        dsn = secret(self.config, "dsn")
        millis = max(1, int(self.timeout * 1000))
        try:
            conn = psycopg.connect(
                dsn, connect_timeout=max(2, math.ceil(self.timeout)), autocommit=True, application_name="access-broker"
            )
        except psycopg.OperationalError as exc:
            raise TargetUnavailable(f"cannot connect to the target server: {_first_line(exc)}") from None
        except psycopg.ProgrammingError as exc:  # a malformed DSN
            raise PermanentConnectorError(
                f"bad connection string in {self._dsn_source()}: {_first_line(exc)}"
            ) from None
        try:
            with conn, conn.cursor() as cursor:
                cursor.execute(sql.SQL("SET statement_timeout = {}").format(sql.Literal(millis)))
                cursor.execute(sql.SQL("SET lock_timeout = {}").format(sql.Literal(millis)))
                yield cursor
        except errors.QueryCanceled:
            raise TargetUnavailable(f"the target server did not answer within {self.timeout:g} s") from None
        except errors.InsufficientPrivilege as exc:
            raise PermanentConnectorError(f"not allowed on the target server: {_first_line(exc)}") from None
        except psycopg.OperationalError as exc:
            raise TargetUnavailable(f"the target server failed: {_first_line(exc)}") from None
        except psycopg.Error as exc:
            raise ConnectorError(f"the target server refused: {_first_line(exc)}") from None

    def _dsn_source(self) -> str:
        return (
            f"dsn_env {self.config['dsn_env']}"
            if "dsn_env" in self.config
            else f"dsn_file {self.config.get('dsn_file')}"
        )

    @staticmethod
    def _existing(cursor: psycopg.Cursor, *names: str) -> set[str]:
        cursor.execute("SELECT rolname FROM pg_roles WHERE rolname = ANY(%s)", [list(names)])
        return {row[0] for row in cursor.fetchall()}

    # --- Operations ---------------------------------------------------------------------------------

    def grant(self, user: AbstractBaseUser, event: AccessEvent) -> None:
        login = self.login_of(user)
        with self._cursor() as cursor:
            existing = self._existing(cursor, self.role, login)
            if self.role not in existing:
                raise PermanentConnectorError(f"role {self.role!r} does not exist on the target server")
            if login not in existing:
                raise PermanentConnectorError(
                    f"no login {login!r} on the target server for {user.get_username()} (see `login`/`logins` in the role's config)"
                )
            cursor.execute(sql.SQL("GRANT {} TO {}").format(sql.Identifier(self.role), sql.Identifier(login)))

    def revoke(self, user: AbstractBaseUser, event: AccessEvent) -> None:
        login = self.login_of(user)
        with self._cursor() as cursor:
            existing = self._existing(cursor, self.role, login)
            # A role or login that is gone holds nothing: the removal is done.
            if {self.role, login} <= existing:
                cursor.execute(sql.SQL("REVOKE {} FROM {}").format(sql.Identifier(self.role), sql.Identifier(login)))
            if login in existing and self.config.get("terminate_sessions", True):
                self._end_sessions(cursor, login)

    def _end_sessions(self, cursor: psycopg.Cursor, login: str) -> None:
        """End the login's sessions, waiting for them to exit, so that no open session keeps the role."""
        wait = max(100, int(self.timeout * 1000 / 2))
        cursor.execute(
            "SELECT pid, pg_terminate_backend(pid, %s) FROM pg_stat_activity WHERE usename = %s AND pid <> pg_backend_pid()",
            [wait, login],
        )
        left = [pid for pid, ended in cursor.fetchall() if not ended]
        if left:
            raise ConnectorError(f"{len(left)} session(s) of {login!r} could not be ended (pids {left[:10]})")

    def is_granted(self, user: AbstractBaseUser) -> bool:
        with self._cursor() as cursor:
            cursor.execute(_DIRECT_MEMBERS + " AND u.rolname = %s", [self.role, self.login_of(user)])
            return cursor.fetchone() is not None

    def holders(self) -> set[str]:
        with self._cursor() as cursor:
            cursor.execute(_DIRECT_MEMBERS, [self.role])
            logins = [row[0] for row in cursor.fetchall()]
        return {username for login in logins if (username := self._username_of(login))}

    def check(self) -> list[str]:
        try:
            with self._cursor() as cursor:
                if self.role not in self._existing(cursor, self.role):
                    return [f"role {self.role!r} does not exist on the target server"]
                cursor.execute(
                    "SELECT rolsuper OR rolcreaterole OR pg_has_role(current_user, %s, 'USAGE WITH ADMIN OPTION'),"
                    " rolsuper OR pg_has_role(current_user, 'pg_signal_backend', 'MEMBER'), current_user"
                    " FROM pg_roles WHERE rolname = current_user",
                    [self.role],
                )
                may_grant, may_end_sessions, me = cursor.fetchone()
        except ConnectorError as exc:
            return [f"not checked: {exc}"]
        problems = []
        if not may_grant:
            problems.append(f"{me!r} may not grant role {self.role!r} on the target server (needs ADMIN OPTION on it)")
        if not may_end_sessions and self.config.get("terminate_sessions", True):
            problems.append(f"{me!r} may not end other sessions on the target server (needs pg_signal_backend)")
        return problems


# Direct members only: access the broker did not give (through another role) is not its to take.
_DIRECT_MEMBERS = (
    "SELECT u.rolname FROM pg_auth_members m JOIN pg_roles r ON r.oid = m.roleid"
    " JOIN pg_roles u ON u.oid = m.member WHERE r.rolname = %s"
)


def _first_line(exc: BaseException) -> str:
    return (str(exc).strip().splitlines() or [type(exc).__name__])[0][:300]
