"""Access requests and the decisions of their approvers. Workflow lives in services.py."""

from __future__ import annotations

from django.conf import settings
from django.db import models
from django.db.models import Q

from broker.models import Channel, Eligibility, Role


class AccessRequest(models.Model):
    audit_type = "request"

    class Status(models.TextChoices):
        PENDING = "pending"
        APPROVED = "approved"
        DENIED = "denied"
        CANCELLED = "cancelled"
        EXPIRED = "expired"

    class Kind(models.TextChoices):
        NEW = "new"
        EXTENSION = "extension"

    role = models.ForeignKey(Role, on_delete=models.PROTECT, related_name="requests")
    requester = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="access_requests")
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.PENDING)
    kind = models.CharField(max_length=16, choices=Kind.choices, default=Kind.NEW)
    extends_grant = models.ForeignKey(
        "grants.Grant", null=True, blank=True, on_delete=models.PROTECT, related_name="extension_requests"
    )
    # The resource asked for, for a role with resources (Role.resources); "" otherwise.
    resource = models.CharField(max_length=63, blank=True, default="")
    duration = models.DurationField()
    justification = models.TextField(blank=True)
    ticket = models.CharField(max_length=200, blank=True)
    # When the requester wants the grant to start; null means as soon as it is approved.
    starts_at = models.DateTimeField(null=True, blank=True)
    break_glass = models.BooleanField(default=False)
    # Index into role.stages of the stage that decides now, and since when it waits for a decision.
    current_stage = models.PositiveSmallIntegerField(default=0)
    stage_started_at = models.DateTimeField()
    # The stage that was escalated (role.escalation_delay undecided), and when: while it is the
    # current stage, the role's escalation approvers may decide it too.
    escalated_stage = models.PositiveSmallIntegerField(null=True, blank=True)
    escalated_at = models.DateTimeField(null=True, blank=True)
    # Bumped on every change; approver email links are bound to the version they were sent for.
    version = models.PositiveIntegerField(default=1)
    channel = models.CharField(max_length=16, choices=Channel.choices)
    created_at = models.DateTimeField()
    # Pending past this moment, the request expires unanswered (role.request_ttl).
    expires_at = models.DateTimeField()
    decided_at = models.DateTimeField(null=True, blank=True)
    # Set when the requester withdraws, the request expires or a risk signal cancels it.
    closed_reason = models.CharField(max_length=200, blank=True)
    # The requester's network when they asked (IPv4 /24, IPv6 /48; empty when unknown), compared with
    # their earlier requests by the anomaly scoring (approvals/anomaly.py).
    network = models.CharField(max_length=64, blank=True)
    # Unusual against the requester's own history and their peers' (approvals/anomaly.py): each reason
    # is {"code": stable word, "sentence": what approvers and auditors read}. Asking needed a step-up.
    flagged = models.BooleanField(default=False)
    flag_reasons = models.JSONField(default=list, blank=True)

    class Meta:
        ordering = ["-created_at", "-pk"]
        constraints = [
            models.CheckConstraint(
                condition=Q(status__in=["pending", "approved", "denied", "cancelled", "expired"]),
                name="request_status_valid",
            ),
            models.CheckConstraint(condition=Q(kind__in=["new", "extension"]), name="request_kind_valid"),
            models.CheckConstraint(
                condition=Q(kind="new") | Q(extends_grant__isnull=False), name="request_extension_has_grant"
            ),
            models.UniqueConstraint(
                fields=["requester", "role", "resource"],
                condition=Q(status="pending"),
                name="request_one_pending_per_user_role_resource",
            ),
        ]
        indexes = [
            models.Index(fields=["expires_at"], condition=Q(status="pending"), name="request_pending_ttl"),
            models.Index(fields=["status", "created_at"], name="request_status_created"),
            # Lists are newest first: the first page is read from the top of this index.
            models.Index(fields=["-created_at", "-id"], name="request_newest_first"),
            # The anomaly scoring's history: a person's recent requests, per role too, and a role's
            # recent requests (peers); each read is a bounded range of one of these.
            models.Index(fields=["requester", "created_at"], name="request_requester_created"),
            models.Index(fields=["requester", "role", "created_at"], name="request_requester_role_made"),
            models.Index(fields=["role", "created_at"], name="request_role_created"),
            # The auditors' list of flagged requests, newest first.
            models.Index(fields=["-created_at"], condition=Q(flagged=True), name="request_flagged_newest"),
        ]

    def __str__(self) -> str:
        return f"request #{self.pk} {self.requester} → {self.role} ({self.status})"

    @property
    def is_pending(self) -> bool:
        return self.status == self.Status.PENDING

    @property
    def is_escalated(self) -> bool:
        """Pending, and its current stage was escalated: the escalation approvers may decide it."""
        return self.is_pending and self.escalated_stage is not None and self.escalated_stage == self.current_stage


