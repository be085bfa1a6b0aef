"""Grants: the time-boxed holding of a role. Lifecycle lives in services.py."""

from __future__ import annotations

import hashlib
from datetime import datetime

from django.conf import settings
from django.db import models
from django.db.models import F, Q
from django.utils import timezone

from broker.models import Role

# Live: gives access now or will (one per user and role). Ending: the end is decided and the removal
# from the target is not confirmed yet (never effective, still being acted on).
LIVE_STATUSES = ("scheduled", "active")
ENDING_STATUSES = ("revoking", "revoke_failed")


class GrantQuerySet(models.QuerySet):
    def effective(self, now: datetime | None = None, *, resource: str | None = None) -> GrantQuerySet:
        """The one rule that says whether a grant gives access right now (docs/design.md).

        A deactivated account holds nothing, whatever its grants say: they end within seconds
        (approvals.eligibility), and until then this rule already refuses them. ``resource``: only
        the grants on that resource of a resource-scoped role ("" for the roles without resources).
        """
        now = now or timezone.now()
        effective = self.filter(
            status=Grant.Status.ACTIVE, starts_at__lte=now, expires_at__gt=now, user__is_active=True
        )
        return effective if resource is None else effective.filter(resource=resource)

    def live(self) -> GrantQuerySet:
        return self.filter(status__in=LIVE_STATUSES)

    def ending(self) -> GrantQuerySet:
        return self.filter(status__in=ENDING_STATUSES)

    def unfinished(self) -> GrantQuerySet:
        """Live or ending: the broker still has work to do on them in the target."""
        return self.filter(status__in=LIVE_STATUSES + ENDING_STATUSES)


class Grant(models.Model):
    audit_type = "grant"

    class Status(models.TextChoices):
        SCHEDULED = "scheduled"
        ACTIVE = "active"
        REVOKING = "revoking"
        EXPIRED = "expired"
        REVOKED = "revoked"
        REVOKE_FAILED = "revoke_failed"
        FAILED = "failed"

    class EndReason(models.TextChoices):
        EXPIRY = "expiry"
        RELINQUISHED = "relinquished"
        REVOKED = "revoked"
        RISK_SIGNAL = "risk_signal"
        ELIGIBILITY_LOST = "eligibility_lost"
        ROLE_RETIRED = "role_retired"
        ACTIVATION_FAILED = "activation_failed"
        NOT_ACTIVATED = "not_activated"
        # The role's conditions (a time window, the holder's risk level) failed when it was due to start.
        CONDITIONS_FAILED = "conditions_failed"

    request = models.OneToOneField("approvals.AccessRequest", on_delete=models.PROTECT, related_name="grant")
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="grants")
    role = models.ForeignKey(Role, on_delete=models.PROTECT, related_name="grants")
    # The resource held, for a role with resources (Role.resources); "" otherwise.
    resource = models.CharField(max_length=63, blank=True, default="")
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.SCHEDULED)
    starts_at = models.DateTimeField()
    expires_at = models.DateTimeField()
    created_at = models.DateTimeField()
    activated_at = models.DateTimeField(null=True, blank=True)
    # When the end was decided, and when the connector confirmed the removal.
    end_requested_at = models.DateTimeField(null=True, blank=True)
    ended_at = models.DateTimeField(null=True, blank=True)
    end_reason = models.CharField(max_length=32, choices=EndReason.choices, blank=True)
    ended_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    end_comment = models.TextField(blank=True)
    # Connector work in progress (activation or removal): attempts so far, when to try again,
    # and the last error the connector gave.
    attempts = models.PositiveSmallIntegerField(default=0)
    next_attempt_at = models.DateTimeField(null=True, blank=True)
    last_error = models.TextField(blank=True)
    # The expires_at for which a revoke task with an ETA is queued (the sweeper queues the rest).
    eta_queued_for = models.DateTimeField(null=True, blank=True)

    break_glass = models.BooleanField(default=False)
    reviewed_at = models.DateTimeField(null=True, blank=True)
    reviewed_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    review_note = models.TextField(blank=True)

    objects = GrantQuerySet.as_manager()

    class Meta:
        ordering = ["-starts_at", "-pk"]
        constraints = [
            models.CheckConstraint(
                condition=Q(
                    status__in=["scheduled", "active", "revoking", "expired", "revoked", "revoke_failed", "failed"]
                ),
                name="grant_status_valid",
            ),
            models.CheckConstraint(condition=Q(expires_at__gt=F("starts_at")), name="grant_ends_after_start"),
            # A person holds a role (on one resource) through one live grant at a time; more time is
            # an extension.
            models.UniqueConstraint(
                fields=["user", "role", "resource"],
                condition=Q(status__in=LIVE_STATUSES),
                name="grant_one_live_per_user_role_resource",
            ),
            # Ended means removed: no grant is expired or revoked without a confirmed removal time.
            models.CheckConstraint(
                condition=~Q(status__in=["expired", "revoked"]) | Q(ended_at__isnull=False),
                name="grant_ended_has_time",
            ),
        ]
        indexes = [
            # Lists are newest first: the first page is read from the top of this index.
            models.Index(fields=["-starts_at", "-id"], name="grant_newest_first"),
            # The review of a period reads the grants that ended after its start (or not at all).
            models.Index(fields=["ended_at"], name="grant_ended_at"),
            # Break-glass grants awaiting their post-hoc review (the review page, every time it opens).
            models.Index(
                fields=["-starts_at"],
                condition=Q(break_glass=True, reviewed_at__isnull=True),
                name="grant_awaiting_review",
            ),
            models.Index(fields=["expires_at"], condition=Q(status="active"), name="grant_active_expiry"),
            models.Index(fields=["starts_at"], condition=Q(status="scheduled"), name="grant_scheduled_start"),
            models.Index(
                fields=["next_attempt_at"],
                condition=Q(status__in=ENDING_STATUSES),
                name="grant_removal_retry",
            ),
        ]

    def __str__(self) -> str:
        on = f" on {self.resource}" if self.resource else ""
        return f"grant #{self.pk} {self.user} → {self.role}{on} ({self.status})"

    @property
    def is_live(self) -> bool:
        return self.status in LIVE_STATUSES

    def is_running(self, now: datetime | None = None) -> bool:
        """Live and not past its expiry: it can still be extended, relinquished or revoked."""
        return self.is_live and self.expires_at > (now or timezone.now())

    def is_effective(self, now: datetime | None = None) -> bool:
        now = now or timezone.now()
        return self.status == self.Status.ACTIVE and self.starts_at <= now < self.expires_at and self.user.is_active


