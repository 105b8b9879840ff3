"""Engine-level query tests (in process, real SQLiteStore): every QueryService call answers
with a verified record and evidence that the offline verifier (relay/verify/evidence.py)
accepts, for a CometBFT chain and for a transparency-log registry; absence only with a
proof; request validation; heights (on-demand verification, explicit heights, ranges)."""

from __future__ import annotations

from pathlib import Path

import pytest
from test_engine_harness import CASE, asset_of, engine_for, make_world, run

from relay.engine.errors import RelayError
from relay.pb.relay.v1 import query_pb2 as q
from relay.pb.relay.v1 import types_pb2 as pb
from relay.testing.partners import BftPartnerChain
from relay.verify import records

KINDS = ["bft", "tlog"]
DOMAINS = {pb.DOMAIN_REAL_ESTATE: "", pb.DOMAIN_BANK: "", pb.DOMAIN_CREDIT: ""}


def world_of(kind: str):  # type: ignore[no-untyped-def]
    return make_world({domain: kind for domain in DOMAINS})


def stored_record(world, chain_id: str, key: pb.RecordKey):  # type: ignore[no-untyped-def]
    for k, record in world.data[chain_id].records:
        if k == key:
            return record
    raise AssertionError("record not in the sample data")


@pytest.mark.parametrize("kind", KINDS)
@run
async def test_get_ownership_found_and_evidence_verifies(kind: str, tmp_path: Path) -> None:
    world = world_of(kind)
    chain_id = "cn-bj-chaoyang-realestate"
    asset = asset_of(world, chain_id)
    async with engine_for(world, tmp_path / "relay.db") as engine:
        answer = await engine.get_ownership(q.GetOwnershipRequest(asset=asset, case_ref=CASE))
    assert answer.chain_id == chain_id
    assert answer.outcome == pb.OUTCOME_FOUND
    assert answer.record == stored_record(world, chain_id, pb.RecordKey(ownership=asset))
    assert answer.evidence.ownership == answer.record
    assert answer.evidence.key == records.ownership_key(asset)
    report = world.check(answer.evidence)
    assert report.ok, report.checks
    assert report.record_kind == "ownership"


@pytest.mark.parametrize("kind", KINDS)
@run
async def test_absent_record_is_none_proven_with_evidence(kind: str, tmp_path: Path) -> None:
    world = world_of(kind)
    asset = pb.AssetRef(kind=pb.ASSET_KIND_REAL_ESTATE, registry="110105", id="no-such-unit")
    async with engine_for(world, tmp_path / "relay.db") as engine:
        answer = await engine.get_ownership(q.GetOwnershipRequest(asset=asset, case_ref=CASE))
    assert answer.outcome == pb.OUTCOME_NONE_PROVEN
    assert not answer.HasField("record")
    assert not answer.evidence.HasField("value")
    report = world.check(answer.evidence)
    assert report.ok, report.checks
    assert report.record_kind is None


@pytest.mark.parametrize("kind", KINDS)
@run
async def test_get_history_account_state_and_credit(kind: str, tmp_path: Path) -> None:
    world = world_of(kind)
    estate, bank, credit = "cn-bj-chaoyang-realestate", "cn-icbc-bj-accounts", "cn-credit-list"
    flat = asset_of(world, estate, "history")
    account = asset_of(world, bank, "account")
    async with engine_for(world, tmp_path / "relay.db") as engine:
        history = await engine.get_history(q.GetHistoryRequest(asset=flat, case_ref=CASE))
        acct = await engine.get_account(q.GetAccountRequest(account=account, case_ref=CASE))
        key = records.ownership_key(asset_of(world, estate))
        state = await engine.get_state(q.GetStateRequest(chain_id=estate, key=key, case_ref=CASE))
        debtor = world.data[credit].credit_parties[0]
        listed = await engine.get_credit_status(
            q.GetCreditStatusRequest(party=debtor.ref(), case_ref=CASE)
        )
        clean = [p for p in world.people.everyone if p not in world.data[credit].credit_parties]
        unlisted = await engine.get_credit_status(
            q.GetCreditStatusRequest(party=clean[0].ref(), case_ref=CASE)
        )
    expected_history = stored_record(world, estate, pb.RecordKey(history=flat))
    assert history.outcome == pb.OUTCOME_FOUND
    assert list(history.entries) == list(expected_history.entries)
    assert history.evidence.history == expected_history
    assert acct.outcome == pb.OUTCOME_FOUND
    assert acct.record == stored_record(world, bank, pb.RecordKey(account=account))
    assert state.outcome == pb.OUTCOME_FOUND
    assert state.value == world.chains[estate].query(key).value
    assert state.evidence.WhichOneof("record") is None
    (finding,) = listed.findings
    assert finding.chain_id == credit
    assert finding.outcome == pb.OUTCOME_FOUND
    assert finding.record.listings
    (none,) = unlisted.findings
    assert none.outcome == pb.OUTCOME_NONE_PROVEN
    for evidence in (
        history.evidence,
        acct.evidence,
        state.evidence,
        finding.evidence,
        none.evidence,
    ):
        report = world.check(evidence)
        assert report.ok, report.checks


