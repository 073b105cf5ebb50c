"""The disputes app's part of seed_demo, called after the programs and members exist.

Each program gets a policy and about two dozen tickets over the last month in every
status: fresh unassigned ones for "take next", some waiting on the member (clock
paused), escalated ones, some overdue the escalation job has not reached yet,
resolved and rejected ones (one reopened), with replies, internal notes and point
corrections applied, awaiting approval and rejected. The agents and supervisors are
the demo's own (program.staff). Deterministic (random.Random per program) and
idempotent: a program that already has tickets is left alone.
"""

from __future__ import annotations

import random
from datetime import timedelta

from django.contrib.auth import get_user_model
from django.utils import timezone

from disputes import services
from disputes.models import Dispute, DisputePolicy, Priority
from loyalty.audit import acting_as
from loyalty.models import LedgerEntry, Member
from loyalty.roles import GROUP_NAMES, Role

Status = Dispute.Status
Category = Dispute.Category

POLICIES = {
    "bean-there": {"approval_threshold": 200, "assignment": DisputePolicy.Assignment.NONE},
    "skyhigh": {
        "approval_threshold": 5000,
        "assignment": DisputePolicy.Assignment.LEAST_BUSY,
        "resolution_hours_urgent": 12,
    },
}

STORIES = {
    Category.MISSING_POINTS: (
        "Points missing for my purchase",
        "I bought something on {day} and got no points.",
    ),
    Category.WRONG_BALANCE: ("My balance looks wrong", "My balance dropped and I do not know why."),
    Category.REDEMPTION_PROBLEM: ("Reward never arrived", "I redeemed a reward but never received it."),
    Category.REFERRAL_NOT_CREDITED: (
        "Referral bonus missing",
        "My friend joined with my link; no bonus yet.",
    ),
    Category.EXPIRED_IN_ERROR: ("Points expired too early", "Points expired although they were recent."),
    Category.OTHER: ("Question about my account", "Can you check my tier? It did not change."),
}

# (final state, what happens on the way); one ticket per entry, in this order.
PLAN = [
    "open",
    "open",
    "open",
    "open_overdue",
    "open_overdue",
    "in_progress",
    "in_progress",
    "in_progress_overdue",
    "awaiting",
    "awaiting",
    "escalated",
    "escalated",
    "pending_approval",
    "pending_approval",
    "resolved_small_fix",
    "resolved_small_fix",
    "resolved_small_fix",
    "resolved_approved_fix",
    "resolved_rejected_fix",
    "resolved",
    "resolved",
    "resolved_reopened",
    "rejected",
    "rejected",
]

PORTAL_MEMBER_TICKETS = {PLAN.index("awaiting"), PLAN.index("resolved_small_fix")}


def _staff(program, role: Role):
    return list(
        get_user_model()
        .objects.filter(loyalty_programs=program, groups__name=GROUP_NAMES[role])
        .distinct()
        .order_by("pk")
    )


def seed(*, programs, months: int, log) -> None:
    """Add this app's demo data to the seeded programs; a second run changes nothing."""
    with acting_as("command:seed_demo"):
        for slug, program in sorted(programs.items()):
            if Dispute.objects.filter(program=program).exists():
                log(f"{program.name}: disputes already seeded, left unchanged.")
                continue
            DisputePolicy.objects.get_or_create(program=program, defaults=POLICIES.get(slug, {}))
            count = _seed_program(program, rng=random.Random(f"disputes-{slug}"))
            if count:
                log(f"{program.name}: {count} dispute tickets in every status.")
            else:
                log(f"{program.name}: no members or no agent and supervisor; no dispute tickets made.")


def _seed_program(program, *, rng: random.Random) -> int:
    agents = _staff(program, Role.AGENT)
    supervisors = _staff(program, Role.SUPERVISOR)
    if not agents or not supervisors:
        return 0
    members = list(Member.objects.filter(program=program).order_by("pk")[:300])
    if not members:
        return 0
    # The demo's portal member (if this program has one) gets a ticket awaiting them and a fixed one.
    with_login = [m for m in members if m.user_id] or members
    threshold = services.policy_for(program).approval_threshold
    now = timezone.now()
    for index, plan in enumerate(PLAN):
        member = members[rng.randrange(len(members))]
        if index in PORTAL_MEMBER_TICKETS:
            member = with_login[0]
        agent = agents[index % len(agents)]
        supervisor = supervisors[index % len(supervisors)]
        _ticket(plan, program, member, agent, supervisor, threshold, now, rng, index)
    return len(PLAN)


