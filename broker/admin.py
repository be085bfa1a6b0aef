"""The Django admin for the catalog; the audit trail and tokens are read-only here."""

from __future__ import annotations

from django.contrib import admin

from broker import audit
from broker.durations import format_duration
from broker.http import client_ip
from broker.models import ApprovalStage, AuditEvent, Channel, Eligibility, Role

admin.site.site_header = "Privileged access broker"
admin.site.site_title = "Access broker admin"


class ReadOnlyAdmin(admin.ModelAdmin):
    """Rows that only services write: no add, change or delete from the admin."""

    def has_add_permission(self, request, obj=None):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False


class ApprovalStageInline(admin.TabularInline):
    model = ApprovalStage
    extra = 0
    filter_horizontal = ("users", "groups")


class EligibilityInline(admin.TabularInline):
    model = Eligibility
    extra = 0
    autocomplete_fields = ("user", "group")


@admin.register(Role)
class RoleAdmin(admin.ModelAdmin):
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

    def save_model(self, request, obj, form, change):
        super().save_model(request, obj, form, change)
        # The admin wraps this in a transaction: the event commits with the change.
        audit.record(
            "role.changed" if change else "role.created",
            actor=request.user,
            target=obj,
            via=Channel.PORTAL,
            ip=client_ip(request),
            role=obj.slug,
            data={"fields": form.changed_data, "source": "admin"},
        )

    def save_formset(self, request, form, formset, change):
        super().save_formset(request, form, formset, change)
        if formset.has_changed():
            audit.record(
                "role.changed",
                actor=request.user,
                target=form.instance,
                via=Channel.PORTAL,
                ip=client_ip(request),
                role=form.instance.slug,
                data={"part": formset.model._meta.verbose_name_plural, "source": "admin"},
            )

    def delete_model(self, request, obj):
        audit.record(
            "role.deleted", actor=request.user, target=obj, via=Channel.PORTAL, ip=client_ip(request), role=obj.slug
        )
        super().delete_model(request, obj)

    def delete_queryset(self, request, queryset):
        for role in queryset:
            self.delete_model(request, role)


@admin.register(AuditEvent)
class AuditEventAdmin(ReadOnlyAdmin):
    list_display = ("seq", "at", "actor_name", "action", "target_type", "target_id", "role", "subject", "channel", "ip")
    list_filter = ("action", "channel", "target_type")
    search_fields = ("actor_name", "subject", "role", "target_id")
    date_hierarchy = "at"
