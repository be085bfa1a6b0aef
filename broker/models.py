"""The catalog (roles, approval stages, eligibility) and the audit trail's rows."""

from __future__ import annotations

import re
from datetime import timedelta

from django.conf import settings
from django.contrib.auth.models import Group
from django.core.exceptions import ValidationError
from django.core.validators import MinValueValidator, RegexValidator
from django.db import models
from django.db.models import F, Q
from django.utils import timezone

from broker.conditions import problems_in_stored

# What a resource name may be, whatever the role's patterns say: safe in an SQL identifier, an LDAP
# DN, a group name or a URL path once substituted for {resource} in a target config.
RESOURCE_NAME = re.compile(r"[a-z0-9][a-z0-9_.-]{0,62}")

slug_validator = RegexValidator(r"^[a-z0-9][a-z0-9-]*$", "Use lowercase letters, digits and hyphens.")


class Channel(models.TextChoices):
    PORTAL = "portal"
    API = "api"
    EMAIL = "email"
    WORKER = "worker"
    CLI = "cli"
    # The company's identity provider: sign-ins through OpenID Connect (and the group changes they
    # bring), and SCIM 2.0 provisioning (joiners, movers, leavers).
    OIDC = "oidc"
    SCIM = "scim"


def _resource_problems(data) -> list[str]:
    if not isinstance(data, dict) or set(data) - {"names", "patterns"}:
        return ['must be a mapping with "names" and/or "patterns"']
    problems = [
        f"{name!r} is not a resource name (lowercase letters, digits, '.', '_', '-', at most 63)"
        for name in data.get("names") or []
        if not isinstance(name, str) or not RESOURCE_NAME.fullmatch(name)
    ]
    for pattern in data.get("patterns") or []:
        try:
            re.compile(pattern)
        except (re.error, TypeError) as exc:
            problems.append(f"{pattern!r} is not a regular expression: {exc}")
    return problems


class RoleQuerySet(models.QuerySet):
    def live(self) -> RoleQuerySet:
        return self.filter(retired_at__isnull=True)