@pytest.mark.parametrize("kind", KINDS)
@run
async def test_list_holdings_streams_each_chain_with_evidence(kind: str, tmp_path: Path) -> None:
    world = world_of(kind)
    estate = "cn-bj-chaoyang-realestate"
    party = world.party_with_holdings(estate)
    chain = world.chains[estate]
    expected = list(chain.list_by_party(chain.party_key_of(party))[1:])
    async with engine_for(world, tmp_path / "relay.db") as engine:
        answers = [
            a
            async for a in engine.list_holdings(
                q.ListHoldingsRequest(party=party.ref(), case_ref=CASE)
            )
        ]
        nobody = pb.PartyRef(kind=pb.PARTY_KIND_PERSON, id_type=pb.ID_TYPE_RESIDENT_ID, id="X1")
        empty = [
            a
            async for a in engine.list_holdings(q.ListHoldingsRequest(party=nobody, case_ref=CASE))
        ]
    # Credit chains hold no assets: only the estate and bank chains are asked.
    assert sorted(a.chain_id for a in answers) == [
        "cn-bj-chaoyang-realestate",
        "cn-icbc-bj-accounts",
    ]
    by_chain = {a.chain_id: a for a in answers}
    found = by_chain[estate]
    assert found.outcome == pb.OUTCOME_FOUND
    assert found.domain == pb.DOMAIN_REAL_ESTATE
    assert [h.evidence.key for h in found.holdings] == [r.key for r in expected]
    assert world.check(found.index_evidence).ok
    assert found.index_evidence.holdings.party_key == chain.party_key_of(party)
    for holding in found.holdings:
        assert holding.ownership == holding.evidence.ownership
        assert holding.ownership.asset == holding.asset
        assert world.check(holding.evidence).ok
    assert all(a.outcome == pb.OUTCOME_NONE_PROVEN for a in empty)
    for answer in empty:
        assert not answer.holdings
        assert world.check(answer.index_evidence).ok


@run
async def test_list_holdings_filters_by_kind(tmp_path: Path) -> None:
    world = world_of("bft")
    party = world.party_with_holdings("cn-bj-chaoyang-realestate")
    async with engine_for(world, tmp_path / "relay.db") as engine:
        answers = [
            a
            async for a in engine.list_holdings(
                q.ListHoldingsRequest(
                    party=party.ref(), kinds=[pb.ASSET_KIND_BANK_ACCOUNT], case_ref=CASE
                )
            )
        ]
    assert [a.chain_id for a in answers] == ["cn-icbc-bj-accounts"]
    assert all(h.HasField("account") for a in answers for h in a.holdings)


