"""Disputes in the admin: read-only tickets, comments and adjustments (with history); editable policies.

A ticket's state moves only through `disputes.services` (which keeps the SLA clock,
the comments and the ledger in step), so the admin shows tickets and never edits
them. Supervisors set each program's dispute policy here. Every page is scoped to
the user's programs (loyalty.admin's scoped bases).
"""

from __future__ import annotations

from django.contrib import admin

from disputes.models import AdjustmentRequest, Comment, Dispute, DisputePause, DisputePolicy
from loyalty.admin import PROGRAM_FILTER, ReadOnlyAdmin, ReadOnlyHistoryAdmin, ScopedHistoryAdmin


@admin.register(DisputePolicy)
class DisputePolicyAdmin(ScopedHistoryAdmin):
    list_display = ["program", "approval_threshold", "reopen_window_days", "assignment"]
    list_select_related = ["program"]
    fieldsets = [
        (None, {"fields": ["program", "approval_threshold", "reopen_window_days", "assignment"]}),
        (
            "First-response targets (hours)",
            {
                "fields": [
                    "first_response_hours_low",
                    "first_response_hours_normal",
                    "first_response_hours_high",
                    "first_response_hours_urgent",
                ]
            },
        ),
        (
            "Resolution targets (hours)",
            {
                "fields": [
                    "resolution_hours_low",
                    "resolution_hours_normal",
                    "resolution_hours_high",
                    "resolution_hours_urgent",
                ]
            },
        ),
    ]


class CommentInline(admin.TabularInline):
    model = Comment
    extra = 0
    can_delete = False
    fields = ["created_at", "visibility", "author", "by_member", "body"]
    readonly_fields = fields

    def has_add_permission(self, request, obj=None):
        return False

    def has_change_permission(self, request, obj=None):
        return False


@admin.register(Dispute)
class DisputeAdmin(ReadOnlyHistoryAdmin):
    list_display = [
        "id",
        "subject",
        "program",
        "member",
        "category",
        "priority",
        "status",
        "assignee",
        "created_at",
    ]
    list_filter = [PROGRAM_FILTER, "status", "category", "priority"]
    list_select_related = ["program", "member", "assignee"]
    search_fields = ["subject", "member__membership_number", "member__last_name"]
    date_hierarchy = "created_at"
    inlines = [CommentInline]


@admin.register(AdjustmentRequest)
class AdjustmentRequestAdmin(ReadOnlyHistoryAdmin):
    list_display = [
        "id",
        "dispute",
        "program",
        "points",
        "status",
        "requested_by",
        "decided_by",
        "requested_at",
    ]
    list_filter = [PROGRAM_FILTER, "status"]
    list_select_related = ["dispute", "program", "requested_by", "decided_by"]


@admin.register(Comment)
class CommentAdmin(ReadOnlyHistoryAdmin):
    program_field = "dispute__program"
    list_display = ["id", "dispute", "visibility", "author", "by_member", "created_at"]
    list_filter = ["visibility"]
    list_select_related = ["dispute", "author"]


@admin.register(DisputePause)
class DisputePauseAdmin(ReadOnlyAdmin):
    program_field = "dispute__program"
    list_display = ["id", "dispute", "started_at", "ended_at"]
    list_select_related = ["dispute"]
