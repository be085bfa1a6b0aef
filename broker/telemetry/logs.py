"""Log lines: readable text by default, JSON lines with LOG_FORMAT=json; never a secret in either.

``ContextFilter`` adds the request id and the running task to every record. Both formatters end
with ``redact``: whatever slipped into a message or a traceback and looks like a credential (an API
token, an approver link's token, a password-reset link, a bearer header, a ``code=`` or ``token=``
parameter, a chat webhook's secret path) is replaced before the line leaves the process. The
secret-grep test (tests/broker/test_logs.py) runs a whole story and looks for every secret it used.
"""

from __future__ import annotations

import logging
import re
import time

from pythonjsonlogger.json import JsonFormatter as _JsonFormatter

from broker.telemetry.context import current_task, request_id

_REDACTED = "[redacted]"
# (pattern, replacement): what a credential looks like wherever it appears in a line.
_SECRETS = [
    # Personal API tokens: pab_<prefix>_<secret>.
    (re.compile(r"pab_[A-Za-z0-9_-]+"), "pab_" + _REDACTED),
    # Approver email links and password-reset links carry their token in the path.
    (re.compile(r"(/email-link/)[^/\s?#\"'<>]+"), r"\1" + _REDACTED),
    (re.compile(r"(/account/password-reset/)(?!sent/|done/)[^/\s?#\"'<>]+/[^/\s?#\"'<>]+"), r"\1" + _REDACTED),
    # Authorization headers.
    (re.compile(r"(?i)\b(bearer|basic)(\s+)[^\s\"',;]+"), r"\1\2" + _REDACTED),
    # Query parameters and cookies that carry credentials (OIDC's code and state, one-time codes, ...).
    (
        re.compile(
            r"(?i)\b(sessionid|csrftoken|csrfmiddlewaretoken|token|access_token|id_token|refresh_token|code|state"
            r"|otp|password|secret|sig|signature|api_key)=([^&\s\"';,]+)"
        ),
        r"\1=" + _REDACTED,
    ),
    # Incoming-webhook URLs are bearer secrets (Slack's /services/T../B../..., Teams' workflow sig).
    (re.compile(r"(/services/)[A-Za-z0-9/_-]+"), r"\1" + _REDACTED),
    (re.compile(r"(/webhookb2/)[^\s\"'<>]+"), r"\1" + _REDACTED),
]


def redact(text: str) -> str:
    for pattern, replacement in _SECRETS:
        text = pattern.sub(replacement, text)
    return text


class ContextFilter(logging.Filter):
    """Adds ``request_id``, ``task_id`` and ``task_name`` to every record (None outside of one)."""

    def filter(self, record: logging.LogRecord) -> bool:
        if not hasattr(record, "request_id"):
            record.request_id = request_id.get()
        running = current_task.get()
        if not hasattr(record, "task_id"):
            record.task_id, record.task_name = running if running else (None, None)
        return True


class TextFormatter(logging.Formatter):
    """``time level logger: message`` plus ``[req=… task=…]`` and the ids a lifecycle line carries."""

    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)s %(name)s: %(message)s")

    def format(self, record: logging.LogRecord) -> str:
        line = super().format(record)
        tags = [f"{name}={value}" for name, value in _tags(record)]
        if tags:
            head, sep, tail = line.partition("\n")
            line = f"{head} [{' '.join(tags)}]{sep}{tail}"
        return redact(line)


_TAGS = ("request_id", "task_name", "grant_id", "access_request_id", "audit_seq")


def _tags(record: logging.LogRecord):
    for name in _TAGS:
        value = getattr(record, name, None)
        if value is not None:
            yield name, value


class JsonFormatter(_JsonFormatter):
    """One JSON object per line: ``time`` (UTC, ISO 8601), ``level``, ``logger``, ``message``, the
    request id and task, and every ``extra`` field a log call passed (``grant_id``, ...)."""

    def __init__(self) -> None:
        super().__init__(
            ["message"],
            rename_fields={"levelname": "level", "name": "logger"},
            json_ensure_ascii=False,
        )

    def add_fields(self, log_data: dict, record: logging.LogRecord, message_dict: dict) -> None:
        log_data["time"] = _utc(record.created)
        log_data["level"] = record.levelname
        log_data["logger"] = record.name
        super().add_fields(log_data, record, message_dict)

    def process_log_record(self, log_data: dict) -> dict:
        return {key: value for key, value in log_data.items() if value is not None}

    def format(self, record: logging.LogRecord) -> str:
        return redact(super().format(record))


def _utc(created: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(created)) + f".{int(created % 1 * 1000):03d}Z"
