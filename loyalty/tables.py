"""The agent's tables: sortable, paginated, exported to CSV by `ExportMixin`.

Columns rendered as HTML have a `value_<column>` giving the plain export value;
button columns are left out of exports.
"""

from __future__ import annotations

import json

import django_tables2 as tables
from django.urls import reverse
from django.utils import timezone
from django.utils.html import format_html
from django.utils.text import Truncator
from django_tables2.export import TableExport

from loyalty.models import LedgerEntry, Member, PointsShortfall, Redemption


class CsvExport(TableExport):
    """Only CSV: other formats need optional tablib extras, and an unknown one must not be a 500."""

    @classmethod
    def is_valid_format(cls, export_format):
        return export_format == cls.CSV


STATUS_BADGES = {
    Member.Status.ACTIVE: "badge-ok",
    Member.Status.SUSPENDED: "badge-warn",
    Member.Status.CLOSED: "badge-danger",
}


class MemberTable(tables.Table):
    membership_number = tables.Column(verbose_name="Number", linkify=True)
    name = tables.Column(
        verbose_name="Name", accessor="full_name", order_by=("last_name", "first_name", "id")
    )
    email = tables.Column()
    phone = tables.Column()
    program = tables.Column(
        verbose_name="Program", accessor="program__name", order_by=("program__name", "id")
    )
    status = tables.Column()
    balance = tables.Column(accessor="account__balance")
    pending = tables.Column(accessor="account__pending")
    actions = tables.Column(
        verbose_name="",
        empty_values=(),
        orderable=False,
        exclude_from_export=True,
    )

    class Meta:
        model = Member
        fields = ()
        sequence = (
            "membership_number",
            "name",
            "email",
            "phone",
            "program",
            "status",
            "balance",
            "pending",
            "actions",
        )
        empty_text = "No member matches this search."

    def render_status(self, record):
        return format_html(
            '<span class="badge {}">{}</span>',
            STATUS_BADGES.get(record.status, ""),
            record.get_status_display(),
        )

    def value_status(self, record):
        return record.get_status_display()

    def render_actions(self, record):
        number = record.membership_number
        return format_html(
            '<a class="btn" href="{}">Ledger</a> <a class="btn" href="{}">Explain</a>',
            reverse("loyalty:member_ledger", kwargs={"number": number}),
            reverse("loyalty:member_explain", kwargs={"number": number}),
        )


def breakdown_text(breakdown) -> str:
    """A breakdown as one readable line: "base: 100 · multiplier: 1.5" (nested values as JSON)."""
    if not breakdown:
        return ""
    if not isinstance(breakdown, dict):
        return json.dumps(breakdown, sort_keys=True)
    parts = []
    for key, value in breakdown.items():
        shown = value if isinstance(value, str | int | float) else json.dumps(value, sort_keys=True)
        parts.append(f"{key.replace('_', ' ')}: {shown}")
    return " · ".join(parts)


class LedgerEntryTable(tables.Table):
    """One account's entries; also the member page's "recent entries" (unsorted, unpaginated)."""

    id = tables.Column(verbose_name="#")
    posted_at = tables.DateTimeColumn(verbose_name="Posted", format="Y-m-d H:i")
    occurred_at = tables.DateTimeColumn(verbose_name="Occurred", format="Y-m-d H:i")
    kind = tables.Column()
    points = tables.Column()
    pending_points = tables.Column(verbose_name="Pending")
    balance_after = tables.Column(verbose_name="Balance after")
    source = tables.Column()
    reference = tables.Column()
    reason = tables.Column(verbose_name="Why")
    actor_label = tables.Column(verbose_name="Who")
    breakdown = tables.Column(verbose_name="Breakdown", orderable=False, empty_values=(None, "", {}, []))
    reverses = tables.Column(verbose_name="Reverses", accessor="reverses_id", orderable=False)

    class Meta:
        model = LedgerEntry
        fields = ()
        sequence = (
            "id",
            "posted_at",
            "occurred_at",
            "kind",
            "points",
            "pending_points",
            "balance_after",
            "source",
            "reference",
            "reason",
            "actor_label",
            "breakdown",
            "reverses",
        )
        empty_text = "No entries."
        row_attrs = {"id": lambda record: f"entry-{record.pk}"}

    # The CSV keeps full timestamps with their offset (in the program's time zone).
    def value_posted_at(self, value):
        return timezone.localtime(value).isoformat()

    def value_occurred_at(self, value):
        return timezone.localtime(value).isoformat()

    def render_points(self, value):
        if not value:
            return "0"  # a pending credit: its points are in the Pending column
        return format_html('<span class="{}">{}</span>', "danger" if value < 0 else "", f"{value:+,d}")

    def value_points(self, value):
        return value

    def render_pending_points(self, value):
        return f"{value:+,d}" if value else "—"

    def value_pending_points(self, value):
        return value

    def render_balance_after(self, value):
        return f"{value:,d}"

    def value_balance_after(self, value):
        return value

    def render_breakdown(self, value):
        return breakdown_text(value)

    def value_breakdown(self, value):
        return json.dumps(value, sort_keys=True) if value else ""

    def render_reverses(self, record):
        url = reverse("loyalty:member_ledger", kwargs={"number": self.membership_number})
        return format_html('<a href="{}?entry={}">#{}</a>', url, record.reverses_id, record.reverses_id)

    def value_reverses(self, record):
        return record.reverses_id

    def __init__(self, *args, membership_number: str, **kwargs):
        self.membership_number = membership_number
        super().__init__(*args, **kwargs)


