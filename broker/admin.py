"""The Django admin for the catalog; the audit trail and tokens are read-only here.

Every change made in the admin to what decides access (roles, their approval stages and
eligibility; users and groups in accounts/admin.py) is written to the audit trail as one action,
``admin.changed``, with the model, the object, the operation and the changed fields (values too,
secrets never), by whom and from which address. Those admins also declare ``step_up_for_changes``:
the site (accounts/admin_site.py) asks for a fresh second factor before their forms open.

Roles that come from the policy file are read-only here, stages and eligibility included: the
file is the source of truth (change it and run ``manage.py apply_policy``).
"""

from __future__ import annotations

from datetime import timedelta

from django.contrib import admin
from django.db import models, transaction
from django.utils.safestring import mark_safe

from broker import audit
from broker.durations import format_duration
from broker.http import client_ip
from broker.models import ApprovalStage, AuditEvent, Channel, Eligibility, EligibilityExclusion, Role

ADMIN_CHANGED = "admin.changed"
# Form fields whose values never go into the trail (only that they changed).
SECRET_FIELDS = frozenset({"password", "password1", "password2", "key", "token", "secret"})

POLICY_NOTE = (
    "This role comes from the policy file, which is the source of truth: it is read-only here, "
    "with its approval stages and eligibility. Change it in the policy file and run "
    "<code>python manage.py apply_policy FILE</code> (see docs/policy.md)."
)


class ReadOnlyAdmin(admin.ModelAdmin):
    """Rows that only services write: no add, change or delete from the admin."""

    def has_add_permission(self, request, obj=None):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False


def plain(value):
    """A value as the audit trail keeps it: JSON-friendly, related rows by name, lists sorted."""
    if isinstance(value, models.Model):
        return str(value)
    if isinstance(value, (models.QuerySet, list, tuple, set)):
        return sorted(plain(v) for v in value)
    if isinstance(value, timedelta):
        return format_duration(value)
    if value is None or isinstance(value, (bool, int, float, str, dict)):
        return value
    return str(value)


def form_changes(form, *, created: bool = False) -> dict:
    """The fields a bound ModelForm changed: {field: {"from": old, "to": new}}, secrets without values."""
    changes = {}
    for name in form.changed_data:
        if name in SECRET_FIELDS:
            changes[name] = {"changed": True}
            continue
        new = plain(form.cleaned_data.get(name))
        changes[name] = {"to": new} if created else {"from": plain(form.initial.get(name)), "to": new}
    return changes


def label(obj: models.Model) -> str:
    return f"{obj._meta.app_label}.{obj._meta.model_name}"


class AuditedAdmin(admin.ModelAdmin):
    """Writes admin.changed for every add, change (inline rows too) and delete made through it."""

    step_up_for_changes = True

    def audit_change(self, request, obj: models.Model, *, operation: str, changes: dict | None = None) -> None:
        """One admin.changed event; the accounts admin overrides it for people (subject: the person)."""
        with transaction.atomic():
            audit.record(
                ADMIN_CHANGED,
                actor=request.user,
                target=obj,
                via=Channel.PORTAL,
                ip=client_ip(request),
                role=self.audit_role(obj),
                data=self.audit_data(obj, operation=operation, changes=changes),
            )

    @staticmethod
    def audit_data(obj: models.Model, *, operation: str, changes: dict | None) -> dict:
        changes = changes or {}
        return {
            "model": label(obj),
            "object": str(obj),
            "operation": operation,
            "fields": sorted(changes),
            "changes": changes,
        }

    def audit_role(self, obj: models.Model) -> str:
        return ""

    def save_model(self, request, obj, form, change):
        super().save_model(request, obj, form, change)
        # The admin runs this inside its transaction: the event commits with the change, or neither.
        if not change or form.changed_data:
            self.audit_change(
                request,
                obj,
                operation="changed" if change else "created",
                changes=form_changes(form, created=not change),
            )

    def save_formset(self, request, form, formset, change):
        by_instance = {id(f.instance): f for f in formset.forms}
        super().save_formset(request, form, formset, change)
        for row in formset.new_objects:
            row_form = by_instance.get(id(row))
            self.audit_change(
                request, row, operation="created", changes=form_changes(row_form, created=True) if row_form else {}
            )
        for row, _fields in formset.changed_objects:
            row_form = by_instance.get(id(row))
            self.audit_change(request, row, operation="changed", changes=form_changes(row_form) if row_form else {})
        for row in formset.deleted_objects:
            self.audit_change(request, row, operation="deleted")

    def delete_model(self, request, obj):
        self.audit_change(request, obj, operation="deleted")
        super().delete_model(request, obj)

    def delete_queryset(self, request, queryset):
        # The "delete selected" action runs outside the admin's transaction: one for the lot.
        with transaction.atomic():
            for obj in queryset:
                self.delete_model(request, obj)


