"""Celery beat jobs of the agents app. Idempotent; each is also a management command."""

from celery import shared_task

from agents import services
from agents.periods import parse_month


@shared_task(name="agents.tasks.award_agent_points")
def award_agent_points(period: str | None = None) -> dict:
    """Award a closed month ("2026-10"). Without one (the beat's daily run): last month, and
    this month's ticket KPIs refreshed for the live leaderboards."""
    if period:
        return services.awards_post(month=parse_month(period)).summary()
    return services.awards_run_scheduled().summary()
