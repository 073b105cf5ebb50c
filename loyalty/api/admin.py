"""API keys in the admin: scoped to the user's programs; the raw key is shown once, on creation."""

from django.contrib import admin, messages
from django.utils import timezone
from simple_history.admin import SimpleHistoryAdmin

from loyalty.admin import PROGRAM_FILTER, ScopedAdmin
from loyalty.api.models import ApiKey
from loyalty.api.services import api_key_revoke


@admin.register(ApiKey)
class ApiKeyAdmin(ScopedAdmin, SimpleHistoryAdmin):
    list_display = ("name", "program", "prefix", "rate_limit", "created_at", "last_used_at", "revoked_at")
    list_filter = (PROGRAM_FILTER,)
    list_select_related = ("program",)
    search_fields = ("name", "prefix")
    readonly_fields = ("prefix", "created_by", "created_at", "last_used_at")
    fields = (
        "program",
        "name",
        "rate_limit",
        "prefix",
        "created_by",
        "created_at",
        "last_used_at",
        "revoked_at",
    )
    actions = ["revoke"]

    def get_readonly_fields(self, request, obj=None):
        # The program and name of an existing key stay as they were issued.
        return (*self.readonly_fields, "program", "name") if obj else self.readonly_fields

    def save_model(self, request, obj, form, change):
        if not change:
            raw, obj.prefix, obj.hashed_key = ApiKey.generate()
            obj.created_by = request.user
            super().save_model(request, obj, form, change)
            messages.warning(request, f"The new key is {raw} — copy it now, it will not be shown again.")
            return
        super().save_model(request, obj, form, change)

    @admin.action(description="Revoke the selected keys")
    def revoke(self, request, queryset):
        for key in queryset.filter(revoked_at__isnull=True):
            api_key_revoke(key=key)
        self.message_user(request, f"Revoked at {timezone.now():%Y-%m-%d %H:%M} UTC.")
