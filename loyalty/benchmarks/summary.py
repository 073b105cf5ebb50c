"""One Markdown table of every benchmark's latest results (bench-results/*.json), for `make bench`.

Each row is one measured operation: our rate next to its floor (the same work through the raw
driver, or for the load run the rate offered), the ratio, and the benchmark's targets below.
"""

from __future__ import annotations

import json
from pathlib import Path

ORDER = ["ledger", "api", "imports", "reports", "load"]


def _rank(path: Path) -> tuple[int, str]:
    name = path.stem
    return (ORDER.index(name) if name in ORDER else len(ORDER), name)


def load_results(folder: Path) -> list[dict]:
    """Every results file in the folder, in the order `make bench` runs them; unreadable ones named."""
    results = []
    for path in sorted(folder.glob("*.json"), key=_rank):
        try:
            data = json.loads(path.read_text())
        except (OSError, ValueError) as error:
            raise ValueError(f"{path}: not a benchmark result ({error})") from None
        if "operations" not in data:
            raise ValueError(f"{path}: not a benchmark result (no operations)")
        results.append(data)
    return results


def _cell(value: float | None, digits: int = 1) -> str:
    return "-" if value in (None, 0) else f"{value:,.{digits}f}"


def markdown(results: list[dict]) -> str:
    lines = [
        "| benchmark | operation | count | per second | floor per second | ratio | when | database "
        "| load avg |",
        "|---|---|---:|---:|---:|---:|---|---|---:|",
    ]
    for result in results:
        database = result.get("database", {})
        load = (result.get("machine", {}).get("load_average") or {}).get("before")
        for op in result["operations"]:
            name = op["operation"]
            if "p50_ms" in op:  # the load run: its latencies matter as much as its rate
                name += f", p50 {op['p50_ms']} ms, p99 {op['p99_ms']} ms, {op['errors']} errors"
            lines.append(
                f"| {result['benchmark']} ({result.get('scale', '')}) | {name} | {op['count']:,} "
                f"| {_cell(op.get('per_second'))} | {_cell(op.get('floor_per_second'))} "
                f"| {_cell(op.get('ratio'), 2)} | {result.get('started_at', '')[:16]} "
                f"| {database.get('vendor', '')} {database.get('version', '')} | {_cell(load, 2)} |"
            )
    targets = [
        f"- {result['benchmark']}: {target['target']}: {target['value']}"
        f"{' (projected)' if target.get('projected') else ''}, **{'met' if target['met'] else 'MISSED'}**"
        f"{'' if target.get('applies', True) else ' (set for PostgreSQL; shown for information)'}"
        for result in results
        for target in result.get("targets", [])
    ]
    machines = sorted(
        {
            f"{m.get('cpus')} CPUs, {m.get('platform')}, Python {m.get('python')}, Django {m.get('django')}"
            for m in (result.get("machine", {}) for result in results)
        }
    )
    parts = ["\n".join(lines)]
    if targets:
        parts.append("Targets:\n" + "\n".join(targets))
    if machines:
        parts.append("Machine: " + "; ".join(machines))
    return "\n\n".join(parts)
