"""What a policy file may say: the format as pydantic models, with the rules across fields.

`load` reads the file (`reader`), validates it against `Policy` and checks that the people it
names exist. Pydantic reports every problem at once, each at a location such as
("roles", 0, "approval", "stages", 1, "required"); `load` puts each on its line in the file and
words it for people, so that an error reads
`line 12: roles[0].approval.stages[1].required: must be a whole number from 1 to 20, got True`.

The models are strict: `"yes please"` is not a boolean and `true` is not a number (YAML's own
`yes`/`no` are booleans before they get here). A key written with no value counts as absent,
except for true/false and numbers, where a blank is an error rather than a quiet default.
"""

from __future__ import annotations

import hashlib
import ipaddress
import re
from collections.abc import Iterator
from datetime import timedelta
from typing import Annotated, Any, get_args

from annotated_types import Ge, Le
from django.conf import settings
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group
from django.core.exceptions import ValidationError as DjangoValidationError
from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PrivateAttr,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)
from pydantic.fields import FieldInfo
from pydantic_core import ErrorDetails, PydanticCustomError

from broker import conditions
from broker.durations import parse_duration
from broker.models import RESOURCE_NAME, slug_validator
from broker.policy.reader import Path, PolicyInvalid, Reader
from grants.connectors import load as connectors
from grants.connectors import uses_resource, with_resource

User = get_user_model()


def _problems(*messages: str, at: Path = ()) -> PydanticCustomError:
    """An error in our own words (one or more sentences), placed `at` a key below the one that raises it."""
    return PydanticCustomError("policy", "{summary}", {"summary": "; ".join(messages), "messages": messages, "at": at})


def _placed_problems(problems: list[tuple[Path, str]]) -> PydanticCustomError:
    """Several errors, each at its own key below the one that raises them."""
    return PydanticCustomError(
        "policy",
        "{summary}",
        {"summary": "; ".join(m for _, m in problems), "placed": [(tuple(at), m) for at, m in problems]},
    )


# --- Values ------------------------------------------------------------------------------------------


def _duration(value: Any) -> timedelta:
    if isinstance(value, timedelta):
        return value
    # A bare number (`max_duration: 4`) is shown as written: "expected a duration such as 30m …, got '4'".
    return parse_duration(value if isinstance(value, str) else repr(value))


def _slug(value: str) -> str:
    try:
        slug_validator(value)
    except DjangoValidationError:
        pass
    else:
        if len(value) <= 64:
            return value
    raise _problems(f"{value!r} must be lowercase letters, digits and hyphens (at most 64)")


def _name(value: Any) -> str:
    if not isinstance(value, str) or not value.strip():
        raise _problems(f"must be a name, got {value!r}")
    return value


Duration = Annotated[timedelta, BeforeValidator(_duration)]
Slug = Annotated[str, AfterValidator(_slug)]
# Usernames or group names, each once, in the order written.
Names = Annotated[
    list[Annotated[str, BeforeValidator(_name)]], AfterValidator(lambda names: list(dict.fromkeys(names)))
]


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)

    @model_validator(mode="before")
    @classmethod
    def _blank_is_absent(cls, data: Any) -> Any:
        """`key:` with no value takes the default, except for true/false and numbers.

        A blank `requires_mfa:` is an error, not a quiet `false`.
        """
        if not isinstance(data, dict):
            return data
        fields = cls.model_fields
        return {
            key: value
            for key, value in data.items()
            if value is not None or key not in fields or fields[key].annotation in (bool, int)
        }


# --- The file ------------------------------------------------------------------------------------------


class Approvers(_Model):
    users: Names = []
    groups: Names = []

    @model_validator(mode="after")
    def _names_someone(self) -> Approvers:
        if not self.users and not self.groups:
            raise _problems("names no users and no groups")
        return self


class Stage(_Model):
    # Absent approvers are validated as `{}`, so that the message says the stage names no one.
    approvers: Approvers = Field(default_factory=dict, validate_default=True)
    required: Annotated[int, Field(ge=1, le=20)] = 1

    @model_validator(mode="after")
    def _enough_people(self) -> Stage:
        users = self.approvers.users
        if not self.approvers.groups and self.required > len(users):
            raise _problems(f"needs {self.required} approvals but names only {len(users)} user(s)", at=("required",))
        return self


