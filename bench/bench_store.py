"""Store at scale: insert 1,000,000 consensus states into SQLiteStore (batched commits, one
chain), then print the database size, this process's RSS, the cost of reopening (header,
quick_check, migrations) and lookup latency of ``get_consensus_state`` and
``nearest_consensus_state`` against a floor: a bare ``SELECT 1`` through the same path
(event loop -> reader thread -> SQLite -> back). Targets (issue 4): RSS under 300 MB, lookup
p99 under 1 ms. Run: ``.venv/bin/python bench/bench_store.py [--states N]``."""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import random
import sqlite3
import statistics
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable, Mapping
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from harness import Row, print_table

from relay.store import (
    ChainRecord,
    ChainStatus,
    ClientType,
    ConsensusStateRecord,
    SQLiteStore,
)

CHAIN = "bench-chain"


def rss_mb() -> tuple[float, float]:
    """(current, peak) resident set size of this process in MiB, from /proc."""
    values = {}
    with open("/proc/self/status") as f:
        for line in f:
            key, _, rest = line.partition(":")
            if key in ("VmRSS", "VmHWM"):
                values[key] = int(rest.split()[0]) / 1024
    return values["VmRSS"], values["VmHWM"]


def state(index: int, light_block: bytes) -> ConsensusStateRecord:
    # Heights 1, 3, 5, ...: the gaps make nearest_consensus_state do real work.
    height = 2 * index + 1
    digest = hashlib.sha256(height.to_bytes(8, "big")).digest()
    return ConsensusStateRecord(
        height=height,
        time_ns=1_700_000_000_000_000_000 + height * 1_000_000_000,
        root=digest,
        header_hash=hashlib.sha256(digest).digest(),
        next_validators_hash=digest[::-1],
        light_block=digest + light_block,
        trusted_from=None if index == 0 else height - 2,
    )


async def fill(store: SQLiteStore, *, states: int, batch: int, light_block_bytes: int) -> float:
    await store.upsert_chain(
        ChainRecord(
            chain_id=CHAIN,
            domain="real_estate",
            client_type=ClientType.TENDERMINT,
            descriptor=b"descriptor",
            status=ChainStatus.ACTIVE,
            anchor_height=1,
        )
    )
    filler = random.Random(1).randbytes(max(0, light_block_bytes - 32))
    revision: int | None = None
    t0 = time.perf_counter()
    for start in range(0, states, batch):
        records = [state(i, filler) for i in range(start, min(start + batch, states))]
        revision = await store.commit_verified(
            chain_id=CHAIN,
            client_state=b"client state",
            latest_height=records[-1].height,
            expected_revision=revision,
            consensus_states=records,
        )
        if start and start % (batch * 100) == 0:
            rate = start / (time.perf_counter() - t0)
            print(f"  {start:>9,} states, {rate:,.0f}/s, RSS {rss_mb()[0]:.0f} MiB", flush=True)
    return states / (time.perf_counter() - t0)


async def latencies(
    cases: Mapping[str, tuple[Callable[[int], Awaitable[object]], list[int]]],
) -> dict[str, list[float]]:
    """Per-call latency of each case. Calls are interleaved (one of each in turn) so that
    the floor and the lookups see the same machine load."""
    out: dict[str, list[float]] = {name: [] for name in cases}
    count = min(len(args) for _, args in cases.values())
    for i in range(count):
        for name, (call, args) in cases.items():
            t0 = time.perf_counter()
            await call(args[i])
            out[name].append(time.perf_counter() - t0)
    return out


def pct(samples: list[float], q: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


async def concurrent_rate(
    call: Callable[[int], Awaitable[object]], args: list[int], in_flight: int
) -> float:
    queue = iter(args)

    async def worker() -> None:
        for a in queue:
            await call(a)

    t0 = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(in_flight)))
    return len(args) / (time.perf_counter() - t0)


