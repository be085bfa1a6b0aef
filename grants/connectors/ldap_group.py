"""Membership of a group in an LDAP directory (OpenLDAP, Active Directory, ...) through ldap3.

The group is an entry (``group_dn``) whose ``member`` (or ``uniqueMember``) values are the DNs of
its members. A user's DN comes from a template (``user_dn: uid={username},ou=people,...``) or a
search (``user_search: {base, filter: "(sAMAccountName={username})"}``); the username is escaped
for where it goes (RFC 4514 in a DN, RFC 4515 in a filter). Connections use ldaps:// or StartTLS
with certificate checks; plain LDAP only when the config says ``allow_plain: true``. The bind
password comes from ``password_env`` or ``password_file``. Every call has ``timeout``.
"""

from __future__ import annotations

import contextlib
import math
import re
import ssl
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import ldap3
from django.contrib.auth.models import AbstractBaseUser
from ldap3.core import exceptions as ldap_errors
from ldap3.utils.conv import escape_filter_chars
from ldap3.utils.dn import escape_rdn, parse_dn

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
    check_text,
    check_timeout,
    secret,
)

PLACEHOLDER = "{username}"
_MARKER = "broker-username-goes-here"
MEMBER_ATTRIBUTES = ("member", "uniqueMember")

# LDAP result codes (RFC 4511) the connector treats as "nothing to do" or explains.
NO_SUCH_ATTRIBUTE = 16
NO_SUCH_OBJECT = 32
ATTRIBUTE_OR_VALUE_EXISTS = 20
OBJECT_CLASS_VIOLATION = 65
INVALID_CREDENTIALS = 49
INSUFFICIENT_ACCESS = 50


def dn_value(username: str) -> str:
    """A username escaped as an RDN value (RFC 4514), leading '#' included."""
    escaped = escape_rdn(username)
    return "\\" + escaped if escaped.startswith("#") else escaped


def _unescape(value: str) -> str:
    raw = bytearray()
    for match in re.finditer(r"\\([0-9a-fA-F]{2})|\\(.)|([^\\]+)", value, flags=re.S):
        hexpair, char, plain = match.groups()
        if hexpair:
            raw.append(int(hexpair, 16))
        else:
            raw += (char or plain).encode()
    return raw.decode(errors="replace")


def _parsed(dn: str) -> list[tuple[str, str]] | None:
    try:
        return [(attr.casefold(), value) for attr, value, _sep in parse_dn(dn, escape=False, strip=True)]
    except ldap_errors.LDAPInvalidDnError:
        return None


