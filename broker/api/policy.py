"""REST API v1: policy as code for GitOps. ``POST policy/plan/`` answers what ``apply_policy --dry-run``
prints, as JSON; ``POST policy/apply/`` applies the same YAML (administrators, a fresh second
factor, audited as ``policy.applied``). A pipeline plans on a pull request and applies on merge.

Part of the shell: applying a policy spans the apps (``broker.policy``).
"""

from __future__ import annotations

from drf_spectacular.utils import OpenApiExample, extend_schema, extend_schema_serializer
from rest_framework import serializers
from rest_framework.response import Response
from rest_framework.views import APIView

from accounts import mfa, stepup
from accounts.authentication import acts_as_admin
from accounts.stepup import enrol_hint
from broker import policy
from broker.api.context import audit_context
from broker.api.inputs import Flag, StrictSerializer, Text, otp_field, validated
from broker.api.parsers import JSONParser
from broker.catalog import is_auditor
from broker.errors import Invalid, NotAllowed
from broker.models import Channel
from broker.policy import NOT_CHANGES

# A policy file for thousands of roles fits; the rest of the API keeps its 64 KiB bound.
MAX_POLICY_BYTES = 1024 * 1024
# Where the audit trail's policy.applied event says the file came from.
SOURCE = "api"

CHANGE_KINDS = ["created", "updated", "retired", "restored", "kept", "closing", "ending", "warning", "excluded"]


class PolicyParser(JSONParser):
    max_bytes = MAX_POLICY_BYTES


EXAMPLE_POLICY = """\
roles:
  - slug: prod-db-admin
    name: Production database admin
    max_duration: 4h
    requires_mfa: true
    approval:
      stages:
        - approvers: {users: [carol]}
    target:
      connector: django_group
      config: {group: prod-db-admins}
eligibility:
  - role: prod-db-admin
    users: [alice]
"""


@extend_schema_serializer(
    component_name="PolicyPlanInput",
    examples=[OpenApiExample("A pull request's policy file", value={"policy": EXAMPLE_POLICY})],
)
class PlanIn(StrictSerializer):
    """A policy file to plan."""

    policy = Text(
        max_length=MAX_POLICY_BYTES,
        trim_whitespace=False,
        help_text="The policy file's text (YAML), exactly as `manage.py apply_policy` reads it (docs/policy.md).",
    )
    prune = Flag(
        required=False,
        help_text="Also retire the roles this file no longer has, as `apply_policy --prune` does; false when left out.",
    )


@extend_schema_serializer(
    component_name="PolicyApplyInput",
    examples=[OpenApiExample("Apply on merge", value={"policy": EXAMPLE_POLICY, "otp": "123456"})],
)
class ApplyIn(PlanIn):
    """A policy file to apply, with a fresh one-time code."""

    otp = otp_field()


@extend_schema_serializer(component_name="PolicyChange")
class ChangeOut(serializers.Serializer):
    kind = serializers.ChoiceField(
        choices=CHANGE_KINDS,
        help_text="created, updated, retired, restored (roles); closing, ending (a pending request cancelled, a grant "
        "ended: its holder is no longer allowed); kept (a role the file no longer has, kept without prune); warning "
        "(the role's target, checked but not changed).",
    )
    role = serializers.CharField(help_text="The role's slug.")
    detail = serializers.CharField(help_text="What changes, for people (the line `apply_policy` prints).")


@extend_schema_serializer(
    component_name="PolicyPlan",
    examples=[
        OpenApiExample(
            "A new role",
            value={
                "sha256": "5f1c0b3a6e0f4d7c9b2a8e1d3c5b7a9f0e2d4c6b8a0f1e3d5c7b9a1f3e5d7c9b",
                "prune": False,
                "applied": False,
                "changed": 2,
                "changes": [
                    {"kind": "created", "role": "prod-db-admin", "detail": "Production database admin"},
                    {"kind": "updated", "role": "prod-db-admin", "detail": "eligible +alice"},
                ],
            },
        )
    ],
)
class PlanOut(serializers.Serializer):
    sha256 = serializers.CharField(help_text="SHA-256 of the policy text, as the `policy.applied` audit event records.")
    prune = serializers.BooleanField()
    applied = serializers.BooleanField(help_text="false for a plan; true once applied.")
    changed = serializers.IntegerField(
        help_text="How many changes are (or would be) made; 0: the catalog already matches the file."
    )
    changes = ChangeOut(many=True, help_text="Every change, kept role and warning, in the order `apply_policy` prints.")


