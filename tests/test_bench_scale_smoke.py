"""bench/bench_scale.py runs end to end on a few chains (issue 9, "what it must show" 3): the
simulator process, the relay process with its real engine and SQLite store, and the table.
No timing is asserted: only that it completes and prints every row with a value."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
from benchsmoke import rows, run_bench

ROOT = Path(__file__).resolve().parent.parent
BENCH = ROOT / "bench" / "bench_scale.py"
QUICK = "--chains 5 --duration 5 --warmup 2 --settle 2 --sync-interval 1"


def _rows() -> tuple[str, ...]:
    sys.path.insert(0, str(BENCH.parent))
    try:
        import bench_scale
    finally:
        sys.path.remove(str(BENCH.parent))
    return tuple(bench_scale.ROWS)


@pytest.mark.timeout(240)
def test_bench_scale_runs_and_prints_every_row(tmp_path: Path) -> None:
    lines = run_bench("bench_scale.py", QUICK, tmp_path)
    rows(lines, _rows())
    # Five chains were followed and every one of them stayed ACTIVE.
    assert any(line.startswith(_rows()[0]) and "5 / 5 of 5" in line for line in lines)
