"""One error format for the whole API: ``{"error": code, "detail": message}``, plus ``fields`` for 400.

Errors come from the services (``broker.errors``), from DRF (parsing, authentication, validation) or
from Django (an unknown path under /api/, a server error: ``broker.error_views``); ``code`` is stable
for clients.
"""

from __future__ import annotations

from collections.abc import Mapping

from django.http import Http404
from rest_framework import exceptions, serializers
from rest_framework.response import Response

from broker.errors import BrokerError, Throttled

_DRF_CODES = {"permission_denied": "forbidden", "not_found": "not_found"}


def _flatten(detail, prefix: str = "") -> dict[str, list[str]]:
    """DRF's nested error details as ``{"field" or "field.0.sub": ["message", ...]}``."""
    out: dict[str, list[str]] = {}
    if isinstance(detail, Mapping):
        for key, value in detail.items():
            key = "non_field_errors" if key == "__all__" else key  # Django forms' name for them
            name = str(key) if not prefix else f"{prefix}.{key}"
            for field, messages in _flatten(value, name).items():
                out.setdefault(field, []).extend(messages)
    elif isinstance(detail, list | tuple):
        if all(not isinstance(item, Mapping | list | tuple) for item in detail):
            out.setdefault(prefix or "non_field_errors", []).extend(str(item) for item in detail)
        else:
            for index, item in enumerate(detail):
                for field, messages in _flatten(item, f"{prefix}.{index}" if prefix else str(index)).items():
                    out.setdefault(field, []).extend(messages)
    else:
        out.setdefault(prefix or "non_field_errors", []).append(str(detail))
    return out


def _summary(fields: dict[str, list[str]]) -> str:
    parts = [f"{name}: {' '.join(messages)}" for name, messages in list(fields.items())[:5]]
    return "invalid input: " + "; ".join(parts) if parts else "invalid input"


def exception_handler(exc, context):
    if isinstance(exc, BrokerError):
        body = {"error": exc.code, "detail": exc.detail}
        if exc.fields:
            body["fields"] = exc.fields
        if exc.conditions:
            body["conditions"] = exc.conditions
        headers = {"Retry-After": str(exc.retry_after)} if isinstance(exc, Throttled) else None
        return Response(body, status=exc.status, headers=headers)

    # Imported here, not at the top: rest_framework.views reads DEFAULT_PARSER_CLASSES, which names
    # this module, while its class bodies run, so a top-level import is circular whenever this module
    # happens to be imported before DRF's views.
    from rest_framework.views import exception_handler as drf_exception_handler

    response = drf_exception_handler(exc, context)
    if response is None:
        return None  # a bug: Django's handler500 (broker.error_views.server_error) answers with JSON
    if isinstance(exc, exceptions.ValidationError):
        fields = _flatten(exc.detail)
        response.data = {"error": "invalid", "detail": _summary(fields), "fields": fields}
    else:
        detail = getattr(exc, "detail", None)
        code = getattr(detail, "code", None) or getattr(exc, "default_code", "error")
        if isinstance(exc, Http404):
            code, detail = "not_found", "not found (or not visible to you)"
        response.data = {"error": _DRF_CODES.get(code, code), "detail": str(detail)}
    return response


class ErrorSerializer(serializers.Serializer):
    """Every error answer of the API."""

    error = serializers.CharField(help_text="Stable machine-readable code, e.g. `self_approval`, `mfa_required`.")
    detail = serializers.CharField(help_text="What went wrong, for people.")
    fields = serializers.DictField(
        child=serializers.ListField(child=serializers.CharField()),
        required=False,
        help_text="400 only: messages by input field.",
    )
    conditions = serializers.ListField(
        child=serializers.DictField(child=serializers.CharField()),
        required=False,
        help_text=(
            "`condition_failed` only: each role condition that refused, as `condition` (network, window, posture, "
            "risk) and `reason`."
        ),
    )
