"""bench/bench_audit.py runs end to end on a small log: the filled store, the relay's
AuditLog, checkpoints and proofs, and both tables. No timing is asserted: only that it
completes and prints every row with a number."""

from __future__ import annotations

import re
from pathlib import Path

from benchsmoke import rows, run_bench

ROWS = (
    "checkpoint (re-read new rows, root, sign)",
    "every stored row re-read and rehashed",
    "inclusion proof (MerkleTree)",
    "inclusion proof from the leaf list (before)",
    "consistency proof (MerkleTree)",
    "consistency proof from the leaf list (before)",
)


def test_bench_audit_runs_and_prints_every_row(tmp_path: Path) -> None:
    lines = run_bench("bench_audit.py", "--rows 3000 --new 10", tmp_path, timeout_s=240)
    for name, matching in rows(lines, ROWS).items():
        assert len(matching) == 1, matching
        assert re.search(r"\d", matching[0][len(name) :]), matching[0]
    text = "\n".join(lines)
    assert "log of 3,0" in text and "checkpoint: " in text
