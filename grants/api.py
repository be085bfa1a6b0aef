"""REST API v1: grants (list, read, revoke or relinquish, the post-hoc review of break-glass) and
reconciliation (the latest drift report per target, a run on demand). Extending a grant is a
request: approvals/api.py.

Thin: every change goes through ``grants.services`` / ``approvals.services``, every read through
``grants.selectors`` (not visible is 404).
"""

from __future__ import annotations

import django_filters
from django.utils import timezone
from drf_spectacular.utils import OpenApiExample, extend_schema, extend_schema_field, extend_schema_serializer
from rest_framework import exceptions, generics, mixins, serializers, viewsets
from rest_framework.decorators import action
from rest_framework.response import Response
from rest_framework.views import APIView

from accounts.authentication import ANY_SCOPE, acts_as_admin, has_scope
from broker.api.context import audit_context
from broker.api.filters import BooleanFilter, FilterSet
from broker.api.inputs import ID_PATTERN, StrictSerializer, Text, validated
from broker.catalog import is_auditor, is_security
from broker.errors import Invalid, NotAllowed
from grants.models import Grant, TargetReport
from grants.reconcile import reconcile_run
from grants.selectors import break_glass_awaiting_review, grants_visible_to
from grants.services import MAX_REASON, grant_relinquish, grant_review, grant_revoke


@extend_schema_field(
    {
        "type": "string",
        "nullable": True,
        "enum": [*Grant.EndReason.values, None],
        "description": "Why it ended (docs/design.md, `end_reason`); null while live. New reasons may be added: "
        "show an unknown one as it is.",
    }
)
class EndReasonField(serializers.ChoiceField):
    """A plain nullable enum in the schema (not a oneOf with a NullEnum, which generators turn into a union)."""


GRANT_EXAMPLE = {
    "id": 7,
    "request": 3,
    "user": "alice",
    "role": "prod-db-admin",
    "resource": "",
    "status": "revoked",
    "starts_at": "2026-12-01T09:02:10Z",
    "expires_at": "2026-12-01T09:12:10Z",
    "ended_at": "2026-12-01T09:05:01Z",
    "end_reason": "relinquished",
    "effective": False,
    "created_at": "2026-12-01T09:02:10Z",
    "activated_at": "2026-12-01T09:02:11Z",
    "end_requested_at": "2026-12-01T09:05:01Z",
    "ended_by": "alice",
    "break_glass": False,
    "reviewed_at": None,
    "reviewed_by": None,
    "review_note": None,
}


@extend_schema_serializer(
    component_name="Grant",
    examples=[OpenApiExample("Given back early by alice", value=GRANT_EXAMPLE, response_only=True)],
)
class GrantOut(serializers.ModelSerializer):
    user = serializers.SlugRelatedField(slug_field="username", read_only=True)
    role = serializers.SlugRelatedField(slug_field="slug", read_only=True)
    ended_by = serializers.SlugRelatedField(
        slug_field="username", read_only=True, allow_null=True, help_text="Who ended it early; null for the system."
    )
    end_reason = EndReasonField(choices=Grant.EndReason.choices, read_only=True, allow_null=True)
    effective = serializers.SerializerMethodField(
        help_text="Gives access right now: status active and starts_at <= now < expires_at."
    )
    reviewed_by = serializers.SlugRelatedField(
        slug_field="username",
        read_only=True,
        allow_null=True,
        help_text="Break-glass only: who reviewed it afterwards; null while awaiting review (an extension "
        "reopens the review).",
    )
    review_note = serializers.CharField(
        read_only=True, allow_null=True, help_text="The reviewer's note; null while awaiting review."
    )

    class Meta:
        model = Grant
        fields = [
            "id",
            "request",
            "user",
            "role",
            "resource",
            "status",
            "starts_at",
            "expires_at",
            "ended_at",
            "end_reason",
            "effective",
            "created_at",
            "activated_at",
            "end_requested_at",
            "ended_by",
            "break_glass",
            "reviewed_at",
            "reviewed_by",
            "review_note",
        ]
        read_only_fields = fields
        extra_kwargs = {
            "reviewed_at": {"help_text": "Break-glass only: when it was reviewed; null while awaiting review."}
        }

    def to_representation(self, instance):
        data = super().to_representation(instance)
        data["end_reason"] = data["end_reason"] or None
        data["review_note"] = data["review_note"] if data["reviewed_at"] else None
        return data

    def get_effective(self, obj: Grant) -> bool:
        return obj.is_effective(self.context.get("now"))