class Role(models.Model):
    slug = models.CharField(max_length=64, unique=True, validators=[slug_validator])
    name = models.CharField(max_length=200)
    description = models.TextField(blank=True)

    max_duration = models.DurationField()
    default_duration = models.DurationField()
    min_duration = models.DurationField(null=True, blank=True)
    # Cap on the whole life of a grant, extensions included, counted from its start. Empty: the
    # role's max_duration, so extensions can only use what is left of it.
    max_total_duration = models.DurationField(null=True, blank=True)

    requires_justification = models.BooleanField(default=True)
    requires_ticket = models.BooleanField(default=False)
    requires_mfa = models.BooleanField(default=False)
    break_glass = models.BooleanField(default=False)

    auto_approve = models.BooleanField(default=False)
    request_ttl = models.DurationField(default=timedelta(hours=24))
    # Escalation (approval.escalation in the policy file): a stage undecided for this long is
    # escalated to the people below (empty: the ESCALATION_GROUP setting's group), who may then
    # decide it. Empty: half of request_ttl.
    escalation_after = models.DurationField(null=True, blank=True)
    escalation_users = models.ManyToManyField(settings.AUTH_USER_MODEL, blank=True, related_name="+")
    escalation_groups = models.ManyToManyField(Group, blank=True, related_name="+")

    connector = models.CharField(max_length=64, default="django_group")
    connector_config = models.JSONField(default=dict, blank=True)
    authoritative = models.BooleanField(default=False)
    # Chat webhooks that hear of this role's requests and grants, besides the global ones: a list of
    # {"format": "slack"|"teams", "url_env": NAME} or {"format": ..., "url_file": PATH} (never a URL).
    chat_webhooks = models.JSONField(default=list, blank=True)
    # Conditions on asking for the role and on its activation (policy file `conditions`, read by
    # broker.conditions.from_stored): networks, time_zone, windows, posture, max_risk. Empty: none.
    conditions = models.JSONField(default=dict, blank=True)
    # Resources (policy file `resources`): {"names": [...], "patterns": [...]}. A role with resources
    # is asked for and held per resource (one database, one environment), and its target config
    # names the chosen one as {resource}. Empty: the role has no resources and is held as a whole.
    resources = models.JSONField(default=dict, blank=True)
    # Right-sizing (review in the policy file): an eligibility nobody used for this long is listed as
    # unused (empty: the UNUSED_ELIGIBILITY_AFTER setting); with remove_unused, it is removed.
    unused_after = models.DurationField(null=True, blank=True)
    remove_unused = models.BooleanField(default=False)
    # Who reviews the role's eligibilities (recertification; owners in the policy file). Nobody
    # named: the approvers of the first stage.
    owner_users = models.ManyToManyField(settings.AUTH_USER_MODEL, blank=True, related_name="+")
    owner_groups = models.ManyToManyField(Group, blank=True, related_name="+")

    managed_by_policy = models.BooleanField(default=False, editable=False)
    retired_at = models.DateTimeField(null=True, blank=True, editable=False)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    objects = RoleQuerySet.as_manager()

    # Everything a policy file sets for a role besides its slug, stages and eligibility
    # (docs/policy.md): the policy loader writes exactly these, the admin edits them, and requesters
    # see all but the operator-only ones (GET roles/).
    POLICY_FIELDS = (
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
        "escalation_after",
        "connector",
        "connector_config",
        "authoritative",
        "chat_webhooks",
        "conditions",
        "resources",
        "unused_after",
        "remove_unused",
    )
    OPERATOR_ONLY_FIELDS = (
        "request_ttl",
        "escalation_after",
        "connector",
        "connector_config",
        "authoritative",
        "chat_webhooks",
        "conditions",
        "unused_after",
        "remove_unused",
    )

    class Meta:
        ordering = ["slug"]
        constraints = [
            models.CheckConstraint(
                condition=Q(default_duration__lte=F("max_duration")),
                name="role_default_within_max",
            ),
            models.CheckConstraint(
                condition=Q(min_duration__isnull=True) | Q(min_duration__lte=F("default_duration")),
                name="role_min_within_default",
            ),
            models.CheckConstraint(
                condition=Q(max_total_duration__isnull=True) | Q(max_total_duration__gte=F("max_duration")),
                name="role_total_at_least_max",
            ),
            models.CheckConstraint(
                condition=Q(escalation_after__isnull=True)
                | Q(escalation_after__gt=timedelta(0), escalation_after__lt=F("request_ttl")),
                name="role_escalation_within_ttl",
            ),
        ]

    def __str__(self) -> str:
        return self.slug

    @property
    def is_retired(self) -> bool:
        return self.retired_at is not None

    def clean(self) -> None:
        """Conditions and resources typed in the admin hold the same rules as a policy file's."""
        super().clean()
        errors = {}
        problems = problems_in_stored(self.conditions)
        if problems:
            errors["conditions"] = problems
        problems = _resource_problems(self.resources)
        if problems:
            errors["resources"] = problems
        if errors:
            raise ValidationError(errors)

    @property
    def has_resources(self) -> bool:
        return bool(self.resources.get("names") or self.resources.get("patterns"))

    @property
    def resource_names(self) -> list[str]:
        """The resources named one by one (a pattern's matches cannot be listed)."""
        return list(self.resources.get("names") or [])

    def allows_resource(self, name: str) -> bool:
        """``name`` is one of the role's resources: named, or matching one of its patterns in full."""
        if not RESOURCE_NAME.fullmatch(name or ""):
            return False
        if name in self.resource_names:
            return True
        return any(re.fullmatch(pattern, name) for pattern in self.resources.get("patterns") or [])

    @property
    def lifetime_cap(self) -> timedelta:
        return self.max_total_duration or self.max_duration

    @property
    def requires_step_up(self) -> bool:
        """Asking for it (or for more time) needs a fresh second factor: MFA roles and break-glass."""
        return self.requires_mfa or self.break_glass

    @property
    def approved_at_once(self) -> bool:
        """Nobody approves: auto-approve roles, and break-glass (reviewed afterwards instead)."""
        return self.auto_approve or self.break_glass

    @property
    def escalation_delay(self) -> timedelta:
        """How long a stage may wait undecided before it is escalated (default: half the request TTL)."""
        return self.escalation_after or self.request_ttl / 2

    @property
    def requires_reason(self) -> bool:
        """Asking for it needs a justification: when the role says so, and always for break-glass."""
        return self.requires_justification or self.break_glass


