"""The Django admin for programs, members and the (read-only) points ledger.

Agents and supervisors use the admin too, so every list is narrowed to the
programs they work on, exactly like the back-office screens. Points are never
edited here: the ledger models are read-only, and corrections go through the
adjustment screen (which calls `loyalty.ledger`).
"""

from __future__ import annotations

from django.contrib import admin
from django.contrib.admin.utils import unquote
from django.http import Http404
from simple_history.admin import SimpleHistoryAdmin

from loyalty import ledger
from loyalty.access import scope_to_staff, staff_programs
from loyalty.models import LedgerEntry, Member, PointAllocation, PointLot, PointsAccount, Program
from loyalty.selectors import members_matching


class ScopedHistoryAdmin(SimpleHistoryAdmin):
    """History pages only for objects the user may see (simple-history would fall back to any)."""

    def history_view(self, request, object_id, extra_context=None):
        if not self.get_queryset(request).filter(pk=unquote(object_id)).exists():
            raise Http404
        return super().history_view(request, object_id, extra_context=extra_context)


@admin.register(Program)
class ProgramAdmin(ScopedHistoryAdmin):
    list_display = ["name", "slug", "currency", "time_zone", "expiry_policy", "pending_days", "is_active"]
    list_filter = ["is_active", "expiry_policy"]
    search_fields = ["name", "slug"]
    prepopulated_fields = {"slug": ["name"]}
    filter_horizontal = ["staff"]

    def get_queryset(self, request):
        return super().get_queryset(request).filter(pk__in=staff_programs(request.user).values("pk"))


@admin.register(Member)
class MemberAdmin(ScopedHistoryAdmin):
    list_display = ["membership_number", "last_name", "first_name", "email", "phone", "program", "status"]
    list_filter = [("program", admin.RelatedOnlyFieldListFilter), "status"]
    list_select_related = ["program"]
    # Searched like the back-office search (see get_search_results): number, names, email, phone digits.
    search_fields = ["membership_number", "first_name", "last_name", "email", "phone"]
    raw_id_fields = ["user"]
    readonly_fields = ["created_at"]
    show_full_result_count = False

    def get_queryset(self, request):
        return scope_to_staff(super().get_queryset(request), request.user)

    def get_search_results(self, request, queryset, search_term):
        return members_matching(queryset, search_term), False

    def formfield_for_foreignkey(self, db_field, request, **kwargs):
        if db_field.name == "program":
            kwargs["queryset"] = staff_programs(request.user)
        return super().formfield_for_foreignkey(db_field, request, **kwargs)

    def save_model(self, request, obj, form, change):
        super().save_model(request, obj, form, change)
        if not change:
            # A member always has a points account; the ledger opens it.
            ledger.open_account(member=obj)


class ReadOnlyAdmin(admin.ModelAdmin):
    """Viewable, never added, changed or deleted here (the ledger is the only writer)."""

    show_full_result_count = False

    def has_add_permission(self, request, obj=None):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False

    # The scope to the user's programs, as a lookup path to the program.
    program_field = "program"

    def get_queryset(self, request):
        return scope_to_staff(super().get_queryset(request), request.user, program_field=self.program_field)


@admin.register(PointsAccount)
class PointsAccountAdmin(ReadOnlyAdmin):
    list_display = [
        "member",
        "program",
        "balance",
        "pending",
        "lifetime_earned",
        "lifetime_redeemed",
        "updated_at",
    ]
    list_select_related = ["member", "program"]
    list_filter = [("program", admin.RelatedOnlyFieldListFilter)]
    search_fields = ["=member__membership_number"]
    raw_id_fields = ["member"]


@admin.register(LedgerEntry)
class LedgerEntryAdmin(ReadOnlyAdmin):
    list_display = [
        "id",
        "posted_at",
        "account",
        "kind",
        "points",
        "pending_points",
        "balance_after",
        "source",
        "reference",
        "actor_label",
        "reason",
    ]
    list_filter = ["kind", "source", ("program", admin.RelatedOnlyFieldListFilter)]
    list_select_related = ["account"]
    # Exact lookups only: these tables are large, and agents paste references and keys.
    search_fields = ["=reference", "=idempotency_key", "=account__member__membership_number"]
    raw_id_fields = ["account", "actor", "reverses", "program", "subject_type"]


@admin.register(PointLot)
class PointLotAdmin(ReadOnlyAdmin):
    program_field = "account__program"
    list_display = [
        "id",
        "account",
        "original",
        "remaining",
        "expired",
        "pending",
        "available_from",
        "expires_at",
    ]
    list_filter = ["pending"]
    list_select_related = ["account"]
    search_fields = ["=account__member__membership_number"]
    raw_id_fields = ["account", "entry", "expiry_entry"]


@admin.register(PointAllocation)
class PointAllocationAdmin(ReadOnlyAdmin):
    program_field = "lot__account__program"
    list_display = ["id", "entry", "lot", "points", "created_at"]
    list_select_related = ["entry", "lot"]
    raw_id_fields = ["entry", "lot"]
