"""The audit log at size: what a checkpoint and a proof cost when the log is large.

A SQLite store is filled with ``--rows`` audit rows (default 1,000,000, about 800 MB), then
the relay's AuditLog opens it (a full check of every row: time and memory are printed),
and in the same process:

* a checkpoint after ``--new`` rows were recorded (re-read and rehash the new rows, root
  from the kept subtree roots, sign), against its floor, rehashing just those rows'
  entries; and against what every checkpoint used to cost, re-reading and rehashing every
  stored row (the log's full check);
* an inclusion and a consistency proof from the log (relay.verify.merkle.rfc6962
  MerkleTree), against their floor, the client's own verification of the same proof; and
  against building the proof from the list of leaf hashes (``inclusion_proof``, which
  rehashes the whole tree).

Run: ``.venv/bin/python bench/bench_audit.py [--rows 1000000] [--new 100]`` or
``make bench-audit``. Prints tables; asserts nothing.
"""

from __future__ import annotations

import argparse
import asyncio
import resource
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from harness import Row, print_table, rate

from relay.audit.checkpoint import TREE_HASHER
from relay.audit.log import AuditLog, check_leaves
from relay.engine.evidence import RelaySigner
from relay.store import SQLiteStore
from relay.testing.audit import sample_entry
from relay.verify.merkle.rfc6962 import (
    consistency_proof,
    inclusion_proof,
    verify_consistency,
    verify_inclusion,
)

SIGNER = RelaySigner.ed25519(key_id="bench-audit", seed=bytes(range(32)))


entry = sample_entry


def peak_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


async def run(args: argparse.Namespace) -> None:
    with tempfile.TemporaryDirectory(dir=args.dir) as tmp:
        store = await SQLiteStore.open(Path(tmp) / "relay.db")
        t0 = time.perf_counter()
        batch = 10_000
        for first in range(0, args.rows, batch):
            rows = []
            for i in range(first, min(args.rows, first + batch)):
                e = entry(i)
                rows.append((e, TREE_HASHER.hash_leaf(e), "京0105", i))
            await store.append_audit_leaves(rows)
        size_mib = (Path(tmp) / "relay.db").stat().st_size / 2**20
        took = time.perf_counter() - t0
        print(f"filled {args.rows:,} audit rows in {took:.1f} s ({size_mib:,.0f} MiB)")

        before = peak_mib()
        c0 = time.process_time()
        audit = await AuditLog.open(store=store, signer=SIGNER)
        full_s = time.process_time() - c0
        print(
            f"open with a full check of every row: {full_s:.2f} s CPU; peak RSS "
            f"{before:.0f} -> {peak_mib():.0f} MiB"
        )
        first = await audit.checkpoint()

        times: list[float] = []
        for round_ in range(3):
            base = args.rows + round_ * args.new
            await asyncio.gather(*(audit.append(entry(base + i)) for i in range(args.new)))
            c0 = time.process_time()
            await audit.checkpoint()
            times.append(time.process_time() - c0)
        checkpoint_s = min(times)
        new_rows = await store.audit_leaves(start=audit.verified_size - args.new)
        rehash_new = rate(lambda: check_leaves(new_rows, start=new_rows[0].index))

        c0 = time.process_time()
        verified = await audit.verify_stored()  # every row again: what each checkpoint did
        full_again_s = time.process_time() - c0
        every = "every stored row re-read and rehashed (each checkpoint before)"
        print_table(
            f"checkpoint after {args.new} new rows, log of {audit.verified_size:,} rows",
            [
                Row("checkpoint (re-read new rows, root, sign)", 1 / checkpoint_s, rehash_new),
                Row(every, 1 / full_again_s, rehash_new),
            ],
        )
        print(
            f"checkpoint: {checkpoint_s * 1e3:.1f} ms of CPU; every row re-read and rehashed "
            f"(the full check, each checkpoint before): {full_again_s:.2f} s of CPU"
        )

        size = audit.latest.size if audit.latest else 0
        leaves = verified[:size]
        index = size // 3
        proof, at = audit.inclusion(index)
        leaf = leaves[index]
        _, second, cproof = audit.consistency(first.size)

        def verify_inc() -> None:
            verify_inclusion(
                hasher=TREE_HASHER,
                index=index,
                size=size,
                leaf_hash=leaf,
                proof=proof,
                root=at.root,
            )

        def verify_con() -> None:
            verify_consistency(
                hasher=TREE_HASHER, size1=first.size, size2=size, proof=cproof,
                root1=first.root, root2=second.root,
            )  # fmt: skip

        def from_list_inc() -> object:
            return inclusion_proof(hasher=TREE_HASHER, leaf_hashes=leaves, index=index)

        def from_list_con() -> object:
            return consistency_proof(hasher=TREE_HASHER, leaf_hashes=leaves, size1=first.size)

        inc_floor, con_floor = rate(verify_inc), rate(verify_con)
        print_table(
            f"proofs, log of {size:,} rows (floor: the client's own check of the proof)",
            [
                Row("inclusion proof (MerkleTree)",
                    rate(lambda: audit.inclusion(index)), inc_floor),
                Row("inclusion proof from the leaf list (before)",
                    rate(from_list_inc, min_seconds=0.5, repeats=1), inc_floor),
                Row("consistency proof (MerkleTree)",
                    rate(lambda: audit.consistency(first.size)), con_floor),
                Row("consistency proof from the leaf list (before)",
                    rate(from_list_con, min_seconds=0.5, repeats=1), con_floor),
            ],
        )  # fmt: skip
        print(f"\npeak RSS of this process: {peak_mib():.0f} MiB")
        await audit.close()
        await store.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--new", type=int, default=100, help="rows recorded per checkpoint")
    parser.add_argument("--dir", default=None, help="where to put the temporary database")
    asyncio.run(run(parser.parse_args()))


if __name__ == "__main__":
    main()
