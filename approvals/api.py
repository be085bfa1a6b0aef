"""REST API v1: access requests (create, list, read, approve, deny, cancel).

Thin: input is validated here, every change goes through ``approvals.services``, every read
through ``approvals.selectors`` (which decides visibility: not visible is 404).
"""

from __future__ import annotations

from datetime import timedelta

import django_filters
from drf_spectacular.utils import (
    OpenApiExample,
    OpenApiParameter,
    extend_schema,
    extend_schema_field,
    extend_schema_serializer,
)
from rest_framework import generics, mixins, serializers, viewsets
from rest_framework.decorators import action
from rest_framework.generics import get_object_or_404
from rest_framework.response import Response
from rest_framework.views import APIView

from accounts import stepup
from accounts.authentication import acts_as_admin
from accounts.stepup import enrol_hint
from approvals import idempotency, recertification
from approvals.models import AccessRequest, Decision, Recertification
from approvals.rightsizing import unused_eligibilities
from approvals.selectors import requests_visible_to, with_details
from approvals.services import (
    MAX_COMMENT,
    MAX_JUSTIFICATION,
    MAX_TICKET,
    request_approve,
    request_cancel,
    request_create,
    request_deny,
)
from broker.api.context import audit_context
from broker.api.filters import BooleanFilter, FilterSet
from broker.api.inputs import (
    ID_PATTERN,
    MAX_DURATION_SECONDS,
    AwareDateTimeField,
    Slug,
    StrictSerializer,
    Text,
    WholeNumber,
    otp_field,
    validated,
)
from broker.catalog import is_auditor
from broker.errors import NotAllowed
from broker.http import device_posture
from broker.models import Channel, Eligibility, Role
from grants.selectors import grants_visible_to

# --- Output -------------------------------------------------------------------------------------------


@extend_schema_serializer(component_name="Decision")
class DecisionOut(serializers.ModelSerializer):
    approver = serializers.SlugRelatedField(slug_field="username", read_only=True)
    stage = serializers.SerializerMethodField(help_text="1 for the first stage.")

    class Meta:
        model = Decision
        fields = ["approver", "stage", "verdict", "escalation", "comment", "channel", "created_at"]
        extra_kwargs = {"escalation": {"help_text": "Taken by an escalation approver after the stage was escalated."}}

    def get_stage(self, obj: Decision) -> int:
        return obj.stage + 1


# From the README's API story: alice asks for prod-db-admin, carol approves.
REQUEST_EXAMPLE = {
    "id": 3,
    "role": "prod-db-admin",
    "resource": "",
    "requester": "alice",
    "status": "approved",
    "kind": "new",
    "extends_grant": None,
    "duration_seconds": 600,
    "justification": "INC-42: vacuum",
    "ticket": "",
    "starts_at": None,
    "break_glass": False,
    "channel": "api",
    "created_at": "2026-12-01T09:00:00Z",
    "expires_at": "2026-12-02T09:00:00Z",
    "decided_at": "2026-12-01T09:02:10Z",
    "closed_reason": "",
    "current_stage": None,
    "escalated_stage": None,
    "escalated_at": None,
    "approvals": [
        {
            "approver": "carol",
            "stage": 1,
            "verdict": "approve",
            "escalation": False,
            "comment": "go ahead",
            "channel": "api",
            "created_at": "2026-12-01T09:02:10Z",
        }
    ],
    "grant": 7,
    "flagged": False,
    "flag_reasons": [],
}


class FlagReason(serializers.Serializer):
    code = serializers.CharField(
        help_text="Stable: `first_for_role`, `unusual_hour`, `burst`, `long_duration` or `new_network`; "
        "more may be added."
    )
    sentence = serializers.CharField(help_text="The reason as people read it.")


