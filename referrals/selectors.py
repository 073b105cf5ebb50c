"""Reads of the referrals app: queues, one referral's story, a member's own referrals, reports.

Each function runs a fixed number of queries whatever the number of referrals.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from decimal import Decimal

from django.db.models import Count, F, Q, QuerySet, Sum
from django.db.models.functions import Coalesce, TruncDate
from django.utils import timezone

from loyalty.access import get_for_staff_or_404, scope_to_staff
from loyalty.models import LedgerEntry, Member, Program
from loyalty.selectors import HistoryRow, history_rows, members_matching
from referrals.models import Referral, ReferralClick, ReferralCode, ReferralPolicy

Status = Referral.Status

# --- Funnel (also called by the supervisor reports) ------------------------------------


def _rewards(program_ids, start: datetime, end: datetime) -> QuerySet[LedgerEntry]:
    """Reward entries (both sides) posted in [start, end): entries whose subject is a referral."""
    return LedgerEntry.objects.filter(
        program_id__in=program_ids,
        subject_type__app_label="referrals",
        subject_type__model="referral",
        posted_at__gte=start,
        posted_at__lt=end,
    )


def referral_funnel(*, program_ids, start: datetime, end: datetime) -> dict:
    """The referral funnel of some programs over [start, end), in three queries.

    Each stage counts referrals by when they reached it: clicks by click time,
    signups by sign-up, qualified by qualification (held, rewarded or rejected
    since, all count), rewarded by payment, held by when they were held,
    rejected by the decision. points_paid is both sides' rewards posted in the period.
    """
    program_ids = list(program_ids)
    clicks = ReferralClick.objects.filter(
        program_id__in=program_ids, clicked_at__gte=start, clicked_at__lt=end
    ).count()

    def between(field: str) -> Q:
        return Q(**{f"{field}__gte": start, f"{field}__lt": end})

    counts = Referral.objects.filter(program_id__in=program_ids).aggregate(
        signups=Count("id", filter=between("signed_up_at")),
        qualified=Count("id", filter=between("qualified_at")),
        rewarded=Count("id", filter=between("rewarded_at")),
        held=Count("id", filter=between("held_at")),
        rejected=Count("id", filter=between("reviewed_at") & Q(status=Status.REJECTED)),
    )
    paid = _rewards(program_ids, start, end).aggregate(
        points=Coalesce(Sum(F("points") + F("pending_points")), 0)
    )["points"]
    return {"clicks": clicks, **counts, "points_paid": paid}


def conversion(part: int, whole: int) -> Decimal | None:
    """part/whole as a percentage with one decimal, or None when there is nothing to divide by."""
    if not whole:
        return None
    return (Decimal(part) * 100 / Decimal(whole)).quantize(Decimal("0.1"))


# --- Reports -----------------------------------------------------------------------------


@dataclass(frozen=True)
class ProgramFunnel:
    program: Program
    clicks: int
    signups: int
    qualified: int
    rewarded: int
    held: int
    rejected: int
    points_paid: int

    @property
    def click_to_signup(self) -> Decimal | None:
        return conversion(self.signups, self.clicks)

    @property
    def signup_to_qualified(self) -> Decimal | None:
        return conversion(self.qualified, self.signups)

    @property
    def qualified_to_rewarded(self) -> Decimal | None:
        return conversion(self.rewarded, self.qualified)


@dataclass(frozen=True)
class TopReferrer:
    member: Member
    signups: int
    rewarded: int


@dataclass(frozen=True)
class Report:
    rows: list[ProgramFunnel]
    days: list[date]
    signups_by_day: list[int]
    rewarded_by_day: list[int]
    top_referrers: list[TopReferrer]


def local_period(first: date, last: date, tz) -> tuple[datetime, datetime]:
    """[start, end) of the days first..last inclusive, in time zone `tz`."""
    start = timezone.make_aware(datetime.combine(first, time.min), tz)
    end = timezone.make_aware(datetime.combine(last + timedelta(days=1), time.min), tz)
    return start, end


def referral_report(*, programs: list[Program], first: date, last: date, tz, top: int = 10) -> Report:
    """Funnel per program, sign-ups and rewards per day, and the top referrers: five queries."""
    start, end = local_period(first, last, tz)
    ids = [p.pk for p in programs]

    def between(field: str) -> Q:
        return Q(**{f"{field}__gte": start, f"{field}__lt": end})

    clicks = dict(
        ReferralClick.objects.filter(program_id__in=ids, clicked_at__gte=start, clicked_at__lt=end)
        .values_list("program_id")
        .annotate(n=Count("id"))
        .values_list("program_id", "n")
    )
    per_program = {
        row["program_id"]: row
        for row in Referral.objects.filter(program_id__in=ids)
        .values("program_id")
        .annotate(
            signups=Count("id", filter=between("signed_up_at")),
            qualified=Count("id", filter=between("qualified_at")),
            rewarded=Count("id", filter=between("rewarded_at")),
            held=Count("id", filter=between("held_at")),
            rejected=Count("id", filter=between("reviewed_at") & Q(status=Status.REJECTED)),
        )
    }
    paid = dict(
        _rewards(ids, start, end)
        .values("program_id")
        .annotate(points=Sum(F("points") + F("pending_points")))
        .values_list("program_id", "points")
    )
    rows = []
    for program in programs:
        counts = per_program.get(program.pk, {})
        rows.append(
            ProgramFunnel(
                program=program,
                clicks=clicks.get(program.pk, 0),
                signups=counts.get("signups", 0),
                qualified=counts.get("qualified", 0),
                rewarded=counts.get("rewarded", 0),
                held=counts.get("held", 0),
                rejected=counts.get("rejected", 0),
                points_paid=paid.get(program.pk) or 0,
            )
        )
    daily = (
        Referral.objects.filter(program_id__in=ids)
        .filter(between("signed_up_at") | between("rewarded_at"))
        .annotate(
            signup_day=TruncDate("signed_up_at", tzinfo=tz), reward_day=TruncDate("rewarded_at", tzinfo=tz)
        )
        .values_list("signup_day", "reward_day")
    )
    days = [first + timedelta(days=n) for n in range((last - first).days + 1)]
    signups_by_day = dict.fromkeys(days, 0)
    rewarded_by_day = dict.fromkeys(days, 0)
    for signup_day, reward_day in daily:
        if signup_day in signups_by_day:
            signups_by_day[signup_day] += 1
        if reward_day in rewarded_by_day:
            rewarded_by_day[reward_day] += 1
    leaders = list(
        Referral.objects.filter(program_id__in=ids)
        .filter(between("signed_up_at"))
        .values("referrer_id")
        .annotate(signups=Count("id"), rewarded=Count("id", filter=Q(status=Status.REWARDED)))
        .order_by("-rewarded", "-signups", "referrer_id")[:top]
    )
    members = Member.objects.select_related("program").in_bulk([row["referrer_id"] for row in leaders])
    return Report(
        rows=rows,
        days=days,
        signups_by_day=[signups_by_day[d] for d in days],
        rewarded_by_day=[rewarded_by_day[d] for d in days],
        top_referrers=[
            TopReferrer(member=members[row["referrer_id"]], signups=row["signups"], rewarded=row["rewarded"])
            for row in leaders
        ],
    )


# --- Staff lists and pages ---------------------------------------------------------------


def referral_list(*, user) -> QuerySet[Referral]:
    """Referrals of the staff user's programs, newest first, with what the table shows."""
    queryset = Referral.objects.select_related("program", "referrer", "referee", "code").annotate(
        signal_count=Count("signals")
    )
    return scope_to_staff(queryset, user)


