"""Applying a validated policy: make the catalog match it, idempotently, with one audit event."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from django.contrib.auth import get_user_model
from django.contrib.auth.models import AbstractBaseUser, Group
from django.db import transaction
from django.utils import timezone

from broker import audit
from broker.catalog import why_not_eligible
from broker.durations import format_duration
from broker.models import ApprovalStage, Eligibility, Role
from broker.policy import schema

User = get_user_model()


# Kinds of Change that report without changing anything.
NOT_CHANGES = ("kept", "warning", "excluded")


@dataclass
class Change:
    kind: str  # created, updated, retired, restored, kept, closing, ending, warning, excluded
    role: str
    detail: str = ""

    def __str__(self) -> str:
        return f"{self.kind:<9} {self.role}{': ' + self.detail if self.detail else ''}"


@dataclass(frozen=True)
class StageSpec:
    """An approval stage in a form that compares equal between the file and the database."""

    users: tuple[str, ...]
    groups: tuple[str, ...]
    required: int


# Where a Role column sits in a role's entry of the file, when it is not a key of the entry itself.
_NESTED = {
    "auto_approve": ("approval", "auto_approve"),
    "request_ttl": ("approval", "request_ttl"),
    "escalation_after": ("approval", "escalation", "after"),
    "connector": ("target", "connector"),
    "connector_config": ("target", "config"),
    "authoritative": ("target", "authoritative"),
    "chat_webhooks": ("notify", "chat"),
    "unused_after": ("review", "unused_after"),
    "remove_unused": ("review", "remove_unused"),
}


def _catalog_values(spec: schema.Role) -> dict[str, Any]:
    """The Role columns a policy sets (Role.POLICY_FIELDS), from where they are in the file."""
    values = {}
    for name in Role.POLICY_FIELDS:
        value: Any = spec
        for part in _NESTED.get(name, (name,)):
            value = getattr(value, part) if value is not None else None  # an optional mapping left out
        if name == "chat_webhooks":
            value = [hook.model_dump(exclude_none=True) for hook in value]
        if name in ("conditions", "resources"):
            value = value.stored()
        values[name] = value
    return values


def _shown(value: Any) -> str:
    return format_duration(value) if isinstance(value, timedelta) else repr(value)


def _stages_of(role: Role) -> list[StageSpec]:
    return [
        StageSpec(
            users=tuple(sorted(stage.users.values_list("username", flat=True))),
            groups=tuple(sorted(stage.groups.values_list("name", flat=True))),
            required=stage.required,
        )
        for stage in role.stages.order_by("position")
    ]


def _normal(stages: list[StageSpec]) -> list[StageSpec]:
    return [
        StageSpec(users=tuple(sorted(s.users)), groups=tuple(sorted(s.groups)), required=s.required) for s in stages
    ]


def _sync_role(
    spec: schema.Role,
    eligible_users: set[str],
    eligible_groups: set[str],
    recertify: dict[str, schema.Recertify] | None = None,
) -> list[Change]:
    changes: list[Change] = []
    role = Role.objects.filter(slug=spec.slug).first()
    values = _catalog_values(spec)
    if role is None:
        role = Role.objects.create(slug=spec.slug, managed_by_policy=True, **values)
        changes.append(Change("created", spec.slug, spec.name))
    else:
        diffs = [
            f"{name} {_shown(getattr(role, name))} → {_shown(value)}"
            for name, value in values.items()
            if getattr(role, name) != value
        ]
        if role.retired_at is not None:
            role.retired_at = None
            changes.append(Change("restored", spec.slug, "back in the policy file"))
        if diffs or not role.managed_by_policy:
            for name, value in values.items():
                setattr(role, name, value)
        role.managed_by_policy = True
        if diffs or changes:
            role.save()
        if diffs:
            changes.append(Change("updated", spec.slug, "; ".join(diffs)))

    stages = [
        StageSpec(users=tuple(s.approvers.users), groups=tuple(s.approvers.groups), required=s.required)
        for s in spec.approval.stages
    ]
    if _stages_of(role) != _normal(stages):
        role.stages.all().delete()
        for position, stage in enumerate(stages):
            row = ApprovalStage.objects.create(role=role, position=position, required=stage.required)
            row.users.set(User.objects.filter(username__in=stage.users))
            row.groups.set(Group.objects.filter(name__in=stage.groups))
        described = "; ".join(
            f"stage {i + 1}: {s.required} of users={list(s.users)} groups={list(s.groups)}"
            for i, s in enumerate(stages)
        )
        changes.append(Change("updated", spec.slug, f"approval stages → {described or 'none'}"))

    escalation = spec.approval.escalation
    people = escalation.approvers if escalation is not None else None
    wanted = (tuple(sorted(people.users)), tuple(sorted(people.groups))) if people else ((), ())
    current = (
        tuple(sorted(role.escalation_users.values_list("username", flat=True))),
        tuple(sorted(role.escalation_groups.values_list("name", flat=True))),
    )
    if current != wanted:
        role.escalation_users.set(User.objects.filter(username__in=wanted[0]))
        role.escalation_groups.set(Group.objects.filter(name__in=wanted[1]))
        described = f"users={list(wanted[0])} groups={list(wanted[1])}" if people else "the ESCALATION_GROUP setting"
        changes.append(Change("updated", spec.slug, f"escalation approvers → {described}"))

    owners = spec.owners
    wanted = (tuple(sorted(owners.users)), tuple(sorted(owners.groups))) if owners else ((), ())
    current = (
        tuple(sorted(role.owner_users.values_list("username", flat=True))),
        tuple(sorted(role.owner_groups.values_list("name", flat=True))),
    )
    if current != wanted:
        role.owner_users.set(User.objects.filter(username__in=wanted[0]))
        role.owner_groups.set(Group.objects.filter(name__in=wanted[1]))
        described = f"users={list(wanted[0])} groups={list(wanted[1])}" if owners else "the first stage's approvers"
        changes.append(Change("updated", spec.slug, f"owners → {described}"))

    changes += _exclusions(role, eligible_users, eligible_groups)
    eligible_users = eligible_users - _excluded(role, "user")
    eligible_groups = eligible_groups - _excluded(role, "group")
    current_users = set(role.eligibilities.filter(user__isnull=False).values_list("user__username", flat=True))
    current_groups = set(role.eligibilities.filter(group__isnull=False).values_list("group__name", flat=True))
    add_users, drop_users = eligible_users - current_users, current_users - eligible_users
    add_groups, drop_groups = eligible_groups - current_groups, current_groups - eligible_groups
    for user in User.objects.filter(username__in=add_users):
        Eligibility.objects.create(role=role, user=user)
    for group in Group.objects.filter(name__in=add_groups):
        Eligibility.objects.create(role=role, group=group)
    role.eligibilities.filter(user__username__in=drop_users).delete()
    role.eligibilities.filter(group__name__in=drop_groups).delete()
    parts = []
    if add_users or add_groups:
        parts.append("eligible +" + ", +".join(sorted(add_users) + [f"group:{g}" for g in sorted(add_groups)]))
    if drop_users or drop_groups:
        parts.append("eligible -" + ", -".join(sorted(drop_users) + [f"group:{g}" for g in sorted(drop_groups)]))
    if parts:
        changes.append(Change("updated", spec.slug, "; ".join(parts)))
    changes += _sync_recertify(role, recertify or {})
    return changes


def _sync_recertify(role: Role, recertify: dict[str, schema.Recertify]) -> list[Change]:
    """Each eligibility row carries the recertification of its entry in the file (or none)."""
    changes = []
    for row in role.eligibilities.select_related("user", "group"):
        who = row.user.get_username() if row.user_id else f"group:{row.group.name}"
        spec = recertify.get(who)
        wanted = (spec.every, spec.grace, spec.expire) if spec else (None, None, False)
        if (row.recertify_every, row.recertify_grace, row.recertify_expire) != wanted:
            row.recertify_every, row.recertify_grace, row.recertify_expire = wanted
            row.save(update_fields=["recertify_every", "recertify_grace", "recertify_expire"])
            what = (
                f"every {format_duration(spec.every)}, grace {format_duration(spec.grace)}"
                + (", expires unanswered" if spec.expire else "")
                if spec
                else "none"
            )
            changes.append(Change("updated", role.slug, f"recertification of {who} → {what}"))
    return changes


def _excluded(role: Role, kind: str) -> set[str]:
    field = "user__username" if kind == "user" else "group__name"
    return set(role.exclusions.filter(**{f"{kind}__isnull": False}).values_list(field, flat=True))


def _exclusions(role: Role, eligible_users: set[str], eligible_groups: set[str]) -> list[Change]:
    """Eligibilities the broker removed (EligibilityExclusion) are not added back while the file lists
    them: each is reported with the change to make in the file. Those the file no longer lists are
    done with and dropped."""
    changes = []
    for exclusion in role.exclusions.select_related("user", "group").order_by("pk"):
        listed = (
            exclusion.user.get_username() in eligible_users
            if exclusion.user_id
            else exclusion.group.name in eligible_groups
        )
        if listed:
            changes.append(
                Change(
                    "excluded",
                    role.slug,
                    f"{exclusion.who} stays removed ({exclusion.reason}: {exclusion.detail}); remove it from the "
                    "file's eligibility (apply_policy --suggest prints the file without it)",
                )
            )
        else:
            exclusion.delete()
            changes.append(Change("updated", role.slug, f"{exclusion.who}: removal now in the file, exclusion dropped"))
    return changes


def _check_targets(policy: schema.Policy, *, prepare: bool) -> list[Change]:
    """Prepare each role's target (create a Django group, say) and report what is wrong in it.

    A target that cannot be reached, or that lacks what the role names (a database role, an LDAP
    group), is a warning: the catalog is applied all the same, and grants of that role fail, with
    the reason, until the target is fixed.
    """
    from grants.connectors import ConnectorError, connector_class, with_resource

    warnings = []
    for spec in policy.roles:
        # A role with resources: the target of each resource named (a pattern's cannot be listed).
        resources = spec.resources.names if spec.resources.declared else [""]
        for resource in resources:
            config = with_resource(spec.target.config, resource) if resource else spec.target.config
            connector = connector_class(spec.target.connector)(config, role_slug=spec.slug, resource=resource)
            try:
                if prepare:
                    connector.prepare()
                problems = connector.check()
            except ConnectorError as exc:
                problems = [str(exc)]
            warnings += [Change("warning", spec.slug, f"target {connector.describe()}: {p}") for p in problems]
    return warnings


def apply(
    policy: schema.Policy,
    *,
    actor: AbstractBaseUser | None = None,
    prune: bool = False,
    dry_run: bool = False,
    via: str = "cli",
    ip: str | None = None,
    source: str = "",
    now=None,
) -> list[Change]:
    """Make the catalog match the policy. With dry_run, report the same changes and write nothing.

    Whoever the new catalog no longer allows loses it at once, as after any other change
    (approvals.eligibility): their pending requests are cancelled and their live grants end
    (``eligibility_lost``, or ``role_retired`` for the roles ``prune`` retires).
    """
    from approvals.eligibility import eligibility_enforce, lost_grants, lost_requests
    from approvals.signals import handled_by_caller

    now = now or timezone.now()
    changes: list[Change] = []
    # This function ends what the change removes itself, right after the commit (below).
    with transaction.atomic(), handled_by_caller():
        in_file = {spec.slug for spec in policy.roles}
        for spec in policy.roles:
            changes += _sync_role(spec, *policy.eligible(spec.slug), policy.recertify(spec.slug))
        for role in Role.objects.filter(managed_by_policy=True, retired_at__isnull=True).exclude(slug__in=in_file):
            if not prune:
                changes.append(Change("kept", role.slug, "not in the file; --prune retires it"))
                continue
            role.retired_at = now
            role.save(update_fields=["retired_at"])
            changes.append(Change("retired", role.slug, "removed from the file"))

        # What the catalog as it now stands no longer allows, in the roles this file manages.
        role_ids = list(Role.objects.filter(managed_by_policy=True).values_list("pk", flat=True))
        verb = "would " if dry_run else ""
        for req in lost_requests(role_ids=role_ids).select_related("role", "requester").order_by("pk"):
            why = why_not_eligible(req.requester, req.role)
            changes.append(
                Change("closing", req.role.slug, f"{verb}cancel request #{req.pk} of {req.requester}: {why}")
            )
        for grant in lost_grants(role_ids=role_ids).select_related("role", "user").order_by("pk"):
            why = why_not_eligible(grant.user, grant.role)
            changes.append(Change("ending", grant.role.slug, f"{verb}end grant #{grant.pk} of {grant.user}: {why}"))

        real_changes = [c for c in changes if c.kind not in NOT_CHANGES]
        if real_changes:
            audit.record(
                "policy.applied",
                actor=actor,
                target=("policy", policy.digest[:12]),
                via=via,
                ip=ip,
                data={
                    "sha256": policy.digest,
                    "source": source,
                    "prune": prune,
                    "changes": [str(c) for c in real_changes],
                },
            )
        if dry_run:
            transaction.set_rollback(True)
    if dry_run:
        return changes + _check_targets(policy, prepare=False)

    # Side effects after the catalog is committed: targets, then what it no longer allows.
    changes += _check_targets(policy, prepare=True)
    eligibility_enforce(role_ids=role_ids, cause="policy applied", actor=actor, via=via, now=now)
    return changes
