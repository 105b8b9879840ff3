"""Running a benchmark of bench/ on a small load from a test: it must exit 0 and print each
named row (a line starting with the row's name) with something after the name. Timing is
never asserted."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def run_bench(script: str, args: str, tmp_path: Path, *, timeout_s: float = 220) -> list[str]:
    """The stdout lines of ``bench/<script> <args> --dir tmp_path``, which must exit 0."""
    result = subprocess.run(
        [sys.executable, str(ROOT / "bench" / script), *args.split(), "--dir", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=timeout_s,
        cwd=ROOT,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return result.stdout.splitlines()


def rows(lines: Sequence[str], names: Sequence[str]) -> dict[str, list[str]]:
    """The lines of each named row; every name has at least one, each with a value."""
    found: dict[str, list[str]] = {}
    for name in names:
        matching = [line for line in lines if line.startswith(name)]
        assert matching, f"row {name!r} missing from:\n" + "\n".join(lines)
        for line in matching:
            assert line[len(name) :].strip(), f"row {name!r} has no value"
        found[name] = matching
    return found