def referrals_matching(queryset: QuerySet[Referral], text: str) -> QuerySet[Referral]:
    """Referrals whose code is `text`, or whose referrer or referee the member search finds."""
    words = text.split()
    if not words:
        return queryset
    members = members_matching(Member.objects.all(), text)
    return queryset.filter(
        Q(code__code=text.strip().upper()) | Q(referrer__in=members) | Q(referee__in=members)
    )


def referral_get(*, user, pk: int) -> Referral:
    queryset = Referral.objects.select_related(
        "program",
        "referrer__account",
        "referee__account",
        "code",
        "click",
        "attributed_by",
        "reviewed_by",
        "referrer_entry",
        "referee_entry",
    )
    return get_for_staff_or_404(queryset, user, pk=pk)


@dataclass(frozen=True)
class TimelineEvent:
    at: datetime
    what: str
    detail: str = ""


def referral_timeline(*, referral: Referral) -> list[TimelineEvent]:
    """What happened to a referral, oldest first, from its own columns (no query)."""
    events = []
    if referral.click is not None:
        events.append(
            TimelineEvent(referral.click.clicked_at, "Share link opened", f"from {referral.click.ip or '?'}")
        )
    how = referral.get_channel_display()
    if referral.attributed_by is not None:
        how += f" by {referral.attributed_by.get_username()}: {referral.attribution_reason}"
        events.append(TimelineEvent(referral.created_at, "Attributed by hand", how))
        events.append(TimelineEvent(referral.signed_up_at, "Joined", ""))
    else:
        events.append(TimelineEvent(referral.signed_up_at, "Joined with the code", how))
    if referral.qualified_at:
        events.append(
            TimelineEvent(
                referral.qualified_at,
                "Qualifying purchase",
                f"{referral.qualifying_amount} {referral.program.currency}, reference "
                f"{referral.qualifying_reference}; fraud score {referral.fraud_score}",
            )
        )
    if referral.held_at:
        events.append(
            TimelineEvent(referral.held_at, "Held for review", "the fraud score reached the threshold")
        )
    if referral.rewarded_at:
        events.append(
            TimelineEvent(
                referral.rewarded_at,
                "Rewarded",
                f"{referral.referrer_entry.points + referral.referrer_entry.pending_points} points to the "
                f"referrer, {referral.referee_entry.points + referral.referee_entry.pending_points} "
                "to the referee",
            )
        )
    if referral.status == Status.REJECTED:
        events.append(TimelineEvent(referral.reviewed_at, "Rejected", referral.decision_reason))
    return sorted(events, key=lambda e: e.at)