@extend_schema_serializer(
    component_name="AccessRequest",
    examples=[OpenApiExample("Approved by carol", value=REQUEST_EXAMPLE, response_only=True)],
)
class RequestOut(serializers.ModelSerializer):
    role = serializers.SlugRelatedField(slug_field="slug", read_only=True)
    requester = serializers.SlugRelatedField(slug_field="username", read_only=True)
    duration_seconds = serializers.SerializerMethodField()
    current_stage = serializers.SerializerMethodField(
        help_text="The stage that decides now (1 = first); null once decided."
    )
    approvals = DecisionOut(
        source="decisions", many=True, read_only=True, help_text="Every decision so far, approvals and denials."
    )
    grant = serializers.SerializerMethodField(help_text="The id of the grant this request produced, or null.")
    escalated_stage = serializers.SerializerMethodField(
        help_text="The stage (1 = first) last escalated because nobody decided it in time; null if none was."
    )
    flag_reasons = FlagReason(
        many=True,
        read_only=True,
        help_text="Why the anomaly scoring found the request unusual for its requester; empty when not flagged.",
    )

    class Meta:
        model = AccessRequest
        fields = [
            "id",
            "role",
            "resource",
            "requester",
            "status",
            "kind",
            "extends_grant",
            "duration_seconds",
            "justification",
            "ticket",
            "starts_at",
            "break_glass",
            "channel",
            "created_at",
            "expires_at",
            "decided_at",
            "closed_reason",
            "current_stage",
            "escalated_stage",
            "escalated_at",
            "approvals",
            "grant",
            "flagged",
            "flag_reasons",
        ]
        read_only_fields = fields
        extra_kwargs = {
            "escalated_at": {"help_text": "When that stage was escalated; null if none was."},
            "flagged": {
                "help_text": "Unusual for the requester (their own and their peers' history): asking needed a "
                "fresh second factor, even for roles without MFA."
            },
        }

    def get_duration_seconds(self, obj: AccessRequest) -> int:
        return int(obj.duration.total_seconds())

    @extend_schema_field({"type": "integer", "nullable": True})
    def get_current_stage(self, obj: AccessRequest) -> int | None:
        return obj.current_stage + 1 if obj.status == AccessRequest.Status.PENDING else None

    @extend_schema_field({"type": "integer", "nullable": True})
    def get_escalated_stage(self, obj: AccessRequest) -> int | None:
        return obj.escalated_stage + 1 if obj.escalated_stage is not None else None

    @extend_schema_field({"type": "integer", "nullable": True})
    def get_grant(self, obj: AccessRequest) -> int | None:
        grant = getattr(obj, "grant", None)
        return grant.pk if grant is not None else None


# --- Input --------------------------------------------------------------------------------------------


@extend_schema_serializer(
    component_name="NewAccessRequest",
    examples=[
        OpenApiExample(
            "prod-db-admin for 10 minutes",
            value={
                "role": "prod-db-admin",
                "duration_seconds": 600,
                "justification": "INC-42: vacuum",
                "otp": "123456",
            },
            request_only=True,
        )
    ],
)
class RequestIn(StrictSerializer):
    """Asking for a role."""

    role = Slug(max_length=64, help_text="The role's slug.")
    resource = Text(
        required=False,
        allow_blank=True,
        max_length=63,
        help_text="For a role with resources (its `resources`): the one you need, such as a database. Leave it out "
        "for a role without resources.",
    )
    duration_seconds = WholeNumber(
        required=False,
        min_value=1,
        max_value=MAX_DURATION_SECONDS,
        help_text="How long the grant should last; the role's default when left out. At most the role's maximum.",
    )
    justification = Text(
        required=False,
        allow_blank=True,
        max_length=MAX_JUSTIFICATION,
        help_text="Why you need it; required by most roles (`requires_justification`). Empty when left out.",
    )
    ticket = Text(
        required=False,
        allow_blank=True,
        max_length=MAX_TICKET,
        help_text="A ticket reference; required by roles with `requires_ticket`. Empty when left out.",
    )
    starts_at = AwareDateTimeField(
        required=False, allow_null=True, help_text="Start later (with a time zone); now when left out or null."
    )
    otp = otp_field()

    omitted = {"justification": "", "ticket": "", "starts_at": None}


@extend_schema_serializer(
    component_name="ApproveInput",
    examples=[OpenApiExample("Go ahead", value={"comment": "go ahead", "otp": "654321"}, request_only=True)],
)
class ApproveIn(StrictSerializer):
    """Approving the current stage of a request."""

    comment = Text(
        required=False,
        allow_blank=True,
        max_length=MAX_COMMENT,
        help_text="Shown to the requester. Empty when left out.",
    )
    otp = otp_field()

    omitted = {"comment": ""}


@extend_schema_serializer(
    component_name="DenyInput",
    examples=[OpenApiExample("Not now", value={"comment": "use the read replica", "otp": "654321"}, request_only=True)],
)
class DenyIn(StrictSerializer):
    """Denying a request: the comment is required."""

    comment = Text(max_length=MAX_COMMENT, help_text="Why; the requester sees it.")
    otp = otp_field()


@extend_schema_serializer(component_name="CancelInput")
class CancelIn(StrictSerializer):
    """Withdrawing your pending request: nothing to send (an empty object)."""


