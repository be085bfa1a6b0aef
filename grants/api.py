"""REST API v1: grants (list, read, revoke or relinquish). Extending a grant is a request: approvals/api.py.

Thin: every change goes through ``grants.services`` / ``approvals.services``, every read through
``grants.selectors`` (not visible is 404).
"""

from __future__ import annotations

import django_filters
from django.utils import timezone
from drf_spectacular.utils import extend_schema, extend_schema_serializer
from rest_framework import exceptions, mixins, serializers, viewsets
from rest_framework.decorators import action
from rest_framework.response import Response

from accounts.authentication import ANY_SCOPE, acts_as_admin, has_scope
from broker.api.context import audit_context
from broker.api.filters import BooleanFilter, FilterSet
from broker.api.inputs import ID_PATTERN, StrictSerializer, Text, validated
from broker.errors import Invalid, NotAllowed
from grants.models import Grant
from grants.selectors import grants_visible_to
from grants.services import MAX_REASON, grant_relinquish, grant_revoke


@extend_schema_serializer(component_name="Grant")
class GrantOut(serializers.ModelSerializer):
    user = serializers.SlugRelatedField(slug_field="username", read_only=True)
    role = serializers.SlugRelatedField(slug_field="slug", read_only=True)
    ended_by = serializers.SlugRelatedField(
        slug_field="username", read_only=True, allow_null=True, help_text="Who ended it early; null for the system."
    )
    end_reason = serializers.ChoiceField(
        choices=Grant.EndReason.choices, read_only=True, allow_null=True, help_text="Why it ended; null while live."
    )
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


@extend_schema_serializer(component_name="RevokeInput")
class RevokeIn(StrictSerializer):
    reason = Text(
        required=False,
        allow_blank=True,
        max_length=MAX_REASON,
        default="",
        help_text="Why; required when an administrator revokes someone else's grant.",
    )


class GrantFilter(FilterSet):
    active = BooleanFilter(
        method="filter_active", help_text="true: grants that give access right now (the effective rule)."
    )
    status = django_filters.ChoiceFilter(choices=Grant.Status.choices)
    user = django_filters.CharFilter(field_name="user__username", help_text="Username of the holder.")
    role = django_filters.CharFilter(field_name="role__slug", help_text="Role slug.")

    class Meta:
        model = Grant
        fields = ["active", "status", "user", "role"]

    def filter_active(self, queryset, name, value):
        effective = Grant.objects.effective().values("pk")
        return queryset.filter(pk__in=effective) if value else queryset.exclude(pk__in=effective)


@extend_schema(tags=["grants"])
class GrantViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, viewsets.GenericViewSet):
    """Grants the caller may see: their own, those of requests they may approve, or all (auditors, admins)."""

    serializer_class = GrantOut
    filterset_class = GrantFilter
    lookup_value_regex = ID_PATTERN
    # revoke: the holder needs `request` (relinquish), an administrator `admin`; checked below.
    required_scopes = {"list": "read", "retrieve": "read", "revoke": ANY_SCOPE}

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
