"""Strict query strings for lists (django-filter): an unknown or empty typed parameter is a 400."""

from __future__ import annotations

import django_filters
from django.core.exceptions import ValidationError
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import extend_schema_field

from broker.api.inputs import AwareDateTimeFormField, BooleanFormField


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


@extend_schema_field(OpenApiTypes.DATETIME)
class AwareDateTimeFilter(django_filters.Filter):
    field_class = AwareDateTimeFormField


@extend_schema_field(OpenApiTypes.BOOL)
class BooleanFilter(django_filters.Filter):
    field_class = BooleanFormField
