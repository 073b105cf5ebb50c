"""Reads the member portal needs beyond loyalty.selectors: always about the member logged in.

The ledger logic (balances, lots, explanations) stays in loyalty.selectors and
loyalty.tiers; these functions only pick, for one member, what the portal shows,
each with a fixed number of queries.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from django.db.models import QuerySet
from django.http import Http404
from django.shortcuts import get_object_or_404
from django.urls import Resolver404, resolve
from django.utils import timezone

from loyalty import ledger, selectors, tiers
from loyalty.access import get_for_member_or_404, scope_to_member
from loyalty.models import LedgerEntry, Member, PointsAccount, Program, Redemption, Tier
from loyalty.selectors import RewardOption, history_rows

Kind = LedgerEntry.Kind

# --- Who is logged in -------------------------------------------------------------


def portal_member(*, user) -> Member:
    """The member row of the login, with what every portal page shows (a 404 for anyone else)."""
    return get_for_member_or_404(
        Member.objects.select_related("program", "account", "tier"), user, member_field=""
    )


def member_account(*, member: Member) -> PointsAccount:
    # member_create opens the account; a member made some other way gets an empty one now.
    try:
        return member.account
    except PointsAccount.DoesNotExist:
        return ledger.open_account(member=member)


def signup_program(*, slug: str) -> Program:
    """The program a sign-up link names; an inactive or unknown one is a 404."""
    return get_object_or_404(Program, slug=slug, is_active=True)


# --- Plain words ------------------------------------------------------------------

# What each kind of entry means, said to the member.
KIND_WORDS = {
    Kind.EARN: "Points earned",
    Kind.BONUS: "Bonus points",
    Kind.REDEEM: "Spent on a reward",
    Kind.ADJUST: "Correction by our team",
    Kind.EXPIRE: "Points expired",
    Kind.REVERSE: "Points taken back (a return or a cancelled earning)",
    Kind.REFUND: "Points given back",
    Kind.ACTIVATE: "Pending points became available",
}
KIND_CHOICES = [(kind, KIND_WORDS[kind]) for kind in Kind.values]


def entry_words(entry: LedgerEntry) -> str:
    return KIND_WORDS.get(entry.kind, entry.get_kind_display())


def entry_change(entry: LedgerEntry) -> int:
    """How the entry moved the member's points, spendable and pending together.

    An activation moves points from pending to spendable: its net effect is
    zero, so it reads as the points it made available.
    """
    if entry.kind == Kind.ACTIVATE:
        return entry.points
    return entry.points + entry.pending_points


def history_entries(*, account: PointsAccount) -> QuerySet[LedgerEntry]:
    """Every entry of the member's account, newest first: one query per page, no joins."""
    return selectors.ledger_entries(account=account).only(
        "id",
        "kind",
        "points",
        "pending_points",
        "balance_after",
        "occurred_at",
        "posted_at",
        "reference",
        "reason",
        "breakdown",
    )


# --- Tier progress ----------------------------------------------------------------