def _loaded(text: str) -> policy.Policy:
    try:
        return policy.load(text)
    except policy.PolicyInvalid as exc:
        raise Invalid(
            f"{len(exc.errors)} error(s) in the policy; nothing was changed",
            code="invalid_policy",
            fields={"policy": [str(error) for error in exc.errors]},
        ) from None


def _answer(loaded: policy.Policy, changes: list[policy.Change], *, prune: bool, applied: bool) -> Response:
    return Response(
        PlanOut(
            {
                "sha256": loaded.digest,
                "prune": prune,
                "applied": applied,
                "changed": sum(1 for c in changes if c.kind not in NOT_CHANGES),
                "changes": [{"kind": c.kind, "role": c.role, "detail": c.detail} for c in changes],
            }
        ).data
    )


class PolicyPlan(APIView):
    parser_classes = [PolicyParser]
    required_scopes = {"POST": "read"}
    operation_ids = {"POST": "policy_plan"}
    error_codes = {"POST": {"400": ["invalid_policy"]}}

    @extend_schema(
        tags=["policy"],
        summary="What applying a policy file would change (a dry run)",
        description=(
            "The changes `manage.py apply_policy --dry-run` prints, as JSON; nothing is written. A file with errors "
            "is a 400 `invalid_policy` with every error, each with its line, in `fields.policy`. For auditors and "
            "administrators (admin scope): a pull request's pipeline can plan with an auditor's read-only token."
        ),
        request=PlanIn,
        responses={200: PlanOut},
    )
    def post(self, request):
        if not (acts_as_admin(request) or is_auditor(request.user)):
            raise NotAllowed("planning a policy is for auditors and administrators")
        data = validated(PlanIn, request)
        loaded = _loaded(data["policy"])
        prune = data.get("prune", False)
        changes = policy.apply(
            loaded, prune=prune, dry_run=True, actor=request.user, source=SOURCE, **audit_context(request)
        )
        return _answer(loaded, changes, prune=prune, applied=False)


class PolicyApply(APIView):
    parser_classes = [PolicyParser]
    required_scopes = {"POST": "admin"}
    operation_ids = {"POST": "policy_apply"}
    error_codes = {"POST": {"400": ["invalid_policy"], "403": ["mfa_required", "mfa_invalid", "mfa_not_enrolled"]}}

    @extend_schema(
        tags=["policy"],
        summary="Apply a policy file (admin scope, fresh second factor)",
        description=(
            "Makes the catalog match the file, exactly as `manage.py apply_policy` does: idempotent (a second apply "
            "changes nothing), one `policy.applied` audit event naming you when anything changed, and whoever the file "
            "no longer allows loses their pending requests and live grants at once. Needs an administrator's token "
            "with the admin scope and a fresh second factor: `otp`, or a session that stepped up within "
            "MFA_STEP_UP_WINDOW. A file with errors changes nothing (400 `invalid_policy`)."
        ),
        request=ApplyIn,
        responses={200: PlanOut},
    )
    def post(self, request):
        if not acts_as_admin(request):
            raise NotAllowed("applying a policy is for administrators")
        data = validated(ApplyIn, request)
        loaded = _loaded(data["policy"])
        with enrol_hint(request.user):
            mfa.ensure_fresh(stepup.mfa_at(request, data.get("otp"), via=Channel.API), action="applying a policy")
        prune = data.get("prune", False)
        changes = policy.apply(loaded, prune=prune, actor=request.user, source=SOURCE, **audit_context(request))
        return _answer(loaded, changes, prune=prune, applied=True)