class ApprovalStage(models.Model):
    """One stage of a role's approval policy: `required` distinct approvals from these people."""

    role = models.ForeignKey(Role, on_delete=models.CASCADE, related_name="stages")
    position = models.PositiveSmallIntegerField()
    required = models.PositiveSmallIntegerField(default=1, validators=[MinValueValidator(1)])
    users = models.ManyToManyField(settings.AUTH_USER_MODEL, blank=True, related_name="+")
    groups = models.ManyToManyField(Group, blank=True, related_name="+")

    class Meta:
        ordering = ["role", "position"]
        constraints = [
            models.UniqueConstraint(fields=["role", "position"], name="stage_unique_position"),
            models.CheckConstraint(condition=Q(required__gte=1), name="stage_required_positive"),
        ]

    def __str__(self) -> str:
        return f"{self.role.slug} stage {self.position + 1}"


def user_or_group_per_role(prefix: str) -> list[models.BaseConstraint]:
    """A row names a user or a group (never both), at most once per role."""
    return [
        models.CheckConstraint(
            condition=(Q(user__isnull=False) & Q(group__isnull=True)) | (Q(user__isnull=True) & Q(group__isnull=False)),
            name=f"{prefix}_user_xor_group",
        ),
        models.UniqueConstraint(fields=["role", "user"], condition=Q(user__isnull=False), name=f"{prefix}_unique_user"),
        models.UniqueConstraint(
            fields=["role", "group"], condition=Q(group__isnull=False), name=f"{prefix}_unique_group"
        ),
    ]


class Eligibility(models.Model):
    """Who may request a role: one user or every member of one group."""

    role = models.ForeignKey(Role, on_delete=models.CASCADE, related_name="eligibilities")
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.CASCADE, related_name="eligibilities"
    )
    group = models.ForeignKey(Group, null=True, blank=True, on_delete=models.CASCADE, related_name="eligibilities")
    # Since when: an eligibility younger than the role's unused_after is never called unused.
    created_at = models.DateTimeField(default=timezone.now, editable=False)
    # Recertification (recertify in the policy file's eligibility entry): the role's owners confirm
    # or remove it every `recertify_every`, counted from reviewed_at (or created_at); unanswered for
    # `recertify_grace` after it was due, it is removed when `recertify_expire` says so.
    recertify_every = models.DurationField(null=True, blank=True)
    recertify_grace = models.DurationField(null=True, blank=True)
    recertify_expire = models.BooleanField(default=False)
    reviewed_at = models.DateTimeField(null=True, blank=True, editable=False)

    class Meta:
        verbose_name_plural = "eligibilities"
        constraints = user_or_group_per_role("eligibility")

    def __str__(self) -> str:
        who = f"user {self.user}" if self.user_id else f"group {self.group}"
        return f"{who} → {self.role}"


class EligibilityExclusion(models.Model):
    """An eligibility the broker removed (unused, or by review) while the policy file still lists it.

    Applying the policy does not add it back: it reports it, with the change to make in the file
    (`apply_policy --suggest` prints the file without it). Once the file no longer lists it, the
    exclusion has done its work and is dropped; deleting it in the admin lets the file's entry count again.
    """

    class Reason(models.TextChoices):
        UNUSED = "unused"  # right-sizing: nobody used it
        REVIEW = "review"  # recertification: an owner removed it, or nobody answered in time

    role = models.ForeignKey(Role, on_delete=models.CASCADE, related_name="exclusions")
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.CASCADE, related_name="+"
    )
    group = models.ForeignKey(Group, null=True, blank=True, on_delete=models.CASCADE, related_name="+")
    reason = models.CharField(max_length=16, choices=Reason.choices)
    detail = models.CharField(max_length=300, blank=True)
    created_at = models.DateTimeField()

    class Meta:
        ordering = ["-created_at", "-pk"]
        constraints = user_or_group_per_role("exclusion")

    def __str__(self) -> str:
        who = f"user {self.user}" if self.user_id else f"group {self.group}"
        return f"{who} kept out of {self.role} ({self.reason})"

    @property
    def who(self) -> str:
        """As the policy file writes it: the username, or group:NAME."""
        return self.user.get_username() if self.user_id else f"group:{self.group.name}"


