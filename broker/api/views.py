"""REST API v1 endpoints that span the apps: roles, the check endpoint, the audit trail, risk signals.

Part of the shell. Thin: reads through selectors (``broker.catalog``, ``grants.selectors``), changes
through services (``broker.risk``). Each app's own endpoints are in its ``api.py``.
"""

from __future__ import annotations

import dataclasses
import functools
import json
from datetime import UTC, datetime, timedelta

import django_filters
from django.contrib.auth import get_user_model
from django.db.models import DurationField
from django.http import HttpResponse
from django.utils import timezone
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import (
    OpenApiExample,
    OpenApiParameter,
    OpenApiResponse,
    extend_schema,
    extend_schema_field,
    extend_schema_serializer,
    inline_serializer,
)
from rest_framework import exceptions, generics, permissions, serializers
from rest_framework.response import Response
from rest_framework.views import APIView

from accounts.authentication import acts_as_admin, touch
from accounts.tokens import TOKEN_PREFIX
from accounts.tokens import digest as token_digest
from broker import risk
from broker.api.context import audit_context
from broker.api.filters import AwareDateTimeFilter, FilterSet
from broker.api.inputs import StrictSerializer, Text, validated
from broker.api.pagination import AuditPagination
from broker.audit import export as audit_export
from broker.catalog import eligible_roles, is_auditor
from broker.models import AuditEvent, Channel, Role
from grants.selectors import grant_check, token_check

User = get_user_model()


class Seconds(serializers.IntegerField):
    """A duration, read-only, as whole seconds."""

    def __init__(self, **kwargs):
        super().__init__(read_only=True, **kwargs)

    def to_representation(self, value: timedelta) -> int:
        return int(value.total_seconds())


@extend_schema_field({"type": "integer", "nullable": True})
class OptionalSeconds(Seconds):
    def __init__(self, **kwargs):
        super().__init__(allow_null=True, **kwargs)


# --- Roles ----------------------------------------------------------------------------------------------


@extend_schema_serializer(component_name="Role")
class RoleOut(serializers.ModelSerializer):
    # A role as requesters see it: its policy fields but the operator-only ones, durations in seconds.
    max_duration_seconds = Seconds(source="max_duration")
    default_duration_seconds = Seconds(source="default_duration")
    min_duration_seconds = OptionalSeconds(source="min_duration")
    max_total_duration_seconds = Seconds(
        source="lifetime_cap", help_text="Cap on a grant's whole life, extensions included."
    )

    class Meta:
        model = Role
        fields = [
            "slug",
            *(
                f"{name}_seconds" if isinstance(Role._meta.get_field(name), DurationField) else name
                for name in Role.POLICY_FIELDS
                if name not in Role.OPERATOR_ONLY_FIELDS
            ),
        ]
        read_only_fields = fields


class RoleFilter(FilterSet):
    class Meta:
        model = Role
        fields = []


@extend_schema(tags=["roles"], summary="Roles you are eligible for", responses={200: RoleOut(many=True)})
class RoleList(generics.ListAPIView):
    serializer_class = RoleOut
    filterset_class = RoleFilter
    required_scopes = {"GET": "read"}
    operation_ids = {"GET": "roles_list"}

    def get_queryset(self):
        return eligible_roles(self.request.user).order_by("slug")


# --- Check ----------------------------------------------------------------------------------------------


class CheckQuery(StrictSerializer):
    user = Text(required=False, max_length=150, help_text="Username; yourself when left out.")
    role = Text(max_length=64, help_text="Role slug.")
    resource = Text(
        required=False, max_length=63, help_text="For a role with resources: the resource to check the grant on."
    )


