"""The load run, shortened for CI (make bench runs the full minute): gunicorn, a real Celery
worker, mixed API traffic, then reconcile; it must end with no errors and write its results."""

import json
import os
import subprocess
import sys
from io import StringIO
from pathlib import Path

import pytest
from django.conf import settings
from django.core.management import call_command

BASE_DIR = Path(__file__).resolve().parents[2]


@pytest.mark.postgres
@pytest.mark.redis
def test_a_short_load_run_has_no_errors_and_reconciles_clean(tmp_path):
    db = settings.DATABASES["default"]
    results = tmp_path / "load.json"
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "config.settings.local",
        # Its own throwaway copy (bench_<name>), never the test database.
        "DATABASE_URL": f"postgres://{db['USER']}@{db['HOST']}:{db['PORT']}/load_ci_{os.getpid()}",
        "REDIS_URL": settings.REDIS_URL,
    }
    run = subprocess.run(
        [sys.executable, "-m", "loyalty.benchmarks.load", "--seconds", "6", "--rate", "5", "--json", results],
        cwd=BASE_DIR,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )

    assert run.returncode == 0, run.stdout + run.stderr
    assert "| clean |" in run.stdout
    data = json.loads(results.read_text())
    (operation,) = data["operations"]
    assert operation["count"] == 30
    assert operation["errors"] == 0
    assert operation["discrepancies"] == 0
    assert data["targets"][0]["met"] is True
    # make bench's summary shows the run with its latencies.
    out = StringIO()
    call_command("benchmark", "summary", "--json", str(tmp_path), stdout=out)
    assert f"p50 {operation['p50_ms']} ms, p99 {operation['p99_ms']} ms, 0 errors | 30 |" in out.getvalue()
