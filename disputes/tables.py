"""The dispute queue and the supervisor's approvals table (sortable, CSV export)."""

from __future__ import annotations

import django_tables2 as tables
from django.urls import reverse
from django.utils import timezone
from django.utils.html import format_html

from disputes.models import AdjustmentRequest, Dispute, Priority
from loyalty.tables import MemberRowTable

STATUS_BADGES = {
    Dispute.Status.OPEN: "badge-warn",
    Dispute.Status.IN_PROGRESS: "",
    Dispute.Status.AWAITING_MEMBER: "",
    Dispute.Status.ESCALATED: "badge-danger",
    Dispute.Status.RESOLVED: "badge-ok",
    Dispute.Status.REJECTED: "",
}
PRIORITY_BADGES = {Priority.HIGH: "badge-warn", Priority.URGENT: "badge-danger"}


def _local(value) -> str:
    return timezone.localtime(value).isoformat() if value else ""


class DisputeTable(MemberRowTable):
    """Most urgent first: priority, then the resolution due time."""

    id = tables.Column(verbose_name="Ticket", linkify=("disputes:detail", {"pk": tables.A("pk")}))
    subject = tables.Column()
    category = tables.Column()
    priority = tables.Column(order_by=("priority", "resolution_due", "id"))
    status = tables.Column()
    assignee = tables.Column(verbose_name="Assignee", accessor="assignee__username", default="—")
    resolution_due = tables.DateTimeColumn(
        verbose_name="Due", format="Y-m-d H:i", attrs={"td": {"class": "nowrap"}}
    )
    sla = tables.Column(verbose_name="SLA", accessor="is_overdue", order_by=("resolution_due", "id"))
    created_at = tables.DateTimeColumn(
        verbose_name="Opened", format="Y-m-d H:i", attrs={"td": {"class": "nowrap"}}
    )

    class Meta:
        model = Dispute
        fields = ()
        sequence = (
            "id",
            "priority",
            "sla",
            "resolution_due",
            "status",
            "subject",
            "category",
            "program",
            "member",
            "member_number",
            "assignee",
            "created_at",
        )
        empty_text = "No ticket matches these filters."
        row_attrs = {
            "id": lambda record: f"dispute-{record.pk}",
            "class": lambda record: (
                "row-overdue" if record.is_overdue else ("row-near-due" if record.is_near_due else "")
            ),
        }

    def render_id(self, record):
        return record.reference

    def value_id(self, record):
        return record.reference

    def render_priority(self, record):
        return format_html(
            '<span class="badge {}">{}</span>',
            PRIORITY_BADGES.get(record.priority, ""),
            record.get_priority_display(),
        )

    def value_priority(self, record):
        return record.get_priority_display()

    def render_status(self, record):
        return format_html(
            '<span class="badge {}">{}</span>',
            STATUS_BADGES.get(record.status, ""),
            record.get_status_display(),
        )

    def value_status(self, record):
        return record.get_status_display()

    def render_category(self, record):
        return record.get_category_display()

    def value_category(self, record):
        return record.get_category_display()

    def _sla_words(self, record) -> str:
        if record.is_overdue:
            return "Overdue"
        if record.is_near_due:
            return "Due soon"
        if record.paused_at:
            return "Paused"
        return "" if record.is_closed else "On time"

    def render_sla(self, record):
        words = self._sla_words(record)
        badge = {"Overdue": "badge-danger", "Due soon": "badge-warn"}.get(words, "")
        return format_html('<span class="badge {}">{}</span>', badge, words) if words else "—"

    def value_sla(self, record):
        return self._sla_words(record)

    def render_resolution_due(self, record):
        if record.is_closed:
            return "—"
        if record.paused_at:
            return "paused"
        return timezone.localtime(record.resolution_due).strftime("%Y-%m-%d %H:%M")

    def value_resolution_due(self, record):
        return _local(record.resolution_due)


class AdjustmentTable(tables.Table):
    """Adjustments awaiting a supervisor, oldest first."""

    id = tables.Column(verbose_name="#")
    dispute = tables.Column(verbose_name="Ticket", accessor="dispute_id")
    program = tables.Column(accessor="program__name")
    member = tables.Column(accessor="dispute__member__membership_number", verbose_name="Member")
    points = tables.Column(attrs={"td": {"class": "num"}, "th": {"class": "num"}})
    reason = tables.Column()
    requested_by = tables.Column(accessor="requested_by__username", verbose_name="Requested by")
    requested_at = tables.DateTimeColumn(verbose_name="Requested", format="Y-m-d H:i")

    class Meta:
        model = AdjustmentRequest
        fields = ()
        sequence = ("id", "dispute", "program", "member", "points", "reason", "requested_by", "requested_at")
        empty_text = "No adjustment awaits approval."

    def render_dispute(self, record):
        url = reverse("disputes:detail", kwargs={"pk": record.dispute_id})
        return format_html('<a href="{}#adjustments">{}</a>', url, record.dispute.reference)

    def value_dispute(self, record):
        return record.dispute.reference

    def render_points(self, value):
        return f"{value:+,d}"

    def value_points(self, value):
        return value

    def value_requested_at(self, value):
        return _local(value)