@extend_schema_serializer(
    component_name="CheckAnswer",
    examples=[
        OpenApiExample(
            "alice holds prod-db-admin",
            value={
                "allowed": True,
                "grant": 7,
                "expires_at": "2026-12-01T09:12:10Z",
                "user": "alice",
                "role": "prod-db-admin",
                "checked_at": "2026-12-01T09:02:13Z",
            },
        )
    ],
)
class CheckOut(serializers.Serializer):
    allowed = serializers.BooleanField(help_text="The user holds the role right now (the effective rule).")
    grant = serializers.IntegerField(allow_null=True, help_text="The effective grant's id, or null.")
    expires_at = serializers.DateTimeField(allow_null=True, help_text="When that grant ends, or null.")
    user = serializers.CharField()
    role = serializers.CharField()
    resource = serializers.CharField(required=False, help_text="The resource checked, when one was given.")
    checked_at = serializers.DateTimeField()


@extend_schema(
    tags=["check"],
    summary="Does a user hold a role right now?",
    description=(
        "The decision point for systems that pull. Anyone may check themselves; checking someone else needs the "
        "auditor role or an administrator (with the admin scope). Answers from the effective rule: a grant counts only "
        "while `status == active and starts_at <= now < expires_at`. Two queries with a token."
    ),
    parameters=[
        OpenApiParameter(
            "user",
            {"type": "string", "maxLength": 150},
            required=False,
            description="Username; yourself when left out.",
        ),
        OpenApiParameter("role", {"type": "string", "maxLength": 64}, required=True, description="Role slug."),
        OpenApiParameter(
            "resource",
            {"type": "string", "maxLength": 63},
            required=False,
            description=(
                "For a role with resources: the resource (a grant on another resource does not count). Left out, "
                "only a grant of the role as a whole counts, which a role with resources never gives."
            ),
        ),
    ],
    responses={200: CheckOut},
)
class CheckView(APIView):
    required_scopes = {"GET": "read"}
    operation_ids = {"GET": "check_access"}

    @classmethod
    def as_view(cls, **initkwargs):
        """DRF's view, behind a lean path that answers the common case (a valid bearer token with
        the read scope, well-formed `role` and `user`, a caller who may ask) with one query and no
        DRF machinery. Anything else, every error included, goes to DRF's view, so the contract,
        the error answers and the schema are DRF's (tests/api/test_check_api.py, the authorisation
        matrix, the OpenAPI drift test)."""
        view = super().as_view(**initkwargs)

        def check(request, *args, **kwargs):
            return lean_check(request) or view(request, *args, **kwargs)

        functools.update_wrapper(check, view)
        return check

    def get(self, request):
        query = CheckQuery(data=request.query_params.dict())
        query.is_valid(raise_exception=True)
        username = query.validated_data.get("user") or request.user.get_username()
        role = query.validated_data["role"]
        resource = query.validated_data.get("resource", "")
        now = timezone.now()
        answer = grant_check(viewer=request.user, username=username, role_slug=role, resource=resource, now=now)
        if username != request.user.get_username() and not (answer.viewer_is_auditor or acts_as_admin(request)):
            raise exceptions.PermissionDenied("checking someone else needs the auditor or administrator role")
        return Response(
            CheckOut(
                {
                    "allowed": answer.allowed,
                    "grant": answer.grant_id,
                    "expires_at": answer.expires_at,
                    "user": username,
                    "role": role,
                    **({"resource": resource} if resource else {}),
                    "checked_at": now,
                }
            ).data
        )


_CHECK_PARAMS = {"role": 64, "user": 150, "resource": 63}
_CHECK_HEADERS = {"Allow": "GET, HEAD, OPTIONS", "Vary": "Accept"}