@dataclass(frozen=True)
class TierProgress:
    tier: Tier | None
    qualifying_points: int
    window_days: int
    next_tier: Tier | None

    @property
    def points_to_next(self) -> int:
        return max(self.next_tier.threshold - self.qualifying_points, 0) if self.next_tier else 0

    @property
    def points_to_keep(self) -> int:
        """Qualifying points still missing to keep the current tier at the next review (downgrades wait)."""
        return max(self.tier.threshold - self.qualifying_points, 0) if self.tier else 0

    @property
    def percent(self) -> int:
        """How far along to the next tier, 0-100 (100 at the top tier)."""
        if self.next_tier is None:
            return 100
        if self.next_tier.threshold <= 0:
            return 100
        return min(100, self.qualifying_points * 100 // self.next_tier.threshold)


def tier_progress(*, member: Member, now: datetime | None = None) -> TierProgress | None:
    """The member's tier, qualifying points over the window and the next tier up (two queries).

    None when the program has no tiers. The next tier is the lowest one ranked
    above the member's current tier (upgrades happen as points are earned).
    """
    now = now or timezone.now()
    program_tiers = sorted(Tier.objects.filter(program_id=member.program_id), key=lambda t: t.rank)
    if not program_tiers:
        return None
    current_rank = member.tier.rank if member.tier else 0
    next_tier = next((tier for tier in program_tiers if tier.rank > current_rank), None)
    return TierProgress(
        tier=member.tier,
        qualifying_points=tiers.qualifying_points(member=member, at=now),
        window_days=member.program.tier_window_days,
        next_tier=next_tier,
    )


# --- Rewards ----------------------------------------------------------------------


def catalogue(*, member: Member, balance: int, now: datetime | None = None) -> list[RewardOption]:
    """Rewards on offer now that the member's tier allows, cheapest first (one query)."""
    return [
        option
        for option in selectors.reward_options(member=member, balance=balance, now=now)
        if option.tier_ok
    ]


def catalogue_reward(*, member: Member, balance: int, pk: int, now: datetime | None = None) -> RewardOption:
    """One reward of the catalogue, by the same rules; anything else (another program's, out of its
    window, above the member's tier) is a 404."""
    for option in catalogue(member=member, balance=balance, now=now):
        if option.reward.pk == pk:
            return option
    raise Http404("No such reward on offer.")


def member_redemptions(*, user) -> QuerySet[Redemption]:
    """The member's own redemptions, newest first, with their reward (one query per page)."""
    queryset = Redemption.objects.select_related("reward").order_by("-created_at", "-id")
    return scope_to_member(queryset, user)


def member_redemption(*, user, pk: int) -> Redemption:
    """One of the member's redemptions; another member's id is a 404."""
    queryset = Redemption.objects.select_related("reward", "program")
    return get_for_member_or_404(queryset, user, pk=pk)


@dataclass(frozen=True)
class StatusStep:
    status: str
    label: str
    at: datetime


def redemption_timeline(*, redemption: Redemption, limit: int = 20) -> list[StatusStep]:
    """When the redemption reached each status, oldest first (from its history, one query).

    Only statuses and dates: who handled it stays in the back-office.
    """
    records = list(
        redemption.history.order_by("history_date", "history_id").values_list("status", "history_date")[
            :limit
        ]
    )
    labels = dict(Redemption.Status.choices)
    steps: list[StatusStep] = []
    for status, at in records:
        if not steps or steps[-1].status != status:
            steps.append(StatusStep(status=status, label=labels.get(status, status), at=at))
    return steps


# --- Profile history --------------------------------------------------------------

PROFILE_FIELDS = ("first_name", "last_name", "email", "phone")


@dataclass(frozen=True)
class ProfileChange:
    at: datetime
    by: str  # "you", "our team" or "automatic"
    created: bool
    changes: list


def profile_history(*, member: Member, limit: int = 20) -> list[ProfileChange]:
    """Changes to the member's own contact details, newest first (one query).

    Other fields (status, tier, program) are the back-office's business and are
    left out, and so is who exactly in the back-office made a change.
    """
    records = list(
        member.history.select_related("history_user").order_by("-history_date", "-history_id")[: limit + 1]
    )
    older = records[limit] if len(records) > limit else None
    excluded = tuple(field.name for field in Member._meta.concrete_fields if field.name not in PROFILE_FIELDS)
    rows = history_rows(records[:limit], older=older, excluded=excluded)
    changes = []
    for row in rows:
        created = row.record.history_type == "+"
        if not created and not row.changes:
            continue  # a change to a field the member does not see
        user_id = row.record.history_user_id
        by = (
            "you"
            if user_id is not None and user_id == member.user_id
            else ("our team" if user_id is not None else "automatic")
        )
        changes.append(ProfileChange(at=row.record.history_date, by=by, created=created, changes=row.changes))
    return changes


# --- Other portal pages -----------------------------------------------------------

# Pages other apps add under /me/: linked from the home page once they exist.
ELSEWHERE = (
    ("/me/referrals/", "Invite friends", "Your referral link and the friends who joined with it."),
    (
        "/me/disputes/",
        "Ask us about your points",
        "Report missing points or a problem, and follow our replies.",
    ),
    ("/me/notifications/", "Notification settings", "Choose which messages we send you."),
)


@dataclass(frozen=True)
class PortalLink:
    url: str
    label: str
    description: str
    url_name: str


DISPUTES_PATH = ELSEWHERE[1][0]


def other_portal_page(path: str) -> PortalLink | None:
    """One page of ELSEWHERE by its path, if an app provides it."""
    return next((link for link in other_portal_pages() if link.url == path), None)


def other_portal_pages() -> list[PortalLink]:
    """The pages of ELSEWHERE that are installed (resolved by path, so a missing app is no error)."""
    links = []
    for path, label, description in ELSEWHERE:
        try:
            match = resolve(path)
        except Resolver404:
            continue
        if match.namespace == "portal":
            continue
        links.append(PortalLink(url=path, label=label, description=description, url_name=match.view_name))
    return links