class AccessLockQuerySet(models.QuerySet):
    def hold(self, target_key: tuple, user) -> None:
        """Lock one piece of access in a target for one user until the transaction ends.

        Taken after the grant's row, around every connector call and the "does another grant still
        need this access?" decision, so that two grants sharing the access (two roles on one
        group) can neither both skip its removal nor have one's removal undo the other's activation.
        """
        key = lock_key(target_key)
        self.bulk_create([AccessLock(key=key, user_id=user.pk)], ignore_conflicts=True)
        self.select_for_update().get(key=key, user_id=user.pk)

    def hold_many(self, pairs) -> None:
        """``hold`` for several (target_key, user id) pairs at once: one insert and one locking read,
        in a fixed order (sorted), so that two batches with overlapping pairs never deadlock."""
        rows = sorted({(lock_key(target_key), user_id) for target_key, user_id in pairs})
        if not rows:
            return
        self.bulk_create([AccessLock(key=key, user_id=user_id) for key, user_id in rows], ignore_conflicts=True)
        by_key: dict[str, list[int]] = {}
        for key, user_id in rows:
            by_key.setdefault(key, []).append(user_id)
        wanted = Q()
        for key, user_ids in by_key.items():  # usually one target: one condition, not one per person
            wanted |= Q(key=key, user_id__in=user_ids)
        # PostgreSQL locks the rows in the order it returns them: sorted, as every batch does.
        list(self.select_for_update().filter(wanted).order_by("key", "user_id").values_list("pk", flat=True))


def lock_key(target_key: tuple) -> str:
    return hashlib.sha256(repr(target_key).encode()).hexdigest()


class AccessLock(models.Model):
    """A row per (piece of access in a target, user) to lock; it holds no state of its own."""

    key = models.CharField(max_length=64, help_text="SHA-256 of the connector's target_key()")
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="+")

    objects = AccessLockQuerySet.as_manager()

    class Meta:
        constraints = [models.UniqueConstraint(fields=["key", "user"], name="access_lock_one_per_target_user")]

    def __str__(self) -> str:
        return f"access lock {self.key[:12]} for user {self.user_id}"


class TargetReport(models.Model):
    """The latest reconciliation of one target (grants/reconcile.py): who held the access there
    without an effective grant (drift) and what was done about it. One row per target, replaced at
    every run; the audit trail keeps the history (drift.detected, drift.removed, drift.restored)."""

    class Outcome(models.TextChoices):
        # Every holder in the target has an effective grant, and every effective grant is there.
        IN_SYNC = "in_sync"
        # Drift was found: members without a grant (removed or reported) or missing grants (restored).
        DRIFT = "drift"
        # The target could not be read, or fixing it failed for someone (retried at the next run).
        ERROR = "error"
        # The connector cannot list who holds the access (a webhook): nothing to compare.
        NOT_CHECKED = "not_checked"

    key = models.CharField(max_length=64, unique=True, help_text="SHA-256 of the connector's target_key()")
    target = models.CharField(max_length=500)
    connector = models.CharField(max_length=64)
    roles = models.JSONField(default=list)
    authoritative = models.BooleanField(default=False)
    outcome = models.CharField(max_length=16, choices=Outcome.choices)
    checked_at = models.DateTimeField()
    holders = models.PositiveIntegerField(null=True, blank=True)
    removed = models.JSONField(default=list)
    detected = models.JSONField(default=list)
    restored = models.JSONField(default=list)
    errors = models.JSONField(default=list)

    class Meta:
        ordering = ["target", "pk"]
        constraints = [
            models.CheckConstraint(
                condition=Q(outcome__in=["in_sync", "drift", "error", "not_checked"]), name="target_report_outcome"
            )
        ]

    def __str__(self) -> str:
        return f"{self.target}: {self.outcome} at {self.checked_at:%Y-%m-%d %H:%M}"
