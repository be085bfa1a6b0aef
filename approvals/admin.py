"""Requests in the admin: read-only rows; approving and denying go through the services."""

from __future__ import annotations

from django.contrib import admin, messages

from approvals import services
from approvals.models import AccessRequest, Decision
from broker.admin import ReadOnlyAdmin
from broker.errors import BrokerError
from broker.http import client_ip
from broker.models import Channel


class DecisionInline(admin.TabularInline):
    model = Decision
    extra = 0
    can_delete = False
    readonly_fields = ("approver", "stage", "verdict", "comment", "channel", "created_at")

    def has_add_permission(self, request, obj=None):
        return False

    def has_change_permission(self, request, obj=None):
        return False


@admin.register(AccessRequest)
class AccessRequestAdmin(ReadOnlyAdmin):
    list_display = ("id", "requester", "role", "kind", "status", "duration", "created_at", "expires_at", "decided_at")
    list_filter = ("status", "kind", "break_glass", "role")
    search_fields = ("requester__username", "role__slug", "justification", "ticket")
    inlines = (DecisionInline,)
    actions = ("approve", "deny")

    def _decide(self, request, queryset, verb: str) -> None:
        done = 0
        for req in queryset:
            try:
                if verb == "approve":
                    services.request_approve(
                        request_id=req.pk,
                        approver=request.user,
                        comment="approved in the admin",
                        via=Channel.PORTAL,
                        ip=client_ip(request),
                    )
                else:
                    services.request_deny(
                        request_id=req.pk,
                        approver=request.user,
                        comment="denied in the admin",
                        via=Channel.PORTAL,
                        ip=client_ip(request),
                    )
                done += 1
            except BrokerError as exc:
                messages.error(request, f"Request #{req.pk}: {exc.detail}")
        if done:
            messages.success(request, f"{done} request(s): {verb} recorded as {request.user.get_username()}.")

    @admin.action(description="Approve selected requests (as me)")
    def approve(self, request, queryset):
        self._decide(request, queryset, "approve")

    @admin.action(description="Deny selected requests (as me)")
    def deny(self, request, queryset):
        self._decide(request, queryset, "deny")