def lean_check(request) -> HttpResponse | None:
    """The answer of CheckView for the common case, or None for DRF's view to answer."""
    if request.method != "GET":
        return None
    header = request.META.get("HTTP_AUTHORIZATION", "")
    keyword, _, text = header.partition(" ")
    if keyword.lower() != "bearer" or not text.isascii() or not text.startswith(TOKEN_PREFIX) or len(text) > 200:
        return None
    params = request.GET
    if not params.keys() <= _CHECK_PARAMS.keys() or "role" not in params:
        return None
    values = {}
    for name in params:
        given = params.getlist(name)
        # One value, as DRF's strict serializer would take it unchanged (no trimming, not blank).
        if len(given) != 1 or not given[0] or given[0] != given[0].strip() or len(given[0]) > _CHECK_PARAMS[name]:
            return None
        values[name] = given[0]
    now = timezone.now()
    found = token_check(
        digest=token_digest(text),
        username=values.get("user"),
        role_slug=values["role"],
        resource=values.get("resource", ""),
        now=now,
    )
    if found is None or "read" not in found.scopes:
        return None  # DRF answers: 401 (and counts the failure), or 403 insufficient_scope
    username = values.get("user", found.viewer_username)
    if username != found.viewer_username and not (
        found.check.viewer_is_auditor or (found.viewer_is_staff and "admin" in found.scopes)
    ):
        return None  # DRF answers 403
    touch(found.token_id, found.last_used_at, now)
    body = {
        "allowed": found.check.allowed,
        "grant": found.check.grant_id,
        "expires_at": _time(found.check.expires_at),
        "user": username,
        "role": values["role"],
        **({"resource": values["resource"]} if "resource" in values else {}),
        "checked_at": _time(now),
    }
    text = json.dumps(body, ensure_ascii=False, allow_nan=False, separators=(",", ":"))
    return HttpResponse(text.encode(), content_type="application/json", headers=_CHECK_HEADERS)


def _time(value):
    """As DRF's DateTimeField writes it: ISO 8601 in the current time zone, UTC as Z."""
    if value is None:
        return None
    text = timezone.localtime(value).isoformat()
    return text[:-6] + "Z" if text.endswith("+00:00") else text


# --- Audit ----------------------------------------------------------------------------------------------


class AuditFilter(FilterSet):
    extra_parameters = ("cursor", "page_size", "format")

    actor = django_filters.CharFilter(
        field_name="actor_name", help_text="Username of who acted (`system` for the broker)."
    )
    action = django_filters.CharFilter(help_text="E.g. request.created, grant.revoked.")
    role = django_filters.CharFilter(help_text="Role slug.")
    subject = django_filters.CharFilter(help_text="Username the event is about.")
    channel = django_filters.ChoiceFilter(choices=Channel.choices)
    target_type = django_filters.CharFilter(help_text="request, grant, token, user, ...")
    target_id = django_filters.CharFilter()
    since = AwareDateTimeFilter(field_name="at", lookup_expr="gte", help_text="Events at or after (with a time zone).")
    until = AwareDateTimeFilter(field_name="at", lookup_expr="lt", help_text="Events before (with a time zone).")

    class Meta:
        model = AuditEvent
        fields = ["actor", "action", "role", "subject", "channel", "target_type", "target_id", "since", "until"]


@extend_schema_serializer(component_name="AuditEvent")
class AuditEventOut(serializers.ModelSerializer):
    actor = serializers.CharField(source="actor_name")
    data = serializers.JSONField()

    class Meta:
        model = AuditEvent
        # The same fields, in the same order, as the streamed exports.
        fields = ["id", *audit_export.FIELDS]
        read_only_fields = fields


class IsAuditorOrAdmin(permissions.BasePermission):
    """Auditors (read scope) and administrators (admin scope) read the audit trail."""

    def has_permission(self, request, view) -> bool:
        if acts_as_admin(request) or is_auditor(request.user):
            return True
        raise exceptions.PermissionDenied("the audit trail is for auditors and administrators")


class AuditQuery(serializers.Serializer):
    format = serializers.ChoiceField(choices=["json", "jsonl", "csv"], required=False, default="json")


# The old way to export (`GET audit/?format=csv|jsonl`) works for this release, answered with these
# headers; `GET audit/export/` replaces it.
DEPRECATED_SINCE = datetime(2026, 12, 1, tzinfo=UTC)