@extend_schema_serializer(
    component_name="RevokeInput", examples=[OpenApiExample("Done", value={"reason": "done"}, request_only=True)]
)
class RevokeIn(StrictSerializer):
    """Ending a grant early."""

    reason = Text(
        required=False,
        allow_blank=True,
        max_length=MAX_REASON,
        help_text="Why; required when an administrator revokes someone else's grant. Empty when left out.",
    )

    omitted = {"reason": ""}


@extend_schema_serializer(
    component_name="ReviewInput",
    examples=[
        OpenApiExample(
            "Checked",
            value={"note": "INC-51: the database was down; the session log shows only the failover"},
            request_only=True,
        )
    ],
)
class ReviewIn(StrictSerializer):
    """The post-hoc review of a break-glass grant."""

    note = Text(
        max_length=MAX_REASON,
        help_text="What you checked: the incident, what was done with the access. Recorded in the audit trail.",
    )


class AwaitingReviewFilter(FilterSet):
    class Meta:
        model = Grant
        fields = []


def may_review(request) -> bool:
    """The post-hoc review of break-glass: administrators (admin scope) and the security group (approve scope)."""
    return acts_as_admin(request) or (is_security(request.user) and has_scope(request, "approve"))


class GrantFilter(FilterSet):
    active = BooleanFilter(
        method="filter_active", help_text="true: grants that give access right now (the effective rule)."
    )
    status = django_filters.ChoiceFilter(choices=Grant.Status.choices)
    user = django_filters.CharFilter(field_name="user__username", help_text="Username of the holder.")
    role = django_filters.CharFilter(field_name="role__slug", help_text="Role slug.")
    resource = django_filters.CharFilter(help_text="Resource of a role with resources.")

    class Meta:
        model = Grant
        fields = ["active", "status", "user", "role", "resource"]

    def filter_active(self, queryset, name, value):
        effective = Grant.objects.effective().values("pk")
        return queryset.filter(pk__in=effective) if value else queryset.exclude(pk__in=effective)


