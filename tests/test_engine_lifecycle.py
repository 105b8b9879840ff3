"""Engine lifecycle with real partner chains and a real SQLiteStore: registration checks,
PENDING -> ACTIVE, misbehaviour freezing, expiry, operator freeze / recovery / endpoint
update, restart from the same database, validator rotation, pruning, SM2/SM3 chains."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from google.protobuf.duration_pb2 import Duration
from test_engine_harness import (
    CASE,
    SIGNER,
    asset_of,
    engine_for,
    fast_settings,
    make_chain,
    make_world,
    run,
)

from relay.engine.adapters import AdapterLoadError
from relay.engine.engine import Engine
from relay.engine.errors import RelayError
from relay.pb.relay.v1 import admin_pb2 as a
from relay.pb.relay.v1 import query_pb2 as q
from relay.pb.relay.v1 import types_pb2 as pb
from relay.store import ChainRecord, ChainStatus, ClientType, SQLiteStore
from relay.testing.partners import BftPartnerChain, TlogPartnerRegistry

ESTATE, PATENTS = "cn-bj-chaoyang-realestate", "cn-cnipa-patents"
DAY = 86_400


async def info(engine: Engine, chain_id: str) -> pb.ChainInfo:
    return (await engine.get_chain(q.GetChainRequest(chain_id=chain_id))).chain


async def ownership(engine: Engine, asset: pb.AssetRef) -> q.OwnershipAnswer:
    return await engine.get_ownership(q.GetOwnershipRequest(asset=asset, case_ref=CASE))


@run
async def test_registration_pending_until_first_sync(tmp_path: Path) -> None:
    world = make_world()
    asset = asset_of(world, ESTATE)
    async with engine_for(world, tmp_path / "r.db", sync=False) as engine:
        pending = await info(engine, ESTATE)
        with pytest.raises(RelayError) as e:
            await ownership(engine, asset)
        assert e.value.reason == "CHAIN_PENDING"
        assert await engine.sync_chain_once(ESTATE)
        active = await info(engine, ESTATE)
        answer = await ownership(engine, asset)
    assert pending.status == pb.CHAIN_STATUS_PENDING
    assert pending.trusted_height == pending.anchor_height == world.chains[ESTATE].heights()[0]
    assert active.status == pb.CHAIN_STATUS_ACTIVE
    assert active.trusted_height == world.chains[ESTATE].height
    assert answer.outcome == pb.OUTCOME_FOUND and world.check(answer.evidence).ok


@run
async def test_adapter_for_another_chain_keeps_the_chain_pending(tmp_path: Path) -> None:
    world = make_world()
    async with engine_for(world, tmp_path / "r.db", sync=False) as engine:
        world.adapters[ESTATE], world.adapters[PATENTS] = (
            world.adapters[PATENTS],
            world.adapters[ESTATE],
        )
        # The clients were built before the swap; rebuild them to pick the wrong servicers.
        for chain_id in (ESTATE, PATENTS):
            engine.registry.get(chain_id).adapter = world.factory(engine.settings)(
                world.descriptors[chain_id]
            )
        with pytest.raises(RelayError) as e:
            await engine.sync_chain_once(ESTATE)
        status = (await info(engine, ESTATE)).status
    assert (e.value.reason, e.value.metadata["check"]) == (
        "ADAPTER_UNAVAILABLE",
        "DESCRIBE_MISMATCH",
    )
    assert status == pb.CHAIN_STATUS_PENDING


def _bad_descriptors(world) -> list[tuple[str, pb.ChainDescriptor, str]]:  # type: ignore[no-untyped-def]
    out = []

    def variant(name: str, reason: str, change) -> None:  # type: ignore[no-untyped-def]
        d = pb.ChainDescriptor()
        d.CopyFrom(world.descriptor(ESTATE))
        change(d)
        out.append((name, d, reason))

    variant("chain-id", "INVALID_ARGUMENT", lambda d: setattr(d, "chain_id", "bad id!"))
    variant("no-domain", "INVALID_ARGUMENT", lambda d: d.ClearField("domain"))
    variant("spec", "UNSUPPORTED", lambda d: setattr(d, "proof_spec", pb.PROOF_SPEC_MPT_KECCAK256))
    variant("schema", "UNSUPPORTED", lambda d: setattr(d, "record_schema_version", 2))
    variant("salt", "INVALID_ARGUMENT", lambda d: setattr(d.party_key, "salt", b"short"))
    variant("no-adapter", "INVALID_ARGUMENT", lambda d: d.ClearField("adapter"))
    variant(
        "grpc-no-ca",
        "INVALID_ARGUMENT",
        lambda d: d.adapter.CopyFrom(pb.AdapterEndpoint(grpc_address="adapter.example:443")),
    )
    variant("dup-codes", "INVALID_ARGUMENT", lambda d: d.registry_codes.append("110105"))
    variant(
        "trust-level",
        "INVALID_ARGUMENT",
        lambda d: d.tendermint.trust_level.CopyFrom(pb.Fraction(numerator=1, denominator=4)),
    )
    variant(
        "unbonding",
        "INVALID_ARGUMENT",
        lambda d: d.tendermint.unbonding_period.CopyFrom(Duration(seconds=DAY)),
    )
    variant(
        "anchor-hash",
        "INVALID_ARGUMENT",
        lambda d: setattr(d.tendermint.anchor, "header_hash", b"\x00" * 32),
    )
    variant(
        "anchor-bytes",
        "INVALID_ARGUMENT",
        lambda d: setattr(d.tendermint.anchor, "light_block", b"\x0a\x01garbage"),
    )
    variant(
        "sig-alg",
        "INVALID_ARGUMENT",
        lambda d: setattr(d.tendermint, "signature_algorithm", pb.SIGNATURE_ALGORITHM_SM2),
    )
    return out


@run
async def test_registration_validates_the_descriptor(tmp_path: Path) -> None:
    world = make_world()
    async with engine_for(world, tmp_path / "r.db", register=False, sync=False) as engine:
        for name, descriptor, reason in _bad_descriptors(world):
            with pytest.raises(RelayError) as e:
                await engine.register_chain(a.RegisterChainRequest(descriptor=descriptor))
            assert e.value.reason == reason, (name, e.value)
            assert e.value.field, name
        tlog = pb.ChainDescriptor()
        tlog.CopyFrom(world.descriptor(PATENTS))
        tlog.tlog.witness_threshold = 9
        with pytest.raises(RelayError) as e:
            await engine.register_chain(a.RegisterChainRequest(descriptor=tlog))
        assert e.value.reason == "INVALID_ARGUMENT"
        assert await engine.store.list_chains() == []  # nothing half-registered
        ok = await engine.register_chain(
            a.RegisterChainRequest(descriptor=world.descriptor(ESTATE))
        )
        assert ok.chain.status == pb.CHAIN_STATUS_PENDING
        with pytest.raises(RelayError) as e:
            await engine.register_chain(a.RegisterChainRequest(descriptor=world.descriptor(ESTATE)))
        assert e.value.reason == "ALREADY_EXISTS"
        clash = pb.ChainDescriptor()
        clash.CopyFrom(world.descriptor(PATENTS))
        clash.registry_codes.append("110105")
        with pytest.raises(RelayError) as e:
            await engine.register_chain(a.RegisterChainRequest(descriptor=clash))
        assert (e.value.reason, e.value.field) == (
            "ALREADY_EXISTS",
            f"descriptor.registry_codes[{len(clash.registry_codes) - 1}]",
        )


@run
async def test_stale_or_future_anchor_is_refused(tmp_path: Path) -> None:
    world = make_world()
    descriptor = world.descriptor(ESTATE)
    async with engine_for(world, tmp_path / "r.db", register=False, sync=False) as engine:
        world.clock.advance(15 * DAY)
        with pytest.raises(RelayError) as old:
            await engine.register_chain(a.RegisterChainRequest(descriptor=descriptor))
        world.clock.advance(-15 * DAY - 3600)
        with pytest.raises(RelayError) as future:
            await engine.register_chain(a.RegisterChainRequest(descriptor=descriptor))
    assert (old.value.reason, old.value.metadata["check"]) == ("INVALID_ARGUMENT", "TRUST_EXPIRED")
    assert future.value.metadata["check"] == "HEADER_FROM_FUTURE"


@run
async def test_startup_fails_when_an_adapter_cannot_be_loaded(tmp_path: Path) -> None:
    world = make_world()
    async with engine_for(world, tmp_path / "r.db"):
        pass

    def broken(descriptor: pb.ChainDescriptor):  # type: ignore[no-untyped-def]
        raise AdapterLoadError(f"no adapter named {descriptor.adapter.entry_point!r}")

    store = await SQLiteStore.open(tmp_path / "r.db", clock=world.clock)
    try:
        with pytest.raises(AdapterLoadError, match="relay-testing-partner"):
            await Engine.open(settings=fast_settings(), store=store, signer=SIGNER, adapters=broken)
    finally:
        await store.close()


@pytest.mark.parametrize("kind", ["bft", "tlog"])
@run
async def test_equivocation_freezes_the_chain(kind: str, tmp_path: Path) -> None:
    world = make_world({pb.DOMAIN_REAL_ESTATE: kind, pb.DOMAIN_IP: "bft"})
    chain = world.chains[ESTATE]
    asset = asset_of(world, ESTATE)
    async with engine_for(world, tmp_path / "r.db") as engine:
        chain.equivocate(chain.height)
        with pytest.raises(RelayError) as e:
            await engine.sync_chain_once(ESTATE)
        frozen = await info(engine, ESTATE)
        with pytest.raises(RelayError) as query:
            await ownership(engine, asset)
        other = await ownership(engine, asset_of(world, PATENTS))
        evidence = await engine.store.list_misbehaviour(ESTATE)
        assert not await engine.sync_chain_once(ESTATE)  # a frozen chain is not synced
        chain.heal()
        with pytest.raises(RelayError) as still:
            await ownership(engine, asset)
    assert e.value.reason == "MISBEHAVIOUR_DETECTED"
    assert frozen.status == pb.CHAIN_STATUS_FROZEN
    assert frozen.status_reason == pb.MISBEHAVIOUR_DETECTED
    assert query.value.reason == still.value.reason == "CHAIN_FROZEN"
    assert other.outcome == pb.OUTCOME_FOUND
    (record,) = evidence
    assert record.height == chain.height
    body = json.loads(record.evidence)
    assert record.kind.startswith("DUPLICATE_HEIGHT" if kind == "bft" else "SPLIT_VIEW")
    headers = [v for k, v in body.items() if k not in ("kind", "height")]
    assert len({json.dumps(h) for h in headers}) >= 2  # both conflicting headers are kept


@run
async def test_bft_time_violation_on_demand_freezes(tmp_path: Path) -> None:
    """A header below the trusted head whose time is not before the head's is misbehaviour
    (ibc-go's BFT time check), even when it verifies on its own."""
    world = make_world({pb.DOMAIN_REAL_ESTATE: "bft"})
    chain = world.chains[ESTATE]
    assert isinstance(chain, BftPartnerChain)
    async with engine_for(world, tmp_path / "r.db") as engine:
        runtime = engine.registry.get(ESTATE)
        head = runtime.record.anchor_height
        for _ in range(4):
            world.clock.advance(1)
            chain.commit()
        await engine.sync_chain_once(ESTATE)
        latest = (await info(engine, ESTATE)).trusted_height
        middle = latest - 1
        fork = chain.chain.light_block(
            middle, time_ns=chain.time_at(latest) + 1, app_hash=b"\x11" * 32
        )
        chain._forks[middle] = fork
        with pytest.raises(RelayError) as e:
            await runtime.ensure_verified(middle, now_ns=world.clock())
        status = runtime.status
        (record,) = await engine.store.list_misbehaviour(ESTATE)
    assert head < middle
    assert e.value.reason == "MISBEHAVIOUR_DETECTED"
    assert record.kind == "BFT_TIME_VIOLATION"
    assert status == ChainStatus.FROZEN


@pytest.mark.parametrize("kind", ["bft", "tlog"])
@run
async def test_expiry_gives_chain_expired(kind: str, tmp_path: Path) -> None:
    world = make_world({pb.DOMAIN_REAL_ESTATE: kind, pb.DOMAIN_IP: "tlog"})
    asset = asset_of(world, ESTATE)
    async with engine_for(world, tmp_path / "r.db") as engine:
        world.clock.advance(13 * DAY)
        assert (await ownership(engine, asset)).outcome == pb.OUTCOME_FOUND
        world.clock.advance(2 * DAY)
        with pytest.raises(RelayError) as e:
            await ownership(engine, asset)
        expired = await info(engine, ESTATE)
        synced = await engine.sync_chain_once(ESTATE)  # an expired chain is not synced
        answers = {
            x.chain_id: x
            async for x in engine.list_holdings(
                q.ListHoldingsRequest(party=world.people.debtor.ref(), case_ref=CASE)
            )
        }
    assert e.value.reason == "CHAIN_EXPIRED"
    assert expired.status == pb.CHAIN_STATUS_EXPIRED
    assert expired.status_reason == pb.CHAIN_EXPIRED
    assert expired.seconds_until_trust_expiry < 0
    assert synced is False
    assert answers[ESTATE].outcome == pb.OUTCOME_FAILED
    assert answers[ESTATE].failure.reason == pb.CHAIN_EXPIRED


@run
async def test_quiet_log_stays_fresh_while_witnesses_cosign(tmp_path: Path) -> None:
    """A log's trusting period runs from the last verified checkpoint: an unchanged tree
    re-cosigned by its witnesses keeps the chain fresh."""
    world = make_world({pb.DOMAIN_IP: "tlog"})
    registry = world.chains[PATENTS]
    assert isinstance(registry, TlogPartnerRegistry)
    asset = asset_of(world, PATENTS)
    async with engine_for(world, tmp_path / "r.db") as engine:
        for _ in range(3):
            world.clock.advance(10 * DAY)
            registry.put_raw(b"tick", str(world.clock()).encode())
            registry.commit()
            await engine.sync_chain_once(PATENTS)
        answer = await ownership(engine, asset)
    assert answer.outcome == pb.OUTCOME_FOUND
    assert world.check(answer.evidence).ok
    assert len(answer.evidence.trust_path) == 0  # one hop from the anchor, always


@pytest.mark.parametrize("kind", ["bft", "tlog"])
@run
async def test_operator_freeze_and_recovery(kind: str, tmp_path: Path) -> None:
    world = make_world({pb.DOMAIN_REAL_ESTATE: kind})
    chain = world.chains[ESTATE]
    asset = asset_of(world, ESTATE)
    async with engine_for(world, tmp_path / "r.db") as engine:
        with pytest.raises(RelayError) as active:
            await engine.recover_chain(a.RecoverChainRequest(chain_id=ESTATE))
        frozen = await engine.freeze_chain(a.FreezeChainRequest(chain_id=ESTATE, reason="drill"))
        again = await engine.freeze_chain(a.FreezeChainRequest(chain_id=ESTATE, reason="x"))
        with pytest.raises(RelayError) as refused:
            await ownership(engine, asset)
        chain.put_raw(b"after-freeze", b"1")
        chain.commit()
        if isinstance(chain, BftPartnerChain):
            chain.commit()
        world.clock.advance(1)
        new_descriptor = world.descriptor(ESTATE, at=chain.height)
        which = new_descriptor.WhichOneof("client")
        anchor = pb.TrustAnchor()
        getattr(anchor, which).CopyFrom(getattr(new_descriptor, which).anchor)
        wrong = pb.TrustAnchor(tlog=pb.TlogAnchor(checkpoint=b"x"))
        if which == "tlog":
            wrong = pb.TrustAnchor(tendermint=pb.TendermintAnchor(light_block=b"x"))
        with pytest.raises(RelayError) as mismatched:
            await engine.recover_chain(
                a.RecoverChainRequest(chain_id=ESTATE, new_anchor=wrong, reason="r")
            )
        recovered = await engine.recover_chain(
            a.RecoverChainRequest(chain_id=ESTATE, new_anchor=anchor, reason="new anchor")
        )
        await engine.sync_chain_once(ESTATE)
        answer = await ownership(engine, asset)
    assert active.value.reason == "INVALID_ARGUMENT"
    assert frozen.chain.status == pb.CHAIN_STATUS_FROZEN
    assert frozen.chain.status_reason == pb.CHAIN_FROZEN
    assert "drill" in again.chain.status_message  # idempotent: the first reason stays
    assert refused.value.reason == "CHAIN_FROZEN"
    assert mismatched.value.reason == "INVALID_ARGUMENT"
    assert recovered.chain.status == pb.CHAIN_STATUS_PENDING
    assert recovered.chain.anchor_height == chain.height
    assert answer.outcome == pb.OUTCOME_FOUND
    report = world.check(answer.evidence)  # world.descriptors now holds the new anchor
    assert report.ok, report.checks


@run
async def test_update_adapter_endpoint_keeps_trust(tmp_path: Path) -> None:
    world = make_world()
    async with engine_for(world, tmp_path / "r.db") as engine:
        before = await info(engine, ESTATE)
        old_client = world.clients[ESTATE]
        updated = await engine.update_adapter_endpoint(
            a.UpdateAdapterEndpointRequest(
                chain_id=ESTATE, endpoint=pb.AdapterEndpoint(entry_point="partner-v2")
            )
        )
        with pytest.raises(RelayError) as bad:
            await engine.update_adapter_endpoint(
                a.UpdateAdapterEndpointRequest(
                    chain_id=ESTATE, endpoint=pb.AdapterEndpoint(grpc_address="nohost")
                )
            )
        listed = await engine.admin_list_chains(a.AdminListChainsRequest())
        answer = await ownership(engine, asset_of(world, ESTATE))
    assert world.clients[ESTATE] is not old_client
    assert updated.chain.trusted_height == before.trusted_height
    assert bad.value.reason == "INVALID_ARGUMENT"
    by_id = {c.info.chain_id: c for c in listed.chains}
    assert by_id[ESTATE].descriptor.adapter.entry_point == "partner-v2"
    assert all(not c.descriptor.party_key.salt for c in listed.chains)  # write-only salt
    assert by_id[ESTATE].registered_at.seconds > 0
    assert answer.outcome == pb.OUTCOME_FOUND


@run
async def test_restart_continues_from_the_stored_state(tmp_path: Path) -> None:
    world = make_world()
    chain = world.chains[ESTATE]
    asset = asset_of(world, ESTATE)
    path = tmp_path / "r.db"
    async with engine_for(world, path) as engine:
        first = await info(engine, ESTATE)
        first_answer = await ownership(engine, asset)
    chain.put_raw(b"while-down", b"1")
    chain.commit()
    chain.commit()
    world.clock.advance(5)
    async with engine_for(world, path, register=False, sync=False) as engine:
        restarted = await info(engine, ESTATE)
        again = await ownership(engine, asset)  # verifies the new head on demand
        await engine.sync_chain_once(ESTATE)
        synced = await info(engine, ESTATE)
        patents = await info(engine, PATENTS)
    assert restarted.status == pb.CHAIN_STATUS_ACTIVE
    assert restarted.trusted_height == first.trusted_height
    assert first_answer.evidence.height == first.trusted_height
    assert again.outcome == pb.OUTCOME_FOUND and world.check(again.evidence).ok
    assert synced.trusted_height == chain.height
    assert patents.trusted_height == world.chains[PATENTS].height


@run
async def test_interrupted_registration_is_finished_at_start(tmp_path: Path) -> None:
    world = make_world({pb.DOMAIN_REAL_ESTATE: "bft"})
    descriptor = world.descriptor(ESTATE)
    path = tmp_path / "r.db"
    store = await SQLiteStore.open(path, clock=world.clock)
    try:
        await store.upsert_chain(
            ChainRecord(
                chain_id=ESTATE,
                domain="DOMAIN_REAL_ESTATE",
                client_type=ClientType.TENDERMINT,
                descriptor=descriptor.SerializeToString(deterministic=True),
                status=ChainStatus.ACTIVE,
                anchor_height=descriptor.tendermint.anchor.height,
            )
        )
    finally:
        await store.close()
    async with engine_for(world, path, register=False, sync=False) as engine:
        pending = await info(engine, ESTATE)
        await engine.sync_chain_once(ESTATE)
        answer = await ownership(engine, asset_of(world, ESTATE))
    assert pending.status == pb.CHAIN_STATUS_PENDING
    assert pending.trusted_height == descriptor.tendermint.anchor.height
    assert world.check(answer.evidence).ok


@run
async def test_validator_rotation_is_followed_by_bisection(tmp_path: Path) -> None:
    world = make_world({pb.DOMAIN_REAL_ESTATE: "bft"})
    chain = world.chains[ESTATE]
    assert isinstance(chain, BftPartnerChain)
    asset = asset_of(world, ESTATE)
    async with engine_for(world, tmp_path / "r.db") as engine:
        # Two complete rotations: the new head shares no validator with the trusted one,
        # so skipping must find the heights where each new set took over.
        for _ in range(2):
            chain.schedule_rotation(4)
            for _ in range(6):
                world.clock.advance(1)
                chain.commit()
        assert await engine.sync_chain_once(ESTATE)
        answer = await ownership(engine, asset)
    assert answer.evidence.height == chain.height
    assert len(answer.evidence.trust_path) >= 2  # pivots on the path
    report = world.check(answer.evidence)
    assert report.ok, report.checks


@run
async def test_trust_paths_stay_short_and_pruning_keeps_evidence_valid(tmp_path: Path) -> None:
    world = make_world({pb.DOMAIN_REAL_ESTATE: "bft"})
    chain = world.chains[ESTATE]
    asset = asset_of(world, ESTATE)
    async with engine_for(world, tmp_path / "r.db") as engine:
        for _ in range(60):  # a sync round twice a day for a month (trusting period 14 d)
            world.clock.advance(DAY / 2)
            chain.commit()
            await engine.sync_chain_once(ESTATE)
        before = (await engine.store.stats()).consensus_states
        deleted = await engine.prune_once()
        after = (await engine.store.stats()).consensus_states
        answer = await ownership(engine, asset)
    assert deleted > 0 and after == before - deleted
    assert len(answer.evidence.trust_path) <= 8  # not one hop per sync round
    report = world.check(answer.evidence)
    assert report.ok, report.checks


@run
async def test_sm2_sm3_chains_and_sm2_relay_key(tmp_path: Path) -> None:
    from test_engine_harness import World

    from relay.engine.evidence import RelaySigner
    from relay.testing import samples
    from relay.verify.evidence import verify_evidence

    world = World(clock=make_world({}).clock, people=samples.population())
    world.add(
        make_chain("bft", pb.DOMAIN_REAL_ESTATE, world.clock, world.people, hash="sm3", sig="sm2")
    )
    world.add(make_chain("tlog", pb.DOMAIN_IP, world.clock, world.people, hash="sm3", sig="sm2"))
    signer = RelaySigner.sm2(key_id="relay-sm2", private_key=0x1234567890ABCDEF, signer_id=b"relay")
    store = await SQLiteStore.open(tmp_path / "r.db", clock=world.clock)
    settings = fast_settings()
    engine = await Engine.open(
        settings=settings,
        store=store,
        signer=signer,
        adapters=world.factory(settings),
        clock=world.clock,
    )
    try:
        for chain_id in world.chains:
            await engine.register_chain(
                a.RegisterChainRequest(descriptor=world.descriptor(chain_id))
            )
            world.clock.advance(1)
            await engine.sync_chain_once(chain_id)
        answers = [
            await ownership(engine, asset_of(world, ESTATE)),
            await ownership(engine, asset_of(world, PATENTS)),
        ]
    finally:
        await engine.close()
        await store.close()
    for answer in answers:
        assert answer.outcome == pb.OUTCOME_FOUND
        assert answer.evidence.relay_attestation.algorithm == pb.SIGNATURE_ALGORITHM_SM2
        report = verify_evidence(
            answer.evidence, anchors=world.anchors(), relay_keys={"relay-sm2": signer.relay_key()}
        )
        assert report.ok, report.checks


@run
async def test_sync_tasks_follow_chains_registered_later_and_stop_on_close(
    tmp_path: Path,
) -> None:
    import asyncio
    import time

    world = make_world()
    chain = world.chains[ESTATE]
    async with engine_for(world, tmp_path / "r.db", register=False, sync=False) as engine:
        await engine.start_sync()
        await engine.register_chain(a.RegisterChainRequest(descriptor=world.descriptor(ESTATE)))
        chain.put_raw(b"background", b"1")
        chain.commit()
        for _ in range(300):
            current = await info(engine, ESTATE)
            if current.status == pb.CHAIN_STATUS_ACTIVE and current.trusted_height == chain.height:
                break
            await asyncio.sleep(0.01)
        assert current.status == pb.CHAIN_STATUS_ACTIVE
        assert current.trusted_height == chain.height
        started = time.monotonic()
    assert time.monotonic() - started < 1.0  # close() cancelled the tasks promptly


@run
async def test_registration_with_an_unloadable_adapter_is_refused(tmp_path: Path) -> None:
    from relay.engine.adapters import DefaultAdapterFactory

    world = make_world({pb.DOMAIN_REAL_ESTATE: "bft"})
    store = await SQLiteStore.open(tmp_path / "r.db", clock=world.clock)
    settings = fast_settings()
    engine = await Engine.open(
        settings=settings,
        store=store,
        signer=SIGNER,
        adapters=DefaultAdapterFactory(settings, entry_points=lambda group: []),
        clock=world.clock,
    )
    try:
        with pytest.raises(RelayError) as e:
            await engine.register_chain(a.RegisterChainRequest(descriptor=world.descriptor(ESTATE)))
        assert (e.value.reason, e.value.field) == ("INVALID_ARGUMENT", "descriptor.adapter")
        assert "relay-testing-partner" in e.value.message
        assert await store.list_chains() == []
    finally:
        await engine.close()
        await store.close()