class RequestFilter(FilterSet):
    status = django_filters.ChoiceFilter(choices=AccessRequest.Status.choices)
    kind = django_filters.ChoiceFilter(choices=AccessRequest.Kind.choices)
    role = django_filters.CharFilter(field_name="role__slug", help_text="Role slug.")
    requester = django_filters.CharFilter(field_name="requester__username", help_text="Username.")
    flagged = BooleanFilter(
        field_name="flagged", help_text="Only requests the anomaly scoring flagged (true) or not (false)."
    )

    class Meta:
        model = AccessRequest
        fields = ["status", "kind", "role", "requester", "flagged"]


@extend_schema_serializer(
    component_name="ExtendInput",
    examples=[
        OpenApiExample(
            "Ten more minutes",
            value={"duration_seconds": 600, "justification": "the vacuum needs longer", "otp": "123456"},
            request_only=True,
        )
    ],
)
class ExtendIn(StrictSerializer):
    """Asking for more time on your grant."""

    duration_seconds = WholeNumber(
        min_value=1, max_value=MAX_DURATION_SECONDS, help_text="How much longer; within the role's limits."
    )
    justification = Text(
        required=False, allow_blank=True, max_length=MAX_JUSTIFICATION, help_text="Why more time. Empty when left out."
    )
    ticket = Text(required=False, allow_blank=True, max_length=MAX_TICKET, help_text="Empty when left out.")
    otp = otp_field()

    omitted = {"justification": "", "ticket": ""}


# --- Views --------------------------------------------------------------------------------------------

# What a missing, wrong or impossible one-time code answers (403).
MFA_CODES = ["mfa_required", "mfa_invalid", "mfa_not_enrolled"]

IDEMPOTENCY_PARAMETER = OpenApiParameter(
    idempotency.HEADER,
    {"type": "string", "minLength": 1, "maxLength": 200, "pattern": "^[!-~]+$"},
    OpenApiParameter.HEADER,
    required=False,
    description=(
        "1 to 200 visible ASCII characters, unique per request you mean to make (a UUID): a retry with the same "
        "key and the same input (compared after validation, with the defaults of the fields left out, and "
        "without `otp`) returns the first answer instead of making a second request; the same key with other "
        "input is a 409 `idempotency_key_reused`. Kept for 24 hours; a failed attempt leaves the key free."
    ),
    examples=[OpenApiExample("A UUID", value="5b0e8c1e-3f52-4d2a-9a43-0c6f1f0f2b7e")],
)
REPLAYED_HEADER = OpenApiParameter(
    "Idempotent-Replayed",
    {"type": "string", "enum": ["true"]},
    OpenApiParameter.HEADER,
    response=[201],
    description="`true` when this is the stored answer to an earlier request with the same `Idempotency-Key`.",
)


