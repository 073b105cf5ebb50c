"""Referrals in the Django admin, scoped to the user's programs like every other admin page.

Policies are edited here by supervisors (history-tracked); codes may be switched
off. Referrals, clicks, sightings and signals are read-only: decisions go
through the review screen, whose service posts the rewards through the ledger.
"""

from __future__ import annotations

from django.contrib import admin

from loyalty.admin import PROGRAM_FILTER, ReadOnlyAdmin, ReadOnlyHistoryAdmin, ScopedHistoryAdmin
from referrals.models import (
    DeviceSighting,
    Referral,
    ReferralClick,
    ReferralCode,
    ReferralPolicy,
    ReferralSignal,
)


@admin.register(ReferralPolicy)
class ReferralPolicyAdmin(ScopedHistoryAdmin):
    list_display = [
        "program",
        "is_active",
        "referrer_points",
        "referee_points",
        "min_purchase_amount",
        "window_days",
        "fraud_threshold",
    ]
    list_select_related = ["program"]
    fieldsets = [
        (None, {"fields": ["program", "is_active"]}),
        ("Rewards", {"fields": ["referrer_points", "referee_points", "min_purchase_amount", "window_days"]}),
        (
            "Fraud review",
            {
                "fields": [
                    "fraud_threshold",
                    "weight_self_email",
                    "weight_self_phone",
                    "weight_shared_device",
                    "weight_shared_ip",
                    "weight_velocity",
                    "weight_circular",
                    "weight_cap",
                    "weight_throwaway_email",
                    "velocity_per_day",
                    "cap_per_month",
                    "cap_lifetime",
                    "ip_window_hours",
                ]
            },
        ),
    ]


@admin.register(ReferralCode)
class ReferralCodeAdmin(ScopedHistoryAdmin):
    list_display = ["code", "member", "program", "is_active", "created_at"]
    list_filter = [PROGRAM_FILTER, "is_active"]
    list_select_related = ["member", "program"]
    search_fields = ["code", "member__membership_number", "member__last_name"]
    readonly_fields = ["program", "member", "code", "created_at"]

    def has_add_permission(self, request):
        return False  # codes are made by code_for_member, one per member

    def has_delete_permission(self, request, obj=None):
        return False


@admin.register(Referral)
class ReferralAdmin(ReadOnlyHistoryAdmin):
    list_display = ["id", "program", "referrer", "referee", "status", "fraud_score", "signed_up_at"]
    list_filter = [PROGRAM_FILTER, "status", "channel"]
    list_select_related = ["program", "referrer", "referee"]
    search_fields = ["code__code", "referrer__membership_number", "referee__membership_number"]
    date_hierarchy = "signed_up_at"


@admin.register(ReferralSignal)
class ReferralSignalAdmin(ReadOnlyAdmin):
    program_field = "referral__program"
    list_display = ["referral", "kind", "weight", "reason"]
    list_filter = ["kind"]
    list_select_related = ["referral"]


@admin.register(ReferralClick)
class ReferralClickAdmin(ReadOnlyAdmin):
    list_display = ["clicked_at", "code", "program", "ip", "device_id"]
    list_filter = [PROGRAM_FILTER]
    list_select_related = ["code", "program"]
    search_fields = ["code__code", "ip"]


@admin.register(DeviceSighting)
class DeviceSightingAdmin(ReadOnlyAdmin):
    program_field = "member__program"
    list_display = ["seen_at", "member", "device_id", "ip", "context"]
    list_select_related = ["member"]
    search_fields = ["member__membership_number", "device_id", "ip"]
