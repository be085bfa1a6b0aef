"""Domain errors. Services raise these; they know nothing of HTTP.

One exception handler maps them to status codes for the API (400/403/404/409) and the portal shows
their ``detail`` as a message. ``code`` is a stable machine-readable word for clients.
"""

from __future__ import annotations


class BrokerError(Exception):
    code = "error"
    status = 400

    def __init__(
        self,
        detail: str,
        *,
        code: str | None = None,
        fields: dict[str, list[str]] | None = None,
        conditions: list[dict[str, str]] | None = None,
    ):
        super().__init__(detail)
        self.detail = detail
        if code:
            self.code = code
        self.fields = fields or {}
        # The role conditions that refused (code ``condition_failed``): [{"condition", "reason"}].
        self.conditions = conditions or []


class Invalid(BrokerError):
    """The input is wrong (400)."""

    code = "invalid"
    status = 400


class NotAllowed(BrokerError):
    """The caller is known but may not do this (403)."""

    code = "forbidden"
    status = 403


class NotFound(BrokerError):
    """The object does not exist or is not visible to the caller (404)."""

    code = "not_found"
    status = 404


class Conflict(BrokerError):
    """The object's state forbids the action (409)."""

    code = "conflict"
    status = 409


class Throttled(BrokerError):
    """Too many failed attempts; try again after ``retry_after`` seconds (429)."""

    code = "throttled"
    status = 429

    def __init__(self, detail: str, *, retry_after: int):
        super().__init__(detail)
        self.retry_after = retry_after
