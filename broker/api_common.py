"""Plumbing shared by every API view: one error format, strict input, pagination, second factor.

Errors are always JSON ``{"error": code, "detail": message}`` (plus ``fields`` for 400), whether
they come from a service (``broker.errors``), from DRF (parsing, authentication, validation) or
from Django (an unknown path under /api/, a server error). ``code`` is stable for clients.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator, Mapping
from datetime import UTC, datetime

import django_filters
from django import forms
from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import transaction
from django.http import Http404
from django.utils import timezone
from django.utils.dateparse import parse_datetime
from django_otp import user_has_device
from rest_framework import exceptions, negotiation, parsers, serializers
from rest_framework.pagination import CursorPagination, PageNumberPagination
from rest_framework.response import Response
from rest_framework.utils import json

from broker import audit, mfa, ratelimit, stepup
from broker.api_auth import token_of
from broker.durations import MAX_DURATION
from broker.errors import BrokerError, NotAllowed, Throttled
from broker.http import client_ip
from broker.models import Channel

log = logging.getLogger(__name__)

PAGE_SIZE = 50
MAX_PAGE_SIZE = 200
# Ids in paths: digits that fit a 64-bit column. Anything else is an unknown path (404), never a
# database overflow.
ID_PATTERN = r"[0-9]{1,18}"
MAX_DURATION_SECONDS = int(MAX_DURATION.total_seconds())

# --- Errors -----------------------------------------------------------------------------------------

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


# --- Input ------------------------------------------------------------------------------------------

# No API body is anywhere near this; a larger one is refused before it is parsed.
MAX_BODY_BYTES = 64 * 1024


class PayloadTooLarge(exceptions.APIException):
    status_code = 413
    default_detail = f"the request body is larger than {MAX_BODY_BYTES} bytes"
    default_code = "payload_too_large"


class JSONParser(parsers.JSONParser):
    """UTF-8 JSON (RFC 8259), bounded in size. Whatever cannot be read is a 400, never a 500:
    bad UTF-8, an unknown charset parameter, NaN, or nesting deep enough to exhaust the stack."""

    def parse(self, stream, media_type=None, parser_context=None):
        raw = stream.read(MAX_BODY_BYTES + 1)
        if len(raw) > MAX_BODY_BYTES:
            raise PayloadTooLarge()
        try:
            return json.loads(raw.decode("utf-8"), parse_constant=json.strict_constant)
        except UnicodeDecodeError:
            raise exceptions.ParseError("the body is not UTF-8") from None
        except (ValueError, RecursionError) as exc:
            raise exceptions.ParseError(f"the body is not valid JSON: {str(exc)[:200]}") from None


class JSONOnly(negotiation.DefaultContentNegotiation):
    """Answers are JSON whatever Accept says (no 406); the audit export picks its format by `format`."""

    def select_renderer(self, request, renderers, format_suffix=None):
        return renderers[0], renderers[0].media_type


class StrictSerializer(serializers.Serializer):
    """Input serializers: an unknown field is an error (a typo must not be silently ignored)."""

    def to_internal_value(self, data):
        if isinstance(data, Mapping):
            unknown = sorted(str(name) for name in set(data) - set(self.fields))
            if unknown:
                raise serializers.ValidationError({name: ["Unknown field."] for name in unknown})
        return super().to_internal_value(data)


def validated(serializer_class: type[serializers.Serializer], request) -> dict:
    serializer = serializer_class(data=request.data)
    serializer.is_valid(raise_exception=True)
    return serializer.validated_data


class Text(serializers.CharField):
    """A string, and only a string (DRF would take 42 for "42")."""

    def to_internal_value(self, data):
        if not isinstance(data, str):
            self.fail("invalid")
        # The schema's maxLength is about what was sent; DRF would check it after trimming spaces.
        if self.max_length is not None and len(data) > self.max_length:
            self.fail("max_length", max_length=self.max_length)
        return super().to_internal_value(data)


class Slug(Text, serializers.SlugField):
    pass


class WholeNumber(serializers.IntegerField):
    """A JSON integer, and only that (DRF would take "60", 60.0 or true)."""

    def to_internal_value(self, data):
        if isinstance(data, bool) or not isinstance(data, int):
            self.fail("invalid")
        return super().to_internal_value(data)


class BooleanFormField(forms.Field):
    """true/false in a query string; anything else is a 400 (django-filter would ignore it)."""

    def to_python(self, value):
        if value in self.empty_values:
            return None
        lowered = str(value).strip().lower()
        if lowered in ("true", "1"):
            return True
        if lowered in ("false", "0"):
            return False
        raise forms.ValidationError("Use true or false.")


def _aware_utc(value: datetime) -> datetime:
    """UTC, or an error if the time has no zone or cannot be represented in UTC."""
    if timezone.is_naive(value):
        raise ValueError("Give a time zone, e.g. 2026-01-01T09:00:00Z.")
    try:
        return value.astimezone(UTC)
    except OverflowError:
        raise ValueError("The time is out of range.") from None


class AwareDateTimeField(serializers.DateTimeField):
    """ISO 8601 with a time zone; a naive time is refused instead of being guessed as UTC."""

    def enforce_timezone(self, value):
        try:
            return _aware_utc(value)
        except ValueError as exc:
            raise serializers.ValidationError(str(exc)) from None


class AwareDateTimeFormField(forms.Field):
    """The same rule for query parameters (django-filter)."""

    def to_python(self, value):
        if value in self.empty_values:
            return None
        parsed = None
        with contextlib.suppress(ValueError):
            parsed = parse_datetime(str(value).strip())
        if parsed is None:
            raise forms.ValidationError("Give an ISO 8601 time with a time zone, e.g. 2026-01-01T09:00:00Z.")
        try:
            return _aware_utc(parsed)
        except ValueError as exc:
            raise forms.ValidationError(str(exc)) from None


def otp_field() -> serializers.CharField:
    return Text(
        required=False,
        allow_blank=True,
        max_length=32,
        write_only=True,
        help_text="Your current one-time code (TOTP or a backup code), when the role requires MFA.",
    )


class FilterSet(django_filters.FilterSet):
    """Strict query strings for lists.

    An unknown parameter is a 400, not silently ignored: `?activ=true` must not list everything.
    Typed filters (choices, booleans, times) given with an empty value are a 400, as their types
    in the schema say; an empty text filter still means "no filter".
    """

    # Parameters of the list that are not filters (pagination); views may add their own.
    extra_parameters: tuple[str, ...] = ("page", "page_size")

    def is_valid(self) -> bool:
        valid = super().is_valid()
        known = set(self.filters) | set(self.extra_parameters)
        for name in sorted(set(self.data) - known):
            # As a parameter, never in the message itself: a name may contain "%".
            self.form.add_error(
                None, ValidationError("Unknown query parameter `%(name)s`.", code="unknown", params={"name": name})
            )
            valid = False
        for name, declared in self.filters.items():
            if isinstance(declared, django_filters.CharFilter) or name not in self.data:
                continue
            values = self.data.getlist(name) if hasattr(self.data, "getlist") else [self.data[name]]
            if any(value == "" for value in values):
                self.form.add_error(name, "Give a value or leave the parameter out.")
                valid = False
        return valid


# --- Pagination --------------------------------------------------------------------------------------


class StrictPageSize:
    """`page_size` between 1 and MAX_PAGE_SIZE, or a 400 (DRF would silently use the default)."""

    page_size = PAGE_SIZE
    page_size_query_param = "page_size"
    max_page_size = MAX_PAGE_SIZE

    def get_page_size(self, request):
        raw = request.query_params.get(self.page_size_query_param)
        if raw is None:
            return self.page_size
        if not raw.isascii() or not raw.isdigit() or not 1 <= int(raw) <= self.max_page_size:
            raise serializers.ValidationError(
                {self.page_size_query_param: [f"A whole number from 1 to {self.max_page_size}."]}
            )
        return int(raw)

    def get_schema_operation_parameters(self, view):
        parameters = super().get_schema_operation_parameters(view)
        for parameter in parameters:
            if parameter["name"] == self.page_size_query_param:
                parameter["schema"] = {"type": "integer", "minimum": 1, "maximum": self.max_page_size}
                parameter["description"] = (
                    f"Results per page: {self.page_size} by default, at most {self.max_page_size}."
                )
            elif parameter["name"] == getattr(self, "page_query_param", None):
                parameter["schema"] = {"type": "integer", "minimum": 1}
        return parameters


class Pagination(StrictPageSize, PageNumberPagination):
    """Every list: newest first, `page` and `page_size`. A page past the end is a 404."""

    def get_page_number(self, request, paginator):
        raw = request.query_params.get(self.page_query_param)
        if raw is None:
            return 1
        if not raw.isascii() or not raw.isdigit() or int(raw) < 1:
            raise serializers.ValidationError({self.page_query_param: ["A whole number from 1."]})
        return raw


class AuditPagination(StrictPageSize, CursorPagination):
    """The audit trail grows without bound: cursors cost the same on page 1 and page 10,000."""

    ordering = "-seq"


# --- Second factor -----------------------------------------------------------------------------------


def _otp_failed(request, reason: str) -> None:
    with transaction.atomic():
        audit.record(
            "auth.otp_failed",
            actor=request.user,
            target=("user", request.user.pk),
            via=Channel.API,
            ip=client_ip(request),
            subject=request.user.get_username(),
            data={"reason": reason, "path": request.path[:200]},
        )


def second_factor_at(request, otp: str | None) -> datetime | None:
    """When the caller last proved a second factor, for the services' ``mfa_at``.

    A code in the request is verified now (django-otp: confirmed devices, no replay, throttled);
    wrong codes are also counted per user in the cache (429 past API_OTP_FAILURE_LIMIT) and
    audited. Without a code, a session brings the time of its last step-up; a token brings none.
    """
    user = request.user
    if otp:
        window = settings.API_RATE_WINDOW.total_seconds()
        ident = str(user.pk)
        wait = ratelimit.retry_after("otp", ident, limit=settings.API_OTP_FAILURE_LIMIT, window=window)
        if wait is not None:
            raise Throttled(f"too many wrong one-time codes; try again in {wait} s", retry_after=wait)
        now = timezone.now()
        try:
            mfa.verify_code(user=user, code=otp, now=now)
        except NotAllowed as exc:
            if exc.code == "mfa_invalid":
                _otp_failed(request, exc.code)
                wait = ratelimit.fail("otp", ident, limit=settings.API_OTP_FAILURE_LIMIT, window=window)
                if wait is not None:
                    raise Throttled(f"too many wrong one-time codes; try again in {wait} s", retry_after=wait) from None
            raise
        return now
    if token_of(request) is None:
        return stepup.verified_at(request)
    return None


@contextlib.contextmanager
def enrol_hint(user) -> Iterator[None]:
    """Turn a service's ``mfa_required`` into ``mfa_not_enrolled`` with the enrolment hint, for
    callers who have no device to take a code from."""
    try:
        yield
    except NotAllowed as exc:
        if exc.code == "mfa_required" and not user_has_device(user):
            raise NotAllowed(
                f"{exc.detail}; you have no MFA device: {mfa.ENROL_HINT}", code="mfa_not_enrolled"
            ) from None
        raise


def audit_context(request) -> dict:
    """The channel and client address every service call from the API records."""
    return {"via": Channel.API, "ip": client_ip(request)}