async def main(args: argparse.Namespace) -> None:
    with tempfile.TemporaryDirectory(dir=args.dir) as tmp:
        path = Path(tmp) / "relay.db"
        print(
            f"SQLite {sqlite3.sqlite_version}; {args.states:,} consensus states of "
            f"{args.light_block_bytes} B light blocks, batches of {args.batch}; {path}"
        )
        store = await SQLiteStore.open(path)
        insert_rate = await fill(
            store, states=args.states, batch=args.batch, light_block_bytes=args.light_block_bytes
        )
        stats = await store.stats()
        await store.close()
        t0 = time.perf_counter()
        store = await SQLiteStore.open(path)
        reopen_s = time.perf_counter() - t0
        try:
            rng = random.Random(7)
            top = 2 * args.states - 1
            exact = [2 * rng.randrange(args.states) + 1 for _ in range(args.lookups)]
            anywhere = [rng.randrange(top + 2) for _ in range(args.lookups)]

            async def floor(_: int) -> object:
                return await store._read(lambda c: c.execute("SELECT 1").fetchone())

            async def get(h: int) -> object:
                found = await store.get_consensus_state(CHAIN, h)
                assert found is not None and found.height == h
                return found

            async def near(h: int) -> object:
                found = await store.nearest_consensus_state(CHAIN, h, below=h % 2 == 0)
                assert found is not None
                return found

            cases = {
                "SELECT 1 (floor)": (floor, exact),
                "get_consensus_state": (get, exact),
                "nearest_consensus_state": (near, anywhere),
            }
            # Warm the threads, connections and page cache first.
            await latencies({n: (fn, a[:1000]) for n, (fn, a) in cases.items()})
            samples = await latencies(cases)
            concurrent = {name: await concurrent_rate(fn, a, 64) for name, (fn, a) in cases.items()}
            # Worst case for pruning: every state is on the latest state's trust path, so
            # the whole chain is walked and nothing may go.
            t0 = time.perf_counter()
            pruned = await store.prune_consensus_states(
                CHAIN, older_than_ns=state(args.states // 2, b"").time_ns, keep_heights=()
            )
            prune_s = time.perf_counter() - t0
        finally:
            await store.close()
        rss, peak = rss_mb()

    print(f"\ninsert: {insert_rate:,.0f} consensus states/s (durable batched commits)")
    print(
        f"database: {stats.size_bytes / 2**20:,.0f} MiB for {stats.consensus_states:,} states "
        f"({stats.size_bytes / max(1, stats.consensus_states):,.0f} B/state)"
    )
    print(f"reopen (header + quick_check + migrations): {reopen_s:.2f} s")
    print(f"prune, whole chain on the trust path: {prune_s:.2f} s, {pruned} deleted")
    print(f"RSS: {rss:.0f} MiB now, {peak:.0f} MiB peak (target: under 300 MiB)")

    floor_name = "SELECT 1 (floor)"
    print(f"\nlookup latency, one in flight, {args.lookups:,} random heights")
    print(f"{'case':<26} {'p50 µs':>8} {'p99 µs':>8} {'max µs':>8}  target")
    for name, s in samples.items():
        target = "" if name == floor_name else "p99 < 1000 µs"
        print(
            f"{name:<26} {pct(s, 0.5) * 1e6:8.0f} {pct(s, 0.99) * 1e6:8.0f} "
            f"{max(s) * 1e6:8.0f}  {target}"
        )
    sequential = [
        Row(name, 1 / statistics.mean(s), 1 / statistics.mean(samples[floor_name]))
        for name, s in samples.items()
        if name != floor_name
    ]
    print_table("lookups per second, one in flight (ratio vs SELECT 1 floor)", sequential)
    print_table(
        "lookups per second, 64 in flight (ratio vs SELECT 1 floor)",
        [Row(n, r, concurrent[floor_name]) for n, r in concurrent.items() if n != floor_name],
    )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--states", type=int, default=1_000_000)
    parser.add_argument("--batch", type=int, default=1_000)
    parser.add_argument("--light-block-bytes", type=int, default=1024)
    parser.add_argument("--lookups", type=int, default=10_000)
    parser.add_argument("--dir", default=None, help="where to put the temporary database")
    asyncio.run(main(parser.parse_args()))
