"""Webhook endpoints (the client's URLs and events) and the message log, scoped to the user's programs."""

from django.contrib import admin
from simple_history.admin import SimpleHistoryAdmin

from loyalty.admin import PROGRAM_FILTER, ScopedAdmin
from loyalty.notifications.models import Message, WebhookEndpoint


@admin.register(WebhookEndpoint)
class WebhookEndpointAdmin(ScopedAdmin, SimpleHistoryAdmin):
    list_display = ("url", "program", "events", "is_active", "created_at")
    list_filter = (PROGRAM_FILTER, "is_active")
    list_select_related = ("program",)
    search_fields = ("url", "description")
    readonly_fields = ("secret", "created_at")


@admin.register(Message)
class MessageAdmin(ScopedAdmin):
    list_display = ("created_at", "program", "member", "kind", "status", "to")
    list_filter = (PROGRAM_FILTER, "kind", "status")
    list_select_related = ("program", "member")
    raw_id_fields = ("member",)
    search_fields = ("dedupe_key", "to", "member__membership_number")

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False
