"""Policy as code: read, validate and apply the roles-and-eligibility YAML file (docs/policy.md).

Validation is complete before anything is written: a bad file changes nothing and every problem
is reported with its line in the file. Applying is idempotent: a second run finds nothing to do,
writes nothing and audits nothing.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

import yaml
from django.contrib.auth import get_user_model
from django.contrib.auth.models import AbstractBaseUser, Group
from django.db import transaction
from django.utils import timezone

from broker import audit
from broker.durations import format_duration, parse_duration
from broker.models import ApprovalStage, Eligibility, Role, slug_validator

User = get_user_model()

Path = tuple[str | int, ...]


@dataclass(frozen=True)
class PolicyError:
    path: str
    line: int | None
    message: str

    def __str__(self) -> str:
        where = f"line {self.line}: " if self.line else ""
        return f"{where}{self.path}: {self.message}" if self.path else f"{where}{self.message}"


class PolicyInvalid(Exception):
    def __init__(self, errors: list[PolicyError]):
        super().__init__(f"{len(errors)} error(s) in the policy file")
        self.errors = errors


@dataclass(frozen=True)
class StageSpec:
    users: tuple[str, ...]
    groups: tuple[str, ...]
    required: int


@dataclass
class RoleSpec:
    slug: str
    name: str
    description: str
    max_duration: timedelta
    default_duration: timedelta
    min_duration: timedelta | None
    max_total_duration: timedelta | None
    requires_justification: bool
    requires_ticket: bool
    requires_mfa: bool
    break_glass: bool
    auto_approve: bool
    request_ttl: timedelta
    stages: list[StageSpec]
    connector: str
    connector_config: dict
    authoritative: bool
    eligible_users: set[str] = field(default_factory=set)
    eligible_groups: set[str] = field(default_factory=set)


@dataclass
class Policy:
    roles: list[RoleSpec]
    digest: str


# --- Reading YAML with line numbers --------------------------------------------------------------


class _Reader:
    """Turns a YAML node tree into plain data, remembering the line of every path."""

    def __init__(self, text: str):
        self.loader = yaml.SafeLoader(text)
        self.lines: dict[Path, int] = {}
        self.errors: list[PolicyError] = []

    def read(self) -> Any:
        try:
            node = self.loader.get_single_node()
        except yaml.YAMLError as exc:
            mark = getattr(exc, "problem_mark", None)
            problem = getattr(exc, "problem", None) or str(exc)
            self.errors.append(PolicyError("", mark.line + 1 if mark else None, f"not valid YAML: {problem}"))
            return None
        finally:
            self.loader.dispose()
        if node is None:
            return None
        return self._convert(node, ())

    def _convert(self, node: yaml.Node, path: Path) -> Any:
        self.lines[path] = node.start_mark.line + 1
        if isinstance(node, yaml.MappingNode):
            result: dict[str, Any] = {}
            for key_node, value_node in node.value:
                key = self._scalar(key_node)
                if not isinstance(key, str):
                    self.errors.append(
                        PolicyError(_dotted(path), key_node.start_mark.line + 1, f"key {key!r} must be text")
                    )
                    continue
                if key in result:
                    self.errors.append(
                        PolicyError(_dotted(path + (key,)), key_node.start_mark.line + 1, "duplicate key")
                    )
                    continue
                result[key] = self._convert(value_node, path + (key,))
            return result
        if isinstance(node, yaml.SequenceNode):
            return [self._convert(item, path + (i,)) for i, item in enumerate(node.value)]
        return self._scalar(node)

    def _scalar(self, node: yaml.Node) -> Any:
        if not isinstance(node, yaml.ScalarNode):
            return None
        try:
            return self.loader.construct_object(node, deep=True)
        except yaml.YAMLError as exc:
            self.errors.append(PolicyError("", node.start_mark.line + 1, f"bad value: {exc}"))
            return None


def _dotted(path: Path) -> str:
    out = ""
    for part in path:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else part)
    return out


# --- Validation ------------------------------------------------------------------------------------

_ROLE_KEYS = {
    "slug",
    "name",
    "description",
    "max_duration",
    "default_duration",
    "min_duration",
    "max_total_duration",
    "requires_justification",
    "requires_ticket",
    "requires_mfa",
    "break_glass",
    "approval",
    "target",
}
_APPROVAL_KEYS = {"auto_approve", "request_ttl", "stages"}
_STAGE_KEYS = {"approvers", "required"}
_APPROVER_KEYS = {"users", "groups"}
_TARGET_KEYS = {"connector", "config", "authoritative"}
_ELIGIBILITY_KEYS = {"role", "users", "groups"}


class _Validator:
    def __init__(self, reader: _Reader):
        self.reader = reader
        self.errors = reader.errors
        self.users_seen: dict[str, Path] = {}
        self.groups_seen: dict[str, Path] = {}

    def error(self, path: Path, message: str) -> None:
        line = None
        probe = path
        while probe and line is None:
            line = self.reader.lines.get(probe)
            probe = probe[:-1]
        self.errors.append(PolicyError(_dotted(path), line or self.reader.lines.get(()), message))

    # Typed getters: each reports its own error and returns a safe default.

    def mapping(self, value: Any, path: Path, allowed: set[str]) -> dict:
        if value is None:
            return {}
        if not isinstance(value, dict):
            self.error(path, "must be a mapping")
            return {}
        for key in sorted(set(value) - allowed):
            self.error(path + (key,), f"unknown key (expected one of: {', '.join(sorted(allowed))})")
        return value

    def listing(self, value: Any, path: Path) -> list:
        if value is None:
            return []
        if not isinstance(value, list):
            self.error(path, "must be a list")
            return []
        return value

    def text(self, data: dict, key: str, path: Path, *, required: bool = False, default: str = "") -> str:
        value = data.get(key)
        if value is None:
            if required:
                self.error(path + (key,), "is required")
            return default
        if not isinstance(value, str):
            self.error(path + (key,), f"must be text, got {value!r}")
            return default
        return value

    def boolean(self, data: dict, key: str, path: Path, default: bool) -> bool:
        value = data.get(key, default)
        if not isinstance(value, bool):
            self.error(path + (key,), f"must be true or false, got {value!r}")
            return default
        return value

    def duration(self, data: dict, key: str, path: Path, *, required: bool = False) -> timedelta | None:
        value = data.get(key)
        if value is None:
            if required:
                self.error(path + (key,), "is required (a duration such as 30m or 4h)")
            return None
        try:
            return parse_duration(value if isinstance(value, str) else repr(value))
        except ValueError as exc:
            self.error(path + (key,), str(exc))
            return None

    def names(self, data: dict, key: str, path: Path, seen: dict[str, Path]) -> tuple[str, ...]:
        items = self.listing(data.get(key), path + (key,))
        out = []
        for i, item in enumerate(items):
            if not isinstance(item, str) or not item.strip():
                self.error(path + (key, i), f"must be a name, got {item!r}")
                continue
            seen.setdefault(item, path + (key, i))
            out.append(item)
        return tuple(out)

    # The document.

    def policy(self, data: Any) -> list[RoleSpec]:
        if data is None:
            self.error((), "the file is empty; expected `roles:` and `eligibility:`")
            return []
        top = self.mapping(data, (), {"roles", "eligibility"})
        roles = []
        slugs: dict[str, int] = {}
        for i, raw in enumerate(self.listing(top.get("roles"), ("roles",))):
            spec = self.role(raw, ("roles", i))
            if spec is None:
                continue
            if spec.slug in slugs:
                self.error(("roles", i, "slug"), f"duplicate slug {spec.slug!r} (also roles[{slugs[spec.slug]}])")
                continue
            slugs[spec.slug] = i
            roles.append(spec)
        by_slug = {r.slug: r for r in roles}
        for i, raw in enumerate(self.listing(top.get("eligibility"), ("eligibility",))):
            path = ("eligibility", i)
            entry = self.mapping(raw, path, _ELIGIBILITY_KEYS)
            slug = self.text(entry, "role", path, required=True)
            users = self.names(entry, "users", path, self.users_seen)
            groups = self.names(entry, "groups", path, self.groups_seen)
            if not users and not groups:
                self.error(path, "names no users and no groups")
            if slug and slug not in by_slug:
                self.error(path + ("role",), f"no role {slug!r} in this file")
                continue
            if slug:
                by_slug[slug].eligible_users.update(users)
                by_slug[slug].eligible_groups.update(groups)
        self.check_directory()
        return roles

    def role(self, raw: Any, path: Path) -> RoleSpec | None:
        data = self.mapping(raw, path, _ROLE_KEYS)
        if not data:
            if raw is not None and isinstance(raw, dict):
                self.error(path, "is empty")
            return None
        slug = self.text(data, "slug", path, required=True)
        if slug:
            try:
                slug_validator(slug)
                if len(slug) > 64:
                    raise ValueError
            except Exception:  # noqa: BLE001 - Django's ValidationError or the length check
                self.error(path + ("slug",), f"{slug!r} must be lowercase letters, digits and hyphens (at most 64)")
        name = self.text(data, "name", path, required=True)
        if len(name) > 200:
            self.error(path + ("name",), "at most 200 characters")
        max_duration = self.duration(data, "max_duration", path, required=True)
        default_duration = self.duration(data, "default_duration", path) or max_duration
        min_duration = self.duration(data, "min_duration", path)
        max_total = self.duration(data, "max_total_duration", path)
        if max_duration and default_duration and default_duration > max_duration:
            self.error(path + ("default_duration",), "is longer than max_duration")
        if min_duration and default_duration and min_duration > default_duration:
            self.error(path + ("min_duration",), "is longer than default_duration")
        if max_total and max_duration and max_total < max_duration:
            self.error(path + ("max_total_duration",), "is shorter than max_duration")

        break_glass = self.boolean(data, "break_glass", path, False)
        approval_path = path + ("approval",)
        approval = self.mapping(data.get("approval"), approval_path, _APPROVAL_KEYS)
        auto_approve = self.boolean(approval, "auto_approve", approval_path, False)
        request_ttl = self.duration(approval, "request_ttl", approval_path) or timedelta(hours=24)
        stages = []
        for j, raw_stage in enumerate(self.listing(approval.get("stages"), approval_path + ("stages",))):
            stage = self.stage(raw_stage, approval_path + ("stages", j))
            if stage:
                stages.append(stage)
        if not stages and not auto_approve and not break_glass:
            self.error(approval_path, "needs at least one stage under approval.stages, or auto_approve: true")
        if break_glass and auto_approve:
            self.error(approval_path + ("auto_approve",), "break-glass roles activate without approval already")

        target_path = path + ("target",)
        if "target" not in data:
            self.error(target_path, "is required (connector and config)")
        target = self.mapping(data.get("target"), target_path, _TARGET_KEYS)
        connector = self.text(target, "connector", target_path, required="target" in data)
        config = target.get("config") or {}
        if connector:
            from grants.connectors import REGISTRY

            if connector not in REGISTRY:
                self.error(
                    target_path + ("connector",),
                    f"unknown connector {connector!r} (known: {', '.join(sorted(REGISTRY))})",
                )
            else:
                for problem in REGISTRY[connector].validate_config(config):
                    self.error(target_path + ("config",), problem)

        description = self.text(data, "description", path)
        requires_justification = self.boolean(data, "requires_justification", path, True)
        requires_ticket = self.boolean(data, "requires_ticket", path, False)
        requires_mfa = self.boolean(data, "requires_mfa", path, False)
        authoritative = self.boolean(target, "authoritative", target_path, False)
        if not slug or not name or not max_duration:
            return None
        return RoleSpec(
            slug=slug,
            name=name,
            description=description,
            max_duration=max_duration,
            default_duration=default_duration or max_duration,
            min_duration=min_duration,
            max_total_duration=max_total,
            requires_justification=requires_justification,
            requires_ticket=requires_ticket,
            requires_mfa=requires_mfa,
            break_glass=break_glass,
            auto_approve=auto_approve,
            request_ttl=request_ttl,
            stages=stages,
            connector=connector,
            connector_config=config if isinstance(config, dict) else {},
            authoritative=authoritative,
        )

    def stage(self, raw: Any, path: Path) -> StageSpec | None:
        data = self.mapping(raw, path, _STAGE_KEYS)
        approvers = self.mapping(data.get("approvers"), path + ("approvers",), _APPROVER_KEYS)
        users = self.names(approvers, "users", path + ("approvers",), self.users_seen)
        groups = self.names(approvers, "groups", path + ("approvers",), self.groups_seen)
        required = data.get("required", 1)
        if isinstance(required, bool) or not isinstance(required, int) or not 1 <= required <= 20:
            self.error(path + ("required",), f"must be a whole number from 1 to 20, got {required!r}")
            required = 1
        if not users and not groups:
            self.error(path + ("approvers",), "names no users and no groups")
            return None
        if not groups and required > len(set(users)):
            self.error(path + ("required",), f"needs {required} approvals but names only {len(set(users))} user(s)")
        return StageSpec(users=tuple(dict.fromkeys(users)), groups=tuple(dict.fromkeys(groups)), required=required)

    def check_directory(self) -> None:
        """Every user and group named must exist: a typo must not silently grant or block."""
        known_users = set(User.objects.filter(username__in=self.users_seen).values_list("username", flat=True))
        for name, path in self.users_seen.items():
            if name not in known_users:
                self.error(path, f"no user {name!r}")
        known_groups = set(Group.objects.filter(name__in=self.groups_seen).values_list("name", flat=True))
        for name, path in self.groups_seen.items():
            if name not in known_groups:
                self.error(path, f"no group {name!r}")


def load(text: str) -> Policy:
    """Parse and validate a policy; raise PolicyInvalid listing every problem."""
    reader = _Reader(text)
    data = reader.read()
    roles: list[RoleSpec] = []
    if not reader.errors:
        roles = _Validator(reader).policy(data)
    if reader.errors:
        raise PolicyInvalid(sorted(reader.errors, key=lambda e: (e.line or 0, e.path)))
    return Policy(roles=roles, digest=hashlib.sha256(text.encode()).hexdigest())


# --- Applying --------------------------------------------------------------------------------------


@dataclass
class Change:
    kind: str  # created, updated, retired, restored, kept, grants_ended, warning
    role: str
    detail: str = ""

    def __str__(self) -> str:
        return f"{self.kind:<9} {self.role}{': ' + self.detail if self.detail else ''}"


_SCALAR_FIELDS = (
    "name",
    "description",
    "max_duration",
    "default_duration",
    "min_duration",
    "max_total_duration",
    "requires_justification",
    "requires_ticket",
    "requires_mfa",
    "break_glass",
    "auto_approve",
    "request_ttl",
    "connector",
    "connector_config",
    "authoritative",
)


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


def _sync_role(spec: RoleSpec, now) -> list[Change]:
    changes: list[Change] = []
    role = Role.objects.filter(slug=spec.slug).first()
    values = {name: getattr(spec, name) for name in _SCALAR_FIELDS}
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

    if _stages_of(role) != _normal(spec.stages):
        role.stages.all().delete()
        for position, stage in enumerate(spec.stages):
            row = ApprovalStage.objects.create(role=role, position=position, required=stage.required)
            row.users.set(User.objects.filter(username__in=stage.users))
            row.groups.set(Group.objects.filter(name__in=stage.groups))
        described = "; ".join(
            f"stage {i + 1}: {s.required} of users={list(s.users)} groups={list(s.groups)}"
            for i, s in enumerate(spec.stages)
        )
        changes.append(Change("updated", spec.slug, f"approval stages → {described or 'none'}"))

    current_users = set(role.eligibilities.filter(user__isnull=False).values_list("user__username", flat=True))
    current_groups = set(role.eligibilities.filter(group__isnull=False).values_list("group__name", flat=True))
    add_users, drop_users = spec.eligible_users - current_users, current_users - spec.eligible_users
    add_groups, drop_groups = spec.eligible_groups - current_groups, current_groups - spec.eligible_groups
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
    return changes


def apply(
    policy: Policy,
    *,
    actor: AbstractBaseUser | None = None,
    prune: bool = False,
    dry_run: bool = False,
    via: str = "cli",
    source: str = "",
    now=None,
) -> list[Change]:
    """Make the catalog match the policy. With dry_run, report the same changes and write nothing."""
    from approvals.services import request_close_for_user
    from broker.catalog import is_eligible
    from grants.connectors import connector_class
    from grants.models import Grant
    from grants.services import grant_revoke

    now = now or timezone.now()
    changes: list[Change] = []
    to_end: list[tuple[int, str]] = []
    to_cancel: list[int] = []
    with transaction.atomic():
        in_file = {spec.slug for spec in policy.roles}
        for spec in policy.roles:
            changes += _sync_role(spec, now)
        for role in Role.objects.filter(managed_by_policy=True, retired_at__isnull=True).exclude(slug__in=in_file):
            if not prune:
                changes.append(Change("kept", role.slug, "not in the file; --prune retires it"))
                continue
            role.retired_at = now
            role.save(update_fields=["retired_at"])
            changes.append(Change("retired", role.slug, "removed from the file"))
            to_end += [
                (pk, Grant.EndReason.ROLE_RETIRED)
                for pk in role.grants.filter(status__in=["scheduled", "active"]).values_list("pk", flat=True)
            ]
            to_cancel += list(role.requests.filter(status="pending").values_list("pk", flat=True))

        # Grants of people who are no longer eligible.
        for spec in policy.roles:
            live = Grant.objects.filter(role__slug=spec.slug, status__in=["scheduled", "active"]).select_related(
                "user", "role"
            )
            lost = [g for g in live if not is_eligible(g.user, g.role)]
            if lost and prune:
                to_end += [(g.pk, Grant.EndReason.ELIGIBILITY_LOST) for g in lost]
            elif lost:
                who = ", ".join(sorted(g.user.get_username() for g in lost))
                changes.append(
                    Change(
                        "warning",
                        spec.slug,
                        f"{who} no longer eligible but hold(s) a live grant until it expires; --prune ends it",
                    )
                )

        verb = "to be " if dry_run else ""
        if to_end:
            changes.append(Change("ending", "-", f"{len(to_end)} live grant(s) {verb}ended"))
        if to_cancel:
            changes.append(Change("closing", "-", f"{len(to_cancel)} pending request(s) {verb}cancelled"))

        real_changes = [c for c in changes if c.kind not in ("kept", "warning")]
        if real_changes:
            audit.record(
                "policy.applied",
                actor=actor,
                target=("policy", policy.digest[:12]),
                via=via,
                data={
                    "sha256": policy.digest,
                    "source": source,
                    "prune": prune,
                    "changes": [str(c) for c in real_changes],
                },
            )
        if dry_run:
            transaction.set_rollback(True)
            return changes

    # Side effects after the catalog is committed: targets, then ended grants and requests.
    for spec in policy.roles:
        connector_class(spec.connector)(spec.connector_config).prepare()
    for pk, reason in to_end:
        grant_revoke(grant_id=pk, actor=None, reason=f"policy: {reason}", end_reason=reason, via=via, now=now)
    for pk in to_cancel:
        request_close_for_user(request_id=pk, actor=actor, reason="the role was retired", via=via, now=now)
    return changes
