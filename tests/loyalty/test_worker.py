"""A real Celery worker, fed through Redis, runs the expiry job against PostgreSQL."""

import os
import subprocess
import sys
import uuid
from datetime import timedelta

import pytest
from django.conf import settings
from django.db import connection
from django.utils import timezone

from config.celery_app import app
from loyalty import ledger, tasks
from loyalty.ledger import Actor
from loyalty.models import PointsAccount


@pytest.mark.postgres
@pytest.mark.redis
@pytest.mark.django_db(transaction=True)
def test_a_worker_expires_points_sent_through_redis(member_a):
    earned = timezone.now() - timedelta(days=400)
    ledger.credit(
        account=member_a.account,
        points=70,
        reason="Old purchase",
        actor=Actor.job("test"),
        idempotency_key="old",
        source="api",
        occurred_at=earned,
        now=earned,
    )
    queue = f"test-{uuid.uuid4().hex[:8]}"  # a queue of our own: no other worker takes the job
    db = connection.settings_dict
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "config.settings.test",
        "DATABASE_URL": f"postgres://{db['USER']}@{db['HOST']}:{db['PORT']}/{db['NAME']}",
        "REDIS_URL": settings.REDIS_URL,
    }
    worker = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "celery",
            "-A",
            "config",
            "worker",
            "--pool=solo",
            "-Q",
            queue,
            "--without-heartbeat",
            "--without-gossip",
            "--without-mingle",
            "--loglevel=WARNING",
        ],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    eager = app.conf.task_always_eager
    app.conf.task_always_eager = False
    try:
        result = tasks.expire_points.apply_async(queue=queue)
        assert result.get(timeout=90) == {"accounts": 1, "lots": 1, "points": -70}
    finally:
        app.conf.task_always_eager = eager
        worker.terminate()
        output = worker.communicate(timeout=30)[0].decode()
    assert PointsAccount.objects.get(pk=member_a.account.pk).balance == 0, output