class Escalation(_Model):
    # A stage undecided for this long is escalated; half of request_ttl when absent.
    after: Duration | None = None
    # Who may then decide it; the members of the ESCALATION_GROUP setting's group when absent.
    approvers: Approvers | None = None

    @model_validator(mode="after")
    def _someone_to_escalate_to(self) -> Escalation:
        if self.approvers is None and not settings.ESCALATION_GROUP:
            raise _problems("names no approvers, and the ESCALATION_GROUP setting is not set", at=("approvers",))
        return self


class Approval(_Model):
    auto_approve: bool = False
    request_ttl: Duration = timedelta(hours=24)
    stages: list[Stage] = []
    escalation: Escalation | None = None

    @model_validator(mode="after")
    def _escalates_before_expiry(self) -> Approval:
        after = self.escalation.after if self.escalation else None
        if after is not None and after >= self.request_ttl:
            raise _problems(
                "must be shorter than request_ttl, or the request expires first", at=("escalation", "after")
            )
        return self


class Target(_Model):
    connector: str
    config: dict[str, Any] = Field(default_factory=dict, validate_default=True)
    authoritative: bool = False

    @field_validator("connector")
    @classmethod
    def _known(cls, connector: str) -> str:
        if connector not in connectors():
            raise _problems(f"unknown connector {connector!r} (known: {', '.join(sorted(connectors()))})")
        return connector

    @field_validator("config")
    @classmethod
    def _fits_the_connector(cls, config: dict[str, Any], info: ValidationInfo) -> dict[str, Any]:
        connector = connectors().get(info.data.get("connector", ""))  # absent when the connector is not valid
        # {resource} stands for a resource name (lowercase letters, digits, '.', '_', '-'): checked as one.
        problems = connector.validate_config(with_resource(config, "resource")) if connector else []
        if problems:
            # Each problem at its own key of the config (and so on its own line), where it names one.
            raise _placed_problems([p if isinstance(p, tuple) else ((), p) for p in problems])
        return config


class ChatWebhook(_Model):
    """A chat webhook that hears of a role's requests and grants: its URL is a secret, so the file
    names only where it is (an environment variable or a file of the worker), never the URL."""

    format: str
    url_env: str | None = None
    url_file: str | None = None

    @field_validator("format")
    @classmethod
    def _known_format(cls, value: str) -> str:
        if value not in ("slack", "teams"):
            raise _problems(f"must be slack or teams, got {value!r}")
        return value

    @field_validator("url_env")
    @classmethod
    def _variable_name(cls, value: str | None) -> str | None:
        if value is not None and not re.fullmatch(r"[A-Z_][A-Z0-9_]{0,99}", value):
            raise _problems(f"must name an environment variable (CAPITALS_AND_DIGITS), got {value!r}")
        return value

    @field_validator("url_file")
    @classmethod
    def _absolute_path(cls, value: str | None) -> str | None:
        if value is not None and not value.startswith("/"):
            raise _problems(f"must be an absolute path, got {value!r}")
        return value

    @model_validator(mode="after")
    def _one_place(self) -> ChatWebhook:
        if (self.url_env is None) == (self.url_file is None):
            raise _problems("give exactly one of url_env (an environment variable) and url_file (a file)")
        return self


class Notify(_Model):
    chat: list[ChatWebhook] = []


class TimeWindow(_Model):
    """A weekly window of a role's conditions: on these days, between these hours (wall clock of
    the conditions' time_zone)."""

    days: list[str] = Field(default_factory=lambda: list(conditions.DAYS))
    hours: str = Field(description="hours such as '08:00-18:00'")

    @field_validator("days")
    @classmethod
    def _known_days(cls, days: list[str]) -> list[str]:
        if not days:
            raise _problems("names no days (leave it out for every day)")
        try:
            conditions.parse_days(days)
        except ValueError as exc:
            raise _problems(str(exc)) from None
        return list(dict.fromkeys(days))

    @field_validator("hours")
    @classmethod
    def _hours(cls, hours: str) -> str:
        try:
            conditions.parse_hours(hours)
        except ValueError as exc:
            raise _problems(str(exc)) from None
        return hours.strip()


