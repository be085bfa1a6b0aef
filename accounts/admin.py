"""API tokens in the admin: read-only rows; revoking goes through the service."""

from __future__ import annotations

from django.contrib import admin, messages

from accounts.models import ApiToken
from accounts.tokens import token_revoke
from broker.admin import ReadOnlyAdmin
from broker.http import client_ip
from broker.models import Channel


@admin.register(ApiToken)
class ApiTokenAdmin(ReadOnlyAdmin):
    list_display = ("prefix", "user", "name", "scopes", "created_at", "expires_at", "last_used_at", "revoked_at")
    list_filter = ("revoked_at",)
    search_fields = ("prefix", "user__username", "name")
    actions = ("revoke",)

    @admin.action(description="Revoke selected tokens")
    def revoke(self, request, queryset):
        for token in queryset.filter(revoked_at__isnull=True):
            token_revoke(
                token_id=token.pk, owner=token.user, actor=request.user, via=Channel.PORTAL, ip=client_ip(request)
            )
        messages.success(request, "Tokens revoked.")
