"""Pagination of every list: strict page and page_size, cursors for the audit trail.

Named in REST_FRAMEWORK's settings (DEFAULT_PAGINATION_CLASS): must not import DRF's views.
"""

from __future__ import annotations

from rest_framework import serializers
from rest_framework.pagination import CursorPagination, PageNumberPagination

PAGE_SIZE = 50
MAX_PAGE_SIZE = 200


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