class Conditions(_Model):
    """Where, when and from what a role may be asked for (and activated): broker/conditions.py."""

    networks: list[str] = []
    time_zone: str = "UTC"
    windows: list[TimeWindow] = []
    posture: list[str] = []
    max_risk: str | None = None

    @field_validator("networks")
    @classmethod
    def _networks(cls, networks: list[str]) -> list[str]:
        problems = []
        for i, network in enumerate(networks):
            try:
                ipaddress.ip_network(network, strict=True)
            except ValueError:
                problems.append(((i,), f"{network!r} is not a network such as 10.0.0.0/8 or 2001:db8::/32"))
        if problems:
            raise _placed_problems(problems)
        return list(dict.fromkeys(networks))

    @field_validator("time_zone")
    @classmethod
    def _zone(cls, name: str) -> str:
        try:
            conditions.time_zone(name)
        except ValueError as exc:
            raise _problems(str(exc)) from None
        return name

    @field_validator("posture")
    @classmethod
    def _posture(cls, values: list[str]) -> list[str]:
        if any(not isinstance(v, str) or not v.strip() or len(v) > 64 for v in values):
            raise _problems("each accepted posture must be a word of at most 64 characters")
        return list(dict.fromkeys(v.strip() for v in values))

    @field_validator("max_risk")
    @classmethod
    def _risk(cls, value: str | None) -> str | None:
        if value is not None and value not in conditions.RISK_LEVELS[:-1]:
            raise _problems(f"must be one of {', '.join(conditions.RISK_LEVELS[:-1])}, got {value!r}")
        return value

    @model_validator(mode="after")
    def _posture_is_read(self) -> Conditions:
        if self.posture and not settings.DEVICE_POSTURE_HEADER:
            raise _problems(
                "needs the DEVICE_POSTURE_HEADER setting (no posture signal is read without it)", at=("posture",)
            )
        return self

    def stored(self) -> dict[str, Any]:
        """The form Role.conditions keeps: only what is set, so that no conditions is {}."""
        data: dict[str, Any] = {}
        if self.networks:
            data["networks"] = self.networks
        if self.windows:
            data["time_zone"] = self.time_zone
            data["windows"] = [w.model_dump() for w in self.windows]
        if self.posture:
            data["posture"] = self.posture
        if self.max_risk:
            data["max_risk"] = self.max_risk
        return data


class Resources(_Model):
    """What a role may be asked for on, one at a time: names, and patterns a name must match in full."""

    names: list[str] = []
    patterns: list[str] = []

    @field_validator("names")
    @classmethod
    def _names(cls, names: list[str]) -> list[str]:
        problems = [
            ((i,), f"{name!r} must be lowercase letters, digits, '.', '_' and '-' (at most 63), starting with a "
             "letter or digit")
            for i, name in enumerate(names)
            if not isinstance(name, str) or not RESOURCE_NAME.fullmatch(name)
        ]  # fmt: skip
        if problems:
            raise _placed_problems(problems)
        return list(dict.fromkeys(names))

    @field_validator("patterns")
    @classmethod
    def _patterns(cls, patterns: list[str]) -> list[str]:
        problems = []
        for i, pattern in enumerate(patterns):
            try:
                re.compile(pattern)
            except (re.error, TypeError) as exc:
                problems.append(((i,), f"{pattern!r} is not a regular expression: {exc}"))
                continue
            if len(pattern) > 200:
                problems.append(((i,), "at most 200 characters"))
        if problems:
            raise _placed_problems(problems)
        return patterns

    @property
    def declared(self) -> bool:
        return bool(self.names or self.patterns)

    def stored(self) -> dict[str, Any]:
        """The form Role.resources keeps: only what is set, so that no resources is {}."""
        return {key: value for key, value in (("names", self.names), ("patterns", self.patterns)) if value}