def _ticket(plan, program, member, agent, supervisor, threshold, now, rng, index) -> None:
    category = rng.choice(list(Category))
    subject, story = STORIES[category]
    overdue = plan.endswith("overdue")
    # Overdue ones are older than their targets; the rest opened within the last few days.
    hours_ago = (
        rng.randint(200, 400) if overdue or plan.startswith(("resolved", "rejected")) else rng.randint(1, 30)
    )
    opened = now - timedelta(hours=hours_ago, minutes=rng.randint(0, 59))
    entry = LedgerEntry.objects.filter(account__member=member).order_by("-id").first()
    related = entry if category in (Category.MISSING_POINTS, Category.WRONG_BALANCE) else None
    ticket = services.dispute_open(
        member=member,
        category=category,
        subject=subject,
        description=story.format(day=timezone.localdate(opened, program.tz).isoformat()),
        related_entry=related,
        priority=rng.choice([Priority.LOW, Priority.NORMAL, Priority.NORMAL, Priority.HIGH]),
        channel=rng.choice(list(Dispute.Channel)),
        now=opened,
    )
    if plan.startswith("open"):
        return
    step = opened + timedelta(minutes=rng.randint(20, 90))

    def later(minutes=(30, 240)):
        nonlocal step
        # Never in the future: a ticket opened an hour ago gets its steps squeezed before now.
        step = min(step + timedelta(minutes=rng.randint(*minutes)), now - timedelta(minutes=1))
        return step

    if ticket.assignee_id is None:
        services.dispute_assign(dispute=ticket, assignee=agent, user=agent, now=step)
    who = ticket.assignee if ticket.assignee_id else agent
    services.comment_add(
        dispute=ticket, user=who, body="Checking the ledger now.", internal=True, now=later((5, 20))
    )
    if plan == "in_progress_overdue":
        services.dispute_transition(dispute=ticket, to=Status.IN_PROGRESS, user=who, now=later((5, 20)))
        return
    services.comment_add(
        dispute=ticket,
        user=who,
        body="Thank you for writing. We are looking into this and will come back to you shortly.",
        internal=False,
        now=later(),
    )
    if plan == "in_progress":
        return
    if plan == "awaiting":
        services.comment_add(
            dispute=ticket,
            user=who,
            body="Could you send us the receipt of that purchase?",
            internal=False,
            await_member=True,
            now=later(),
        )
        return
    if plan == "escalated":
        services.dispute_transition(dispute=ticket, to=Status.ESCALATED, user=who, now=later())
        return
    small = max(1, min(threshold, rng.randint(2, 15) * 10))
    big = threshold + rng.randint(1, 10) * 10
    if plan in ("resolved_small_fix", "pending_approval", "resolved_approved_fix", "resolved_rejected_fix"):
        points = small if plan == "resolved_small_fix" else big
        adjustment = services.adjustment_request(
            dispute=ticket,
            points=points,
            reason="Purchase not credited" if category != Category.EXPIRED_IN_ERROR else "Expired in error",
            user=who,
            request_key=f"demo-{program.slug}-{index}",
            now=later(),
        ).adjustment
        if plan == "pending_approval":
            return
        if plan == "resolved_approved_fix":
            services.adjustment_approve(adjustment=adjustment, user=supervisor, now=later())
        elif plan == "resolved_rejected_fix":
            services.adjustment_reject(
                adjustment=adjustment,
                user=supervisor,
                reason="The receipt shows a returned item; no points are due.",
                now=later(),
            )
    outcome = Status.REJECTED if plan == "rejected" else Status.RESOLVED
    resolution = (
        "We checked your account and could not find an error; the points shown are correct."
        if outcome == Status.REJECTED
        else "Sorted: your balance is now correct. Thank you for your patience."
    )
    services.dispute_close(dispute=ticket, to=outcome, resolution=resolution, user=who, now=later())
    if plan == "resolved_reopened":
        services.dispute_reopen(
            dispute=ticket, member=member, reason="I still see the old balance.", now=later((60, 120))
        )