@extend_schema(tags=["requests"])
class RequestViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, viewsets.GenericViewSet):
    """Access requests the caller may see: their own, those they may approve, or all (auditors, admins)."""

    serializer_class = RequestOut
    filterset_class = RequestFilter
    lookup_value_regex = ID_PATTERN
    required_scopes = {
        "list": "read",
        "retrieve": "read",
        "create": "request",
        "cancel": "request",
        "approve": "approve",
        "deny": "approve",
    }
    operation_ids = {
        "list": "requests_list",
        "retrieve": "requests_get",
        "create": "requests_create",
        "approve": "requests_approve",
        "deny": "requests_deny",
        "cancel": "requests_cancel",
    }
    error_codes = {
        "create": {
            "403": ["not_eligible", "condition_failed", *MFA_CODES],
            "409": ["duplicate_request", "already_granted", "no_approvers", "idempotency_key_reused"],
        },
        "approve": {
            "403": ["self_approval", "not_approver", *MFA_CODES],
            "409": ["already_decided", "already_decided_by_you", "request_expired", "requester_not_eligible"],
        },
        "deny": {
            "403": ["self_approval", "not_approver", *MFA_CODES],
            "409": ["already_decided", "already_decided_by_you", "request_expired"],
        },
        "cancel": {"403": ["not_requester"], "409": ["already_decided"]},
    }

    def get_queryset(self):
        return with_details(requests_visible_to(self.request.user, admin=acts_as_admin(self.request)))

    def _answer(self, request_id: int, status: int = 200) -> Response:
        return Response(RequestOut(self.get_queryset().get(pk=request_id)).data, status=status)

    @extend_schema(
        summary="Ask for a role",
        request=RequestIn,
        parameters=[IDEMPOTENCY_PARAMETER, REPLAYED_HEADER],
        responses={201: RequestOut},
        description=(
            "Auto-approve and break-glass roles are approved at once (`status` approved, `grant` set). Roles that "
            "require MFA, and break-glass roles, need `otp`. A user who has no MFA device gets 403 "
            "`mfa_not_enrolled` with how to enrol. A request the role's conditions refuse (network, time window, "
            "device posture, risk level) gets 403 `condition_failed` with `conditions`: each failed one and why."
        ),
    )
    def create(self, request, *args, **kwargs):
        data = validated(RequestIn, request)
        key = idempotency.clean_key(request.headers.get(idempotency.HEADER))
        # The validated input, defaults applied: a client that sends `"ticket": ""` makes the same
        # request as one that leaves it out.
        print_ = idempotency.fingerprint(data)
        earlier = idempotency.replay(request.user, key, print_)
        if earlier is not None:
            return Response(earlier.response, status=earlier.status_code, headers={"Idempotent-Replayed": "true"})
        mfa_at = stepup.mfa_at(request, data.get("otp"), via=Channel.API)
        role = Role.objects.live().filter(slug=data["role"]).first()
        if role is None:
            # The same answer as for a role one may not request: the catalog is not for browsing.
            raise NotAllowed(f"you are not eligible for {data['role']} (or it does not exist)", code="not_eligible")

        def create_once() -> tuple[int, dict]:
            with enrol_hint(request.user):
                req = request_create(
                    requester=request.user,
                    role=role,
                    duration=timedelta(seconds=data["duration_seconds"]) if "duration_seconds" in data else None,
                    justification=data["justification"],
                    ticket=data["ticket"],
                    starts_at=data["starts_at"],
                    resource=data.get("resource", ""),
                    mfa_at=mfa_at,
                    posture=device_posture(request),
                    **audit_context(request),
                )
            # Their own request: visible to them by definition, so no visibility query.
            return 201, dict(
                RequestOut(with_details(AccessRequest.objects.filter(requester=request.user)).get(pk=req.pk)).data
            )

        status, body, replayed = idempotency.run_once(request.user, key, print_, create_once)
        return Response(body, status=status, headers={"Idempotent-Replayed": "true"} if replayed else None)

    @extend_schema(
        summary="Approve (as an approver of the current stage)",
        request=ApproveIn,
        responses={200: RequestOut},
        description=(
            "`otp` is your current TOTP code; required when the role requires MFA. Approving your own request is "
            "403 `self_approval`; a decided request is 409."
        ),
    )
    @action(detail=True, methods=["post"])
    def approve(self, request, pk=None):
        req = self.get_object()
        data = validated(ApproveIn, request)
        mfa_at = stepup.mfa_at(request, data.get("otp"), via=Channel.API)
        with enrol_hint(request.user):
            request_approve(
                request_id=req.pk,
                approver=request.user,
                comment=data["comment"],
                mfa_at=mfa_at,
                **audit_context(request),
            )
        return self._answer(req.pk)

    @extend_schema(
        summary="Deny (as an approver of the current stage)",
        request=DenyIn,
        responses={200: RequestOut},
        description=(
            "`otp` is your current TOTP code; required when the role requires MFA, exactly as for approving "
            "(403 `mfa_required` without it). `comment` is required: the requester sees it."
        ),
    )
    @action(detail=True, methods=["post"])
    def deny(self, request, pk=None):
        req = self.get_object()
        data = validated(DenyIn, request)
        mfa_at = stepup.mfa_at(request, data.get("otp"), via=Channel.API)
        with enrol_hint(request.user):
            request_deny(
                request_id=req.pk,
                approver=request.user,
                comment=data["comment"],
                mfa_at=mfa_at,
                **audit_context(request),
            )
        return self._answer(req.pk)

    @extend_schema(
        summary="Withdraw your pending request",
        request=CancelIn,
        responses={200: RequestOut},
    )
    @action(detail=True, methods=["post"])
    def cancel(self, request, pk=None):
        req = self.get_object()
        validated(CancelIn, request)
        if req.requester_id != request.user.pk:
            raise NotAllowed("only the requester may withdraw a request", code="not_requester")
        request_cancel(request_id=req.pk, requester=request.user, **audit_context(request))
        return self._answer(req.pk)

    @extend_schema(summary="List the requests you may see", responses={200: RequestOut(many=True)})
    def list(self, request, *args, **kwargs):
        return super().list(request, *args, **kwargs)

    @extend_schema(summary="One request", responses={200: RequestOut})
    def retrieve(self, request, *args, **kwargs):
        return super().retrieve(request, *args, **kwargs)