@pytest.mark.parametrize("kind", KINDS)
@run
async def test_new_head_is_verified_on_demand(kind: str, tmp_path: Path) -> None:
    world = world_of(kind)
    estate = "cn-bj-chaoyang-realestate"
    chain = world.chains[estate]
    asset = pb.AssetRef(kind=pb.ASSET_KIND_REAL_ESTATE, registry="110105", id="new-flat-1")
    record = pb.OwnershipRecord(asset=asset, description="新登记", status=1)
    async with engine_for(world, tmp_path / "relay.db") as engine:
        before = (await engine.get_chain(q.GetChainRequest(chain_id=estate))).chain
        world.clock.advance(5)
        chain.put_record(pb.RecordKey(ownership=asset), record)
        chain.commit()
        if isinstance(chain, BftPartnerChain):
            chain.commit()  # the header after the write commits to it
        answer = await engine.get_ownership(q.GetOwnershipRequest(asset=asset, case_ref=CASE))
        after = (await engine.get_chain(q.GetChainRequest(chain_id=estate))).chain
    assert answer.outcome == pb.OUTCOME_FOUND
    assert answer.record == record
    assert answer.evidence.height == chain.height > before.trusted_height
    assert after.trusted_height == chain.height
    assert world.check(answer.evidence).ok


@pytest.mark.parametrize("kind", KINDS)
@run
async def test_explicit_heights(kind: str, tmp_path: Path) -> None:
    world = world_of(kind)
    estate = "cn-bj-chaoyang-realestate"
    chain = world.chains[estate]
    heights = list(chain.heights())
    # An asset written in the second batch of sample data is absent at the first height.
    late = asset_of(world, estate)
    for key, _ in reversed(world.data[estate].records):
        if key.WhichOneof("record") == "ownership":
            late = key.ownership
            break
    async with engine_for(world, tmp_path / "relay.db") as engine:
        old = await engine.get_ownership(
            q.GetOwnershipRequest(asset=late, case_ref=CASE, at_height=heights[0])
        )
        new = await engine.get_ownership(
            q.GetOwnershipRequest(asset=late, case_ref=CASE, at_height=heights[-1])
        )
        with pytest.raises(RelayError) as above:
            await engine.get_ownership(
                q.GetOwnershipRequest(asset=late, case_ref=CASE, at_height=heights[-1] + 50)
            )
        with pytest.raises(RelayError) as below:
            await engine.get_ownership(
                q.GetOwnershipRequest(asset=late, case_ref=CASE, at_height=heights[0] - 1)
            )
    assert old.evidence.height == heights[0]
    assert old.outcome == pb.OUTCOME_NONE_PROVEN
    assert new.outcome == pb.OUTCOME_FOUND
    assert world.check(old.evidence).ok and world.check(new.evidence).ok
    assert above.value.reason == "HEIGHT_OUT_OF_RANGE"
    assert below.value.reason == "HEIGHT_OUT_OF_RANGE"


@run
async def test_request_validation(tmp_path: Path) -> None:
    world = world_of("bft")
    asset = asset_of(world, "cn-bj-chaoyang-realestate")

    async def reason(request: q.GetOwnershipRequest) -> str:
        with pytest.raises(RelayError) as e:
            await engine.get_ownership(request)
        return e.value.reason

    async with engine_for(world, tmp_path / "relay.db") as engine:
        assert await reason(q.GetOwnershipRequest(asset=asset)) == "CASE_REQUIRED"
        bad_cases = [
            pb.CaseRef(court="京0105", case_number="1234", purpose=1),
            pb.CaseRef(court="京0105", case_number="(2026)京0108执1234号", purpose=1),
            pb.CaseRef(court="京0105", case_number="(2026)京0105执1234号"),
            pb.CaseRef(court="", case_number="(2026)京0105执1234号", purpose=1),
        ]
        for case in bad_cases:
            assert await reason(q.GetOwnershipRequest(asset=asset, case_ref=case)) == "CASE_INVALID"
        full_width = pb.CaseRef(court="京0105", case_number="（2026）京0105执保12号", purpose=2)
        ok = await engine.get_ownership(q.GetOwnershipRequest(asset=asset, case_ref=full_width))
        assert ok.outcome == pb.OUTCOME_FOUND
        unknown = pb.AssetRef(kind=pb.ASSET_KIND_REAL_ESTATE, registry="999999", id="x")
        assert await reason(q.GetOwnershipRequest(asset=unknown, case_ref=CASE)) == "NOT_FOUND"
        account_kind = pb.AssetRef(kind=pb.ASSET_KIND_BANK_ACCOUNT, registry="110105", id="x")
        assert (
            await reason(q.GetOwnershipRequest(asset=account_kind, case_ref=CASE))
            == "INVALID_ARGUMENT"
        )
        no_id = pb.AssetRef(kind=pb.ASSET_KIND_REAL_ESTATE, registry="110105")
        assert await reason(q.GetOwnershipRequest(asset=no_id, case_ref=CASE)) == "INVALID_ARGUMENT"
        with pytest.raises(RelayError) as e:
            await engine.get_state(q.GetStateRequest(chain_id="nope", key=b"k", case_ref=CASE))
        assert e.value.reason == "NOT_FOUND"
        with pytest.raises(RelayError) as e:
            await engine.get_state(
                q.GetStateRequest(chain_id="cn-bj-chaoyang-realestate", key=b"k")
            )
        assert e.value.reason == "CASE_REQUIRED"
        with pytest.raises(RelayError) as e:
            await engine.get_credit_status(
                q.GetCreditStatusRequest(party=pb.PartyRef(id="x"), case_ref=CASE)
            )
        assert (e.value.reason, e.value.field) == ("INVALID_ARGUMENT", "party.kind")
        with pytest.raises(RelayError) as e:
            async for _ in engine.list_holdings(q.ListHoldingsRequest(case_ref=CASE)):
                pass
        assert e.value.reason == "INVALID_ARGUMENT"


