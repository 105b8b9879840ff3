"""bench/bench_audit.py runs end to end on a small log: the filled store, the relay's
AuditLog, checkpoints and proofs, and both tables. No timing is asserted: only that it
completes and prints every row with a number."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BENCH = ROOT / "bench" / "bench_audit.py"
ROWS = (
    "checkpoint (re-read new rows, root, sign)",
    "every stored row re-read and rehashed",
    "inclusion proof (MerkleTree)",
    "inclusion proof from the leaf list (before)",
    "consistency proof (MerkleTree)",
    "consistency proof from the leaf list (before)",
)


def test_bench_audit_runs_and_prints_every_row(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, str(BENCH), "--rows", "3000", "--new", "10", "--dir", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=240,
        cwd=ROOT,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    lines = result.stdout.splitlines()
    for row in ROWS:
        matching = [line for line in lines if line.startswith(row)]
        assert len(matching) == 1, f"row {row!r} missing from:\n{result.stdout}"
        assert re.search(r"\d", matching[0][len(row) :]), matching[0]
    assert "log of 3,0" in result.stdout and "checkpoint: " in result.stdout
