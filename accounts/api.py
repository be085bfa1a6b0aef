"""REST API v1: the caller's personal API tokens (list, create after a step-up, revoke)."""

from __future__ import annotations

from datetime import timedelta

from drf_spectacular.utils import OpenApiExample, OpenApiResponse, extend_schema, extend_schema_serializer
from rest_framework import mixins, serializers, viewsets
from rest_framework.response import Response

from accounts import stepup
from accounts.authentication import ANY_SCOPE, token_of
from accounts.models import ApiToken
from accounts.stepup import enrol_hint
from accounts.tokens import ALL_SCOPES, DEFAULT_SCOPES, MAX_LIFETIME, token_create_for_self, token_revoke
from broker.api.context import audit_context
from broker.api.filters import FilterSet
from broker.api.inputs import ID_PATTERN, StrictSerializer, Text, WholeNumber, otp_field, validated
from broker.models import Channel


@extend_schema_serializer(component_name="ApiToken")
class TokenOut(serializers.ModelSerializer):
    class Meta:
        model = ApiToken
        fields = ["id", "name", "prefix", "scopes", "created_at", "expires_at", "last_used_at", "revoked_at"]
        read_only_fields = fields

    scopes = serializers.ListField(child=serializers.ChoiceField(choices=ALL_SCOPES))


@extend_schema_serializer(component_name="ApiTokenCreated")
class TokenCreatedOut(TokenOut):
    token = serializers.CharField(help_text="The token itself. Shown this once: it is stored only as a hash.")

    class Meta(TokenOut.Meta):
        fields = [*TokenOut.Meta.fields, "token"]
        read_only_fields = fields


@extend_schema_serializer(
    component_name="ApiTokenInput",
    examples=[
        OpenApiExample(
            "A read-only token for a dashboard",
            value={"name": "dashboard", "scopes": ["read"], "expires_in_seconds": 2592000, "otp": "123456"},
            request_only=True,
        )
    ],
)
class TokenIn(StrictSerializer):
    """A new personal API token."""

    name = Text(required=False, allow_blank=True, max_length=100, help_text="A label for you. Empty when left out.")
    scopes = serializers.ListField(
        child=serializers.ChoiceField(choices=ALL_SCOPES),
        required=False,
        min_length=1,
        max_length=len(ALL_SCOPES),
        help_text="read, request and approve when left out; admin only for administrators.",
    )
    expires_in_seconds = WholeNumber(
        required=False,
        allow_null=True,
        min_value=1,
        max_value=int(MAX_LIFETIME.total_seconds()),
        help_text="Lifetime; no expiry when left out (a token made with an expiring token must expire first).",
    )
    otp = otp_field()

    omitted = {"name": "", "scopes": list(DEFAULT_SCOPES), "expires_in_seconds": None}


class TokenFilter(FilterSet):
    class Meta:
        model = ApiToken
        fields = []


@extend_schema(tags=["tokens"])
class TokenViewSet(mixins.ListModelMixin, mixins.CreateModelMixin, mixins.DestroyModelMixin, viewsets.GenericViewSet):
    """Your personal API tokens. The token text is shown once, when it is created."""

    serializer_class = TokenOut
    filterset_class = TokenFilter
    lookup_value_regex = ID_PATTERN
    # Revoking only ever takes power away: any token of yours may revoke any of your tokens.
    required_scopes = {"list": "read", "create": ANY_SCOPE, "destroy": ANY_SCOPE}
    operation_ids = {"list": "tokens_list", "create": "tokens_create", "destroy": "tokens_revoke"}
    error_codes = {
        "create": {
            "403": ["mfa_required", "mfa_invalid", "mfa_not_enrolled", "scope_escalation"],
            "409": ["too_many_tokens"],
        }
    }

    def get_queryset(self):
        user = self.request.user
        if not user.is_authenticated:
            return ApiToken.objects.none()
        return ApiToken.objects.filter(user=user).order_by("-created_at", "-pk")

    @extend_schema(summary="List your tokens", responses={200: TokenOut(many=True)})
    def list(self, request, *args, **kwargs):
        return super().list(request, *args, **kwargs)

    @extend_schema(
        summary="Create a token",
        request=TokenIn,
        responses={201: TokenCreatedOut},
        description=(
            "Needs a fresh second factor: `otp` (your current code), or a session that stepped up within the last "
            "minutes. With a token, the new one cannot have scopes the calling token lacks, nor outlive it. "
            "A user without an MFA device gets 403 `mfa_not_enrolled`: ask an operator for "
            "`manage.py create_api_token`."
        ),
    )
    def create(self, request, *args, **kwargs):
        data = validated(TokenIn, request)
        mfa_at = stepup.mfa_at(request, data.get("otp"), via=Channel.API)
        with enrol_hint(request.user):
            token, text = token_create_for_self(
                user=request.user,
                scopes=data["scopes"],
                expires_in=timedelta(seconds=data["expires_in_seconds"]) if data["expires_in_seconds"] else None,
                name=data["name"],
                parent=token_of(request),
                mfa_at=mfa_at,
                **audit_context(request),
            )
        return Response({**TokenOut(token).data, "token": text}, status=201)

    @extend_schema(summary="Revoke one of your tokens", responses={204: OpenApiResponse(description="Revoked.")})
    def destroy(self, request, *args, **kwargs):
        token = self.get_object()
        token_revoke(token_id=token.pk, owner=request.user, **audit_context(request))
        return Response(status=204)