class Review(_Model):
    # Right-sizing: an eligibility nobody used for this long is listed as unused; the
    # UNUSED_ELIGIBILITY_AFTER setting (90 days) when absent.
    unused_after: Duration | None = None
    # Remove unused eligibilities of the role automatically (audited; the file is not changed, the
    # broker keeps them out until the file drops them: apply_policy --suggest).
    remove_unused: bool = False

    @field_validator("unused_after")
    @classmethod
    def _at_least_a_day(cls, value: timedelta | None) -> timedelta | None:
        if value is not None and value < timedelta(days=1):
            raise _problems("must be at least 1d")
        return value


class Recertify(_Model):
    # The role's owners confirm or remove each eligibility of the entry this often.
    every: Duration = Field(description="a duration such as 90d")
    # Unanswered this long after it was due, the review expires (reminder at a third, escalation at
    # two thirds of it).
    grace: Duration = timedelta(days=14)
    # When the review expires unanswered, remove the eligibility (otherwise it stays, escalated).
    expire: bool = False

    @field_validator("every", "grace")
    @classmethod
    def _at_least_a_day(cls, value: timedelta) -> timedelta:
        if value < timedelta(days=1):
            raise _problems("must be at least 1d")
        return value


class Role(_Model):
    # Field order matters: a field's checks see the fields above it (info.data) that are valid.
    slug: Slug
    name: str = Field(max_length=200)
    description: str = ""
    max_duration: Duration = Field(description="a duration such as 30m or 4h")
    default_duration: Duration | None = None  # max_duration when absent
    min_duration: Duration | None = None
    max_total_duration: Duration | None = None
    requires_justification: bool = True
    requires_ticket: bool = False
    requires_mfa: bool = False
    break_glass: bool = False
    approval: Approval = Field(default_factory=dict, validate_default=True)
    conditions: Conditions = Field(default_factory=dict, validate_default=True)
    resources: Resources = Field(default_factory=dict, validate_default=True)
    target: Target = Field(description="connector and config")
    notify: Notify = Field(default_factory=dict, validate_default=True)
    review: Review = Field(default_factory=dict, validate_default=True)
    # Who reviews the role's eligibilities (recertify); the first stage's approvers when absent.
    owners: Approvers | None = None

    @model_validator(mode="before")
    @classmethod
    def _not_empty(cls, data: Any) -> Any:
        if data is None or data == {}:
            raise _problems("is empty")
        return data

    @field_validator("slug")
    @classmethod
    def _once_in_the_file(cls, slug: str, info: ValidationInfo) -> str:
        # Roles are validated in order, so the first with a slug is seen first (see Policy._note_slugs).
        seen = (info.context or {}).get("slugs_seen")
        if seen is not None:
            if slug in seen:
                raise _problems(f"duplicate slug {slug!r} (also roles[{info.context['first_role_with_slug'][slug]}])")
            seen.add(slug)
        return slug

    @field_validator("default_duration")
    @classmethod
    def _default_within_max(cls, value: timedelta | None, info: ValidationInfo) -> timedelta | None:
        longest = info.data.get("max_duration")
        if value and longest and value > longest:
            raise _problems("is longer than max_duration")
        return value

    @field_validator("min_duration")
    @classmethod
    def _min_within_default(cls, value: timedelta | None, info: ValidationInfo) -> timedelta | None:
        default = info.data.get("default_duration") or info.data.get("max_duration")
        if value and default and value > default:
            raise _problems("is longer than default_duration")
        return value

    @field_validator("max_total_duration")
    @classmethod
    def _total_at_least_max(cls, value: timedelta | None, info: ValidationInfo) -> timedelta | None:
        longest = info.data.get("max_duration")
        if value and longest and value < longest:
            raise _problems("is shorter than max_duration")
        return value

    @field_validator("approval")
    @classmethod
    def _approved_somehow(cls, approval: Approval, info: ValidationInfo) -> Approval:
        break_glass = info.data.get("break_glass", False)
        if break_glass and approval.auto_approve:
            raise _problems("break-glass roles activate without approval already", at=("auto_approve",))
        if not approval.stages and not approval.auto_approve and not break_glass:
            raise _problems("needs at least one stage under approval.stages, or auto_approve: true")
        if approval.escalation is not None and (approval.auto_approve or break_glass):
            raise _problems("roles approved at once have no stage to escalate", at=("escalation",))
        return approval

    @field_validator("target")
    @classmethod
    def _resource_in_config(cls, target: Target, info: ValidationInfo) -> Target:
        resources = info.data.get("resources")
        if resources is not None and not resources.declared and uses_resource(target.config):
            raise _problems("names {resource}, but the role declares no resources", at=("config",))
        return target

    @model_validator(mode="after")
    def _default_duration_is_max_when_absent(self) -> Role:
        if self.default_duration is None:
            self.default_duration = self.max_duration
        return self