class Decision(models.Model):
    """One approver's approve or deny on one request. An approver decides a request once."""

    class Verdict(models.TextChoices):
        APPROVE = "approve"
        DENY = "deny"

    request = models.ForeignKey(AccessRequest, on_delete=models.CASCADE, related_name="decisions")
    approver = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+")
    stage = models.PositiveSmallIntegerField()
    verdict = models.CharField(max_length=8, choices=Verdict.choices)
    # Taken by an escalation approver of the role (the stage had been escalated), not a stage approver.
    escalation = models.BooleanField(default=False)
    comment = models.TextField(blank=True)
    channel = models.CharField(max_length=16, choices=Channel.choices)
    created_at = models.DateTimeField()

    class Meta:
        ordering = ["created_at", "pk"]
        constraints = [
            models.UniqueConstraint(fields=["request", "approver"], name="decision_one_per_approver"),
            models.CheckConstraint(condition=Q(verdict__in=["approve", "deny"]), name="decision_verdict_valid"),
        ]

    def __str__(self) -> str:
        verb = "approved" if self.verdict == self.Verdict.APPROVE else "denied"
        return f"{self.approver} {verb} request #{self.request_id}"


class IdempotencyKey(models.Model):
    """The first successful answer to a ``POST requests/`` that carried an ``Idempotency-Key``.

    A retry with the same key and the same body gets this answer again instead of a second
    request; the same key with another body is refused. Kept for a day (approvals/idempotency.py).
    """

    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="+")
    key = models.CharField(max_length=200)
    # SHA-256 of the validated input (defaults applied, without the one-time code), canonical JSON.
    fingerprint = models.CharField(max_length=64)
    status_code = models.PositiveSmallIntegerField()
    response = models.JSONField(default=dict)
    created_at = models.DateTimeField()

    class Meta:
        constraints = [models.UniqueConstraint(fields=["user", "key"], name="idempotency_unique_user_key")]
        indexes = [models.Index(fields=["created_at"], name="idempotency_created")]

    def __str__(self) -> str:
        return f"idempotency key {self.key!r} of {self.user}"


class ApprovalLink(models.Model):
    """One signed link in one approver email, stored by hash so that it decides at most once.

    The token itself (signed with SECRET_KEY) names the approver, the request and the request
    version it was sent for; only its SHA-256 is kept here, so a database reader cannot forge
    or replay links.
    """

    request = models.ForeignKey(AccessRequest, on_delete=models.CASCADE, related_name="email_links")
    approver = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="+")
    version = models.PositiveIntegerField()
    token_hash = models.CharField(max_length=64, unique=True)
    created_at = models.DateTimeField()
    expires_at = models.DateTimeField()
    used_at = models.DateTimeField(null=True, blank=True)
    # The decision taken through this link (approve or deny), once used.
    used_for = models.CharField(max_length=8, blank=True)

    class Meta:
        ordering = ["-created_at", "-pk"]
        constraints = [
            models.CheckConstraint(
                condition=Q(used_at__isnull=True, used_for="")
                | Q(used_at__isnull=False, used_for__in=["approve", "deny"]),
                name="approval_link_use_recorded",
            ),
        ]

    def __str__(self) -> str:
        return f"link for {self.approver} on request #{self.request_id} v{self.version}"


class Recertification(models.Model):
    """One review of one eligibility (a user or a group for a role), by the role's owners.

    Opened when the eligibility is due (approvals/recertification.py); the owners are told, reminded,
    then the escalation approvers too; an owner confirms it (the next review counts from then) or
    removes it (at once, like any loss of eligibility). Unanswered for the grace period, it expires,
    and the eligibility with it when the policy says so. The row stays as the record.
    """

    audit_type = "recertification"

    class Status(models.TextChoices):
        PENDING = "pending"
        CONFIRMED = "confirmed"
        REMOVED = "removed"
        EXPIRED = "expired"

    eligibility = models.ForeignKey(
        Eligibility, null=True, blank=True, on_delete=models.SET_NULL, related_name="recertifications"
    )
    # Kept as rows of their own: the record stays readable once the eligibility is gone.
    role = models.ForeignKey(Role, on_delete=models.CASCADE, related_name="recertifications")
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.CASCADE, related_name="+"
    )
    group = models.ForeignKey("auth.Group", null=True, blank=True, on_delete=models.CASCADE, related_name="+")
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.PENDING)
    due_at = models.DateTimeField()
    grace_until = models.DateTimeField()
    created_at = models.DateTimeField()
    reminded_at = models.DateTimeField(null=True, blank=True)
    escalated_at = models.DateTimeField(null=True, blank=True)
    decided_at = models.DateTimeField(null=True, blank=True)
    decided_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    comment = models.TextField(blank=True)

    class Meta:
        ordering = ["due_at", "pk"]
        constraints = [
            models.CheckConstraint(
                condition=Q(status__in=["pending", "confirmed", "removed", "expired"]),
                name="recertification_status_valid",
            ),
            models.UniqueConstraint(
                fields=["eligibility"], condition=Q(status="pending"), name="recertification_one_pending"
            ),
        ]
        indexes = [models.Index(fields=["due_at"], condition=Q(status="pending"), name="recertification_pending")]

    def __str__(self) -> str:
        return f"recertification #{self.pk} of {self.who} for {self.role} ({self.status})"

    @property
    def who(self) -> str:
        """As the policy file writes it: the username, or group:NAME."""
        return self.user.get_username() if self.user_id else f"group:{self.group.name}"

    @property
    def is_pending(self) -> bool:
        return self.status == self.Status.PENDING
