"""The load run: mixed API traffic at a steady rate, then the ledger invariants.

    python -m loyalty.benchmarks.load [--seconds 60] [--rate 25]   (or `make load`)

On a throwaway, migrated copy of DATABASE_URL's database (PostgreSQL expected) it serves
the project with gunicorn (2 sync workers, as the API benchmark does), starts a real Celery
worker on REDIS_URL (notifications and webhooks of the writes), then sends an open-loop
stream of requests at `--rate` per second for `--seconds`: purchases 40 %, activities
20 %, returns 10 %, redemptions 10 %, member reads 20 %, over 200 funded members.
Latency is measured per request from the moment it was due (so a slow server shows
as latency, not as a lower rate). Afterwards it runs `loyalty.ledger.reconcile()` and
prints throughput, p50/p99 latency, refusals (4xx, e.g. too few points) and errors (5xx,
connection failures). Exit status 1 on any error or discrepancy.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import random
import subprocess
import sys
import threading
import time
import uuid
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from decimal import Decimal
from pathlib import Path

MEMBERS = 200
MIX = (("purchase", 40), ("activity", 20), ("return", 10), ("redemption", 10), ("read", 20))


def _percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    if not ordered:
        return 0.0
    return ordered[min(len(ordered) - 1, round(fraction * (len(ordered) - 1)))]


def _start_worker(database_url: str) -> subprocess.Popen:
    env = {
        **os.environ,
        "DATABASE_URL": database_url,
        "DJANGO_SETTINGS_MODULE": "config.settings.local",
        "DJANGO_DEBUG": "false",
    }
    return subprocess.Popen(
        [
            sys.executable,
            "-m",
            "celery",
            "-A",
            "config",
            "worker",
            "--pool=solo",
            "--loglevel=WARNING",
            "--without-heartbeat",
            "--without-gossip",
            "--without-mingle",
        ],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


def _prepare():
    from loyalty import ledger
    from loyalty.api.services import api_key_create
    from loyalty.ledger import Actor
    from loyalty.models import EarningRule, Program, Reward
    from loyalty.services import member_create

    program = Program.objects.create(name="Load", slug="load", time_zone="Europe/Paris", pending_days=0)
    EarningRule.objects.create(
        program=program,
        activity_code="purchase",
        name="Purchase",
        points_per_unit=Decimal("1"),
        fixed_points=0,
    )
    EarningRule.objects.create(
        program=program, activity_code="survey", name="Survey", points_per_unit=Decimal("0"), fixed_points=25
    )
    reward = Reward.objects.create(program=program, name="Coffee", cost_points=150)
    numbers = []
    for n in range(MEMBERS):
        member = member_create(program=program, first_name="Load", last_name=str(n), channel="import")
        ledger.credit(
            account=member.account, points=400, reason="Welcome", actor=Actor.job("load"),
            idempotency_key=f"fund-{n}", source="api",
        )  # fmt: skip
        numbers.append(member.membership_number)
    _, raw = api_key_create(program=program, name="load", rate_limit="10000000/min")
    return numbers, reward.pk, raw


def _plan(total: int, numbers: list[str], reward_id: int) -> list[tuple[str, str, str, dict | None]]:
    """(kind, method, path, body) for each request, deterministic."""
    rng = random.Random(20261123)
    kinds = [k for k, weight in MIX for _ in range(weight)]
    purchases: list[tuple[str, str, Decimal]] = []
    plan = []
    for n in range(total):
        kind = rng.choice(kinds)
        number = rng.choice(numbers)
        if kind == "return" and not purchases:
            kind = "purchase"
        if kind == "purchase":
            amount = Decimal(rng.randint(1000, 8000)) / 100
            purchases.append((number, f"P-{n}", amount))
            body = {"member": number, "type": "purchase", "reference": f"P-{n}", "amount": str(amount)}
            plan.append((kind, "POST", "/api/v1/events/", body))
        elif kind == "activity":
            plan.append(
                (kind, "POST", "/api/v1/events/", {"member": number, "type": "survey", "reference": f"S-{n}"})
            )
        elif kind == "return":
            who, reference, amount = purchases.pop(rng.randrange(len(purchases)))
            body = {
                "member": who, "type": "return", "reference": f"R-{n}",
                "original_reference": reference, "amount": str((amount / 2).quantize(Decimal("0.01"))),
            }  # fmt: skip
            plan.append((kind, "POST", "/api/v1/events/", body))
        elif kind == "redemption":
            plan.append((kind, "POST", f"/api/v1/members/{number}/redemptions/", {"reward": reward_id}))
        else:
            plan.append((kind, "GET", f"/api/v1/members/{number}/", None))
    return plan


def _drive(port: int, raw_key: str, plan, rate: float, clients: int):
    """Send the plan open-loop at `rate` per second; (wall seconds, results)."""
    local = threading.local()
    results = []
    lock = threading.Lock()

    def send(due: float, kind: str, method: str, path: str, body: dict | None):
        wait = due - time.perf_counter()
        if wait > 0:
            time.sleep(wait)
        headers = {"Authorization": f"Api-Key {raw_key}"}
        payload = None
        if body is not None:
            payload = json.dumps(body).encode()
            headers |= {"Content-Type": "application/json", "Idempotency-Key": uuid.uuid4().hex}
        try:
            if getattr(local, "conn", None) is None:
                local.conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
            local.conn.request(method, path, body=payload, headers=headers)
            response = local.conn.getresponse()
            response.read()
            status = response.status
        except (OSError, http.client.HTTPException):
            local.conn = None
            status = 0
        with lock:
            results.append((kind, status, time.perf_counter() - due))

    # Warm both gunicorn workers up (their first request imports the whole project).
    warm = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    for _ in range(10):
        warm.request("GET", "/api/v1/ping/", headers={"Authorization": f"Api-Key {raw_key}"})
        warm.getresponse().read()
    warm.close()
    started = time.perf_counter() + 0.5
    with ThreadPoolExecutor(max_workers=clients) as pool:
        for n, (kind, method, path, body) in enumerate(plan):
            pool.submit(send, started + n / rate, kind, method, path, body)
    return time.perf_counter() - started, results


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=60, help="how long to send (default 60)")
    parser.add_argument("--rate", type=float, default=25, help="requests per second (default 25)")
    parser.add_argument("--clients", type=int, default=16, help="concurrent client threads (default 16)")
    parser.add_argument(
        "--json",
        type=Path,
        default=Path(__file__).resolve().parents[2] / "bench-results" / "load.json",
        help="where to write the results for `manage.py benchmark summary` (default bench-results/load.json)",
    )
    args = parser.parse_args(argv)
    if args.seconds <= 0 or args.rate <= 0 or args.clients <= 0:
        parser.error("--seconds, --rate and --clients must be positive")

    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings.local")
    import django

    django.setup()
    from django.db import connection
    from django.utils import timezone

    from loyalty import ledger
    from loyalty.benchmarks.api import _database_url, _free_port, _start_server
    from loyalty.benchmarks.base import load_average, throwaway_database

    started, load_before = timezone.now().isoformat(), load_average()

    if not os.environ.get("REDIS_URL"):
        print("REDIS_URL is not set: the load run needs Redis for the Celery worker.", file=sys.stderr)
        return 2
    with throwaway_database():
        numbers, reward_id, raw = _prepare()
        plan = _plan(int(args.seconds * args.rate), numbers, reward_id)
        url = _database_url()
        connection.close()  # the server and the worker use their own connections
        worker = _start_worker(url)
        port = _free_port()
        server, kind = _start_server(port)
        try:
            seconds, results = _drive(port, raw, plan, args.rate, args.clients)
            time.sleep(3)  # let the worker finish the notifications of the last writes
        finally:
            server.terminate()
            worker.terminate()
            server.wait(timeout=30)
            worker.wait(timeout=30)
        discrepancies = ledger.reconcile()
        vendor = connection.vendor
        version = ".".join(map(str, connection.get_database_version()))
        connection.close()

    latencies = [latency * 1000 for _, _, latency in results]
    statuses = Counter(status for _, status, _ in results)
    errors = sum(n for status, n in statuses.items() if status == 0 or status >= 500)
    refused = sum(n for status, n in statuses.items() if 400 <= status < 500)
    by_kind = Counter(k for k, _, _ in results)
    print(
        f"Load run: {kind} (2 workers) on {vendor}, a Celery worker on Redis, {args.clients} client threads"
    )
    print(f"Mix: {', '.join(f'{k} {by_kind[k]}' for k, _ in MIX)}")
    print()
    columns = ("requests", "seconds", "target rate", "throughput", "p50 ms", "p99 ms", "refused (4xx)")
    print("| " + " | ".join((*columns, "errors", "reconcile")) + " |")
    print("|---:|---:|---:|---:|---:|---:|---:|---:|---|")
    print(
        f"| {len(results)} | {seconds:.1f} | {args.rate:g}/s | {len(results) / seconds:.1f}/s "
        f"| {_percentile(latencies, 0.5):.0f} | {_percentile(latencies, 0.99):.0f} | {refused} | {errors} "
        f"| {'clean' if not discrepancies else f'{len(discrepancies)} discrepancies'} |"
    )
    print()
    print("Statuses: " + ", ".join(f"{status or 'no answer'}: {n}" for status, n in sorted(statuses.items())))
    for discrepancy in discrepancies[:20]:
        print(f"DISCREPANCY {discrepancy}")
    _write_results(
        args,
        started=started,
        load_before=load_before,
        vendor=vendor,
        version=version,
        seconds=seconds,
        latencies=latencies,
        refused=refused,
        errors=errors,
        discrepancies=len(discrepancies),
    )
    return 1 if errors or discrepancies else 0


def _write_results(
    args, *, started, load_before, vendor, version, seconds, latencies, refused, errors, discrepancies
):
    """bench-results/load.json in the shape of the other benchmarks; the floor is the rate offered."""
    from loyalty.benchmarks.base import Measurement, machine_info

    measurement = Measurement(
        operation=f"mixed API traffic, offered {args.rate:g}/s (floor = offered rate)",
        count=len(latencies),
        seconds=seconds,
        floor_seconds=len(latencies) / args.rate,
        notes={
            "p50_ms": round(_percentile(latencies, 0.5)),
            "p99_ms": round(_percentile(latencies, 0.99)),
            "refused_4xx": refused,
            "errors": errors,
            "discrepancies": discrepancies,
        },
    )
    results = {
        "benchmark": "load",
        "scale": f"{args.seconds:g}s",
        "database": {"vendor": vendor, "version": version},
        "machine": machine_info(load_before),
        "started_at": started,
        "operations": [measurement.as_dict()],
        "targets": [
            {
                "target": "no 5xx or connection errors, reconcile clean",
                "value": f"{errors} errors, {discrepancies} discrepancies",
                "met": not errors and not discrepancies,
            }
        ],
    }
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(results, indent=2) + "\n")
    print(f"results written to {args.json}")


if __name__ == "__main__":
    sys.exit(main())
