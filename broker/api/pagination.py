"""Pagination of every list: strict page and page_size, cursors for the audit trail.

Named in REST_FRAMEWORK's settings (DEFAULT_PAGINATION_CLASS): must not import DRF's views.
"""

from __future__ import annotations

from urllib.parse import parse_qs, urlsplit

from rest_framework import serializers
from rest_framework.pagination import CursorPagination, PageNumberPagination
from rest_framework.response import Response

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


def _link(what: str, example: str) -> dict:
    return {
        "type": "string",
        "nullable": True,
        "format": "uri",
        "description": f"The full URL of the {what}, or null: follow it as it is (it keeps your filters and page "
        "size); do not build it yourself.",
        "example": example,
    }


class Pagination(StrictPageSize, PageNumberPagination):
    """Every list: newest first, `page` and `page_size`. A page past the end is a 404."""

    def get_paginated_response_schema(self, schema):
        return {
            "type": "object",
            "required": ["count", "next", "previous", "results"],
            "properties": {
                "count": {"type": "integer", "description": "How many results there are in all.", "example": 2},
                "next": _link("next page", "https://access.example.com/api/v1/grants/?page=2"),
                "previous": _link("previous page", "https://access.example.com/api/v1/grants/?page=1"),
                "results": schema,
            },
        }

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

    def get_paginated_response(self, data):
        next_link = self.get_next_link()
        cursor = parse_qs(urlsplit(next_link).query).get(self.cursor_query_param, [None])[0] if next_link else None
        return Response(
            {"next": next_link, "next_cursor": cursor, "previous": self.get_previous_link(), "results": data}
        )

    def get_paginated_response_schema(self, schema):
        return {
            "type": "object",
            "required": ["next", "next_cursor", "previous", "results"],
            "properties": {
                "next": _link("next (older) page", "https://access.example.com/api/v1/audit/?cursor=cD0yMDA%3D"),
                "next_cursor": {
                    "type": "string",
                    "nullable": True,
                    "description": "The next page's cursor, or null on the last page: pass it as `cursor`, with the "
                    "same filters and page size.",
                    "example": "cD0yMDA=",
                },
                "previous": _link(
                    "previous (newer) page", "https://access.example.com/api/v1/audit/?cursor=cj0xJnA9MjAx"
                ),
                "results": schema,
            },
        }
