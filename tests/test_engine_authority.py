"""A chain answers ListHoldings only for the registries and asset kinds it is registered for,
and only with records that name the party (found in review: a bank chain asserting a flat
of the real-estate registry)."""

from __future__ import annotations

from pathlib import Path

from test_engine_harness import CASE, asset_of, engine_for, make_world, run

from relay.pb.relay.v1 import query_pb2 as q
from relay.pb.relay.v1 import types_pb2 as pb

ESTATE, BANK = "cn-bj-chaoyang-realestate", "cn-icbc-bj-accounts"


@run
async def test_foreign_registry_asset_in_holdings_is_refused(tmp_path: Path) -> None:
    world = make_world({pb.DOMAIN_REAL_ESTATE: "bft", pb.DOMAIN_BANK: "bft"})
    flat = asset_of(world, ESTATE)
    victim = world.people.everyone[0]
    bank_chain = world.chains[BANK]
    assert flat.registry not in world.descriptor(BANK).registry_codes
    forged = pb.OwnershipRecord(asset=flat, description="forged by the bank chain")
    forged.owners.add().party.party_key = bank_chain.party_key_of(victim)
    bank_chain.put_record(pb.RecordKey(ownership=flat), forged)
    bank_chain.commit()
    bank_chain.commit()
    async with engine_for(world, tmp_path / "relay.db") as engine:
        answers = {
            a.chain_id: a
            async for a in engine.list_holdings(
                q.ListHoldingsRequest(party=victim.ref(), case_ref=CASE)
            )
        }
    bank = answers[BANK]
    assert bank.outcome == pb.OUTCOME_FAILED
    assert bank.failure.reason == pb.ErrorReason.Value("RECORD_INVALID")
    assert not bank.holdings
    assert all(
        h.ownership.description != "forged by the bank chain"
        for a in answers.values()
        for h in a.holdings
    )
    # the authoritative chain still answers
    assert answers[ESTATE].outcome in (pb.OUTCOME_FOUND, pb.OUTCOME_NONE_PROVEN)
