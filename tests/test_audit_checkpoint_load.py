"""Checkpoints under load (issue 7 point 4): the periodic check and signature run beside the
queries being recorded, so appends that commit while the stored rows are re-read must keep
their places in the log (no false "rows added behind the relay" alarm, no index reused),
and every proof afterwards verifies."""

from __future__ import annotations

import asyncio
from pathlib import Path

from relay.audit.checkpoint import TREE_HASHER
from relay.audit.log import AuditLog
from relay.engine.evidence import RelaySigner
from relay.store import SQLiteStore
from relay.verify.merkle.rfc6962 import root_hash, verify_inclusion


class _Alarms:
    """The metrics hooks AuditLog calls; counts integrity alarms."""

    def __init__(self) -> None:
        self.integrity_failures = 0

    def record_audit_integrity_failure(self) -> None:
        self.integrity_failures += 1

    def record_audit_log(self, *, entries: int, size_bytes: int | None = None) -> None:
        pass

    def record_audit_checkpoint(self, *, time_s: float) -> None:
        pass


def test_appends_during_checkpoints_keep_their_indexes(tmp_path: Path) -> None:
    async def go() -> None:
        store = await SQLiteStore.open(tmp_path / "relay.db")
        signer = RelaySigner.ed25519(key_id="k", seed=b"\x05" * 32)
        alarms = _Alarms()
        audit = await AuditLog.open(store=store, signer=signer, metrics=alarms)
        try:
            for i in range(200):  # something for the checkpoint to re-read
                await audit.append(b'{"n":%d}' % i)
            stop = asyncio.Event()
            indexes: list[int] = []

            async def writer(w: int) -> None:
                n = 0
                while not stop.is_set():
                    indexes.append(await audit.append(b'{"w":%d,"n":%d}' % (w, n)))
                    n += 1

            writers = [asyncio.create_task(writer(w)) for w in range(8)]
            checkpoints = []
            try:
                async with asyncio.timeout(60):  # a checkpoint must not wait for idleness
                    for _ in range(5):
                        checkpoints.append(await audit.checkpoint())
                        await asyncio.sleep(0)
            finally:
                stop.set()
                await asyncio.gather(*writers, return_exceptions=True)
            await audit.drain()
            assert alarms.integrity_failures == 0 and audit.integrity_error is None
            assert sorted(indexes) == list(range(200, 200 + len(indexes)))  # none reused
            final = await audit.checkpoint()
            assert alarms.integrity_failures == 0 and audit.integrity_error is None
            stored = [leaf.leaf_hash for leaf in await store.audit_leaves()]
            assert len(stored) == final.size == audit.size
            assert final.root == root_hash(hasher=TREE_HASHER, leaf_hashes=stored)
            for checkpoint in [*checkpoints, final]:
                index = checkpoint.size - 1
                proof, signed = audit.inclusion(index, tree_size=checkpoint.size)
                verify_inclusion(
                    hasher=TREE_HASHER,
                    leaf_hash=stored[index],
                    index=index,
                    size=signed.size,
                    proof=proof,
                    root=signed.root,
                )
        finally:
            await audit.close()
            await store.close()

    asyncio.run(go())
