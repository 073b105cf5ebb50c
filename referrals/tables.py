"""Tables of the referral screens (sortable, paginated, CSV through ExportMixin)."""

from __future__ import annotations

import django_tables2 as tables
from django.urls import reverse
from django.utils import timezone
from django.utils.html import format_html

from referrals.models import Referral

STATUS_BADGES = {
    Referral.Status.PENDING: "",
    Referral.Status.QUALIFIED: "badge-warn",
    Referral.Status.HELD: "badge-danger",
    Referral.Status.REWARDED: "badge-ok",
    Referral.Status.REJECTED: "",
}


def _member_link(member):
    return format_html(
        '<a href="{}">{}</a> <span class="mono muted">{}</span>',
        member.get_absolute_url(),
        member.full_name,
        member.membership_number,
    )


class ReferralTable(tables.Table):
    id = tables.Column(verbose_name="#", linkify=("referrals:detail", {"pk": tables.A("pk")}))
    signed_up_at = tables.DateTimeColumn(
        verbose_name="Joined", format="Y-m-d H:i", attrs={"td": {"class": "nowrap"}}
    )
    program = tables.Column(
        verbose_name="Program", accessor="program__name", order_by=("program__name", "signed_up_at", "id")
    )
    referrer = tables.Column(
        verbose_name="Referrer", order_by=("referrer__last_name", "referrer__first_name", "referrer__id")
    )
    referee = tables.Column(
        verbose_name="Referee", order_by=("referee__last_name", "referee__first_name", "referee__id")
    )
    code = tables.Column(verbose_name="Code", accessor="code__code", attrs={"td": {"class": "mono"}})
    channel = tables.Column()
    status = tables.Column()
    fraud_score = tables.Column(verbose_name="Score", attrs={"td": {"class": "num"}, "th": {"class": "num"}})
    signal_count = tables.Column(
        verbose_name="Signals", attrs={"td": {"class": "num"}, "th": {"class": "num"}}
    )
    actions = tables.Column(verbose_name="", empty_values=(), orderable=False, exclude_from_export=True)

    class Meta:
        model = Referral
        fields = ()
        sequence = (
            "id",
            "signed_up_at",
            "program",
            "referrer",
            "referee",
            "code",
            "channel",
            "status",
            "fraud_score",
            "signal_count",
            "actions",
        )
        empty_text = "No referral matches these filters."
        row_attrs = {"id": lambda record: f"referral-{record.pk}"}

    def render_referrer(self, record):
        return _member_link(record.referrer)

    def value_referrer(self, record):
        return f"{record.referrer.full_name} ({record.referrer.membership_number})"

    def render_referee(self, record):
        return _member_link(record.referee)

    def value_referee(self, record):
        return f"{record.referee.full_name} ({record.referee.membership_number})"

    def value_signed_up_at(self, value):
        return timezone.localtime(value).isoformat()

    def render_channel(self, record):
        return record.get_channel_display()

    def value_channel(self, record):
        return record.get_channel_display()

    def render_status(self, record):
        return format_html(
            '<span class="badge {}">{}</span>',
            STATUS_BADGES.get(record.status, ""),
            record.get_status_display(),
        )

    def value_status(self, record):
        return record.get_status_display()

    def render_actions(self, record):
        label = "Review" if record.status in (Referral.Status.HELD, Referral.Status.QUALIFIED) else "Open"
        return format_html(
            '<a class="btn btn-small" href="{}">{}</a>',
            reverse("referrals:detail", kwargs={"pk": record.pk}),
            label,
        )


def _num():
    return {"td": {"class": "num"}, "th": {"class": "num"}}


class FunnelTable(tables.Table):
    """One row per program: the report's table and its CSV (figures, not HTML)."""

    program = tables.Column(accessor="program__name", verbose_name="Program")
    clicks = tables.Column(attrs=_num())
    signups = tables.Column(verbose_name="Sign-ups", attrs=_num())
    qualified = tables.Column(attrs=_num())
    rewarded = tables.Column(attrs=_num())
    held = tables.Column(verbose_name="Held", attrs=_num())
    rejected = tables.Column(attrs=_num())
    click_to_signup = tables.Column(verbose_name="Click → sign-up %", attrs=_num(), empty_values=())
    signup_to_qualified = tables.Column(verbose_name="Sign-up → qualified %", attrs=_num(), empty_values=())
    qualified_to_rewarded = tables.Column(
        verbose_name="Qualified → rewarded %", attrs=_num(), empty_values=()
    )
    points_paid = tables.Column(verbose_name="Points paid", attrs=_num())

    class Meta:
        orderable = False
        empty_text = "No program to report on."

    @staticmethod
    def _percent(value):
        return "—" if value is None else f"{value}%"

    def render_click_to_signup(self, value):
        return self._percent(value)

    def render_signup_to_qualified(self, value):
        return self._percent(value)

    def render_qualified_to_rewarded(self, value):
        return self._percent(value)

    def render_points_paid(self, value):
        return f"{value:,d}"

    def value_click_to_signup(self, value):
        return "" if value is None else value

    def value_signup_to_qualified(self, value):
        return "" if value is None else value

    def value_qualified_to_rewarded(self, value):
        return "" if value is None else value

    def value_points_paid(self, value):
        return value
