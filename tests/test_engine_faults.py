"""Lying adapters (relay/testing/partners.py LyingAdapter) against the engine: every lie is
caught, each with its own reason, nothing it said is persisted, and the other chain keeps
answering (THREATS.md: "a lying or broken adapter")."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest
from test_engine_harness import CASE, asset_of, engine_for, fast_settings, make_world, run

from relay.engine.adapters import InProcessAdapterClient
from relay.engine.errors import RelayError
from relay.pb.relay.v1 import query_pb2 as q
from relay.pb.relay.v1 import types_pb2 as pb
from relay.store import ChainStatus
from relay.testing.partners import Fault, PartnerAdapter
from relay.verify import records

ESTATE, PATENTS = "cn-bj-chaoyang-realestate", "cn-cnipa-patents"
EXPECTED = {
    Fault.WRONG_VALUE: "VALUE_MISMATCH",
    Fault.PROOF_FOR_OTHER_KEY: "KEY_MISMATCH",
    Fault.UNVERIFIED_HEIGHT: "HEADER_UNVERIFIED",
    Fault.FORKED_HEADER: "HEADER_UNVERIFIED",
    Fault.STALE_HEIGHT: "STALE_HEIGHT",
    Fault.TRUNCATED_STREAM: "STREAM_TRUNCATED",
    Fault.GARBAGE_BYTES: "MALFORMED_INPUT",
    Fault.HANG: "ADAPTER_UNAVAILABLE",
}
CASES = [(f, k) for f in EXPECTED for k in ("bft", "tlog")]
# Deadlines short enough that a hanging adapter costs well under a second per call.
SETTINGS = {"adapter_deadline_s": 0.2, "adapter_retries": 1, "query_deadline_s": 0.6}


def world_with_faulty_estate(kind: str):  # type: ignore[no-untyped-def]
    other = "tlog" if kind == "bft" else "bft"
    return make_world({pb.DOMAIN_REAL_ESTATE: kind, pb.DOMAIN_IP: other})


def ids(case: tuple[Fault, str]) -> str:
    return f"{case[0].value}-{case[1]}"


@pytest.mark.parametrize("case", CASES, ids=[ids(c) for c in CASES])
@run
async def test_list_holdings_reports_the_lie_and_other_chain_answers(
    case: tuple[Fault, str], tmp_path: Path
) -> None:
    fault, kind = case
    world = world_with_faulty_estate(kind)
    party = world.people.debtor
    async with engine_for(world, tmp_path / "r.db", settings=fast_settings(**SETTINGS)) as engine:
        trusted = (await engine.get_chain(q.GetChainRequest(chain_id=ESTATE))).chain
        world.adapters[ESTATE].fault = fault
        started = time.monotonic()
        answers = {
            a.chain_id: a
            async for a in engine.list_holdings(
                q.ListHoldingsRequest(party=party.ref(), case_ref=CASE)
            )
        }
        elapsed = time.monotonic() - started
        after = (await engine.get_chain(q.GetChainRequest(chain_id=ESTATE))).chain
        world.adapters[ESTATE].fault = None
        healed = [
            a
            async for a in engine.list_holdings(
                q.ListHoldingsRequest(party=party.ref(), case_ref=CASE)
            )
        ]
    bad, good = answers[ESTATE], answers[PATENTS]
    assert bad.outcome == pb.OUTCOME_FAILED
    assert pb.ErrorReason.Name(bad.failure.reason) == EXPECTED[fault], bad.failure.message
    assert bad.failure.metadata["chain_id"] == ESTATE
    assert not bad.holdings and not bad.HasField("index_evidence")
    assert good.outcome == pb.OUTCOME_FOUND and good.holdings
    assert all(world.check(h.evidence).ok for h in good.holdings)
    # The lie left no trace in the trusted state, and the honest adapter is served again.
    assert after.status == pb.CHAIN_STATUS_ACTIVE
    assert after.trusted_height == trusted.trusted_height
    assert all(a.outcome == pb.OUTCOME_FOUND for a in healed)
    assert elapsed < SETTINGS["query_deadline_s"] + 3.0  # bounded, not a benchmark


UNARY = [c for c in CASES if c[0] is not Fault.TRUNCATED_STREAM]


@pytest.mark.parametrize("case", UNARY, ids=[ids(c) for c in UNARY])
@run
async def test_get_ownership_refuses_the_lie(case: tuple[Fault, str], tmp_path: Path) -> None:
    fault, kind = case
    world = world_with_faulty_estate(kind)
    lied_about = asset_of(world, ESTATE)
    elsewhere = asset_of(world, PATENTS)
    async with engine_for(world, tmp_path / "r.db", settings=fast_settings(**SETTINGS)) as engine:
        world.adapters[ESTATE].fault = fault
        started = time.monotonic()
        with pytest.raises(RelayError) as caught:
            await engine.get_ownership(q.GetOwnershipRequest(asset=lied_about, case_ref=CASE))
        elapsed = time.monotonic() - started
        other = await engine.get_ownership(q.GetOwnershipRequest(asset=elsewhere, case_ref=CASE))
    error = caught.value
    assert error.reason == EXPECTED[fault], error
    assert error.chain_id == ESTATE
    assert other.outcome == pb.OUTCOME_FOUND and world.check(other.evidence).ok
    if fault is Fault.HANG:
        # Fails within the query deadline, with the reason the API documents.
        assert elapsed < SETTINGS["query_deadline_s"] + 3.0  # bounded, not a benchmark
    if fault in (Fault.UNVERIFIED_HEIGHT, Fault.FORKED_HEADER):
        # The light client's own reason: a header the trusted validators did not sign, or
        # a checkpoint the registered log key did not sign.
        expected = (
            ("HEADER_MISMATCH", "NOT_ENOUGH_TRUST") if kind == "bft" else ("NOTE_UNVERIFIED",)
        )
        assert error.metadata["check"] in expected


SYNC = [
    (Fault.UNVERIFIED_HEIGHT, "HEADER_UNVERIFIED"),
    (Fault.FORKED_HEADER, "HEADER_UNVERIFIED"),
    (Fault.GARBAGE_BYTES, "MALFORMED_INPUT"),
    (Fault.HANG, "ADAPTER_UNAVAILABLE"),
]


@pytest.mark.parametrize("kind", ["bft", "tlog"])
@pytest.mark.parametrize(("fault", "reason"), SYNC, ids=[f.value for f, _ in SYNC])
@run
async def test_sync_refuses_the_lie_and_persists_nothing(
    fault: Fault, reason: str, kind: str, tmp_path: Path
) -> None:
    world = world_with_faulty_estate(kind)
    chain = world.chains[ESTATE]
    async with engine_for(world, tmp_path / "r.db", settings=fast_settings(**SETTINGS)) as engine:
        trusted = (await engine.get_chain(q.GetChainRequest(chain_id=ESTATE))).chain
        world.adapters[ESTATE].fault = fault
        chain.put_raw(b"sync-test", b"1")
        chain.commit()
        world.clock.advance(2)
        with pytest.raises(RelayError) as caught:
            await engine.sync_chain_once(ESTATE)
        assert await engine.sync_chain_once(PATENTS) is not None  # the other chain syncs
        unchanged = (await engine.get_chain(q.GetChainRequest(chain_id=ESTATE))).chain
        world.adapters[ESTATE].fault = None
        assert await engine.sync_chain_once(ESTATE)
        healed = (await engine.get_chain(q.GetChainRequest(chain_id=ESTATE))).chain
    assert caught.value.reason == reason, caught.value
    assert unchanged.trusted_height == trusted.trusted_height
    assert unchanged.status == pb.CHAIN_STATUS_ACTIVE
    assert healed.trusted_height == chain.height > trusted.trusted_height


@run
async def test_truncated_light_block_stream_during_sync(tmp_path: Path) -> None:
    world = world_with_faulty_estate("bft")
    chain = world.chains[ESTATE]
    async with engine_for(world, tmp_path / "r.db") as engine:
        world.adapters[ESTATE].fault = Fault.TRUNCATED_STREAM
        chain.commit()
        with pytest.raises(RelayError) as caught:
            await engine.sync_chain_once(ESTATE)
        runtime = engine.registry.get(ESTATE)
    assert caught.value.reason == "STREAM_TRUNCATED"
    assert runtime.status == ChainStatus.ACTIVE


@run
async def test_background_sync_isolates_a_hanging_chain(tmp_path: Path) -> None:
    """With the sync tasks running, a hanging adapter fails its own rounds (with backoff)
    while the other chain keeps following its partner."""
    import asyncio

    world = world_with_faulty_estate("bft")
    patents = world.chains[PATENTS]
    settings = fast_settings(adapter_deadline_s=0.05, sync_round_timeout_s=0.3)
    async with engine_for(world, tmp_path / "r.db", settings=settings) as engine:
        world.adapters[ESTATE].fault = Fault.HANG
        await engine.start_sync()
        patents.put_raw(b"isolation", b"1")
        target = patents.commit()
        for _ in range(200):
            info = (await engine.get_chain(q.GetChainRequest(chain_id=PATENTS))).chain
            if info.trusted_height == target and engine.sync_stats()[ESTATE].failures >= 2:
                break
            await asyncio.sleep(0.02)
        stats = engine.sync_stats()
    assert info.trusted_height == target
    assert stats[ESTATE].failures >= 2
    assert stats[ESTATE].last_error_reason == "ADAPTER_UNAVAILABLE"
    assert stats[PATENTS].successes >= 1


# --- answers that contradict themselves or the question -------------------------------------


class Rewriting(PartnerAdapter):
    """An honest adapter whose Query / ListByParty answers a test rewrites."""

    def __init__(self, honest: PartnerAdapter, rewrite) -> None:  # type: ignore[no-untyped-def]
        super().__init__(honest.chain)
        self.rewrite = rewrite

    def query(self, request):  # type: ignore[no-untyped-def]
        result = super().query(request)
        self.rewrite(result)
        return result

    def list_by_party(self, request):  # type: ignore[no-untyped-def]
        results = super().list_by_party(request)
        self.rewrite(results)
        return results


def _other_record_value(world, chain_id: str, not_for: pb.AssetRef) -> bytes:  # type: ignore[no-untyped-def]
    for key, record in world.data[chain_id].records:
        if key.WhichOneof("record") == "ownership" and key.ownership != not_for:
            return record.SerializeToString(deterministic=True)
    raise AssertionError


def _drop_value(r) -> None:  # type: ignore[no-untyped-def]
    r.ClearField("value")


REWRITES = {
    "non-canonical-value": (
        lambda w, a: lambda r: setattr(r, "value", r.value + b"\x98\x01\x01"),
        "MALFORMED_INPUT",
    ),
    "garbage-value": (lambda w, a: lambda r: setattr(r, "value", b"\xff\xff"), "MALFORMED_INPUT"),
    "record-of-another-asset": (
        lambda w, a: lambda r: setattr(r, "value", _other_record_value(w, ESTATE, a)),
        "RECORD_INVALID",
    ),
    "absence-claimed-for-present-key": (lambda w, a: _drop_value, "KEY_PRESENT"),
    "other-proof-format": (
        lambda w, a: lambda r: setattr(r, "proof_format", 2),
        "PROOF_SPEC_MISMATCH",
    ),
    "empty-proof": (lambda w, a: lambda r: setattr(r, "proof", b""), "MALFORMED_INPUT"),
}


@pytest.mark.parametrize("kind", ["bft", "tlog"])
@pytest.mark.parametrize("name", sorted(REWRITES))
@run
async def test_self_contradicting_answers(name: str, kind: str, tmp_path: Path) -> None:
    world = world_with_faulty_estate(kind)
    asset = asset_of(world, ESTATE)
    make, reason = REWRITES[name]
    async with engine_for(world, tmp_path / "r.db") as engine:
        engine.registry.get(ESTATE).adapter = InProcessAdapterClient(
            Rewriting(PartnerAdapter(world.chains[ESTATE]), make(world, asset)),
            chain_id=ESTATE,
            settings=engine.settings,
        )
        with pytest.raises(RelayError) as caught:
            await engine.get_ownership(q.GetOwnershipRequest(asset=asset, case_ref=CASE))
    assert caught.value.reason == reason, caught.value


@pytest.mark.parametrize("kind", ["bft", "tlog"])
@run
async def test_value_claimed_for_an_absent_key_and_bad_proofs(kind: str, tmp_path: Path) -> None:
    world = world_with_faulty_estate(kind)
    absent = pb.AssetRef(kind=pb.ASSET_KIND_REAL_ESTATE, registry="110105", id="no-such-flat")
    present = asset_of(world, ESTATE)
    async with engine_for(world, tmp_path / "r.db") as engine:
        world.adapters[ESTATE].fault = Fault.WRONG_VALUE  # fabricates a record for it
        with pytest.raises(RelayError) as fabricated:
            await engine.get_ownership(q.GetOwnershipRequest(asset=absent, case_ref=CASE))
        world.adapters[ESTATE].fault = None
        world.chains[ESTATE].bad_proofs = True
        with pytest.raises(RelayError) as flipped:
            await engine.get_ownership(q.GetOwnershipRequest(asset=present, case_ref=CASE))
    assert fabricated.value.reason == "KEY_ABSENT"
    assert flipped.value.reason in ("ROOT_MISMATCH", "PROOF_INVALID", "MALFORMED_INPUT")


@run
async def test_holdings_stream_must_match_the_proven_index(tmp_path: Path) -> None:
    world = world_with_faulty_estate("bft")
    party = world.people.debtor
    chain = world.chains[ESTATE]
    stranger = chain.query(records.ownership_key(asset_of(world, ESTATE)))

    def duplicate(results) -> None:  # type: ignore[no-untyped-def]
        results.append(results[-1])

    def extra(results) -> None:  # type: ignore[no-untyped-def]
        results.append(stranger)

    outcomes = {}
    async with engine_for(world, tmp_path / "r.db") as engine:
        runtime = engine.registry.get(ESTATE)
        for name, rewrite in (("duplicate", duplicate), ("extra", extra)):
            runtime.adapter = InProcessAdapterClient(
                Rewriting(PartnerAdapter(chain), rewrite), chain_id=ESTATE, settings=engine.settings
            )
            answers = {
                a.chain_id: a
                async for a in engine.list_holdings(
                    q.ListHoldingsRequest(party=party.ref(), case_ref=CASE)
                )
            }
            outcomes[name] = answers[ESTATE]
    assert all(a.outcome == pb.OUTCOME_FAILED for a in outcomes.values())
    assert {pb.ErrorReason.Name(a.failure.reason) for a in outcomes.values()} == {"KEY_MISMATCH"}


@run
async def test_on_demand_verification_can_be_turned_off(tmp_path: Path) -> None:
    world = world_with_faulty_estate("bft")
    chain = world.chains[ESTATE]
    settings = fast_settings(on_demand_verification=False)
    async with engine_for(world, tmp_path / "r.db", settings=settings) as engine:
        chain.commit()
        with pytest.raises(RelayError) as e:
            await engine.get_ownership(
                q.GetOwnershipRequest(asset=asset_of(world, ESTATE), case_ref=CASE)
            )
    assert (e.value.reason, e.value.metadata["check"]) == (
        "HEADER_UNVERIFIED",
        "ON_DEMAND_DISABLED",
    )


@run
async def test_the_query_deadline_bounds_calls_that_each_answer_in_time(tmp_path: Path) -> None:
    """An adapter answering every call just inside its per-call deadline still cannot keep
    a query past the query deadline: a query at a height above the trusted one needs the
    partner's head, the light block and the record (three calls), and fails with
    ADAPTER_UNAVAILABLE (check DEADLINE_EXCEEDED) naming the chain instead of answering
    late. The same query answers once the adapter is fast again."""
    world = make_world({pb.DOMAIN_REAL_ESTATE: "bft", pb.DOMAIN_IP: "tlog"})
    settings = fast_settings(adapter_deadline_s=0.4, adapter_retries=0, query_deadline_s=0.6)
    async with engine_for(world, tmp_path / "r.db", settings=settings) as engine:
        chain = world.chains[ESTATE]
        chain.commit()
        top = chain.commit()
        adapter = world.adapters[ESTATE]
        honest = adapter.before_call

        async def slow(method: str) -> None:
            await honest(method)
            await asyncio.sleep(0.3)  # within the per-call deadline, every time

        adapter.before_call = slow  # type: ignore[method-assign]
        request = q.GetOwnershipRequest(asset=asset_of(world, ESTATE), case_ref=CASE, at_height=top)
        with pytest.raises(RelayError) as caught:
            await engine.get_ownership(request)
        error = caught.value
        assert error.reason == "ADAPTER_UNAVAILABLE", error
        assert error.metadata.get("check") == "DEADLINE_EXCEEDED", error.metadata
        assert error.chain_id == ESTATE and "query deadline" in error.message
        adapter.before_call = honest  # type: ignore[method-assign]
        answer = await engine.get_ownership(request)
        assert answer.outcome == pb.OUTCOME_FOUND and answer.evidence.height == top