@run
async def test_list_and_get_chain(tmp_path: Path) -> None:
    world = world_of("tlog")
    async with engine_for(world, tmp_path / "relay.db") as engine:
        listed = await engine.list_chains(q.ListChainsRequest())
        banks = await engine.list_chains(q.ListChainsRequest(domain=pb.DOMAIN_BANK))
        one = await engine.get_chain(q.GetChainRequest(chain_id="cn-credit-list"))
        with pytest.raises(RelayError) as e:
            await engine.get_chain(q.GetChainRequest(chain_id="missing"))
    assert [c.chain_id for c in listed.chains] == sorted(world.chains)
    assert [c.chain_id for c in banks.chains] == ["cn-icbc-bj-accounts"]
    info = one.chain
    chain = world.chains["cn-credit-list"]
    assert info.status == pb.CHAIN_STATUS_ACTIVE
    assert info.client_type == pb.CLIENT_TYPE_TLOG
    assert info.trusted_height == chain.height == info.partner_head_height
    assert info.anchor_height == chain.heights()[0]
    assert info.assurance == pb.ASSURANCE_FULL
    assert info.seconds_until_trust_expiry > 13 * 86_400
    assert e.value.reason == "NOT_FOUND"


@run
async def test_a_judicial_chain_is_read_with_get_state_and_never_asked_for_credit(
    tmp_path: Path,
) -> None:
    """DOMAIN_JUDICIAL: a chain that registers no assets (its descriptor lists no asset
    kinds) and holds no records a court query asks for. Credit queries go to credit chains
    only; GetState reads the judicial chain's own keys with evidence."""
    world = make_world({pb.DOMAIN_CREDIT: "bft"})
    judicial = BftPartnerChain(
        "cn-spc-judicial-chain", domain=pb.DOMAIN_JUDICIAL, clock=world.clock
    )
    judicial.put_raw(b"relay.testing/genesis", b"cn-spc-judicial-chain")
    judicial.commit()
    judicial.commit()
    world.add(judicial, data=False)
    assert not world.descriptor("cn-spc-judicial-chain").asset_kinds
    credit = next(c for c in world.chains if c != "cn-spc-judicial-chain")
    debtor = world.data[credit].credit_parties[0]
    async with engine_for(world, tmp_path / "relay.db") as engine:
        listed = await engine.get_credit_status(
            q.GetCreditStatusRequest(party=debtor.ref(), case_ref=CASE)
        )
        state = await engine.get_state(
            q.GetStateRequest(
                chain_id="cn-spc-judicial-chain", key=b"relay.testing/genesis", case_ref=CASE
            )
        )
        info = await engine.get_chain(q.GetChainRequest(chain_id="cn-spc-judicial-chain"))
    assert [f.chain_id for f in listed.findings] == [credit]
    assert state.outcome == pb.OUTCOME_FOUND and state.value == b"cn-spc-judicial-chain"
    assert world.check(state.evidence).ok
    assert info.chain.domain == pb.DOMAIN_JUDICIAL