class _PolicyRowInline(admin.TabularInline):
    """Rows of a role: read-only when the role comes from the policy file."""

    extra = 0

    def _managed(self, obj) -> bool:
        return obj is not None and getattr(obj, "managed_by_policy", False)

    def has_add_permission(self, request, obj=None):
        return not self._managed(obj) and super().has_add_permission(request, obj)

    def has_change_permission(self, request, obj=None):
        return not self._managed(obj) and super().has_change_permission(request, obj)

    def has_delete_permission(self, request, obj=None):
        return not self._managed(obj) and super().has_delete_permission(request, obj)


class ApprovalStageInline(_PolicyRowInline):
    model = ApprovalStage
    filter_horizontal = ("users", "groups")


class EligibilityInline(_PolicyRowInline):
    model = Eligibility
    autocomplete_fields = ("user", "group")


@admin.register(Role)
class RoleAdmin(AuditedAdmin):
    list_display = (
        "slug",
        "name",
        "max",
        "auto_approve",
        "requires_mfa",
        "break_glass",
        "connector",
        "managed_by_policy",
        "retired_at",
    )
    list_filter = ("break_glass", "requires_mfa", "auto_approve", "managed_by_policy", "connector")
    search_fields = ("slug", "name", "description")
    readonly_fields = ("managed_by_policy", "retired_at", "created_at", "updated_at")
    inlines = (ApprovalStageInline, EligibilityInline)

    @admin.display(description="max duration")
    def max(self, obj: Role) -> str:
        return format_duration(obj.max_duration)

    def audit_role(self, obj: models.Model) -> str:
        role = obj if isinstance(obj, Role) else getattr(obj, "role", None)
        return role.slug if role is not None else ""

    def has_change_permission(self, request, obj=None):
        if obj is not None and obj.managed_by_policy:
            return False
        return super().has_change_permission(request, obj)

    def has_delete_permission(self, request, obj=None):
        if obj is not None and obj.managed_by_policy:
            return False
        return super().has_delete_permission(request, obj)

    def get_fieldsets(self, request, obj=None):
        fieldsets = super().get_fieldsets(request, obj)
        if obj is not None and obj.managed_by_policy:
            (name, options), *rest = fieldsets
            fieldsets = [(name, {**options, "description": mark_safe(POLICY_NOTE)}), *rest]  # noqa: S308 - a constant
        return fieldsets


@admin.register(EligibilityExclusion)
class EligibilityExclusionAdmin(AuditedAdmin):
    """Eligibilities the broker removed while the policy file still lists them (docs/policy.md). Deleting
    one (audited) lets the file's entry count again at the next apply."""

    list_display = ("role", "user", "group", "reason", "detail", "created_at")
    list_filter = ("reason",)
    readonly_fields = ("role", "user", "group", "reason", "detail", "created_at")

    def audit_role(self, obj: models.Model) -> str:
        return obj.role.slug

    def has_add_permission(self, request, obj=None):
        return False

    def has_change_permission(self, request, obj=None):
        return False


@admin.register(AuditEvent)
class AuditEventAdmin(ReadOnlyAdmin):
    list_display = ("seq", "at", "actor_name", "action", "target_type", "target_id", "role", "subject", "channel", "ip")
    list_filter = ("action", "channel", "target_type")
    search_fields = ("actor_name", "subject", "role", "target_id")
    date_hierarchy = "at"
