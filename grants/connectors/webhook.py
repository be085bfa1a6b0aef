"""Signed events to a team's own automation: ``grant.activated`` and ``grant.revoked`` POSTed as JSON.

Each request carries (docs/connectors.md has the receiver's side):

- ``X-Broker-Timestamp``: seconds since the epoch when it was sent;
- ``X-Broker-Signature``: ``v1=`` + hex HMAC-SHA256, keyed with the shared secret, of
  ``<timestamp>.<raw body>``;
- ``X-Broker-Event``: the event type; ``Idempotency-Key``: the same on every retry of one operation.

2xx is success. 4xx other than 408 and 429 is a permanent refusal (no retry: the grant goes
straight to its failure path). Anything else, timeouts and refused connections are retried by the
broker with backoff. The read-back is an optional ``status_url`` answering
``{"type": "access.query", "user", "role"}`` with ``{"granted": true|false}``, and
``{"type": "access.holders", "role"}`` with ``{"holders": [usernames]}``; without one, the
receiver's 2xx is the confirmation.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import json
import time
from typing import Any
from urllib.parse import urlsplit

import urllib3
from django.contrib.auth.models import AbstractBaseUser

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

SIGNATURE_HEADER = "X-Broker-Signature"
TIMESTAMP_HEADER = "X-Broker-Timestamp"
EVENT_HEADER = "X-Broker-Event"
IDEMPOTENCY_HEADER = "Idempotency-Key"
MAX_ANSWER = 64 * 1024
USER_AGENT = "access-broker-webhook/1"

_pool = urllib3.PoolManager(retries=False, maxsize=4)


def sign(secret_key: str, timestamp: str, body: bytes) -> str:
    """The signature header's value: v1= and the hex HMAC-SHA256 of ``<timestamp>.<body>``."""
    digest = hmac.new(secret_key.encode(), timestamp.encode() + b"." + body, hashlib.sha256).hexdigest()
    return f"v1={digest}"


def _is_loopback(host: str | None) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host or "").is_loopback
    except ValueError:
        return False


def _url_problems(config: dict, key: str) -> list[Problem]:
    problems = check_text(config, key, max_length=2000)
    if problems or key not in config:
        return problems
    parts = urlsplit(config[key])
    if parts.scheme not in ("https", "http") or not parts.hostname:
        return [((key,), f"must be an https:// URL, got {config[key]!r}")]
    if parts.username or parts.password:
        return [((key,), "must not carry credentials: the signature authenticates the broker")]
    if parts.scheme == "http" and not _is_loopback(parts.hostname) and not config.get("allow_http"):
        return [((key,), "must be https:// (plain http only to this machine, or with allow_http: true)")]
    return []


