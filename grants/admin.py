"""Grants in the admin: read-only rows; revoking and retrying go through the services."""

from __future__ import annotations

from django.contrib import admin, messages
from django.template.response import TemplateResponse

from broker.admin import ReadOnlyAdmin
from broker.errors import BrokerError
from broker.http import client_ip
from broker.models import Channel
from grants import services
from grants.models import Grant, TargetReport


@admin.register(Grant)
class GrantAdmin(ReadOnlyAdmin):
    list_display = (
        "id",
        "user",
        "role",
        "status",
        "starts_at",
        "expires_at",
        "ended_at",
        "end_reason",
        "break_glass",
        "attempts",
    )
    list_filter = ("status", "end_reason", "break_glass", "role")
    search_fields = ("user__username", "role__slug")
    actions = ("revoke", "retry_removal")

    @admin.action(description="Revoke selected grants now (asks why)")
    def revoke(self, request, queryset):
        """Ask for the reason first (the holder and the auditors read it), then revoke each grant."""
        reason = (request.POST.get("reason") or "").strip()
        if "apply" not in request.POST or not reason:
            context = {
                **self.admin_site.each_context(request),
                "title": "Revoke grants",
                "grants": queryset.select_related("user", "role"),
                "reason": reason,
                "missing": "apply" in request.POST,
                "opts": self.model._meta,
                "max_reason": services.MAX_REASON,
            }
            return TemplateResponse(request, "admin/grants/revoke.html", context)
        for grant in queryset:
            try:
                grant = services.grant_revoke(
                    grant_id=grant.pk, actor=request.user, reason=reason, via=Channel.PORTAL, ip=client_ip(request)
                )
                messages.info(request, f"Grant #{grant.pk}: {grant.status}.")
            except BrokerError as exc:
                messages.error(request, f"Grant #{grant.pk}: {exc.detail}")
        return None

    @admin.action(description="Retry the removal of selected grants")
    def retry_removal(self, request, queryset):
        for grant in queryset:
            grant = services.grant_remove(grant_id=grant.pk, force=True)
            messages.info(
                request, f"Grant #{grant.pk}: {grant.status}{' — ' + grant.last_error if grant.last_error else ''}."
            )


@admin.register(TargetReport)
class TargetReportAdmin(ReadOnlyAdmin):
    """The latest reconciliation of each target (also GET /api/v1/reconciliation/)."""

    list_display = ("target", "connector", "outcome", "checked_at", "holders", "authoritative")
    list_filter = ("outcome", "connector", "authoritative")
    search_fields = ("target",)
