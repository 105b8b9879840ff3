"""Tiny benchmark harness: measured rates, ratios against a floor from the same run, tables.

A benchmark is never a test: it prints what it measured and asserts nothing about time.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass


def rate(fn: Callable[[], object], *, min_seconds: float = 1.0, repeats: int = 3) -> float:
    """Calls per second of ``fn`` on this core: best of ``repeats`` timed batches."""
    n = 1
    while True:  # find a batch size that runs for ~min_seconds/10
        t0 = time.perf_counter()
        for _ in range(n):
            fn()
        dt = time.perf_counter() - t0
        if dt >= min_seconds / 10:
            break
        n *= 4
    batch = max(1, int(n * (min_seconds / 3) / dt))
    best = 0.0
    for _ in range(repeats):
        t0 = time.perf_counter()
        for _ in range(batch):
            fn()
        best = max(best, batch / (time.perf_counter() - t0))
    return best


@dataclass(frozen=True, slots=True)
class Row:
    """One line of a results table: ``per_s`` of the thing measured, ``floor_per_s`` of the
    floor it is compared with (same inputs, same run), and the target it should reach."""

    name: str
    per_s: float
    floor_per_s: float | None = None
    target: str = ""

    @property
    def ratio(self) -> float | None:
        return None if not self.floor_per_s else self.per_s / self.floor_per_s


def print_table(title: str, rows: Sequence[Row]) -> None:
    width = max([len(r.name) for r in rows] + [10])
    print(f"\n{title}")
    header = f"{'case':<{width}}  {'per second':>12}  {'floor/s':>12}  {'ratio':>6}  target"
    print(header)
    print("-" * len(header))
    for r in rows:
        floor = f"{r.floor_per_s:12,.0f}" if r.floor_per_s else f"{'-':>12}"
        ratio = f"{r.ratio:6.2f}" if r.ratio is not None else f"{'-':>6}"
        print(f"{r.name:<{width}}  {r.per_s:12,.0f}  {floor}  {ratio}  {r.target}")
