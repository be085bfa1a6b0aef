"""The outbox, read-only: what was sent, what failed (and why), what a crash left `sending`."""

from django.contrib import admin

from notifications.models import Notification


@admin.register(Notification)
class NotificationAdmin(admin.ModelAdmin):
    list_display = (
        "created_at", "kind", "object_id", "channel", "recipient", "destination", "revision", "status", "attempts",
        "sent_at",
    )  # fmt: skip
    list_filter = ("status", "channel", "kind")
    search_fields = ("recipient__username", "object_id")
    date_hierarchy = "created_at"

    def has_add_permission(self, request, obj=None):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False