@extend_schema(
    tags=["audit"],
    summary="The audit trail (auditors and administrators)",
    description=(
        "Newest first, cursor-paginated: follow `next` as it is, or pass `next_cursor` as `cursor`. To download "
        "every matching event as CSV or JSON Lines, use `GET audit/export/`. (The former `format=csv` and "
        "`format=jsonl` of this operation still stream an export in this release, with a `Deprecation` header and "
        "a `Link` to `audit/export/`; they are not part of this operation's schema and will be removed.)"
    ),
    responses={200: AuditEventOut(many=True)},
)
class AuditList(generics.ListAPIView):
    serializer_class = AuditEventOut
    filterset_class = AuditFilter
    pagination_class = AuditPagination
    required_scopes = {"GET": "read"}
    operation_ids = {"GET": "audit_list"}

    def get_permissions(self):
        return [*super().get_permissions(), IsAuditorOrAdmin()]

    def get_queryset(self):
        return AuditEvent.objects.all()

    def list(self, request, *args, **kwargs):
        query = AuditQuery(data={"format": request.query_params.get("format", "json")})
        query.is_valid(raise_exception=True)
        kind = query.validated_data["format"]
        if kind == "json":
            return super().list(request, *args, **kwargs)
        # Deprecated: an export through the list. A malformed page_size is still a 400, as on the pages.
        self.paginator.get_page_size(request)
        response = audit_export.export_response(
            self.filter_queryset(self.get_queryset()),
            kind,
            actor=request.user,
            params=request.query_params,
            **audit_context(request),
        )
        response["Deprecation"] = f"@{int(DEPRECATED_SINCE.timestamp())}"
        response["Link"] = '</api/v1/audit/export/>; rel="successor-version"'
        return response


class AuditExportFilter(AuditFilter):
    # The filters of the list, and the format; an export is not paged (page_size, cursor: 400).
    extra_parameters = ("format",)


# Media types of the export, by preference when Accept allows any (no Accept, */*).
EXPORT_TYPES = {"application/x-ndjson": "jsonl", "application/jsonl": "jsonl", "text/csv": "csv"}

EXPORT_FORMAT = OpenApiParameter(
    "format",
    OpenApiTypes.STR,
    enum=["csv", "jsonl"],
    required=False,
    description=(
        "`csv` or `jsonl` (JSON Lines). When left out, the `Accept` header decides (`text/csv`, "
        "`application/x-ndjson` or `application/jsonl`); JSON Lines when it allows either."
    ),
)


