"""Requests in the admin: read-only rows; approving and denying go through the services."""

from __future__ import annotations

from django.contrib import admin, messages
from django.shortcuts import redirect

from accounts import stepup
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

    def _decide(self, request, queryset, verb: str):
        """Decide as the signed-in admin, through the same service and rules as every channel.

        Roles that require MFA need a second factor verified within MFA_STEP_UP_WINDOW: the admin's
        own step-up (the session's verification time). Without one, the admin is sent to verify and
        comes back to this list, to choose the requests and the action again.
        """
        queryset = queryset.select_related("role")
        if any(req.role.requires_mfa for req in queryset) and not stepup.is_recent(request):
            messages.warning(
                request,
                "Deciding for a role that requires MFA needs a fresh second factor: verify, then select "
                "the requests and the action again.",
            )
            return redirect(stepup.step_up_url(request, request.get_full_path()))
        mfa_at = stepup.verified_at(request)
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
                        mfa_at=mfa_at,
                    )
                else:
                    services.request_deny(
                        request_id=req.pk,
                        approver=request.user,
                        comment="denied in the admin",
                        via=Channel.PORTAL,
                        ip=client_ip(request),
                        mfa_at=mfa_at,
                    )
                done += 1
            except BrokerError as exc:
                messages.error(request, f"Request #{req.pk}: {exc.detail}")
        if done:
            messages.success(request, f"{done} request(s): {verb} recorded as {request.user.get_username()}.")
        return None

    @admin.action(description="Approve selected requests (as me)")
    def approve(self, request, queryset):
        return self._decide(request, queryset, "approve")

    @admin.action(description="Deny selected requests (as me)")
    def deny(self, request, queryset):
        return self._decide(request, queryset, "deny")
