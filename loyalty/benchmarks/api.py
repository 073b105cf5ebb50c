"""The API benchmark: purchase events per second under a real WSGI server, next to its floor.

A gunicorn server (2 sync workers; wsgiref when gunicorn is missing) serves the
project against the throwaway database. Client threads with keep-alive
connections send `POST /api/v1/events/` purchases (each with its own reference
and Idempotency-Key, spread over many members), then the same number of
`GET /api/v1/ping/`: the floor, a minimal view behind the same server, the same
key authentication and the same throttling, with no business work. The ratio
says how much of the server's capacity a purchase costs compared to doing
nothing: everything else (HTTP, WSGI, Django, the auth lookup) is in both.
"""

from __future__ import annotations

import http.client
import json
import os
import shutil
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from django.conf import settings
from django.db import connection

from loyalty.api.services import api_key_create
from loyalty.benchmarks.base import Measurement
from loyalty.models import EarningRule, Program
from loyalty.services import member_create

CLIENTS = 4
MEMBERS = 200
WORKERS = 2


@dataclass(frozen=True)
class Counts:
    credits: int  # purchase events sent (and pings for the floor)
    debits: int = 0
    lots: int = 0


SCALES = {
    "small": {"postgresql": Counts(200), "sqlite": Counts(200)},
    "full": {"postgresql": Counts(5_000), "sqlite": Counts(2_000)},
}


def default_counts(scale: str, vendor: str) -> Counts:
    return SCALES[scale].get(vendor, SCALES[scale]["postgresql"])


@dataclass
class ApiReport:
    measurements: list[Measurement]
    setup_seconds: float
    problems: list[str] = field(default_factory=list)
    targets: list[dict[str, Any]] = field(default_factory=list)
    sql: dict[str, list[str]] = field(default_factory=dict)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _database_url() -> str:
    s = connection.settings_dict
    if connection.vendor == "sqlite":
        return f"sqlite:///{s['NAME']}"
    auth = s["USER"] + (f":{s['PASSWORD']}" if s.get("PASSWORD") else "")
    return f"postgres://{auth}@{s['HOST'] or '127.0.0.1'}:{s['PORT'] or 5432}/{s['NAME']}"


def _start_server(port: int) -> tuple[subprocess.Popen, str]:
    env = {
        **os.environ,
        "DATABASE_URL": _database_url(),
        "DJANGO_SETTINGS_MODULE": "config.settings.local",
        "DJANGO_DEBUG": "false",
        "REDIS_URL": os.environ.get("REDIS_URL", ""),
    }
    gunicorn = shutil.which("gunicorn") or os.path.join(os.path.dirname(sys.executable), "gunicorn")
    if os.path.exists(gunicorn):
        command = [
            gunicorn,
            "config.wsgi:application",
            "-w",
            str(WORKERS),
            "-b",
            f"127.0.0.1:{port}",
            "--log-level",
            "warning",
            "--keep-alive",
            "30",
        ]
        server = "gunicorn"
    else:
        serve = (
            "from config.wsgi import application; from wsgiref.simple_server import make_server; "
            f"make_server('127.0.0.1', {port}, application).serve_forever()"
        )
        command = [sys.executable, "-c", serve]
        server = "wsgiref"
    process = subprocess.Popen(command, env=env, cwd=str(settings.BASE_DIR), stdout=subprocess.DEVNULL)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return process, server
        except OSError:
            time.sleep(0.2)
    process.kill()
    raise RuntimeError("The WSGI server did not start within 30 s.")


def _load(port: int, requests: list[tuple[str, str, bytes | None, dict]]) -> tuple[float, list[int]]:
    """Send the requests over CLIENTS keep-alive connections; (seconds, statuses)."""
    statuses: list[int] = []
    lock = threading.Lock()
    shares = [requests[i::CLIENTS] for i in range(CLIENTS)]

    def client(share):
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        got = []
        for method, path, body, headers in share:
            conn.request(method, path, body=body, headers=headers)
            response = conn.getresponse()
            response.read()
            got.append(response.status)
        conn.close()
        with lock:
            statuses.extend(got)

    threads = [threading.Thread(target=client, args=(share,)) for share in shares]
    started = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return time.perf_counter() - started, statuses


def run(counts: Counts, *, log: Callable[[str], None] = lambda message: None) -> ApiReport:
    began = time.perf_counter()
    program = Program.objects.create(name="Bench", slug="bench", time_zone="Europe/Paris", pending_days=0)
    EarningRule.objects.create(
        program=program,
        activity_code="purchase",
        name="Purchase",
        points_per_unit=Decimal("1"),
        fixed_points=0,
    )
    members = [
        member_create(program=program, first_name="M", last_name=str(n), channel="import").membership_number
        for n in range(MEMBERS)
    ]
    _, raw = api_key_create(program=program, name="bench", rate_limit="10000000/min")
    auth = {"Authorization": f"Api-Key {raw}"}
    events = []
    for n in range(counts.credits):
        body = json.dumps(
            {"member": members[n % MEMBERS], "type": "purchase", "amount": "12.50", "reference": f"B-{n}"}
        ).encode()
        headers = {**auth, "Content-Type": "application/json", "Idempotency-Key": uuid.uuid4().hex}
        events.append(("POST", "/api/v1/events/", body, headers))
    pings = [("GET", "/api/v1/ping/", None, auth)] * counts.credits
    port = _free_port()
    process, server = _start_server(port)
    setup = time.perf_counter() - began
    problems = []
    try:
        _load(port, pings[: min(50, len(pings))])  # warm both workers up
        log(f"{server} on port {port}: {counts.credits} pings (floor), then {counts.credits} purchases")
        floor_seconds, floor_statuses = _load(port, pings)
        seconds, statuses = _load(port, events)
    finally:
        process.terminate()
        process.wait(timeout=10)
    bad = [s for s in statuses + floor_statuses if s not in (200, 201)]
    if bad:
        problems.append(f"{len(bad)} requests failed (statuses {sorted(set(bad))}).")
    measurement = Measurement(
        operation=f"api purchase ({server}, {WORKERS} workers, {CLIENTS} clients)",
        count=counts.credits,
        seconds=seconds,
        floor_seconds=floor_seconds,
        notes={"floor": "GET /api/v1/ping/ on the same server with the same key"},
    )
    return ApiReport(measurements=[measurement], setup_seconds=setup, problems=problems)
