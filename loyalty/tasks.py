"""Celery beat jobs over the ledger. Each is idempotent and also a management command."""

from celery import shared_task

from loyalty import ledger, milestones, tier_review
from loyalty.models import Program


def _summary(report: ledger.JobReport) -> dict:
    return {"accounts": report.accounts, "lots": report.lots, "points": report.points}


@shared_task(name="loyalty.tasks.expire_points")
def expire_points() -> dict:
    return _summary(ledger.expire_due_lots(workers=ledger.EXPIRY_WORKERS))


@shared_task(name="loyalty.tasks.activate_pending_points")
def activate_pending_points() -> dict:
    return _summary(ledger.activate_pending_lots())


@shared_task(name="loyalty.tasks.reconcile_ledger")
def reconcile_ledger() -> dict:
    problems = ledger.reconcile()
    # A failed reconcile must be loud: the log line is what on-call sees first.
    if problems:
        import logging

        logging.getLogger("loyalty.reconcile").error("Ledger reconcile found %d problems", len(problems))
    return {"problems": len(problems), "accounts": sorted({p.account_id for p in problems})[:100]}


def _program(program_id: int | None) -> Program | None:
    return None if program_id is None else Program.objects.get(pk=program_id)


@shared_task(name="loyalty.tasks.pay_milestones")
def pay_milestones(program_id: int | None = None) -> dict:
    return milestones.milestones_pay(program=_program(program_id)).summary()


@shared_task(name="loyalty.tasks.review_tiers")
def review_tiers(program_id: int | None = None) -> dict:
    return tier_review.tiers_review_all(program=_program(program_id)).summary()