class WebhookConnector(Connector):
    name = "webhook"

    @classmethod
    def validate_config(cls, config: Any) -> list[str | Problem]:
        if not isinstance(config, dict):
            return ["must be a mapping with `url` and `secret_env` (or `secret_file`)"]
        problems: list[str | Problem] = []
        problems += check_keys(
            config,
            required={"url"},
            optional={"secret", "secret_env", "secret_file", "status_url", "allow_http", "timeout"},
        )
        problems += check_secret(config, "secret")
        problems += check_bool(config, "allow_http")
        problems += _url_problems(config, "url")
        problems += _url_problems(config, "status_url")
        problems += check_timeout(config)
        return problems

    def target_key(self) -> tuple:
        # One receiver often serves many roles, and tells them apart by the role in each event.
        return (self.name, self.config["url"], self.role_slug, self.resource)

    def describe(self) -> str:
        return f"webhook {self.config['url']}"

    # --- Sending ----------------------------------------------------------------------------------

    def _post(self, url: str, payload: dict[str, Any], *, key: str | None = None) -> Any:
        """POST signed JSON; the decoded answer (or None). Raises by the answer's class (see the module)."""
        secret_key = secret(self.config, "secret") or ""
        body = json.dumps(payload, separators=(",", ":"), sort_keys=True).encode()
        timestamp = str(int(time.time()))
        headers = {
            "Content-Type": "application/json",
            "User-Agent": USER_AGENT,
            TIMESTAMP_HEADER: timestamp,
            SIGNATURE_HEADER: sign(secret_key, timestamp, body),
            EVENT_HEADER: payload["type"],
        }
        if key:
            headers[IDEMPOTENCY_HEADER] = key
        deadline = time.monotonic() + self.timeout
        try:
            response = _pool.request(
                "POST",
                url,
                body=body,
                headers=headers,
                timeout=urllib3.Timeout(connect=self.timeout, read=self.timeout),
                redirect=False,
                preload_content=False,
            )
            try:
                answer = self._read(response, deadline)
            finally:
                response.release_conn()
        except urllib3.exceptions.TimeoutError:
            raise TargetUnavailable(f"{url} did not answer within {self.timeout:g} s") from None
        except urllib3.exceptions.HTTPError as exc:
            raise TargetUnavailable(f"{url}: {type(exc).__name__}: {exc}"[:300]) from None
        status = response.status
        if 200 <= status < 300:
            return _json_or_none(answer)
        detail = f"{url} answered HTTP {status}: {answer[:200].decode(errors='replace')}".strip()
        if 400 <= status < 500 and status not in (408, 429):
            raise PermanentConnectorError(detail)
        raise ConnectorError(detail)

    @staticmethod
    def _read(response: urllib3.BaseHTTPResponse, deadline: float) -> bytes:
        """At most MAX_ANSWER bytes, and no later than the deadline: a receiver that trickles is cut off."""
        chunks, size = [], 0
        for chunk in response.stream(4096):
            if time.monotonic() > deadline:
                raise urllib3.exceptions.ReadTimeoutError(None, None, "the answer took longer than the timeout")  # type: ignore[arg-type]
            chunks.append(chunk)
            size += len(chunk)
            if size > MAX_ANSWER:
                break
        return b"".join(chunks)[:MAX_ANSWER]

    # --- Operations ---------------------------------------------------------------------------------

    def grant(self, user: AbstractBaseUser, event: AccessEvent) -> None:
        self._post(self.config["url"], event.as_json(), key=event.key)

    def revoke(self, user: AbstractBaseUser, event: AccessEvent) -> None:
        self._post(self.config["url"], event.as_json(), key=event.key)

    def is_granted(self, user: AbstractBaseUser) -> bool | None:
        status_url = self.config.get("status_url")
        if not status_url:
            return None
        query = {"type": "access.query", "user": user.get_username(), "role": self._role(), **self._resource()}
        answer = self._post(status_url, query)
        if not isinstance(answer, dict) or not isinstance(answer.get("granted"), bool):
            raise ConnectorError(f'{status_url} must answer {{"granted": true|false}}, got {answer!r}'[:300])
        return answer["granted"]

    def holders(self) -> set[str] | None:
        status_url = self.config.get("status_url")
        if not status_url:
            return None
        answer = self._post(status_url, {"type": "access.holders", "role": self._role(), **self._resource()})
        holders = answer.get("holders") if isinstance(answer, dict) else None
        if not isinstance(holders, list) or not all(isinstance(h, str) for h in holders):
            raise ConnectorError(f'{status_url} must answer {{"holders": [usernames]}}, got {answer!r}'[:300])
        return set(holders)

    def _role(self) -> str:
        return self.role_slug

    def _resource(self) -> dict[str, str]:
        """The resource of a resource-scoped role, in every message about it (left out without one)."""
        return {"resource": self.resource} if self.resource else {}


def _json_or_none(answer: bytes) -> Any:
    if not answer.strip():
        return None
    try:
        return json.loads(answer)
    except ValueError:
        return None


def verify(
    secret_key: str, timestamp: str, signature: str, body: bytes, *, now: float | None = None, tolerance: int = 300
) -> bool:
    """The receiver's check (docs/connectors.md): the signature matches and the timestamp is recent."""
    try:
        age = abs((now if now is not None else time.time()) - int(timestamp))
    except ValueError:
        return False
    return age <= tolerance and hmac.compare_digest(sign(secret_key, timestamp, body), signature)