@extend_schema(tags=["grants"])
class GrantViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, viewsets.GenericViewSet):
    """Grants the caller may see: their own, those of requests they may approve, or all (auditors, admins)."""

    serializer_class = GrantOut
    filterset_class = GrantFilter
    lookup_value_regex = ID_PATTERN
    # revoke: the holder needs `request` (relinquish), an administrator `admin`; review: security
    # needs `approve`, an administrator `admin`. Both checked below.
    required_scopes = {
        "list": "read",
        "retrieve": "read",
        "revoke": ANY_SCOPE,
        "review": ANY_SCOPE,
        "awaiting_review": "read",
    }

    operation_ids = {
        "list": "grants_list",
        "retrieve": "grants_get",
        "revoke": "grants_revoke",
        "review": "grants_review",
        "awaiting_review": "grants_awaiting_review",
    }
    error_codes = {
        "revoke": {"403": ["not_holder", "insufficient_scope"], "409": ["grant_ended"]},
        "review": {"403": ["not_reviewer", "self_review"], "409": ["not_break_glass", "already_reviewed"]},
    }

    def get_filterset_class(self):
        return AwaitingReviewFilter if self.action == "awaiting_review" else GrantFilter

    def get_queryset(self):
        return (
            grants_visible_to(self.request.user, admin=acts_as_admin(self.request))
            .select_related("role", "user", "ended_by", "reviewed_by")
            .order_by("-starts_at", "-pk")
        )

    def get_serializer_context(self):
        return {**super().get_serializer_context(), "now": timezone.now()}

    @extend_schema(summary="List the grants you may see", responses={200: GrantOut(many=True)})
    def list(self, request, *args, **kwargs):
        return super().list(request, *args, **kwargs)

    @extend_schema(summary="One grant", responses={200: GrantOut})
    def retrieve(self, request, *args, **kwargs):
        return super().retrieve(request, *args, **kwargs)

    @extend_schema(
        summary="Break-glass grants awaiting their post-hoc review",
        description=(
            "Break-glass activations nobody has reviewed yet, and those whose review an extension reopened; newest "
            "first. For the security group, auditors and administrators (admin scope)."
        ),
        responses={200: GrantOut(many=True)},
    )
    @action(detail=False, methods=["get"], url_path="awaiting-review")
    def awaiting_review(self, request):
        user = request.user
        if not (acts_as_admin(request) or is_security(user) or is_auditor(user)):
            raise NotAllowed("the break-glass review is for security, auditors and administrators")
        queryset = (
            break_glass_awaiting_review(user, admin=acts_as_admin(request))
            .select_related("role", "user", "ended_by", "reviewed_by")
            .order_by("-starts_at", "-pk")
        )
        page = self.paginate_queryset(self.filter_queryset(queryset))
        return self.get_paginated_response(GrantOut(page, many=True, context=self.get_serializer_context()).data)

    @extend_schema(
        summary="Record the post-hoc review of a break-glass grant",
        request=ReviewIn,
        responses={200: GrantOut},
        description=(
            "Marks a break-glass activation as reviewed, with a note (audited as `grant.reviewed`). For the "
            "security group (approve scope) and administrators (admin scope); nobody reviews their own. 409 "
            "`already_reviewed` or `not_break_glass`. An extension of the grant reopens the review."
        ),
    )
    @action(detail=True, methods=["post"])
    def review(self, request, pk=None):
        grant = self.get_object()
        data = validated(ReviewIn, request)
        if not may_review(request):
            raise NotAllowed("break-glass grants are reviewed by security and administrators", code="not_reviewer")
        if not data["note"].strip():
            raise Invalid("say what you checked", fields={"note": ["Required to review."]})
        grant_review(grant_id=grant.pk, reviewer=request.user, note=data["note"], **audit_context(request))
        return Response(GrantOut(self.get_queryset().get(pk=grant.pk), context=self.get_serializer_context()).data)

    @extend_schema(
        summary="End a grant early: the holder relinquishes, an administrator revokes",
        request=RevokeIn,
        responses={200: GrantOut},
        description=(
            "The grant turns `revoked` (or `revoking` while the target confirms the removal); it is never effective "
            "again either way. 409 when it has already ended."
        ),
    )
    @action(detail=True, methods=["post"])
    def revoke(self, request, pk=None):
        grant = self.get_object()
        data = validated(RevokeIn, request)
        if grant.user_id == request.user.pk:
            if not has_scope(request, "request"):
                raise exceptions.PermissionDenied("the token lacks the `request` scope", code="insufficient_scope")
            grant_relinquish(grant_id=grant.pk, user=request.user, comment=data["reason"], **audit_context(request))
        elif acts_as_admin(request):
            if not data["reason"].strip():
                raise Invalid(
                    "say why you revoke the grant", fields={"reason": ["Required to revoke another's grant."]}
                )
            grant_revoke(grant_id=grant.pk, actor=request.user, reason=data["reason"], **audit_context(request))
        else:
            raise NotAllowed("only the holder or an administrator may end a grant", code="not_holder")
        return Response(GrantOut(self.get_queryset().get(pk=grant.pk), context=self.get_serializer_context()).data)


# --- Reconciliation ---------------------------------------------------------------------------------