class AuditEvent(models.Model):
    """One link of the tamper-evident trail; see broker/audit/chain.py for how the chain is built."""

    seq = models.BigIntegerField(unique=True)
    at = models.DateTimeField(db_index=True)
    actor = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    # Kept as text too: the chain must verify after a user is deleted.
    actor_name = models.CharField(max_length=150)
    action = models.CharField(max_length=64, db_index=True)
    target_type = models.CharField(max_length=32)
    target_id = models.CharField(max_length=64, blank=True)
    role = models.CharField(max_length=64, blank=True, db_index=True)
    subject = models.CharField(max_length=150, blank=True, db_index=True)
    channel = models.CharField(max_length=16, choices=Channel.choices)
    ip = models.CharField(max_length=45, blank=True)
    data = models.JSONField(default=dict)
    prev_hash = models.CharField(max_length=64)
    # HMAC-SHA256 of the event's canonical content under the key named by key_id (never stored
    # here). Empty key_id: an event from before the trail was keyed, hashed with plain SHA-256.
    hash = models.CharField(max_length=64, unique=True)
    key_id = models.CharField(max_length=16, blank=True)

    class Meta:
        ordering = ["-seq"]
        indexes = [models.Index(fields=["target_type", "target_id"], name="audit_target")]

    def __str__(self) -> str:
        return f"#{self.seq} {self.action} by {self.actor_name}"


class AuditHead(models.Model):
    """A single row holding the end of the chain. Writers lock it, so the chain cannot fork."""

    id = models.PositiveSmallIntegerField(primary_key=True, default=1)
    seq = models.BigIntegerField(default=0)
    hash = models.CharField(max_length=64)

    class Meta:
        constraints = [models.CheckConstraint(condition=Q(id=1), name="audit_head_singleton")]

    def __str__(self) -> str:
        return f"audit head #{self.seq}"


class AuditVerification(models.Model):
    """The outcome of the last scheduled walk of the whole chain (a single row).

    Pages verify only the events after ``seq`` and show this for the rest. The row carries a MAC
    under the audit key, so that writing to the database cannot fake a verified state.
    """

    id = models.PositiveSmallIntegerField(primary_key=True, default=1)
    # The last event that verified, and its hash.
    seq = models.BigIntegerField(default=0)
    hash = models.CharField(max_length=64)
    at = models.DateTimeField()
    ok = models.BooleanField()
    checked = models.BigIntegerField(default=0)
    broken_seq = models.BigIntegerField(null=True, blank=True)
    reason = models.TextField(blank=True)
    key_id = models.CharField(max_length=16)
    mac = models.CharField(max_length=64)

    class Meta:
        constraints = [models.CheckConstraint(condition=Q(id=1), name="audit_verification_singleton")]

    def __str__(self) -> str:
        return f"audit verified up to #{self.seq}" if self.ok else f"audit broken at #{self.broken_seq}"


class Heartbeat(models.Model):
    """The newest proof that beat and a worker are alive: beat queues ``broker.tasks.heartbeat`` every
    HEARTBEAT_INTERVAL, and the worker that runs it writes here (one row per name)."""

    name = models.CharField(max_length=32, primary_key=True)
    at = models.DateTimeField()  # when a worker ran it
    queued_at = models.DateTimeField(null=True, blank=True)  # when beat queued it
    worker = models.CharField(max_length=200, blank=True)  # the worker's host name

    def __str__(self) -> str:
        return f"{self.name} heartbeat at {self.at:%Y-%m-%d %H:%M:%S}"


class AuditArchive(models.Model):
    """One archive that ``audit_archive`` wrote and removed from the database, newest last.

    The newest row is the **boundary** of the trail kept in the database: the first remaining event
    must be ``last_seq + 1`` and link to ``last_hash``. The row carries a MAC under the audit key
    (like the checkpoints), so writing to the database cannot move the boundary to hide deleted events.
    """

    first_seq = models.BigIntegerField()
    last_seq = models.BigIntegerField(unique=True)
    first_prev_hash = models.CharField(max_length=64)
    last_hash = models.CharField(max_length=64)
    last_key_id = models.CharField(max_length=16, blank=True)  # of the newest archived event ("": unkeyed)
    count = models.BigIntegerField()
    name = models.CharField(max_length=200)  # the archive's file name
    sha256 = models.CharField(max_length=64)  # of the compressed file
    created_at = models.DateTimeField()
    key_id = models.CharField(max_length=16)
    mac = models.CharField(max_length=64)

    class Meta:
        ordering = ["last_seq"]
        constraints = [models.CheckConstraint(condition=Q(last_seq__gte=F("first_seq")), name="audit_archive_range")]

    def __str__(self) -> str:
        return f"audit archive #{self.first_seq}-#{self.last_seq}"
