"""The Django admin: programs, members, program rules and the catalogue; the ledger read-only.

Agents and supervisors use the admin too, so every list is narrowed to the
programs they work on, exactly like the back-office screens (`loyalty.access`),
and a row outside them is a 404 on every page (change, history, old versions).
Points are never edited here: the ledger models are read-only, and corrections
go through the adjustment screen (which calls `loyalty.ledger`). Redemptions and
shortfalls are read-only too: their state changes through services that also
refund points, so a form here would bypass them.
"""

from __future__ import annotations

from django import forms
from django.contrib import admin
from django.contrib.admin.utils import unquote
from django.core.exceptions import PermissionDenied
from django.db import transaction
from django.http import Http404
from simple_history.admin import SimpleHistoryAdmin

from loyalty import ledger
from loyalty.access import scope_to_staff, staff_programs
from loyalty.models import (
    Challenge,
    EarningRule,
    LedgerEntry,
    Member,
    MilestoneRule,
    PointAllocation,
    PointLot,
    PointsAccount,
    PointsShortfall,
    Program,
    Promotion,
    PromotionUsage,
    PurchaseReturn,
    Redemption,
    Reward,
    Streak,
    Tier,
    TierChange,
    UnpaidActivity,
)
from loyalty.selectors import members_matching

PROGRAM_FILTER = ("program", admin.RelatedOnlyFieldListFilter)


# --- Scoping ---------------------------------------------------------------------------------------


class ScopedAdmin(admin.ModelAdmin):
    """Rows of the user's programs only, for every page of this admin.

    The program a row may be saved with is one of the user's programs: the form
    offers only those, and `save_model` checks again (a forged POST gets a 403).
    """

    # The scope, as a lookup path from the row to its program.
    program_field = "program"

    def scope(self, queryset, request):
        return scope_to_staff(queryset, request.user, program_field=self.program_field)

    def get_queryset(self, request):
        return self.scope(super().get_queryset(request), request)

    def get_object(self, request, object_id, from_field=None):
        obj = super().get_object(request, object_id, from_field)
        if obj is None:
            # Out of scope and missing look the same, so nothing leaks (the admin would redirect).
            raise Http404
        return obj

    def in_scope(self, request, obj) -> bool:
        return self.get_queryset(request).filter(pk=obj.pk).exists()

    def has_change_permission(self, request, obj=None):
        return super().has_change_permission(request, obj) and (obj is None or self.in_scope(request, obj))

    def has_delete_permission(self, request, obj=None):
        return super().has_delete_permission(request, obj) and (obj is None or self.in_scope(request, obj))

    def formfield_for_foreignkey(self, db_field, request, **kwargs):
        if db_field.name == "program":
            kwargs["queryset"] = staff_programs(request.user)
        elif db_field.related_model is Tier:
            kwargs["queryset"] = scope_to_staff(Tier.objects.select_related("program"), request.user)
            kwargs["form_class"] = TierChoiceField
        return super().formfield_for_foreignkey(db_field, request, **kwargs)

    def formfield_for_manytomany(self, db_field, request, **kwargs):
        if db_field.related_model is Tier:
            kwargs["queryset"] = scope_to_staff(Tier.objects.select_related("program"), request.user)
            kwargs["form_class"] = TierMultipleChoiceField
        return super().formfield_for_manytomany(db_field, request, **kwargs)

    def save_model(self, request, obj, form, change):
        if (
            self.program_field == "program"
            and not staff_programs(request.user).filter(pk=obj.program_id).exists()
        ):
            raise PermissionDenied("You do not work on this program.")
        super().save_model(request, obj, form, change)


class ScopedHistoryAdmin(ScopedAdmin, SimpleHistoryAdmin):
    """History pages only for rows the user may see (simple-history would show any row's)."""

    def history_view(self, request, object_id, extra_context=None):
        self.get_object(request, unquote(object_id))
        return super().history_view(request, object_id, extra_context=extra_context)

    def history_form_view(self, request, object_id, version_id, extra_context=None):
        obj = self.get_object(request, unquote(object_id))
        if request.method == "POST" and not self.has_change_permission(request, obj):
            # simple-history saves ("reverts to") the old version for anyone who may view
            # it; only those who may change the row may do that.
            raise PermissionDenied
        return super().history_form_view(request, object_id, version_id, extra_context=extra_context)


class ReadOnlyAdmin(ScopedAdmin):
    """Viewable, never added, changed or deleted here (the ledger or a service is the only writer)."""

    show_full_result_count = False

    def has_add_permission(self, request, obj=None):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False

    def get_readonly_fields(self, request, obj=None):
        # Every field, so an old version (simple-history's page) shows its values too.
        return [
            field.name for field in self.model._meta.get_fields() if field.concrete and not field.primary_key
        ]


class ReadOnlyHistoryAdmin(ReadOnlyAdmin, ScopedHistoryAdmin):
    """Read-only, with the history of the row (who changed its state, when)."""