class Eligibility(_Model):
    role: str
    users: Names = []
    groups: Names = []
    recertify: Recertify | None = None

    @field_validator("role")
    @classmethod
    def _in_the_file(cls, slug: str, info: ValidationInfo) -> str:
        slugs = (info.context or {}).get("first_role_with_slug")
        if slugs is not None and slug not in slugs:
            raise _problems(f"no role {slug!r} in this file")
        return slug

    @model_validator(mode="after")
    def _names_someone(self) -> Eligibility:
        if not self.users and not self.groups:
            raise _problems("names no users and no groups")
        return self


class Policy(_Model):
    """The whole file. Validate it with `load`, which supplies the context the rules across roles need."""

    roles: list[Role] = []
    eligibility: list[Eligibility] = []
    _digest: str = PrivateAttr("")

    @model_validator(mode="before")
    @classmethod
    def _note_slugs(cls, data: Any, info: ValidationInfo) -> Any:
        """Duplicate slugs and eligibility for unknown roles are checked against every slug written
        in the file, so that they are reported even when some role has other errors."""
        if data is None:
            raise _problems("the file is empty; expected `roles:` and `eligibility:`")
        if isinstance(data, dict) and info.context is not None:
            roles = data.get("roles")
            first: dict[str, int] = {}
            for i, role in enumerate(roles if isinstance(roles, list) else []):
                slug = role.get("slug") if isinstance(role, dict) else None
                if isinstance(slug, str):
                    first.setdefault(slug, i)
            info.context["first_role_with_slug"] = first
            info.context["slugs_seen"] = set()
        return data

    @property
    def digest(self) -> str:
        """SHA-256 of the file's text, recorded in the audit event of an apply."""
        return self._digest

    def recertify(self, slug: str) -> dict[str, Recertify]:
        """Who (a username, or group:NAME) → the recertification of the first entry that sets one."""
        found: dict[str, Recertify] = {}
        for entry in self.eligibility:
            if entry.role == slug and entry.recertify is not None:
                for who in [*entry.users, *(f"group:{g}" for g in entry.groups)]:
                    found.setdefault(who, entry.recertify)
        return found

    def eligible(self, slug: str) -> tuple[set[str], set[str]]:
        """The users and the groups the file makes eligible for a role."""
        entries = [entry for entry in self.eligibility if entry.role == slug]
        return {u for e in entries for u in e.users}, {g for e in entries for g in e.groups}


# --- Loading -------------------------------------------------------------------------------------------


def load(text: str) -> Policy:
    """Parse and validate a policy; raise PolicyInvalid listing every problem."""
    reader = Reader(text)
    data = reader.read()
    errors = reader.errors
    policy = None
    if not errors:
        try:
            policy = Policy.model_validate(data, context={})
        except ValidationError as exc:
            errors += [reader.located(path, message) for error in exc.errors() for path, message in _worded(error)]
        errors += [reader.located(path, message) for path, message in check_directory(data)]
    if errors or policy is None:
        raise PolicyInvalid(sorted(errors, key=lambda e: (e.line or 0, e.path)))
    policy._digest = hashlib.sha256(text.encode()).hexdigest()
    return policy


