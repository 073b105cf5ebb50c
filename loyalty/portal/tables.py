"""The member's tables: their ledger in plain words and their redemptions (sortable, CSV export)."""

from __future__ import annotations

import django_tables2 as tables
from django.urls import reverse
from django.utils import timezone
from django.utils.html import format_html

from loyalty.models import LedgerEntry, Redemption
from loyalty.portal.selectors import entry_change, entry_words
from loyalty.tables import REDEMPTION_BADGES, breakdown_text


def _iso(value) -> str:
    return timezone.localtime(value).isoformat()


class HistoryTable(tables.Table):
    occurred_at = tables.DateTimeColumn(
        verbose_name="Date",
        format="j M Y H:i",
        order_by=("occurred_at", "id"),
        attrs={"td": {"class": "nowrap"}},
    )
    kind = tables.Column(verbose_name="What", order_by=("kind", "id"))
    reason = tables.Column(verbose_name="Why", orderable=False)
    points = tables.Column(
        verbose_name="Points",
        empty_values=(),
        order_by=("points", "id"),
        attrs={"td": {"class": "num"}, "th": {"class": "num"}},
    )
    balance_after = tables.Column(
        verbose_name="Balance after", order_by=("id",), attrs={"td": {"class": "num"}, "th": {"class": "num"}}
    )
    breakdown = tables.Column(
        verbose_name="How it was counted", orderable=False, empty_values=(None, "", {}, [])
    )
    reference = tables.Column(verbose_name="Reference", orderable=False)

    class Meta:
        model = LedgerEntry
        fields = ()
        sequence = ("occurred_at", "kind", "reason", "points", "balance_after", "breakdown", "reference")
        empty_text = "Nothing matches these filters."
        row_attrs = {"id": lambda record: f"entry-{record.pk}"}

    def render_kind(self, record):
        return entry_words(record)

    def value_kind(self, record):
        return entry_words(record)

    def value_occurred_at(self, value):
        return _iso(value)

    def render_points(self, record):
        change = entry_change(record)
        if record.pending_points and record.kind != LedgerEntry.Kind.ACTIVATE:
            return format_html('{} <span class="badge badge-warn">pending</span>', f"{change:+,d}")
        return format_html('<span class="{}">{}</span>', "danger" if change < 0 else "", f"{change:+,d}")

    def value_points(self, record):
        return entry_change(record)

    def render_balance_after(self, value):
        return f"{value:,d}"

    def value_balance_after(self, value):
        return value

    def render_breakdown(self, value):
        return breakdown_text(value)

    def value_breakdown(self, value):
        return breakdown_text(value)


class MemberRedemptionTable(tables.Table):
    id = tables.Column(verbose_name="#", linkify=("portal:redemption_detail", {"pk": tables.A("pk")}))
    created_at = tables.DateTimeColumn(
        verbose_name="Requested", format="j M Y H:i", attrs={"td": {"class": "nowrap"}}
    )
    reward = tables.Column(verbose_name="Reward", accessor="reward__name", order_by=("reward__name", "id"))
    points = tables.Column(attrs={"td": {"class": "num"}, "th": {"class": "num"}})
    status = tables.Column()
    voucher_code = tables.Column(verbose_name="Voucher code", attrs={"td": {"class": "mono"}})
    actions = tables.Column(verbose_name="", empty_values=(), orderable=False, exclude_from_export=True)

    class Meta:
        model = Redemption
        fields = ()
        sequence = ("id", "created_at", "reward", "points", "status", "voucher_code", "actions")
        empty_text = "No redemption yet."
        row_attrs = {"id": lambda record: f"redemption-{record.pk}"}

    def value_created_at(self, value):
        return _iso(value)

    def render_points(self, value):
        return f"{value:,d}"

    def render_status(self, record):
        return format_html(
            '<span class="badge {}">{}</span>',
            REDEMPTION_BADGES.get(record.status, ""),
            record.get_status_display(),
        )

    def value_status(self, record):
        return record.get_status_display()

    def render_actions(self, record):
        return format_html(
            '<a class="btn btn-small" href="{}">Details'
            '<span class="visually-hidden"> of redemption {}</span></a>',
            reverse("portal:redemption_detail", kwargs={"pk": record.pk}),
            record.pk,
        )