# --- Forms -----------------------------------------------------------------------------------------


def _tier_label(tier: Tier) -> str:
    return f"{tier.program.name}: {tier}"


class TierChoiceField(forms.ModelChoiceField):
    def label_from_instance(self, obj):
        return _tier_label(obj)


class TierMultipleChoiceField(forms.ModelMultipleChoiceField):
    def label_from_instance(self, obj):
        return _tier_label(obj)


class SameProgramTiersForm(forms.ModelForm):
    """The tiers chosen for a promotion or a reward belong to its own program."""

    def clean(self):
        cleaned = super().clean()
        program = cleaned.get("program")
        if program is None:  # not in the form, or already refused
            return cleaned
        for name in ("tiers", "min_tier"):
            value = cleaned.get(name)
            tiers = [] if value is None else [value] if isinstance(value, Tier) else list(value)
            if any(tier.program_id != program.pk for tier in tiers):
                self.add_error(name, f"Choose tiers of {program.name} only.")
        return cleaned


# --- Programs and members --------------------------------------------------------------------------


@admin.register(Program)
class ProgramAdmin(ScopedHistoryAdmin):
    program_field = None  # a program is its own scope
    list_display = ["name", "slug", "currency", "time_zone", "expiry_policy", "pending_days", "is_active"]
    list_filter = ["is_active", "expiry_policy"]
    search_fields = ["name", "slug"]
    prepopulated_fields = {"slug": ["name"]}
    filter_horizontal = ["staff"]

    def scope(self, queryset, request):
        return queryset.filter(pk__in=staff_programs(request.user).values("pk"))


@admin.register(Member)
class MemberAdmin(ScopedHistoryAdmin):
    list_display = ["membership_number", "last_name", "first_name", "email", "phone", "program", "status"]
    list_filter = [PROGRAM_FILTER, "status"]
    list_select_related = ["program"]
    # Searched like the back-office search (see get_search_results): number, names, email, phone digits.
    search_fields = ["membership_number", "first_name", "last_name", "email", "phone"]
    raw_id_fields = ["user"]
    show_full_result_count = False

    def get_readonly_fields(self, request, obj=None):
        # Tier moves go through the tier services, which record each one (TierChange); a
        # member's account and ledger belong to their program, so it is fixed once created.
        return ["created_at", "tier", "program"] if obj is not None else ["created_at", "tier"]

    def get_search_results(self, request, queryset, search_term):
        return members_matching(queryset, search_term), False

    def save_model(self, request, obj, form, change):
        super().save_model(request, obj, form, change)
        if not change:
            # A member always has a points account; the ledger opens it.
            ledger.open_account(member=obj)


# --- Rules (supervisors add and change them; agents view them) -------------------------------------


@admin.register(EarningRule)
class EarningRuleAdmin(ScopedHistoryAdmin):
    list_display = [
        "activity_code",
        "name",
        "program",
        "points_per_unit",
        "fixed_points",
        "min_amount",
        "cap_per_day",
        "cap_per_month",
        "active_from",
        "active_until",
        "is_active",
    ]
    list_filter = [PROGRAM_FILTER, "is_active", "rounding"]
    list_select_related = ["program"]
    search_fields = ["activity_code", "name"]


@admin.register(Tier)
class TierAdmin(ScopedHistoryAdmin):
    list_display = ["name", "program", "rank", "threshold", "multiplier"]
    list_filter = [PROGRAM_FILTER]
    list_select_related = ["program"]
    search_fields = ["name"]


@admin.register(Promotion)
class PromotionAdmin(ScopedHistoryAdmin):
    form = SameProgramTiersForm
    list_display = [
        "name",
        "program",
        "kind",
        "multiplier",
        "bonus_points",
        "starts_at",
        "ends_at",
        "uses",
        "max_uses",
        "points_awarded",
        "budget_points",
        "is_active",
    ]
    list_filter = [PROGRAM_FILTER, "is_active", "kind"]
    list_select_related = ["program", "usage"]
    search_fields = ["name"]
    filter_horizontal = ["tiers"]

    def get_readonly_fields(self, request, obj=None):
        # The usage counters move with every posting (the earning service); they are only shown.
        return ["uses", "points_awarded"] if obj is not None else []

    @staticmethod
    def _usage(obj: Promotion) -> PromotionUsage | None:
        try:
            return obj.usage
        except PromotionUsage.DoesNotExist:
            return None

    @admin.display(description="uses so far", ordering="usage__uses")
    def uses(self, obj: Promotion) -> int:
        usage = self._usage(obj)
        return usage.uses if usage else 0

    @admin.display(description="points awarded so far", ordering="usage__points_awarded")
    def points_awarded(self, obj: Promotion) -> int:
        usage = self._usage(obj)
        return usage.points_awarded if usage else 0