REDEMPTION_BADGES = {
    Redemption.Status.REQUESTED: "badge-warn",
    Redemption.Status.APPROVED: "",
    Redemption.Status.FULFILLED: "badge-ok",
    Redemption.Status.REJECTED: "badge-danger",
    Redemption.Status.CANCELLED: "",
}


class MemberRowTable(tables.Table):
    """Columns a queue row about one member shares: the member (linked), their number, when, points.

    Subclasses declare their other columns and the order (Meta.sequence); the member
    columns, their rendering and the CSV values live here once.
    """

    program = tables.Column(
        verbose_name="Program", accessor="program__name", order_by=("program__name", "created_at", "id")
    )
    member = tables.Column(
        verbose_name="Member", order_by=("member__last_name", "member__first_name", "member__id")
    )
    member_number = tables.Column(verbose_name="Number", accessor="member__membership_number")

    def render_member(self, record):
        return format_html('<a href="{}">{}</a>', record.member.get_absolute_url(), record.member.full_name)

    def value_member(self, record):
        return record.member.full_name

    def render_member_number(self, record):
        return format_html(
            '<a class="mono" href="{}">{}</a>',
            record.member.get_absolute_url(),
            record.member.membership_number,
        )

    def value_member_number(self, record):
        return record.member.membership_number

    def value_created_at(self, value):
        return timezone.localtime(value).isoformat()

    def render_points(self, value):
        return f"{value:,d}"

    def value_points(self, value):
        return value


class RedemptionTable(MemberRowTable):
    """The redemption queue (oldest first by default; every column but the button sorts)."""

    id = tables.Column(verbose_name="#", linkify=("loyalty:redemption_detail", {"pk": tables.A("pk")}))
    created_at = tables.DateTimeColumn(
        verbose_name="Requested", format="Y-m-d H:i", attrs={"td": {"class": "nowrap"}}
    )
    reward = tables.Column(
        verbose_name="Reward", accessor="reward__name", order_by=("reward__name", "created_at", "id")
    )
    points = tables.Column(attrs={"td": {"class": "num"}, "th": {"class": "num"}})
    status = tables.Column()
    channel = tables.Column()
    voucher_code = tables.Column(verbose_name="Voucher", attrs={"td": {"class": "mono"}})
    actions = tables.Column(verbose_name="", empty_values=(), orderable=False, exclude_from_export=True)

    class Meta:
        model = Redemption
        fields = ()
        sequence = (
            "id",
            "created_at",
            "program",
            "member",
            "member_number",
            "reward",
            "points",
            "status",
            "channel",
            "voucher_code",
            "actions",
        )
        empty_text = "No redemption matches these filters."
        row_attrs = {"id": lambda record: f"redemption-{record.pk}"}

    def render_status(self, record):
        return format_html(
            '<span class="badge {}">{}</span>',
            REDEMPTION_BADGES.get(record.status, ""),
            record.get_status_display(),
        )

    def value_status(self, record):
        return record.get_status_display()

    def render_channel(self, record):
        return record.get_channel_display()

    def value_channel(self, record):
        return record.get_channel_display()

    def render_actions(self, record):
        return format_html(
            '<a class="btn btn-small" href="{}">Open</a>',
            reverse("loyalty:redemption_detail", kwargs={"pk": record.pk}),
        )


SHORTFALL_BADGES = {PointsShortfall.Status.OPEN: "badge-warn", PointsShortfall.Status.RESOLVED: "badge-ok"}


class ShortfallTable(MemberRowTable):
    """Points returns could not take back: open ones first."""

    id = tables.Column(verbose_name="#", linkify=("loyalty:shortfall_detail", {"pk": tables.A("pk")}))
    created_at = tables.DateTimeColumn(
        verbose_name="Flagged", format="Y-m-d H:i", attrs={"td": {"class": "nowrap"}}
    )
    points = tables.Column(
        verbose_name="Points short", attrs={"td": {"class": "num"}, "th": {"class": "num"}}
    )
    reference = tables.Column(verbose_name="Return reference")
    entry = tables.Column(verbose_name="Purchase entry", accessor="entry_id", orderable=False)
    status = tables.Column()
    note = tables.Column(orderable=False)
    actions = tables.Column(verbose_name="", empty_values=(), orderable=False, exclude_from_export=True)

    class Meta:
        model = PointsShortfall
        fields = ()
        sequence = (
            "id",
            "created_at",
            "program",
            "member",
            "member_number",
            "points",
            "reference",
            "entry",
            "status",
            "note",
            "actions",
        )
        empty_text = "No shortfall matches these filters."
        row_attrs = {"id": lambda record: f"shortfall-{record.pk}"}

    def render_entry(self, record):
        url = reverse("loyalty:member_ledger", kwargs={"number": record.member.membership_number})
        return format_html('<a href="{}?entry={}">#{}</a>', url, record.entry_id, record.entry_id)

    def value_entry(self, record):
        return record.entry_id

    def render_status(self, record):
        return format_html(
            '<span class="badge {}">{}</span>',
            SHORTFALL_BADGES.get(record.status, ""),
            record.get_status_display(),
        )

    def value_status(self, record):
        return record.get_status_display()

    def render_note(self, value):
        return Truncator(value).chars(80)

    def render_actions(self, record):
        label = "Resolve" if record.status == PointsShortfall.Status.OPEN else "Open"
        return format_html(
            '<a class="btn btn-small" href="{}">{}</a>',
            reverse("loyalty:shortfall_detail", kwargs={"pk": record.pk}),
            label,
        )