class LdapGroupConnector(Connector):
    name = "ldap_group"

    @classmethod
    def validate_config(cls, config: Any) -> list[str | Problem]:
        if not isinstance(config, dict):
            return [
                "must be a mapping with `url`, `bind_dn`, `password_env`, `group_dn` and `user_dn` or `user_search`"
            ]
        problems: list[str | Problem] = []
        problems += check_keys(
            config,
            required={"url", "bind_dn", "group_dn"},
            optional={
                "password", "password_env", "password_file", "start_tls", "allow_plain", "ca_file",
                "member_attribute", "user_dn", "user_search", "username_attribute", "timeout",
            },
        )  # fmt: skip
        problems += check_secret(config, "password")
        for key in ("url", "bind_dn", "group_dn", "ca_file", "username_attribute"):
            problems += check_text(config, key, max_length=1000)
        for key in ("start_tls", "allow_plain"):
            problems += check_bool(config, key)
        problems += check_timeout(config)
        url = config.get("url")
        if isinstance(url, str):
            scheme = url.split("://", 1)[0].lower() if "://" in url else ""
            if scheme not in ("ldap", "ldaps"):
                problems.append((("url",), f"must be ldaps://host[:port] or ldap://host[:port], got {url!r}"))
            elif scheme == "ldaps" and config.get("start_tls"):
                problems.append((("start_tls",), "ldaps:// is TLS already; StartTLS is for ldap:// URLs"))
            elif scheme == "ldap" and not config.get("start_tls") and not config.get("allow_plain"):
                problems.append(
                    (
                        ("url",),
                        "plain LDAP sends the password in clear: use ldaps://, start_tls: true, or allow_plain: true",
                    )
                )
        for key in ("bind_dn", "group_dn"):
            if isinstance(config.get(key), str) and _parsed(config[key]) is None:
                problems.append(((key,), f"is not a valid DN: {config[key]!r}"))
        attribute = config.get("member_attribute", "member")
        if attribute not in MEMBER_ATTRIBUTES:
            problems.append((("member_attribute",), f"must be member or uniqueMember, got {attribute!r}"))
        problems += cls._user_problems(config)
        return problems

    @staticmethod
    def _user_problems(config: dict) -> list[str | Problem]:
        has_template, has_search = "user_dn" in config, "user_search" in config
        if has_template == has_search:
            return ["give exactly one of user_dn (a DN template with {username}) or user_search ({base, filter})"]
        if has_template:
            template = config["user_dn"]
            if not isinstance(template, str) or template.count(PLACEHOLDER) != 1:
                return [
                    (
                        ("user_dn",),
                        f"must contain {PLACEHOLDER} once, such as uid={PLACEHOLDER},ou=people,dc=example,dc=org",
                    )
                ]
            if _parsed(template.replace(PLACEHOLDER, "x")) is None:
                return [(("user_dn",), f"is not a valid DN template: {template!r}")]
            return []
        search = config["user_search"]
        if not isinstance(search, dict):
            return [(("user_search",), "must be a mapping with base and filter")]
        problems: list[str | Problem] = [
            (("user_search", key), "unknown key (expected one of: base, filter)")
            for key in set(search) - {"base", "filter"}
        ]
        base, query = search.get("base"), search.get("filter")
        if not isinstance(base, str) or _parsed(base) is None:
            problems.append((("user_search", "base"), f"must be a DN, got {base!r}"))
        if not isinstance(query, str) or PLACEHOLDER not in query or not query.startswith("("):
            problems.append(
                (
                    ("user_search", "filter"),
                    f"must be a filter with {PLACEHOLDER}, such as (uid={PLACEHOLDER}), got {query!r}",
                )
            )
        return problems

    # --- Names -----------------------------------------------------------------------------------

    @property
    def group_dn(self) -> str:
        return self.config["group_dn"]

    @property
    def member_attribute(self) -> str:
        return self.config.get("member_attribute", "member")

    def target_key(self) -> tuple:
        return (self.name, self.config["url"].lower(), tuple(_parsed(self.group_dn) or [self.group_dn]))

    def describe(self) -> str:
        return f"LDAP group {self.group_dn!r} at {self.config['url']}"

    # --- The connection ------------------------------------------------------------------------------

    @contextmanager
    def _connection(self) -> Iterator[ldap3.Connection]:
        url = self.config["url"]
        tls = ldap3.Tls(
            validate=ssl.CERT_REQUIRED,
            version=ssl.PROTOCOL_TLS_CLIENT,
            ca_certs_file=self.config.get("ca_file"),
        )
        seconds = max(1, math.ceil(self.timeout))  # ldap3 takes whole seconds
        server = ldap3.Server(url, tls=tls, connect_timeout=seconds, get_info=ldap3.NONE)
        conn = ldap3.Connection(
            server,
            user=self.config["bind_dn"],
            password=secret(self.config, "password"),
            receive_timeout=seconds,
            auto_bind=ldap3.AUTO_BIND_NONE,
            raise_exceptions=False,
            auto_range=True,
        )
        try:
            try:
                conn.open()
                if self.config.get("start_tls") and not conn.start_tls():
                    raise PermanentConnectorError(f"{url}: StartTLS failed: {conn.last_error or self._said(conn)}")
                if not conn.bind():
                    code = conn.result.get("result")
                    raise (
                        PermanentConnectorError
                        if code in (INVALID_CREDENTIALS, INSUFFICIENT_ACCESS)
                        else ConnectorError
                    )(f"cannot bind as {self.config['bind_dn']!r}: {self._said(conn)}")
                yield conn
            finally:
                with contextlib.suppress(ldap_errors.LDAPException):  # the socket may be gone already
                    conn.unbind()
        except (
            ldap_errors.LDAPSocketOpenError,
            ldap_errors.LDAPSocketReceiveError,
            ldap_errors.LDAPSessionTerminatedByServerError,
        ) as exc:
            raise TargetUnavailable(f"{url}: {_first_line(exc)}") from None
        except (ldap_errors.LDAPStartTLSError, ldap_errors.LDAPSSLConfigurationError) as exc:
            raise PermanentConnectorError(f"{url}: TLS failed: {_first_line(exc)}") from None
        except ldap_errors.LDAPException as exc:
            raise ConnectorError(f"{url}: {type(exc).__name__}: {_first_line(exc)}") from None

    @staticmethod
    def _said(conn: ldap3.Connection) -> str:
        result = conn.result or {}
        return f"{result.get('description', 'error')} ({result.get('result')}) {result.get('message', '')}".strip()

    def _user_dn(self, conn: ldap3.Connection, user: AbstractBaseUser) -> str | None:
        """The user's DN, or None when the directory has no entry for them."""
        username = user.get_username()
        if "user_dn" in self.config:
            dn = self.config["user_dn"].replace(PLACEHOLDER, dn_value(username))
            found = conn.search(dn, "(objectClass=*)", search_scope=ldap3.BASE, attributes=[], size_limit=1)
            if not found and conn.result.get("result") not in (0, NO_SUCH_OBJECT):
                raise ConnectorError(f"looking up {dn!r} failed: {self._said(conn)}")
            return dn if found else None
        search = self.config["user_search"]
        query = search["filter"].replace(PLACEHOLDER, escape_filter_chars(username))
        conn.search(search["base"], query, search_scope=ldap3.SUBTREE, attributes=[], size_limit=2)
        if conn.result.get("result") not in (0, 4, NO_SUCH_OBJECT):  # 4: size limit exceeded (two found)
            raise ConnectorError(f"searching for {username!r} failed: {self._said(conn)}")
        entries = [e for e in conn.response or [] if e.get("type") == "searchResEntry"]
        if len(entries) > 1:
            raise PermanentConnectorError(
                f"the user search finds more than one entry for {username!r}: make the filter unique"
            )
        return entries[0]["dn"] if entries else None

    # --- Operations --------------------------------------------------------------------------------

    def grant(self, user: AbstractBaseUser, event: AccessEvent) -> None:
        with self._connection() as conn:
            dn = self._user_dn(conn, user)
            if dn is None:
                raise PermanentConnectorError(
                    f"no entry for {user.get_username()!r} in the directory ({self._where()})"
                )
            conn.modify(self.group_dn, {self.member_attribute: [(ldap3.MODIFY_ADD, [dn])]})
            self._raise_unless(conn, ok=(0, ATTRIBUTE_OR_VALUE_EXISTS), doing=f"adding {dn!r}")

    def revoke(self, user: AbstractBaseUser, event: AccessEvent) -> None:
        with self._connection() as conn:
            dn = self._user_dn(conn, user)
            if dn is None:
                return  # no entry, no membership through it: nothing to remove
            conn.modify(self.group_dn, {self.member_attribute: [(ldap3.MODIFY_DELETE, [dn])]})
            self._raise_unless(conn, ok=(0, NO_SUCH_ATTRIBUTE), doing=f"removing {dn!r}")

    def _raise_unless(self, conn: ldap3.Connection, *, ok: tuple[int, ...], doing: str) -> None:
        code = conn.result.get("result")
        if code in ok:
            return
        message = f"{doing} in {self.group_dn!r} failed: {self._said(conn)}"
        if code == NO_SUCH_OBJECT:
            raise PermanentConnectorError(f"the group {self.group_dn!r} does not exist: {self._said(conn)}")
        if code == OBJECT_CLASS_VIOLATION:
            raise PermanentConnectorError(
                message + " (groupOfNames needs one member at least: keep a placeholder member in the group)"
            )
        if code == INSUFFICIENT_ACCESS:
            raise PermanentConnectorError(message)
        raise ConnectorError(message)

    def is_granted(self, user: AbstractBaseUser) -> bool:
        with self._connection() as conn:
            dn = self._user_dn(conn, user)
            if dn is None:
                return False
            # COMPARE lets the server match the DN by its own rules (case, spaces, escapes).
            answer = conn.compare(self.group_dn, self.member_attribute, dn)
            if conn.result.get("result") not in (5, 6):  # compareFalse, compareTrue
                raise ConnectorError(f"reading the members of {self.group_dn!r} failed: {self._said(conn)}")
            return bool(answer)

    def holders(self) -> set[str]:
        with self._connection() as conn:
            if not conn.search(
                self.group_dn, "(objectClass=*)", search_scope=ldap3.BASE, attributes=[self.member_attribute]
            ):
                raise ConnectorError(f"reading {self.group_dn!r} failed: {self._said(conn)}")
            values = conn.response[0]["attributes"].get(self.member_attribute, [])
            return {name for dn in values if (name := self._username_of(conn, dn))}

    def _username_of(self, conn: ldap3.Connection, dn: str) -> str | None:
        if "user_dn" in self.config:
            template = _parsed(self.config["user_dn"].replace(PLACEHOLDER, _MARKER))
            member = _parsed(dn)
            if template is None or member is None or len(template) != len(member):
                return None
            username = None
            for (t_attr, t_value), (m_attr, m_value) in zip(template, member, strict=True):
                if t_attr != m_attr:
                    return None
                if t_value == _MARKER:
                    username = _unescape(m_value)
                elif _unescape(t_value).casefold() != _unescape(m_value).casefold():
                    return None
            return username
        attribute = self.config.get("username_attribute", "uid")
        if not conn.search(dn, "(objectClass=*)", search_scope=ldap3.BASE, attributes=[attribute]) or not conn.response:
            return None
        value = conn.response[0]["attributes"].get(attribute)
        value = value[0] if isinstance(value, list) and value else value
        return value if isinstance(value, str) and value else None

    def check(self) -> list[str]:
        try:
            with self._connection() as conn:
                if not conn.search(self.group_dn, "(objectClass=*)", search_scope=ldap3.BASE, attributes=[]):
                    return [f"the group {self.group_dn!r} does not exist in the directory ({self._said(conn)})"]
        except ConnectorError as exc:
            return [f"not checked: {exc}"]
        return []

    def _where(self) -> str:
        if "user_dn" in self.config:
            return f"user_dn {self.config['user_dn']!r}"
        return f"user_search {self.config['user_search']['filter']!r} under {self.config['user_search']['base']!r}"


def _first_line(exc: BaseException) -> str:
    return (str(exc).strip().splitlines() or [type(exc).__name__])[0][:300]
