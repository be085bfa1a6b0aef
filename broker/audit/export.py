"""Streamed exports of the audit trail (CSV and JSON Lines), shared by the portal and the API.

Events are read with ``iterator()`` in chain order and written one line at a time, so an export
of any size takes constant memory. JSON Lines keeps every field exactly (hashes and key ids
included, so an export can be verified offline with the key: ``manage.py audit_verify --export``); CSV cells that a spreadsheet would run as a formula are defused.

Every export is itself recorded (``audit.exported``: who, from which channel and address, which
filter, which format), as auditors of the auditors expect; the export covers the chain up to that
record, a fixed snapshot even while events keep arriving.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Iterable, Iterator, Mapping

from django.contrib.auth.models import AbstractBaseUser
from django.core.serializers.json import DjangoJSONEncoder
from django.db import transaction
from django.db.models import QuerySet
from django.http import StreamingHttpResponse
from django.utils import timezone

from broker import audit
from broker.audit.walk import RECORD_FIELDS
from broker.models import AuditEvent, Channel

FORMATS = ("csv", "jsonl")
_NOT_FILTERS = {"format", "page", "page_size"}
FIELDS = list(RECORD_FIELDS)
# What one line of JSON Lines (or one row of CSV) holds: the OpenAPI schema's AuditExportRow.
ROW_SCHEMA = {
    "type": "object",
    "description": (
        "One event of the export: a line of JSON Lines, or a row of the CSV (whose header line names these "
        "columns, in this order; `data` as JSON text; a cell that starts like a spreadsheet formula, with `=`, "
        "`+`, `-`, `@`, a tab or a carriage return, gets a leading `'`). JSON Lines keeps every value exactly, "
        "hashes included, so an export can be checked offline."
    ),
    "properties": {
        "seq": {"type": "integer", "description": "Position in the chain (1 = first event)."},
        "at": {"type": "string", "format": "date-time", "description": "When, UTC, with microseconds."},
        "actor": {"type": "string", "description": "Username of who acted; `system` for the broker itself."},
        "action": {"type": "string", "example": "request.created"},
        "target_type": {"type": "string", "example": "request"},
        "target_id": {"type": "string"},
        "role": {"type": "string", "description": "Role slug, or empty."},
        "subject": {"type": "string", "description": "Username the event is about, or empty."},
        "channel": {"type": "string", "enum": list(Channel.values)},
        "ip": {"type": "string", "description": "Client address, or empty."},
        "data": {"type": "object", "additionalProperties": True, "description": "The event's own facts."},
        "prev_hash": {"type": "string", "description": "Hash of the event before (the chain)."},
        "hash": {"type": "string", "description": "This event's link in the chain, keyed by `key_id`."},
        "key_id": {
            "type": "string",
            "description": "Which audit key made `hash` (HMAC-SHA256); empty for events from before the trail was "
            "keyed (plain SHA-256).",
        },
    },
    "required": list(FIELDS),
}


# A cell a spreadsheet would run as a formula (OWASP "CSV injection"): usernames may start with + - @.
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def row(event: AuditEvent) -> dict:
    return {
        "seq": event.seq,
        "at": event.at.isoformat(timespec="microseconds"),
        "actor": event.actor_name,
        "action": event.action,
        "target_type": event.target_type,
        "target_id": event.target_id,
        "role": event.role,
        "subject": event.subject,
        "channel": event.channel,
        "ip": event.ip,
        "data": event.data,
        "prev_hash": event.prev_hash,
        "hash": event.hash,
        "key_id": event.key_id,
    }


def jsonl_lines(events: Iterable[AuditEvent]) -> Iterator[str]:
    for event in events:
        yield json.dumps(row(event), sort_keys=True, cls=DjangoJSONEncoder, ensure_ascii=False) + "\n"


class _Echo:
    def write(self, value: str) -> str:
        return value


def _csv_cell(value) -> str:
    text = json.dumps(value, sort_keys=True, cls=DjangoJSONEncoder) if isinstance(value, dict | list) else str(value)
    return "'" + text if text.startswith(_FORMULA_START) else text


def csv_lines(events: Iterable[AuditEvent]) -> Iterator[str]:
    writer = csv.writer(_Echo())
    yield writer.writerow(FIELDS)
    for event in events:
        values = row(event)
        yield writer.writerow([_csv_cell(values[name]) for name in FIELDS])


def export_response(
    events: QuerySet[AuditEvent],
    fmt: str,
    *,
    actor: AbstractBaseUser,
    via: str,
    ip: str | None,
    params: Mapping[str, str],
) -> StreamingHttpResponse:
    """The events as a download, oldest first; ``fmt`` is csv or jsonl. Records the export first.

    ``params`` are the request's query parameters: the filter of the export is what the trail keeps
    of them (validated by the caller's filter already; bounded here anyway).
    """
    kept = {
        str(name)[:50]: str(value)[:200]
        for name, value in list(params.items())[:20]
        if value and name not in _NOT_FILTERS
    }
    with transaction.atomic():
        record = audit.record(
            "audit.exported", actor=actor, target=None, via=via, ip=ip, data={"format": fmt, "filters": kept}
        )
    lines = events.filter(seq__lt=record.seq).order_by("seq").iterator(chunk_size=2000)
    stamp = timezone.now().strftime("%Y%m%dT%H%M%SZ")
    if fmt == "jsonl":
        response = StreamingHttpResponse(jsonl_lines(lines), content_type="application/x-ndjson; charset=utf-8")
    else:
        response = StreamingHttpResponse(csv_lines(lines), content_type="text/csv; charset=utf-8")
    response["Content-Disposition"] = f'attachment; filename="audit-{stamp}.{fmt}"'
    response["Cache-Control"] = "no-store"
    return response