def referral_history(*, referral: Referral, limit: int = 50) -> list[HistoryRow]:
    records = list(
        referral.history.select_related("history_user").order_by("-history_date", "-history_id")[: limit + 1]
    )
    older = records[limit] if len(records) > limit else None
    return history_rows(records[:limit], older=older, excluded=("created_at", "updated_at"))


def window_end(*, signed_up_at: datetime, policy: ReferralPolicy | None) -> datetime | None:
    """Until when a referee's purchase can qualify the referral (services._window)."""
    if policy is None:
        return None
    return signed_up_at + timedelta(days=policy.window_days)


# --- The member's own page ------------------------------------------------------------------

# What a member is told about each referral: held and rejected say nothing about fraud checks.
MEMBER_STATUS = {
    Status.PENDING: "Joined: waiting for their first qualifying purchase",
    Status.QUALIFIED: "Qualified: your points are on their way",
    Status.HELD: "Being checked by our team",
    Status.REWARDED: "Rewarded",
    Status.REJECTED: "Not eligible",
}


@dataclass(frozen=True)
class MyReferral:
    name: str
    joined: datetime
    status: str
    status_label: str


# A pending referral whose window has passed can no longer qualify (services._window); the
# member is told so rather than left waiting.
WINDOW_CLOSED = "No qualifying purchase within the time allowed"


def my_referrals(*, member: Member, policy: ReferralPolicy | None, now: datetime) -> list[MyReferral]:
    """The people a member referred, newest first, as the member may see them (one query)."""
    rows = (
        Referral.objects.filter(referrer=member)
        .order_by("-signed_up_at", "-id")
        .values_list("referee__first_name", "referee__last_name", "signed_up_at", "status")
    )
    return [
        MyReferral(
            name=f"{first} {last[:1]}.".strip() if last else first,
            joined=joined,
            status=status,
            status_label=WINDOW_CLOSED
            if status == Status.PENDING and policy and window_end(signed_up_at=joined, policy=policy) < now
            else MEMBER_STATUS[status],
        )
        for first, last, joined, status in rows
    ]


def code_lookup(*, code: str) -> ReferralCode | None:
    return ReferralCode.objects.select_related("program").filter(code=code.strip().upper()).first()
