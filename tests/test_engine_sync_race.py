"""A height another writer commits between the two reads of the misbehaviour check is the
same verified header, not a BFT time violation (relay/engine/sync.py _check_against_store).

Replicas sharing a store (issue 9) verify on demand while the owner syncs: the check first
asks for the candidate's height (not stored yet), then for the nearest states at or below and
at or above it, and by then the owner may have stored that height. Reading it as "the next
header has the same time" froze a healthy chain (seen in tests/test_replicas_failover.py)."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

from test_engine_harness import engine_for, fast_settings, make_world, run

from relay.engine.clients import MisbehaviourFound
from relay.pb.relay.v1 import types_pb2 as pb

ESTATE = "cn-bj-chaoyang-realestate"


class CommittedMeanwhile:
    """The runtime's store, but the first read of ``height`` misses it: it lands between
    that read and the next ones, as another replica's commit would."""

    def __init__(self, store: Any, height: int) -> None:
        self._store = store
        self._height = height
        self.missed = False

    async def get_consensus_state(self, chain_id: str, height: int) -> Any:
        if height == self._height and not self.missed:
            self.missed = True
            return None
        return await self._store.get_consensus_state(chain_id, height)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._store, name)


@run
async def test_a_height_committed_meanwhile_is_the_same_header(tmp_path: Path) -> None:
    world = make_world({pb.DOMAIN_REAL_ESTATE: "bft", pb.DOMAIN_IP: "tlog"})
    async with engine_for(world, tmp_path / "r.db", settings=fast_settings()) as engine:
        runtime = engine.registry.get(ESTATE)
        view = await runtime.load_view(fresh=True)
        stored = view.latest
        assert stored.height > view.anchor_height
        real = runtime.store
        runtime.store = CommittedMeanwhile(real, stored.height)  # type: ignore[assignment]
        try:
            found = await runtime._check_against_store(stored)
        finally:
            runtime.store = real
        assert runtime.store is real
        assert found is not None and found.header_hash == stored.header_hash
        # A different header at that height is still a fork.
        other = dataclasses.replace(stored, header_hash=b"\x01" * 32)
        runtime.store = CommittedMeanwhile(real, stored.height)  # type: ignore[assignment]
        try:
            try:
                await runtime._check_against_store(other)
            except MisbehaviourFound as e:
                assert e.kind == "DUPLICATE_HEIGHT", e
            else:
                raise AssertionError("a different header at a stored height was accepted")
        finally:
            runtime.store = real
