"""Strict input for API views: serializers that refuse unknown fields, and fields that refuse coercion."""

from __future__ import annotations

import contextlib
import copy
from collections.abc import Mapping
from datetime import UTC, datetime

from django import forms
from django.utils import timezone
from django.utils.dateparse import parse_datetime
from rest_framework import serializers

from broker.durations import MAX_DURATION

# Ids in paths: digits that fit a 64-bit column. Anything else is an unknown path (404), never a
# database overflow.
ID_PATTERN = r"[0-9]{1,18}"
MAX_DURATION_SECONDS = int(MAX_DURATION.total_seconds())


class StrictSerializer(serializers.Serializer):
    # Input serializers: an unknown field is an error (a typo must not be silently ignored).
    #
    # ``omitted`` gives the values of optional fields left out. They are applied after validation
    # rather than declared as DRF ``default``s, which the schema would show as ``default:``:
    # TypeScript generators then make the field required in the request type.
    #
    # (Comments, not a docstring: the schema takes a serializer's docstring, or its bases', as the
    # description of its component, and each input says what it is itself.)

    omitted: dict = {}

    def to_internal_value(self, data):
        if isinstance(data, Mapping):
            unknown = sorted(str(name) for name in set(data) - set(self.fields))
            if unknown:
                raise serializers.ValidationError({name: ["Unknown field."] for name in unknown})
        value = super().to_internal_value(data)
        return {**{name: copy.deepcopy(default) for name, default in self.omitted.items()}, **value}


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


class Flag(serializers.BooleanField):
    """A JSON true or false, and only that (DRF would take "yes", 1 or "on")."""

    def to_internal_value(self, data):
        if not isinstance(data, bool):
            self.fail("invalid", input=data)
        return data


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
