"""Faults on the real services: a worker killed mid-expiry, PostgreSQL connections cut, Redis down.

After each, the ledger reconciles clean (loyalty.ledger.reconcile() finds no discrepancy).
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from datetime import timedelta

import psycopg
import pytest
from django.conf import settings
from django.db import OperationalError, close_old_connections, connection, transaction
from django.urls import reverse
from django.utils import timezone
from rest_framework.test import APIClient

from config.celery_app import app
from loyalty import ledger, tasks
from loyalty.api.services import api_key_create
from loyalty.ledger import Actor
from loyalty.models import LedgerEntry, PointLot
from loyalty.services import member_create
from tests.loyalty.factories import EarningRuleFactory

ACCOUNTS = 120


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _start_worker(queue: str) -> subprocess.Popen:
    db = connection.settings_dict
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "config.settings.test",
        "DATABASE_URL": f"postgres://{db['USER']}@{db['HOST']}:{db['PORT']}/{db['NAME']}",
        "REDIS_URL": settings.REDIS_URL,
    }
    args = [
        "worker",
        "--pool=solo",
        "-Q",
        queue,
        "--without-heartbeat",
        "--without-gossip",
        "--without-mingle",
    ]
    return subprocess.Popen(
        [sys.executable, "-m", "celery", "-A", "config", *args, "--loglevel=WARNING"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )


def _worker_in_transaction() -> bool:
    """Another backend of our database holds an open transaction that has written (the job's)."""
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database()"
            " AND pid <> pg_backend_pid() AND backend_xid IS NOT NULL"
        )
        return cursor.fetchone()[0] > 0


def _expired_count() -> int:
    return LedgerEntry.objects.filter(kind="expire").count()


@pytest.mark.postgres
@pytest.mark.redis
@pytest.mark.django_db(transaction=True)
def test_a_worker_killed_mid_expiry_and_restarted_expires_each_lot_exactly_once(program_a):
    earned = timezone.now() - timedelta(days=400)
    job = Actor.job("test")
    for n in range(ACCOUNTS):
        member = member_create(
            program=program_a, first_name=f"M{n}", last_name="X", email=f"m{n}@example.com"
        )
        for lot in range(2):
            ledger.credit(
                account=member.account,
                points=10 + lot,
                reason="Old purchase",
                actor=job,
                idempotency_key=f"old-{n}-{lot}",
                source="api",
                occurred_at=earned,
                now=earned,
            )
    due = PointLot.objects.filter(expires_at__lte=timezone.now(), remaining__gt=0).count()
    assert due == 2 * ACCOUNTS
    queue = f"fault-{uuid.uuid4().hex[:8]}"
    eager = app.conf.task_always_eager
    app.conf.task_always_eager = False
    worker = _start_worker(queue)
    try:
        tasks.expire_points.apply_async(queue=queue)
        # Kill it (SIGKILL: no clean shutdown) while its expiry transaction is open, or at the
        # latest after 60 s.
        deadline = time.monotonic() + 60
        while not _worker_in_transaction() and time.monotonic() < deadline:
            time.sleep(0.01)
        killed_at = _expired_count()
        worker.send_signal(signal.SIGKILL)
        worker.wait(timeout=30)
        # A new worker: acks_late put the job back on the queue; run it once more as beat would.
        worker = _start_worker(queue)
        result = tasks.expire_points.apply_async(queue=queue)
        result.get(timeout=120)
        deadline = time.monotonic() + 60
        while PointLot.objects.filter(remaining__gt=0).exists() and time.monotonic() < deadline:
            time.sleep(0.2)
    finally:
        app.conf.task_always_eager = eager
        worker.terminate()
        output = worker.communicate(timeout=30)[0].decode()
    print(f"expire entries when killed: {killed_at} of {ACCOUNTS}")
    assert not PointLot.objects.filter(remaining__gt=0).exists(), output
    # One expire entry per account (both lots in it), never two.
    per_account = LedgerEntry.objects.filter(kind="expire").values_list("account_id", flat=True)
    assert len(per_account) == len(set(per_account)) == ACCOUNTS
    assert sum(LedgerEntry.objects.filter(kind="expire").values_list("points", flat=True)) == -21 * ACCOUNTS
    assert ledger.reconcile() == []


