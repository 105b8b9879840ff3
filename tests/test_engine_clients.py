"""Light-client wrappers (relay/engine/clients.py): the stored formats (hops, client state)
round-trip and refuse anything else; anchors are verified on their own; bisection across
validator rotations; the trust base stays within the window; pure parameter mapping."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from test_engine_harness import ENDPOINT, FakeClock, engine_for, fast_settings, make_world, run

from relay.engine.clients import (
    ClientStateV1,
    Hop,
    StateFormatError,
    TendermintClient,
    TlogClient,
    decode_hop,
    encode_hop,
    make_client,
    trust_digest,
)
from relay.engine.errors import RelayError
from relay.pb.relay.v1 import types_pb2 as pb
from relay.testing.partners import BftPartnerChain, TlogPartnerRegistry
from relay.verify import evidence as rules
from relay.verify.errors import MalformedInputError, UnsupportedError

ESTATE = "cn-bj-chaoyang-realestate"


def test_hop_round_trip_and_refusals() -> None:
    hop = Hop(b"header bytes", (b"\x01" * 32, b"\x02" * 32), -5)
    data = encode_hop(hop)
    assert decode_hop(data) == hop
    assert decode_hop(encode_hop(Hop(b"", (), 0))) == Hop(b"", (), 0)
    for broken in (data[:-1], data + b"\x00", b"XXXX" + data[4:], data[:4] + b"\x02" + data[5:]):
        with pytest.raises(StateFormatError):
            decode_hop(broken)
    with pytest.raises(ValueError):
        encode_hop(Hop(b"", (b"",), 0))


@pytest.mark.fuzz
@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=200))
def test_hop_decoder_never_crashes(data: bytes) -> None:
    try:
        hop = decode_hop(data)
    except StateFormatError:
        return
    assert encode_hop(hop) == data  # anything accepted is the one encoding of its value


def test_client_state_round_trip_and_refusals() -> None:
    state = ClientStateV1("tendermint", 42, 1_700_000_000_000_000_000, "ab" * 32)
    data = state.encode()
    assert ClientStateV1.decode(data) == state
    assert b" " not in data
    for broken in (
        data.replace(b'"v":1', b'"v":2'),
        data.replace(b"42", b"42.0"),
        data.replace(b'"kind":"tendermint"', b'"kind":"x"'),
        b'{"v":1}',
        b"[]",
        b"\xff",
        data[:-1],
        data.replace(b"{", b"{ "),  # not canonical
        b"x" * 2000,
    ):
        with pytest.raises(StateFormatError):
            ClientStateV1.decode(broken)


def test_client_state_is_bound_to_trust_parameters() -> None:
    world = make_world({pb.DOMAIN_REAL_ESTATE: "bft"})
    d = world.descriptor(ESTATE)
    client = make_client(d, settings=fast_settings())
    state = client.client_state(latest_height=3, last_verified_ns=1)
    assert client.parse_client_state(state).latest_height == 3
    moved = pb.ChainDescriptor()
    moved.CopyFrom(d)
    moved.adapter.entry_point = "elsewhere"
    assert trust_digest(moved) == trust_digest(d)  # the adapter is not a trust parameter
    reanchored = world.descriptor(ESTATE, at=world.chains[ESTATE].height)
    other = make_client(reanchored, settings=fast_settings())
    with pytest.raises(StateFormatError, match="other trust parameters"):
        other.parse_client_state(state)


def test_anchor_records() -> None:
    clock = FakeClock()
    chain = BftPartnerChain("c1", clock=clock)
    chain.commit()
    registry = TlogPartnerRegistry(clock=clock.seconds)
    registry.put_raw(b"k", b"v")
    registry.commit()
    t = make_client(chain.descriptor(ENDPOINT), settings=fast_settings())
    assert isinstance(t, TendermintClient)
    rec = t.anchor_record(now_ns=clock())
    assert rec.height == 1 and rec.trusted_from is None
    assert rec.header_hash == chain.light_block(1).header.hash
    assert decode_hop(rec.light_block).header == chain.light_block_bytes(1)
    assert t.state_root(rec) == chain.light_block(1).header.app_hash
    log = make_client(registry.descriptor(ENDPOINT), settings=fast_settings())
    assert isinstance(log, TlogClient)
    lrec = log.anchor_record(now_ns=clock())
    assert lrec.height == registry.height
    assert log.state_root(lrec) == registry.state_at(registry.height).root
    assert log.assurance(lrec) == pb.ASSURANCE_FULL
    bad = registry.descriptor(ENDPOINT)
    bad.tlog.origin = "other.example/log"
    with pytest.raises(RelayError) as e:
        make_client(bad, settings=fast_settings()).anchor_record(now_ns=clock())
    assert (e.value.reason, e.value.field) == ("INVALID_ARGUMENT", "tlog.anchor")
    with pytest.raises(RelayError):
        make_client(pb.ChainDescriptor(chain_id="x"), settings=fast_settings())


def test_descriptor_parameters_map_to_verifier_configuration() -> None:
    chain = BftPartnerChain("c2", hash="sm3", sig="sm2", sm2_signer_id=b"chain-id-2")
    chain.commit()
    params = chain.descriptor(ENDPOINT).tendermint
    options, unbonding = rules.tendermint_options(params, chain_id="c2")
    assert options.params.hasher.hasher.name == "sm3"
    (key_type,) = options.params.key_types
    assert key_type.name == "sm2" and key_type.scheme.signer_id == b"chain-id-2"  # type: ignore[attr-defined]
    assert unbonding > options.trusting_period_ns
    wrong = pb.TendermintClientParams()
    wrong.CopyFrom(params)
    wrong.signature_algorithm = pb.SIGNATURE_ALGORITHM_ECDSA_P256
    with pytest.raises(MalformedInputError):
        rules.tendermint_options(wrong, chain_id="c2")  # signer id set on a non-SM2 chain
    wrong.sm2_signer_id = ""
    with pytest.raises(UnsupportedError):
        rules.tendermint_options(wrong, chain_id="c2")
    wrong.signature_algorithm = pb.SIGNATURE_ALGORITHM_ED25519
    wrong.hash_algorithm = pb.HASH_ALGORITHM_KECCAK256
    with pytest.raises(UnsupportedError):
        rules.tendermint_options(wrong, chain_id="c2")
    assert rules.proof_spec(pb.PROOF_SPEC_ICS23_SMT_SM3) is not rules.proof_spec(
        pb.PROOF_SPEC_ICS23_SMT
    )
    with pytest.raises(UnsupportedError):
        rules.proof_spec(pb.PROOF_SPEC_RFC6962_SHA256)
    assert not rules.can_prove_absence(pb.PROOF_SPEC_RFC6962_SHA256)


@run
async def test_base_is_the_oldest_young_state_on_the_trust_path(tmp_path: Path) -> None:
    world = make_world({pb.DOMAIN_REAL_ESTATE: "bft"})
    chain = world.chains[ESTATE]
    day = 86_400
    async with engine_for(world, tmp_path / "r.db") as engine:
        runtime = engine.registry.get(ESTATE)
        client = runtime.client
        assert isinstance(client, TendermintClient)
        heights = []
        for _ in range(6):
            world.clock.advance(3 * day)
            chain.commit()
            await engine.sync_chain_once(ESTATE)
            heights.append(chain.height)
        view = await runtime.load_view(fresh=True)
        base = await client.choose_base(store=engine.store, view=view, now_ns=world.clock())
        path = await engine.store.trust_path(ESTATE, view.latest.height)
    # Every path element is older than the one after it; the base is the first that is
    # younger than half the trusting period (7 days), so paths grow slowly.
    window = world.clock() - 7 * day * 1_000_000_000
    older = [s for s in path if s.time_ns <= window]
    assert base.time_ns > window
    assert base == next(s for s in path if s.time_ns > window)
    assert older and len(path) < len(heights) + 1
