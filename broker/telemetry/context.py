"""The request id and the task of the current line of work, carried from a request into its tasks.

A request takes its id from ``X-Request-ID`` (when it is a sane token) or gets a new one, and echoes
it in the response (``broker.telemetry.middleware``). Every Celery task queued while it runs carries
the id in a message header (``before_task_publish``), and the worker binds it again while the task
runs (``task_prerun``), so one id follows a request into the activation, the removal and the
messages it caused. The log filter (``broker.telemetry.logs``) reads these variables.
"""

from __future__ import annotations

import re
import uuid
from contextvars import ContextVar
from datetime import UTC, datetime

from celery.signals import before_task_publish, task_postrun, task_prerun

HEADER = "X-Request-ID"
# What a client may send as its request id: a token, never text that could forge a log line.
_VALID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:-]{0,127}")

request_id: ContextVar[str | None] = ContextVar("request_id", default=None)
current_task: ContextVar[tuple[str, str] | None] = ContextVar("current_task", default=None)  # (id, name)


def accept_or_new(incoming: str | None) -> str:
    """The client's id when it is a sane token, else a new random one."""
    if incoming and _VALID.fullmatch(incoming):
        return incoming
    return uuid.uuid4().hex


@before_task_publish.connect(dispatch_uid="broker.telemetry.request_id")
def _stamp_message(headers: dict | None = None, **kwargs) -> None:
    if headers is None:
        return
    rid = request_id.get()
    if rid and "request_id" not in headers:
        headers["request_id"] = rid
    # When it was queued: the worker's heartbeat reports how long the queue made it wait.
    headers.setdefault("published_at", datetime.now(UTC).isoformat())


def message_header(request, name: str):
    """A header of the running task's message: an attribute in a worker, under ``headers`` when applied eagerly."""
    value = getattr(request, name, None)
    if value is None:
        value = (getattr(request, "headers", None) or {}).get(name)
    return value


_tokens: dict[str, tuple] = {}


@task_prerun.connect(dispatch_uid="broker.telemetry.task_prerun")
def _bind_task(task_id: str | None = None, task=None, **kwargs) -> None:
    current = task.request if task is not None else None
    if current is not None and current.is_eager:
        rid = request_id.get()  # an eager task runs inside the request itself
    else:
        rid = message_header(current, "request_id")
        rid = rid if isinstance(rid, str) and _VALID.fullmatch(rid) else None
    _tokens[task_id or ""] = (
        request_id.set(rid),
        current_task.set((task_id or "", getattr(task, "name", "") or "")),
    )


@task_postrun.connect(dispatch_uid="broker.telemetry.task_postrun")
def _unbind_task(task_id: str | None = None, **kwargs) -> None:
    tokens = _tokens.pop(task_id or "", None)
    if tokens is None:
        return
    rid_token, task_token = tokens
    try:
        current_task.reset(task_token)
        request_id.reset(rid_token)
    except ValueError:  # reset from another context (a thread pool reusing threads): just clear
        current_task.set(None)
        request_id.set(None)