@admin.register(Challenge)
class ChallengeAdmin(ScopedHistoryAdmin):
    list_display = [
        "name",
        "program",
        "activity_code",
        "required_count",
        "bonus_points",
        "starts_at",
        "ends_at",
        "is_active",
    ]
    list_filter = [PROGRAM_FILTER, "is_active"]
    list_select_related = ["program"]
    search_fields = ["name", "activity_code"]


@admin.register(Streak)
class StreakAdmin(ScopedHistoryAdmin):
    list_display = ["name", "program", "activity_code", "period", "length", "bonus_points", "is_active"]
    list_filter = [PROGRAM_FILTER, "is_active", "period"]
    list_select_related = ["program"]
    search_fields = ["name", "activity_code"]


@admin.register(MilestoneRule)
class MilestoneRuleAdmin(ScopedHistoryAdmin):
    list_display = ["kind", "program", "points", "threshold", "is_active"]
    list_filter = [PROGRAM_FILTER, "is_active", "kind"]
    list_select_related = ["program"]
    search_fields = ["kind"]


@admin.register(Reward)
class RewardAdmin(ScopedHistoryAdmin):
    form = SameProgramTiersForm
    list_display = [
        "name",
        "program",
        "cost_points",
        "fulfilment",
        "stock",
        "min_tier",
        "active_from",
        "active_until",
        "is_active",
    ]
    list_filter = [PROGRAM_FILTER, "is_active", "fulfilment"]
    list_select_related = ["program", "min_tier"]
    search_fields = ["name"]

    def formfield_for_dbfield(self, db_field, request, **kwargs):
        field = super().formfield_for_dbfield(db_field, request, **kwargs)
        if db_field.name == "stock":
            # The form posts the stock it showed, so save_model can tell whether it was edited.
            field.show_hidden_initial = True
        return field

    def save_model(self, request, obj, form, change):
        with transaction.atomic():
            if change and "stock" not in form.changed_data:
                # Redemptions take stock while this form is open: keep their count,
                # read under the row lock they also take, unless the stock was edited.
                obj.stock = Reward.objects.select_for_update().values_list("stock", flat=True).get(pk=obj.pk)
            super().save_model(request, obj, form, change)


@admin.register(TierChange)
class TierChangeAdmin(ReadOnlyAdmin):
    program_field = "member__program"
    list_display = [
        "changed_at",
        "member",
        "direction",
        "from_tier",
        "to_tier",
        "qualifying_points",
        "reason",
        "actor_label",
    ]
    list_filter = ["direction", ("member__program", admin.RelatedOnlyFieldListFilter)]
    list_select_related = ["member", "from_tier", "to_tier"]
    search_fields = ["=member__membership_number"]
    raw_id_fields = ["member", "from_tier", "to_tier"]


# --- Redemptions and shortfalls (read-only: services change their state) ---------------------------


@admin.register(Redemption)
class RedemptionAdmin(ReadOnlyHistoryAdmin):
    list_display = [
        "id",
        "created_at",
        "member",
        "reward",
        "points",
        "status",
        "channel",
        "voucher_code",
        "updated_at",
    ]
    list_filter = ["status", "channel", PROGRAM_FILTER, "created_at"]
    list_select_related = ["member", "reward"]
    # Exact lookups: agents paste a membership number or a voucher code.
    search_fields = ["=member__membership_number", "=voucher_code", "=idempotency_key"]
    raw_id_fields = ["member", "reward", "requested_by", "debit_entry", "refund_entry"]


@admin.register(PointsShortfall)
class PointsShortfallAdmin(ReadOnlyHistoryAdmin):
    list_display = ["created_at", "member", "points", "reference", "status", "program"]
    list_filter = ["status", PROGRAM_FILTER]
    list_select_related = ["member", "program"]
    search_fields = ["=member__membership_number", "=reference"]
    raw_id_fields = ["member", "entry"]


@admin.register(PurchaseReturn)
class PurchaseReturnAdmin(ReadOnlyAdmin):
    """Every accepted return, with what it took, flagged or found expired (written once)."""

    list_display = [
        "created_at",
        "reference",
        "member",
        "returned_amount",
        "points",
        "shortfall",
        "expired",
        "completes_purchase",
        "program",
    ]
    list_filter = ["completes_purchase", PROGRAM_FILTER, "created_at"]
    list_select_related = ["member", "program"]
    search_fields = ["=member__membership_number", "=reference", "=purchase__reference"]
    raw_id_fields = ["member", "purchase", "entry"]


@admin.register(UnpaidActivity)
class UnpaidActivityAdmin(ReadOnlyAdmin):
    """Activities that earned nothing: their references are taken, their calculation kept."""

    list_display = ["created_at", "activity_code", "reference", "member", "occurred_at", "program"]
    list_filter = ["activity_code", PROGRAM_FILTER]
    list_select_related = ["member", "program"]
    search_fields = ["=member__membership_number", "=reference"]
    raw_id_fields = ["member"]


# --- The ledger (read-only) ------------------------------------------------------------------------


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
    list_filter = [PROGRAM_FILTER]
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
    list_filter = ["kind", "source", PROGRAM_FILTER]
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
