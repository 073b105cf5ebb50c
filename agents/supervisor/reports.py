"""Program reports: each one a chart, a table and a CSV, computed in the database.

Every report takes one program and a period of whole months (in the program's
time zone) and runs a fixed number of queries whatever the number of members,
entries or months: each month is one filtered aggregate between its two local
midnights (computed in Python), all months in a single query, so the database
reads the period's entries once and never converts a row's time stamp to the
program's zone (that conversion cost more than the scan on 1,000,000 entries).

Definitions (they are also shown on each page):
- Issued: earn and bonus entries (pending points included: they are issued when
  earned) plus positive adjustments. Redeemed: redeem entries net of refunds.
  Expired: expire entries. Corrections: reversals and negative adjustments.
- Redemption rate: redeemed / issued over the same months.
- Active member: a member with at least one earn, bonus or redeem entry in the
  month. Participation: active members / members enrolled by the month's end
  (closed members included: we keep no status history).
- Outstanding liability: spendable points at each month's end (the sum of every
  entry's effect on the balance so far; pending points are shown apart), times
  the program's `point_value`.
- Tier distribution: members per tier now (tiers have no month-by-month record
  here), closed members left out.
- Disputes: opened per month (created), resolved per month (resolved or
  rejected), average resolution time (SLA clock: pauses left out) and SLA
  attainment (share of the month's resolutions made within the SLA).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date, datetime, time
from decimal import Decimal

from django.db.models import Avg, BooleanField, Count, ExpressionWrapper, F, Q, Sum
from django.db.models.functions import Coalesce, TruncMonth
from django.utils import timezone
from django.utils.safestring import SafeString

from agents.supervisor.forms import add_months, months
from loyalty.charts import bar_chart, format_number, line_chart
from loyalty.models import LedgerEntry, Member, PointsAccount, Program

ISSUE_KINDS = ("earn", "bonus")
ACTIVE_KINDS = ("earn", "bonus", "redeem")


@dataclass(frozen=True)
class Period:
    program: Program
    start: date  # first day of the first month
    end: date  # first day of the last month (inclusive)

    @property
    def months(self) -> list[date]:
        return months(self.start, self.end)

    @property
    def since(self) -> datetime:
        return datetime.combine(self.start, time.min, tzinfo=self.program.tz)

    @property
    def until(self) -> datetime:
        """The exclusive end: the start of the month after the last."""
        return datetime.combine(add_months(self.end, 1), time.min, tzinfo=self.program.tz)

    def month_ranges(self) -> list[tuple[date, datetime, datetime]]:
        """(month, its first local midnight, the next month's) for every month of the period."""
        tz = self.program.tz
        return [
            (
                month,
                datetime.combine(month, time.min, tzinfo=tz),
                datetime.combine(add_months(month, 1), time.min, tzinfo=tz),
            )
            for month in self.months
        ]

    def month_of(self, value) -> date:
        """The month bucket TruncMonth returned, as the first day of that month."""
        if isinstance(value, datetime):
            if timezone.is_aware(value):
                value = timezone.localtime(value, self.program.tz)
            value = value.date()
        return value.replace(day=1)


@dataclass
class Report:
    slug: str
    title: str
    definition: str
    columns: list[str]
    rows: list[list] = field(default_factory=list)
    totals: list | None = None
    chart: SafeString | str = ""
    note: str = ""

    def csv_rows(self) -> list[list]:
        return [self.columns, *self.rows, *([self.totals] if self.totals else [])]


def _label(month: date) -> str:
    return f"{month:%b %Y}"


def _percent(part, whole) -> float | None:
    return round(100 * part / whole, 1) if whole else None


# --- Ledger reports ----------------------------------------------------------------


def points_by_month(period: Period) -> dict[date, dict[str, int]]:
    """Issued, redeemed, expired and corrections per month (one query).

    Grouped by kind and sign only (a handful of groups); each month is a filtered sum between
    its two local midnights, computed here. That is several times cheaper than truncating every
    row's time stamp in the program's zone and grouping on it.
    """
    months = period.month_ranges()
    sums = {
        f"m{n}": Coalesce(
            Sum(F("points") + F("pending_points"), filter=Q(posted_at__gte=start, posted_at__lt=end)), 0
        )
        for n, (_, start, end) in enumerate(months)
    }
    groups = (
        LedgerEntry.objects.filter(
            program=period.program, posted_at__gte=period.since, posted_at__lt=period.until
        )
        .annotate(positive=ExpressionWrapper(Q(points__gt=0), output_field=BooleanField()))
        .values("kind", "positive")
        .annotate(**sums)
        .order_by()
    )
    data = {month: {"issued": 0, "redeemed": 0, "expired": 0, "corrections": 0} for month, _, _ in months}
    for group in groups:
        # Activations move pending points to spendable: points + pending is 0, so they count nowhere.
        series, sign = _SERIES.get((group["kind"], group["positive"]), (None, 0))
        if series is None:
            continue
        for n, (month, _, _) in enumerate(months):
            data[month][series] += sign * group[f"m{n}"]
    return data


# (kind, points > 0) -> (series, sign): what each kind of entry adds to which series.
_SERIES = {
    **{(kind, positive): ("issued", 1) for kind in ISSUE_KINDS for positive in (True, False)},
    ("adjust", True): ("issued", 1),
    ("adjust", False): ("corrections", -1),
    ("reverse", True): ("corrections", -1),
    ("reverse", False): ("corrections", -1),
    ("redeem", False): ("redeemed", -1),
    ("refund", True): ("redeemed", -1),
    ("refund", False): ("redeemed", -1),
    ("expire", False): ("expired", -1),
}


def points_report(period: Period) -> Report:
    data = points_by_month(period)
    rows, sums = [], {"issued": 0, "redeemed": 0, "expired": 0, "corrections": 0}
    for month, figures in data.items():
        rows.append(
            [
                _label(month),
                figures["issued"],
                figures["redeemed"],
                figures["expired"],
                figures["corrections"],
            ]
        )
        for key in sums:
            sums[key] += figures[key]
    labels = [_label(m) for m in data]
    return Report(
        slug="points",
        title="Points issued, redeemed and expired",
        definition=(
            "Issued: earn and bonus entries (pending points included) and positive adjustments. "
            "Redeemed: redemptions net of refunds. Expired: expiry entries. Corrections: reversals "
            "and negative adjustments."
        ),
        columns=["Month", "Issued", "Redeemed", "Expired", "Corrections"],
        rows=rows,
        totals=["Total", sums["issued"], sums["redeemed"], sums["expired"], sums["corrections"]],
        chart=bar_chart(
            labels=labels,
            series={
                "Issued": [f["issued"] for f in data.values()],
                "Redeemed": [f["redeemed"] for f in data.values()],
                "Expired": [f["expired"] for f in data.values()],
            },
            title="Points per month",
            unit="pts",
        ),
    )


def redemption_report(period: Period) -> Report:
    data = points_by_month(period)
    rows = []
    for month, figures in data.items():
        rows.append(
            [
                _label(month),
                figures["issued"],
                figures["redeemed"],
                _percent(figures["redeemed"], figures["issued"]),
            ]
        )
    issued = sum(f["issued"] for f in data.values())
    redeemed = sum(f["redeemed"] for f in data.values())
    return Report(
        slug="redemption",
        title="Redemption rate",
        definition="Points redeemed (net of refunds) as a share of points issued in the same month.",
        columns=["Month", "Issued", "Redeemed", "Redemption rate %"],
        rows=rows,
        totals=["Period", issued, redeemed, _percent(redeemed, issued)],
        chart=line_chart(
            labels=[_label(m) for m in data],
            series={"Redemption rate": [row[3] or 0 for row in rows]},
            title="Redemption rate per month",
            unit="%",
        ),
    )


def participation_report(period: Period) -> Report:
    program = period.program
    months = period.month_ranges()
    # Distinct active accounts per month and over the whole period, in one pass over the entries.
    active = LedgerEntry.objects.filter(
        program=program, kind__in=ACTIVE_KINDS, posted_at__gte=period.since, posted_at__lt=period.until
    ).aggregate(
        period=Count("account", distinct=True),
        **{
            f"m{n}": Count("account", distinct=True, filter=Q(posted_at__gte=start, posted_at__lt=end))
            for n, (_, start, end) in enumerate(months)
        },
    )
    active_in_period = active["period"]
    # Members enrolled by each month's end: one conditional count per month, one query.
    enrolled = Member.objects.filter(program=program).aggregate(
        **{
            f"m{n}": Count("id", filter=Q(joined_on__lt=add_months(month, 1)))
            for n, month in enumerate(period.months)
        }
    )
    rows = []
    for n, month in enumerate(period.months):
        count, members = enrolled[f"m{n}"], active[f"m{n}"]
        rows.append([_label(month), members, count, _percent(members, count)])
    total_enrolled = rows[-1][2] if rows else 0
    return Report(
        slug="participation",
        title="Participation",
        definition=(
            "Active members: members with at least one earn, bonus or redeem entry in the month. "
            "Participation: active members over the members enrolled by the month's end."
        ),
        columns=["Month", "Active members", "Enrolled members", "Participation %"],
        rows=rows,
        totals=["Period", active_in_period, total_enrolled, _percent(active_in_period, total_enrolled)],
        chart=line_chart(
            labels=[row[0] for row in rows],
            series={"Participation": [row[3] or 0 for row in rows]},
            title="Active members over all members",
            unit="%",
        ),
    )


def liability_report(period: Period) -> Report:
    program = period.program
    # Balance at the period's start = today's balances (the sum of every entry, invariant 1)
    # minus what was posted since: the cost follows the period, not the program's whole history.
    months = period.month_ranges()
    moved = LedgerEntry.objects.filter(program=program, posted_at__gte=period.since).aggregate(
        after=Coalesce(Sum("points", filter=Q(posted_at__gte=period.until)), 0),
        **{
            f"m{n}": Coalesce(Sum("points", filter=Q(posted_at__gte=start, posted_at__lt=end)), 0)
            for n, (_, start, end) in enumerate(months)
        },
    )
    net = {month: moved[f"m{n}"] for n, (month, _, _) in enumerate(months)}
    now = PointsAccount.objects.filter(program=program).aggregate(
        balance=Coalesce(Sum("balance"), 0), pending=Coalesce(Sum("pending"), 0)
    )
    opening = now["balance"] - sum(net.values()) - moved["after"]
    value = Decimal(program.point_value)
    rows, running = [], opening
    for month in period.months:
        running += net.get(month, 0)
        rows.append([_label(month), running, (running * value).quantize(Decimal("0.01"))])
    return Report(
        slug="liability",
        title="Outstanding points liability",
        definition=(
            f"Spendable points at each month's end times the program's point value "
            f"({format_number(value)} {program.currency} per point). Pending points are not yet "
            "spendable and are shown apart."
        ),
        columns=["Month end", "Outstanding points", f"Liability ({program.currency})"],
        rows=rows,
        totals=["Now", now["balance"], (now["balance"] * value).quantize(Decimal("0.01"))],
        chart=line_chart(
            labels=[row[0] for row in rows],
            series={"Liability": [float(row[2]) for row in rows]},
            title="Outstanding liability at month end",
            unit=program.currency,
        ),
        note=(
            f"Pending now: {format_number(now['pending'])} points "
            f"({(now['pending'] * value).quantize(Decimal('0.01'))} {program.currency})."
        ),
    )


def tier_report(period: Period) -> Report:
    counts = list(
        Member.objects.filter(program=period.program)
        .exclude(status=Member.Status.CLOSED)
        .values("tier__name", "tier__rank")
        .annotate(members=Count("id"))
        .order_by(F("tier__rank").asc(nulls_last=True))
    )
    total = sum(row["members"] for row in counts)
    rows = [
        [row["tier__name"] or "No tier", row["members"], _percent(row["members"], total)] for row in counts
    ]
    return Report(
        slug="tiers",
        title="Tier distribution",
        definition="Members per tier now (closed members left out); the period does not apply.",
        columns=["Tier", "Members", "Share %"],
        rows=rows,
        totals=["Total", total, 100.0 if total else None],
        chart=bar_chart(
            labels=[row[0] for row in rows],
            series={"Members": [row[1] for row in rows]},
            title="Members per tier",
        ),
    )


# --- Reports of the other apps -----------------------------------------------------------


def dispute_report(period: Period) -> Report:
    from disputes.models import Dispute

    program = period.program
    disputes = Dispute.objects.filter(program=program)
    opened = {
        period.month_of(row["month"]): row["n"]
        for row in disputes.filter(created_at__gte=period.since, created_at__lt=period.until)
        .annotate(month=TruncMonth("created_at", tzinfo=program.tz))
        .values("month")
        .annotate(n=Count("id"))
        .order_by("month")
    }
    resolved = {
        period.month_of(row["month"]): row
        for row in disputes.filter(resolved_at__gte=period.since, resolved_at__lt=period.until)
        .annotate(month=TruncMonth("resolved_at", tzinfo=program.tz))
        .values("month")
        .annotate(
            n=Count("id"),
            seconds=Avg("resolution_seconds"),
            within=Count("id", filter=Q(resolved_within_sla=True)),
            judged=Count("id", filter=Q(resolved_within_sla__isnull=False)),
        )
        .order_by("month")
    }
    rows, sums = [], {"opened": 0, "resolved": 0, "within": 0, "judged": 0, "seconds": 0.0, "timed": 0}
    for month in period.months:
        done = resolved.get(month, {})
        hours = round(done["seconds"] / 3600, 1) if done.get("seconds") is not None else None
        rows.append(
            [
                _label(month),
                opened.get(month, 0),
                done.get("n", 0),
                hours,
                _percent(done.get("within", 0), done.get("judged", 0)),
            ]
        )
        sums["opened"] += opened.get(month, 0)
        sums["resolved"] += done.get("n", 0)
        sums["within"] += done.get("within", 0)
        sums["judged"] += done.get("judged", 0)
        if done.get("seconds") is not None:
            # Weighted by the month's resolutions, so the period average is the average of all.
            sums["seconds"] += done["seconds"] * done["n"]
            sums["timed"] += done["n"]
    return Report(
        slug="disputes",
        title="Disputes: volume, resolution time and SLA",
        definition=(
            "Opened: disputes created in the month. Resolved: resolved or rejected in the month. "
            "Resolution time: average working time on the SLA clock (pauses waiting on the member "
            "left out). SLA attained: share of the month's resolutions made within the SLA."
        ),
        columns=["Month", "Opened", "Resolved", "Avg resolution (h)", "SLA attained %"],
        rows=rows,
        totals=[
            "Period",
            sums["opened"],
            sums["resolved"],
            round(sums["seconds"] / sums["timed"] / 3600, 1) if sums["timed"] else None,
            _percent(sums["within"], sums["judged"]),
        ],
        chart=bar_chart(
            labels=[row[0] for row in rows],
            series={"Opened": [row[1] for row in rows], "Resolved": [row[2] for row in rows]},
            title="Disputes per month",
        ),
    )


FUNNEL_STEPS = (
    ("clicks", "Link clicks"),
    ("signups", "Referred sign-ups"),
    ("qualified", "Qualified"),
    ("rewarded", "Rewarded"),
)


def referral_report(period: Period) -> Report:
    from referrals.selectors import referral_funnel

    funnel = referral_funnel(program_ids=[period.program.id], start=period.since, end=period.until)
    rows, first, previous = [], funnel["clicks"], None
    for key, label in FUNNEL_STEPS:
        count = funnel[key]
        rows.append(
            [
                label,
                count,
                _percent(count, previous) if previous is not None else None,
                _percent(count, first),
            ]
        )
        previous = count
    return Report(
        slug="referrals",
        title="Referral funnel",
        definition=(
            "Each step counts referrals by when they reached it in the period (clicks by click time, "
            "sign-ups by sign-up, qualified by qualification, rewarded by payment), from "
            "referrals.selectors.referral_funnel."
        ),
        columns=["Step", "Referrals", "Of the step before %", "Of clicks %"],
        rows=rows,
        chart=bar_chart(
            labels=[row[0] for row in rows],
            series={"Referrals": [row[1] for row in rows]},
            title="Referral funnel",
        ),
        note=(
            f"Held for review: {funnel['held']}; rejected: {funnel['rejected']}; "
            f"points paid to both sides: {format_number(funnel['points_paid'])}."
        ),
    )


LEADERBOARD_SIZE = 50


def agent_report(period: Period) -> Report:
    from agents.selectors import leaderboard

    board = leaderboard(
        period_start=period.start, period_end=add_months(period.end, 1), program_ids=[period.program.id]
    )[:LEADERBOARD_SIZE]
    rows = [
        [
            agent.rank,
            agent.user.get_full_name() or agent.user.get_username(),
            agent.team.name if agent.team else "",
            agent.points or 0,
        ]
        for agent in board
    ]
    return Report(
        slug="agents",
        title="Agent leaderboard",
        definition=(
            f"Active agents of the program's teams ranked by the performance points their KPIs score "
            f"over the period (agents.selectors.leaderboard); the top {LEADERBOARD_SIZE}."
        ),
        columns=["Rank", "Agent", "Team", "Points"],
        rows=rows,
        chart=bar_chart(
            labels=[row[1] for row in rows[:15]],
            series={"Points": [row[3] for row in rows[:15]]},
            title="Top agents",
        ),
    )


REPORTS: dict[str, tuple[str, Callable[[Period], Report]]] = {
    "participation": ("Participation", participation_report),
    "points": ("Points", points_report),
    "redemption": ("Redemption rate", redemption_report),
    "liability": ("Liability", liability_report),
    "tiers": ("Tiers", tier_report),
    "referrals": ("Referrals", referral_report),
    "disputes": ("Disputes", dispute_report),
    "agents": ("Agents", agent_report),
}


def report_build(*, slug: str, period: Period) -> Report:
    return REPORTS[slug][1](period)