class GrantExtendView(APIView):
    """``POST grants/{id}/extend/``: an extension is a request, so it lives here, beside new requests."""

    required_scopes = {"POST": "request"}
    operation_ids = {"POST": "grants_extend"}
    error_codes = {
        "POST": {
            "403": ["not_holder", "not_eligible", "condition_failed", *MFA_CODES],
            "409": ["grant_ended", "duplicate_request", "no_approvers", "extension_cap"],
        }
    }

    @extend_schema(
        tags=["grants"],
        summary="Ask for more time on your grant",
        request=ExtendIn,
        responses={201: RequestOut},
        description="Creates an extension request, routed like a new request (auto-approved roles extend at once).",
    )
    def post(self, request, pk: str):
        grant = get_object_or_404(grants_visible_to(request.user, admin=acts_as_admin(request)), pk=pk)
        data = validated(ExtendIn, request)
        if grant.user_id != request.user.pk:
            raise NotAllowed("only the holder may extend a grant", code="not_holder")
        mfa_at = stepup.mfa_at(request, data.get("otp"), via=Channel.API)
        with enrol_hint(request.user):
            req = request_create(
                requester=request.user,
                extends_grant_id=grant.pk,
                duration=timedelta(seconds=data["duration_seconds"]),
                justification=data["justification"],
                ticket=data["ticket"],
                mfa_at=mfa_at,
                posture=device_posture(request),
                **audit_context(request),
            )
        visible = with_details(requests_visible_to(request.user, admin=acts_as_admin(request)))
        return Response(RequestOut(visible.get(pk=req.pk)).data, status=201)


# --- Right-sizing: unused eligibilities -----------------------------------------------------------------


@extend_schema_serializer(component_name="UnusedEligibility")
class UnusedEligibilityOut(serializers.Serializer):
    role = serializers.CharField(help_text="The role's slug.")
    who = serializers.CharField(help_text="As the policy file writes it: a username, or `group:NAME`.")
    kind = serializers.ChoiceField(choices=["user", "group"])
    unused_after_days = serializers.IntegerField(
        help_text="Nobody it covers asked for the role within this many days (the role's `review.unused_after`)."
    )
    last_asked = serializers.DateTimeField(
        allow_null=True, help_text="The newest request it covers, however old; null if it was never used."
    )
    remove_unused = serializers.BooleanField(help_text="The role's policy removes it automatically.")


@extend_schema(
    tags=["eligibility"],
    summary="Eligibilities nobody used (right-sizing)",
    description=(
        "Every eligibility (a user or a group for a role) that nobody it covers used within the role's "
        "`review.unused_after` (default the UNUSED_ELIGIBILITY_AFTER setting), by role then who. `apply_policy "
        "--suggest` prints the policy file without them. Auditors and administrators (admin scope)."
    ),
    responses={200: UnusedEligibilityOut(many=True)},
)
class UnusedEligibilityList(generics.ListAPIView):
    serializer_class = UnusedEligibilityOut
    required_scopes = {"GET": "read"}
    operation_ids = {"GET": "eligibility_unused"}

    def get_queryset(self):
        if getattr(self, "swagger_fake_view", False):  # the schema generator reads no database
            return Eligibility.objects.none()
        return [
            {
                "role": u.role.slug,
                "who": u.who,
                "kind": "user" if u.eligibility.user_id else "group",
                "unused_after_days": u.since.days,
                "last_asked": u.last_asked,
                "remove_unused": u.role.remove_unused,
            }
            for u in unused_eligibilities()
        ]

    def list(self, request, *args, **kwargs):
        if not (acts_as_admin(request) or is_auditor(request.user)):
            raise NotAllowed("the unused eligibilities are for auditors and administrators")
        return super().list(request, *args, **kwargs)


# --- Recertification: eligibility reviews ----------------------------------------------------------------


@extend_schema_serializer(component_name="EligibilityReview")
class RecertificationOut(serializers.ModelSerializer):
    role = serializers.SlugRelatedField(slug_field="slug", read_only=True)
    who = serializers.CharField(read_only=True, help_text="As the policy file writes it: a username, or `group:NAME`.")
    decided_by = serializers.SlugRelatedField(slug_field="username", read_only=True, allow_null=True)
    may_decide = serializers.SerializerMethodField(help_text="Whether the caller may confirm or remove it now.")

    class Meta:
        model = Recertification
        fields = [
            "id",
            "role",
            "who",
            "status",
            "due_at",
            "grace_until",
            "created_at",
            "reminded_at",
            "escalated_at",
            "decided_at",
            "decided_by",
            "comment",
            "may_decide",
        ]
        read_only_fields = fields

    def get_may_decide(self, obj: Recertification) -> bool:
        return recertification.may_decide(obj, self.context["request"].user)


