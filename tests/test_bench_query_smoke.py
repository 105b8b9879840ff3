"""bench/bench_query.py (issue 4 point 5) runs end to end on a small load: the echo floor,
the canned service layer, the relay with and without its audit log, the partner_server
adapter, and a store filled with a few thousand states. No timing is asserted: only that
every table row is printed with numbers and no call failed."""

from __future__ import annotations

import re
from pathlib import Path

from benchsmoke import rows, run_bench

QUICK = "--requests 300 --states 3000 --rounds 1 --scale 10"
ROWS = (
    "echo floor (",
    "relay service layer only (canned answer)",
    "relay GetOwnership, in-process adapter",
    "  same, audit log disabled",
    "relay GetOwnership, partner_server adapter",
    "relay GetOwnership, 3,000 states stored",
)


def test_bench_query_runs_and_prints_every_row(tmp_path: Path) -> None:
    lines = run_bench("bench_query.py", QUICK, tmp_path, timeout_s=240)
    for name, matching in rows(lines, ROWS).items():
        for line in matching:
            numbers = re.findall(r"\d[\d,]*(?:\.\d+)?", line[len(name) :])
            assert len(numbers) >= 6, line  # QPS, latencies, bytes, errors, CPU...
            # No failed call: the "err" column of print_results' fixed-width row.
            assert line[96:99].strip() == "0", line
    text = "\n".join(lines)
    assert "audit log cost:" in text and "store lookups in the relay process" in text
