"""Proof verification throughput on one core, against a floor measured in the same run: the
same number of raw hash calls on the same inputs. Run with ``make bench``."""

from __future__ import annotations

import importlib
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from harness import Row, print_table

SECTIONS = ["proofs_rfc6962", "proofs_ics23", "proofs_mpt", "proofs_hashing"]


def main() -> None:
    for name in SECTIONS:
        module = importlib.import_module(name)
        rows: list[Row] = module.rows()
        print_table(module.TITLE, rows)


if __name__ == "__main__":
    main()
