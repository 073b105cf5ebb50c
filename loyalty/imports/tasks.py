"""Celery task: run a recorded import by its id (a finished batch is left as it is)."""

from celery import shared_task

from loyalty.imports.engine import import_run


@shared_task
def run_import(batch_id: int) -> str:
    return import_run(batch_id=batch_id).status