@extend_schema(
    tags=["audit"],
    summary="Export the audit trail as CSV or JSON Lines (auditors and administrators)",
    description=(
        "Every event that matches the filters, oldest first (in chain order), streamed: an export of any size "
        "takes the server constant memory. The export is itself recorded first (`audit.exported`, with its filters "
        "and format), and covers the chain up to that record: a fixed snapshot while events keep arriving. Each "
        "line or row is an `AuditExportRow`. Errors are JSON whatever the format asked for; an `Accept` that allows "
        "neither format is a 406."
    ),
    filters=True,
    parameters=[
        EXPORT_FORMAT,
        OpenApiParameter(
            "Content-Disposition",
            OpenApiTypes.STR,
            OpenApiParameter.HEADER,
            response=[200],
            required=True,
            description='`attachment; filename="audit-<UTC time>.csv"` (or `.jsonl`).',
        ),
    ],
    responses={
        (200, "text/csv"): OpenApiResponse(
            {"type": "string", "description": "A header line, then one `AuditExportRow` per line (RFC 4180)."},
            description="The export. `Content-Disposition` names a file `audit-<UTC time>.<format>`.",
            examples=[
                OpenApiExample(
                    "CSV",
                    value=(
                        "seq,at,actor,action,target_type,target_id,role,subject,channel,ip,data,prev_hash,hash\r\n"
                        "7,2026-12-01T09:00:00.000000+00:00,alice,request.created,request,3,prod-db-admin,alice,api,"
                        '127.0.0.1,"{""duration_seconds"": 600, ""justification"": ""INC-42: vacuum""}",9f2c...,4b1e...\r\n'
                    ),
                    media_type="text/csv",
                )
            ],
        ),
        (200, "application/x-ndjson"): OpenApiResponse(
            {"$ref": "#/components/schemas/AuditExportRow"},
            description="JSON Lines: one `AuditExportRow` object per line.",
        ),
    },
)
class AuditExport(generics.GenericAPIView):
    filterset_class = AuditExportFilter
    pagination_class = None
    required_scopes = {"GET": "read"}
    operation_ids = {"GET": "audit_export"}
    error_codes = {"GET": {"406": ["not_acceptable"]}}

    def get_permissions(self):
        return [*super().get_permissions(), IsAuditorOrAdmin()]

    def get_queryset(self):
        return AuditEvent.objects.all()

    def get(self, request):
        kind = self._format(request)
        return audit_export.export_response(
            self.filter_queryset(self.get_queryset()),
            kind,
            actor=request.user,
            params=request.query_params,
            **audit_context(request),
        )

    @staticmethod
    def _format(request) -> str:
        asked = request.query_params.get("format")
        if asked is not None:
            if asked not in audit_export.FORMATS:
                raise serializers.ValidationError({"format": ["csv or jsonl."]})
            return asked
        preferred = request._request.get_preferred_type(list(EXPORT_TYPES))
        if preferred is None:
            raise exceptions.NotAcceptable(
                "the export is CSV (text/csv) or JSON Lines (application/x-ndjson); ask with Accept or `format`"
            )
        return EXPORT_TYPES[preferred]


# --- Risk signals ---------------------------------------------------------------------------------------


@extend_schema_serializer(component_name="SignalInput")
class SignalIn(StrictSerializer):
    """A risk signal about a user."""

    user = Text(max_length=150, help_text="Username of the account at risk.")
    event = serializers.ChoiceField(choices=list(risk.EVENTS))
    reason = Text(max_length=risk.MAX_REASON)


SignalOut = inline_serializer(
    "SignalOutcome",
    fields={
        "user": serializers.CharField(),
        "event": serializers.ChoiceField(choices=list(risk.EVENTS)),
        "grants_revoked": serializers.ListField(child=serializers.IntegerField()),
        "requests_cancelled": serializers.ListField(child=serializers.IntegerField()),
        "tokens_revoked": serializers.IntegerField(),
        "account_deactivated": serializers.BooleanField(),
        "sessions_ended": serializers.BooleanField(),
        "password_revoked": serializers.BooleanField(),
    },
)


@extend_schema(
    tags=["signals"],
    summary="Report a risk signal about a user (admin scope)",
    description=(
        "Every event ends all of the user's sessions at once (their next request is signed out), revokes their "
        "API tokens and every live grant (end_reason `risk_signal`) and cancels their pending requests. "
        "`credential_compromised` also makes the password unusable (the person gets back in through the password "
        "reset, or an administrator sets a new password); `account_disabled` also deactivates the account."
    ),
    request=SignalIn,
    responses={200: SignalOut},
)
class SignalView(APIView):
    required_scopes = {"POST": "admin"}
    operation_ids = {"POST": "signals_report"}

    def post(self, request):
        if not acts_as_admin(request):
            raise exceptions.PermissionDenied("risk signals are for administrators")
        data = validated(SignalIn, request)
        user = User.objects.filter(username=data["user"]).first()
        if user is None:
            raise serializers.ValidationError({"user": ["No such user."]})
        outcome = risk.user_signal_apply(
            user=user, event=data["event"], reason=data["reason"], actor=request.user, **audit_context(request)
        )
        return Response(dataclasses.asdict(outcome))