@extend_schema_serializer(component_name="ReviewConfirmInput")
class ReviewConfirmIn(StrictSerializer):
    """Confirming an eligibility: it stays, and its next review counts from now."""

    comment = Text(required=False, allow_blank=True, max_length=MAX_COMMENT, help_text="Empty when left out.")

    omitted = {"comment": ""}


@extend_schema_serializer(component_name="ReviewRemoveInput")
class ReviewRemoveIn(StrictSerializer):
    """Removing an eligibility: at once, like any loss of eligibility; the comment is required."""

    comment = Text(max_length=MAX_COMMENT, help_text="Why it is removed; recorded in the audit trail.")


@extend_schema_serializer(component_name="ReviewPatch")
class ReviewPatchOut(serializers.Serializer):
    patch = serializers.CharField(
        help_text="YAML: per role, the users and groups to take out of the policy file's eligibility "
        "(`remove_users`, `remove_groups`)."
    )


class RecertificationFilter(FilterSet):
    status = django_filters.ChoiceFilter(choices=Recertification.Status.choices)
    role = django_filters.CharFilter(field_name="role__slug", help_text="Role slug.")

    class Meta:
        model = Recertification
        fields = ["status", "role"]


@extend_schema(tags=["eligibility"])
class RecertificationViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, viewsets.GenericViewSet):
    """Eligibility reviews (recertification): the role owners' tasks; auditors and administrators read all."""

    serializer_class = RecertificationOut
    filterset_class = RecertificationFilter
    lookup_value_regex = ID_PATTERN
    required_scopes = {
        "list": "read",
        "retrieve": "read",
        "policy_patch": "read",
        "confirm": "approve",
        "remove": "approve",
    }
    operation_ids = {
        "list": "reviews_list",
        "retrieve": "reviews_get",
        "policy_patch": "reviews_policy_patch",
        "confirm": "reviews_confirm",
        "remove": "reviews_remove",
    }
    error_codes = {
        "confirm": {"403": ["not_reviewer", "self_review"], "409": ["already_reviewed"]},
        "remove": {"403": ["not_reviewer", "self_review"], "409": ["already_reviewed"]},
    }

    def get_queryset(self):
        if getattr(self, "swagger_fake_view", False):
            return Recertification.objects.none()
        return recertification.reviews_for(self.request.user).order_by("-due_at", "-pk")

    def _decide(self, request, verdict: str, serializer) -> Response:
        task = self.get_object()
        data = validated(serializer, request)
        recertification.recertification_decide(
            task_id=task.pk, reviewer=request.user, verdict=verdict, comment=data["comment"], **audit_context(request)
        )
        return Response(RecertificationOut(self.get_queryset().get(pk=task.pk), context={"request": request}).data)

    @extend_schema(summary="Confirm an eligibility (as an owner of its role)", request=ReviewConfirmIn)
    @action(detail=True, methods=["post"])
    def confirm(self, request, pk=None):
        return self._decide(request, "confirm", ReviewConfirmIn)

    @extend_schema(summary="Remove an eligibility (as an owner of its role)", request=ReviewRemoveIn)
    @action(detail=True, methods=["post"])
    def remove(self, request, pk=None):
        return self._decide(request, "remove", ReviewRemoveIn)

    @extend_schema(
        summary="The removals as a policy patch",
        description="The eligibilities removed by the reviews the caller sees, as the change to make in the policy "
        "file; `apply_policy FILE --suggest` prints the whole file without them.",
        responses={200: ReviewPatchOut},
        filters=False,
    )
    @action(detail=False, methods=["get"], url_path="patch")
    def policy_patch(self, request):
        return Response({"patch": recertification.policy_patch(self.get_queryset())})

    @extend_schema(summary="List the eligibility reviews you may see", responses={200: RecertificationOut(many=True)})
    def list(self, request, *args, **kwargs):
        return super().list(request, *args, **kwargs)

    @extend_schema(summary="One eligibility review", responses={200: RecertificationOut})
    def retrieve(self, request, *args, **kwargs):
        return super().retrieve(request, *args, **kwargs)
