"""The engine's in-memory shortcuts on the query path (issue 4, throughput): verified states
read for queries at a height are kept (so repeated queries skip the store's thread hop) and
pruning empties them; evidence starts from a per-state template, and no answer's key, value
or record leaks into the next answer resting on the same state. Every answer still verifies
offline."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from test_engine_harness import CASE, asset_of, engine_for, make_world, run

from relay.engine.engine import Engine
from relay.engine.errors import RelayError
from relay.pb.relay.v1 import query_pb2 as q
from relay.pb.relay.v1 import types_pb2 as pb

ESTATE = "cn-bj-chaoyang-realestate"
DAY = 86_400


def count_state_reads(engine: Engine) -> list[int]:
    """Wrap the store's get_consensus_state; the list collects the heights read."""
    reads: list[int] = []
    store: Any = engine.store
    original = store.get_consensus_state

    async def counted(chain_id: str, height: int) -> Any:
        reads.append(height)
        return await original(chain_id, height)

    store.get_consensus_state = counted
    return reads


async def ownership_at(engine: Engine, asset: pb.AssetRef, height: int) -> q.OwnershipAnswer:
    return await engine.get_ownership(
        q.GetOwnershipRequest(asset=asset, case_ref=CASE, at_height=height)
    )


@run
async def test_repeated_queries_at_a_height_read_its_state_once(tmp_path: Path) -> None:
    world = make_world({pb.DOMAIN_REAL_ESTATE: "bft"})
    chain = world.chains[ESTATE]
    asset = asset_of(world, ESTATE)
    first = next(iter(chain.heights()))
    async with engine_for(world, tmp_path / "r.db") as engine:
        assert (await engine.get_chain(q.GetChainRequest(chain_id=ESTATE))).chain.trusted_height
        await ownership_at(engine, asset, first)  # read (or verified) and remembered
        reads = count_state_reads(engine)
        answers = [await ownership_at(engine, asset, first) for _ in range(3)]
    assert first not in reads, reads
    for answer in answers:
        assert answer.evidence.height == first
        report = world.check(answer.evidence)
        assert report.ok, report.checks


@run
async def test_pruning_empties_the_remembered_states(tmp_path: Path) -> None:
    world = make_world({pb.DOMAIN_REAL_ESTATE: "bft"})
    chain = world.chains[ESTATE]
    asset = asset_of(world, ESTATE)
    async with engine_for(world, tmp_path / "r.db") as engine:
        trusted = []
        for _ in range(6):
            world.clock.advance(DAY / 2)
            chain.commit()
            await engine.sync_chain_once(ESTATE)
            info = await engine.get_chain(q.GetChainRequest(chain_id=ESTATE))
            trusted.append(info.chain.trusted_height)
        runtime = engine.registry.get(ESTATE)
        stored = await engine.store.stats()
        old = trusted[2]  # stored by a sync round, no longer the latest
        assert old < trusted[-1]
        answer = await ownership_at(engine, asset, old)
        assert world.check(answer.evidence).ok
        reads = count_state_reads(engine)
        await ownership_at(engine, asset, old)
        assert old not in reads  # remembered
        # A month of sync rounds later, the old state is outside the trusting period.
        for _ in range(60):
            world.clock.advance(DAY / 2)
            chain.commit()
            await engine.sync_chain_once(ESTATE)
        runtime.recent_evidence.clear()  # nothing rests on it any more
        deleted = await engine.prune_once()
        assert deleted > 0
        assert stored.consensus_states > 0
        gone = await engine.store.get_consensus_state(ESTATE, old)
        reads = count_state_reads(engine)
        if gone is None:
            # Not served from memory: the store is asked, and the height is out of reach.
            with pytest.raises(RelayError) as refused:
                await ownership_at(engine, asset, old)
            assert refused.value.reason in ("HEIGHT_OUT_OF_RANGE", "STALE_HEIGHT")
            assert old in reads
        else:
            # The store kept it (on a newer state's trust path): it is read again.
            again = await ownership_at(engine, asset, old)
            assert old in reads and world.check(again.evidence).ok


@pytest.mark.parametrize("kind", ["bft", "tlog"])
@run
async def test_answers_on_one_state_share_nothing_but_the_state(kind: str, tmp_path: Path) -> None:
    world = make_world({pb.DOMAIN_REAL_ESTATE: kind})
    present = asset_of(world, ESTATE)
    absent = pb.AssetRef(kind=pb.ASSET_KIND_REAL_ESTATE, registry="110105", id="no-such-unit")
    async with engine_for(world, tmp_path / "r.db") as engine:
        found = await engine.get_ownership(q.GetOwnershipRequest(asset=present, case_ref=CASE))
        none = await engine.get_ownership(q.GetOwnershipRequest(asset=absent, case_ref=CASE))
        found_again = await engine.get_ownership(
            q.GetOwnershipRequest(asset=present, case_ref=CASE)
        )
    assert found.outcome == pb.OUTCOME_FOUND and none.outcome == pb.OUTCOME_NONE_PROVEN
    assert none.evidence.height == found.evidence.height
    assert none.evidence.header == found.evidence.header
    assert list(none.evidence.trust_path) == list(found.evidence.trust_path)
    # The absent key's bundle carries nothing of the present key's answer.
    assert none.evidence.key != found.evidence.key
    assert not none.evidence.HasField("value")
    assert none.evidence.WhichOneof("record") is None
    assert none.evidence.proof != found.evidence.proof
    assert found_again.evidence.value == found.evidence.value
    assert found_again.evidence.ownership == found.evidence.ownership
    for answer in (found, none, found_again):
        report = world.check(answer.evidence)
        assert report.ok, report.checks