def _terminate_other_backends() -> int:
    """pg_terminate_backend on every connection of the app's database but the killer's own."""
    db = connection.settings_dict
    with psycopg.connect(
        host=db["HOST"], port=db["PORT"], user=db["USER"], dbname="postgres", autocommit=True
    ) as killer:
        rows = killer.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
            " WHERE datname = %s AND pid <> pg_backend_pid()",
            [db["NAME"]],
        ).fetchall()
    return len(rows)


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_a_posting_cut_off_by_a_dropped_connection_leaves_nothing_half_written(member_a):
    job = Actor.job("test")
    with pytest.raises(OperationalError), transaction.atomic():
        ledger.credit(
            account=member_a.account,
            points=40,
            reason="Cut",
            actor=job,
            idempotency_key="cut",
            source="api",
        )
        assert _terminate_other_backends() >= 1
    connection.close()  # what Django does at the end of the failed request
    assert not LedgerEntry.objects.filter(idempotency_key="cut").exists()
    member_a.account.refresh_from_db()
    assert member_a.account.balance == 0
    # The retry of the same posting goes through, once.
    ledger.credit(
        account=member_a.account, points=40, reason="Cut", actor=job, idempotency_key="cut", source="api"
    )
    member_a.account.refresh_from_db()
    assert member_a.account.balance == 40
    assert ledger.reconcile() == []


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_after_connections_are_dropped_the_next_api_request_succeeds(member_a, program_a):
    EarningRuleFactory(program=program_a)
    _, raw = api_key_create(program=program_a, name="till")
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Api-Key {raw}")
    body = {"member": member_a.membership_number, "type": "purchase", "reference": "R-1", "amount": "20.00"}
    url = reverse("api:events")
    assert client.post(url, body, format="json", HTTP_IDEMPOTENCY_KEY="k1").status_code == 201
    assert _terminate_other_backends() >= 1
    # The server's handler runs close_old_connections() at every request start (Django's test
    # client switches that off, so it is called here as gunicorn's worker would).
    close_old_connections()
    response = client.post(url, {**body, "reference": "R-2"}, format="json", HTTP_IDEMPOTENCY_KEY="k2")
    assert response.status_code == 201, response.content
    assert LedgerEntry.objects.filter(account=member_a.account, kind="earn").count() == 2
    assert ledger.reconcile() == []


@pytest.mark.redis
@pytest.mark.django_db(transaction=True)
def test_with_redis_down_the_api_still_records_the_event(member_a, program_a, settings, client):
    EarningRuleFactory(program=program_a)
    _, raw = api_key_create(program=program_a, name="till")
    down = f"redis://127.0.0.1:{closed_port()}/0"
    settings.REDIS_URL = down
    settings.CACHES = {
        "default": {"BACKEND": "django.core.cache.backends.redis.RedisCache", "LOCATION": down}
    }
    eager = app.conf.task_always_eager
    broker = app.conf.broker_url
    app.conf.task_always_eager = False
    app.conf.broker_url = down
    api = APIClient(raise_request_exception=False)
    api.credentials(HTTP_AUTHORIZATION=f"Api-Key {raw}")
    body = {"member": member_a.membership_number, "type": "purchase", "reference": "R-1", "amount": "20.00"}
    try:
        health = client.get(reverse("healthz"))
        response = api.post(reverse("api:events"), body, format="json", HTTP_IDEMPOTENCY_KEY="k1")
    finally:
        app.conf.task_always_eager = eager
        app.conf.broker_url = broker
    assert health.status_code == 503
    # The rate-limit counter is down, the ledger is not: the purchase is recorded, once.
    assert response.status_code == 201, (response.status_code, response.content[:500])
    assert LedgerEntry.objects.filter(account=member_a.account, kind="earn").count() == 1
    assert ledger.reconcile() == []