def check_directory(data: Any) -> Iterator[tuple[Path, str]]:
    """Every user and group named must exist: a typo must not silently grant or block.

    Reads the names from the plain data rather than from a validated Policy, so that unknown
    people are reported together with the file's other problems. Each name once, where first written.
    """
    users: dict[str, Path] = {}
    groups: dict[str, Path] = {}
    for kind, name, path in _people_named(data):
        (users if kind == "users" else groups).setdefault(name, path)
    known = set(User.objects.filter(username__in=users).values_list("username", flat=True))
    yield from ((path, f"no user {name!r}") for name, path in users.items() if name not in known)
    known = set(Group.objects.filter(name__in=groups).values_list("name", flat=True))
    yield from ((path, f"no group {name!r}") for name, path in groups.items() if name not in known)


def _people_named(data: Any) -> Iterator[tuple[str, str, Path]]:
    """("users" or "groups", name, path) for each name in approvers and eligibility, where the file has that shape."""

    def mapping(value: Any) -> dict:
        return value if isinstance(value, dict) else {}

    def listing(value: Any) -> list:
        return value if isinstance(value, list) else []

    places: list[tuple[Any, Path]] = []
    for i, role in enumerate(listing(mapping(data).get("roles"))):
        approval = mapping(mapping(role).get("approval"))
        for j, stage in enumerate(listing(approval.get("stages"))):
            places.append((mapping(stage).get("approvers"), ("roles", i, "approval", "stages", j, "approvers")))
        escalation = mapping(approval.get("escalation"))
        places.append((escalation.get("approvers"), ("roles", i, "approval", "escalation", "approvers")))
        places.append((mapping(role).get("owners"), ("roles", i, "owners")))
    places += [(entry, ("eligibility", i)) for i, entry in enumerate(listing(mapping(data).get("eligibility")))]
    for place, path in places:
        for kind in ("users", "groups"):
            for k, name in enumerate(listing(mapping(place).get(kind))):
                if isinstance(name, str) and name.strip():
                    yield kind, name, path + (kind, k)


# --- Wording pydantic's errors ----------------------------------------------------------------------


def _worded(error: ErrorDetails) -> list[tuple[Path, str]]:
    """One pydantic error as (path in the file, sentence) pairs: ours carry their sentences, the rest are translated."""
    path: Path = tuple(error["loc"])
    ctx = error.get("ctx") or {}
    if error["type"] == "policy":
        if "placed" in ctx:
            return [(path + tuple(at), message) for at, message in ctx["placed"]]
        return [(path + tuple(ctx["at"]), message) for message in ctx["messages"]]
    return [(path, _translated(error, path, ctx))]


def _translated(error: ErrorDetails, path: Path, ctx: dict[str, Any]) -> str:
    kind, value = error["type"], error.get("input")
    model, field = _schema_at(path)
    if kind == "missing":
        return f"is required ({field.description})" if field and field.description else "is required"
    if kind == "extra_forbidden" and model:
        return f"unknown key (expected one of: {', '.join(sorted(model.model_fields))})"
    if kind == "bool_type":
        return f"must be true or false, got {value!r}"
    if kind == "string_type":
        return f"must be text, got {value!r}"
    if kind in ("int_type", "greater_than_equal", "less_than_equal"):
        bounds = field.metadata if field else []
        low = next((m.ge for m in bounds if isinstance(m, Ge)), None)
        high = next((m.le for m in bounds if isinstance(m, Le)), None)
        span = f" from {low} to {high}" if low is not None and high is not None else ""
        return f"must be a whole number{span}, got {value!r}"
    if kind == "string_too_long":
        return f"at most {ctx['max_length']} characters"
    if kind == "list_type":
        return "must be a list"
    if kind in ("dict_type", "model_type", "model_attributes_type"):
        return "must be a mapping"
    if kind in ("value_error", "assertion_error"):
        return str(ctx["error"])
    return error["msg"]


def _schema_at(path: Path) -> tuple[type[BaseModel] | None, FieldInfo | None]:
    """The model holding the last key of `path` and that key's field (None where there is none)."""
    annotation: Any = Policy
    model: type[BaseModel] | None = Policy
    field: FieldInfo | None = None
    for part in path:
        if isinstance(part, int):  # an item of a list[...]
            annotation = next(iter(get_args(annotation)), None)
            continue
        model = annotation if isinstance(annotation, type) and issubclass(annotation, BaseModel) else None
        field = model.model_fields.get(part) if model else None
        annotation = field.annotation if field else None
    return model, field