@extend_schema_serializer(component_name="TargetReport")
class TargetReportOut(serializers.ModelSerializer):
    roles = serializers.ListField(child=serializers.CharField(), help_text="Slugs of the roles managing this target.")
    holders = serializers.IntegerField(
        allow_null=True, help_text="How many people held the access in the target; null when it could not be read."
    )
    removed = serializers.ListField(
        child=serializers.CharField(), help_text="Usernames removed: they held the access without an effective grant."
    )
    detected = serializers.ListField(
        child=serializers.CharField(),
        help_text="Usernames holding the access without an effective grant, reported only (target not authoritative).",
    )
    restored = serializers.ListField(
        child=serializers.CharField(), help_text="Usernames with an effective grant whose missing access was restored."
    )
    errors = serializers.ListField(child=serializers.CharField(), help_text="What failed; retried at the next run.")

    class Meta:
        model = TargetReport
        fields = [
            "target",
            "connector",
            "roles",
            "authoritative",
            "outcome",
            "checked_at",
            "holders",
            "removed",
            "detected",
            "restored",
            "errors",
        ]
        read_only_fields = fields
        extra_kwargs = {
            "target": {"help_text": "The target in a few words, e.g. `Django group 'prod-db-admins'`."},
            "outcome": {
                "help_text": "in_sync; drift (found, and fixed or reported); error (see errors); not_checked (the "
                "connector cannot list who holds the access)."
            },
            "checked_at": {"help_text": "When this report was made."},
        }


class TargetReportFilter(FilterSet):
    outcome = django_filters.ChoiceFilter(choices=TargetReport.Outcome.choices)

    class Meta:
        model = TargetReport
        fields = ["outcome"]


def _reads_reconciliation(request) -> None:
    if not (acts_as_admin(request) or is_auditor(request.user)):
        raise NotAllowed("reconciliation reports are for auditors and administrators")


@extend_schema(
    tags=["reconciliation"],
    summary="The latest drift report of each target",
    description=(
        "One report per target (a group, a database role, ...), from the latest reconciliation: the periodic one "
        "(every RECONCILE_INTERVAL) or one run on demand. Auditors and administrators (admin scope)."
    ),
    responses={200: TargetReportOut(many=True)},
)
class ReconciliationList(generics.ListAPIView):
    serializer_class = TargetReportOut
    filterset_class = TargetReportFilter
    required_scopes = {"GET": "read"}
    operation_ids = {"GET": "reconciliation_list"}

    def get_queryset(self):
        return TargetReport.objects.order_by("target", "pk")

    def list(self, request, *args, **kwargs):
        _reads_reconciliation(request)
        return super().list(request, *args, **kwargs)


@extend_schema_serializer(component_name="ReconcileInput")
class ReconcileIn(StrictSerializer):
    """A reconciliation run: nothing to send (an empty object)."""


@extend_schema_serializer(component_name="ReconcileOutcome")
class ReconcileOut(serializers.Serializer):
    targets = serializers.IntegerField(help_text="Targets whose holders could be read and compared.")
    removed = serializers.ListField(child=serializers.CharField(), help_text="`role/username` removed.")
    detected = serializers.ListField(child=serializers.CharField(), help_text="`role/username` reported as drift.")
    restored = serializers.ListField(child=serializers.CharField(), help_text="`role/username` restored.")
    errors = serializers.ListField(child=serializers.CharField())
    reports = TargetReportOut(many=True, help_text="The report of every target, as `GET reconciliation/` now answers.")


@extend_schema(
    tags=["reconciliation"],
    summary="Reconcile every target now (admin scope)",
    description=(
        "Compares every target with the effective grants now, as the periodic run does: removes members without "
        "an effective grant from authoritative targets, reports them elsewhere (`drift.detected`), restores missing "
        "access of effective grants; audited as `reconcile.run`. Answers when every target has been checked (each "
        "call to a target is bounded by its connector's `timeout`)."
    ),
    request=ReconcileIn,
    responses={200: ReconcileOut},
)
class ReconciliationRun(APIView):
    required_scopes = {"POST": "admin"}
    operation_ids = {"POST": "reconciliation_run"}

    def post(self, request):
        if not acts_as_admin(request):
            raise NotAllowed("running a reconciliation is for administrators")
        validated(ReconcileIn, request)
        report = reconcile_run(actor=request.user, **audit_context(request))
        reports = TargetReport.objects.order_by("target", "pk")
        return Response(
            ReconcileOut(
                {
                    "targets": report.targets,
                    "removed": report.removed,
                    "detected": report.detected,
                    "restored": report.restored,
                    "errors": report.errors,
                    "reports": reports,
                }
            ).data
        )
