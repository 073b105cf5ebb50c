import os

from celery import Celery
from celery.signals import task_postrun, task_prerun

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings.local")

app = Celery("loyalty_backoffice")
# Every Celery option lives in Django settings under the CELERY_ prefix.
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()

# Every task's history rows say which job wrote them (see loyalty.audit).
_audit_scopes = {}


@task_prerun.connect
def _enter_audit_scope(task_id=None, task=None, **kwargs):
    from loyalty.audit import acting_as

    scope = acting_as(f"job:{task.name}")
    scope.__enter__()
    _audit_scopes[task_id] = scope


@task_postrun.connect
def _leave_audit_scope(task_id=None, **kwargs):
    scope = _audit_scopes.pop(task_id, None)
    if scope is not None:
        scope.__exit__(None, None, None)
