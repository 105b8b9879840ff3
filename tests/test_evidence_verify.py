"""The offline evidence checker (relay/verify/evidence.py): bundles the engine issued pass all
seven documented checks; every kind of tampering fails at the check that covers it, and the
report names it; malformed input raises typed errors; short fuzz of the encoded bundle."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest
from google.protobuf import json_format
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from test_engine_harness import (
    CASE,
    SIGNER,
    FakeClock,
    World,
    asset_of,
    engine_for,
    make_chain,
)

from relay.pb.relay.v1 import query_pb2 as q
from relay.pb.relay.v1 import types_pb2 as pb
from relay.testing import samples
from relay.testing.tlog import ed25519_signer
from relay.verify.errors import LimitExceededError, MalformedInputError, VerificationError
from relay.verify.evidence import (
    STEP_NAMES,
    ChainAnchor,
    RelayKey,
    evidence_from_bytes,
    evidence_from_json,
    verify_evidence,
)

ESTATE, PATENTS = "cn-bj-chaoyang-realestate", "cn-cnipa-patents"
DAY = 86_400


@dataclass
class Bundles:
    world: World
    bft: pb.Evidence  # found, with a trust path of at least one hop
    bft_absent: pb.Evidence
    tlog: pb.Evidence
    tlog_absent: pb.Evidence
    raw: pb.Evidence
    weak: pb.Evidence  # a log checkpoint with fewer cosignatures than the threshold
    weak_info: pb.ChainInfo


async def _issue(tmp: Path) -> Bundles:
    world = World(clock=FakeClock(), people=samples.population())
    world.add(make_chain("bft", pb.DOMAIN_REAL_ESTATE, world.clock, world.people))
    world.add(make_chain("tlog", pb.DOMAIN_IP, world.clock, world.people))
    world.add(make_chain("tlog", pb.DOMAIN_BANK, world.clock, world.people))
    weak_id = "cn-icbc-bj-accounts"
    descriptor = world.descriptor(weak_id)
    # One more witness the registry never asks to cosign, and a threshold of all four.
    extra = ed25519_signer("witness-extra.example.cn", cosigner=True)
    descriptor.tlog.witness_verifier_keys.append(extra.vkey)
    descriptor.tlog.witness_threshold = 4
    original = world.descriptor
    world.descriptor = lambda cid, at=None: descriptor if cid == weak_id else original(cid, at=at)  # type: ignore[method-assign]
    estate = world.chains[ESTATE]
    async with engine_for(world, tmp / "relay.db") as engine:
        world.clock.advance(8 * DAY)  # the anchor is now older than half the trusting period
        estate.put_raw(b"later", b"1")
        estate.commit()
        estate.commit()
        await engine.sync_chain_once(ESTATE)

        async def own(asset: pb.AssetRef) -> pb.Evidence:
            answer = await engine.get_ownership(q.GetOwnershipRequest(asset=asset, case_ref=CASE))
            return answer.evidence

        absent_estate = pb.AssetRef(kind=pb.ASSET_KIND_REAL_ESTATE, registry="110105", id="none")
        absent_patent = pb.AssetRef(kind=pb.ASSET_KIND_PATENT, registry="CNIPA", id="none")
        raw = await engine.get_state(
            q.GetStateRequest(chain_id=ESTATE, key=b"later", case_ref=CASE)
        )
        weak = await engine.get_account(
            q.GetAccountRequest(account=asset_of(world, weak_id, "account"), case_ref=CASE)
        )
        weak_info = (await engine.get_chain(q.GetChainRequest(chain_id=weak_id))).chain
        return Bundles(
            world=world,
            bft=await own(asset_of(world, ESTATE)),
            bft_absent=await own(absent_estate),
            tlog=await own(asset_of(world, PATENTS)),
            tlog_absent=await own(absent_patent),
            raw=raw.evidence,
            weak=weak.evidence,
            weak_info=weak_info,
        )


@pytest.fixture(scope="module")
def bundles(tmp_path_factory: pytest.TempPathFactory) -> Bundles:
    return asyncio.run(_issue(tmp_path_factory.mktemp("evidence")))


def copy(ev: pb.Evidence) -> pb.Evidence:
    out = pb.Evidence()
    out.CopyFrom(ev)
    return out


def first_failure(bundles: Bundles, ev: pb.Evidence) -> str:
    report = bundles.world.check(ev)
    assert not report.ok
    failed = report.first_failure
    assert failed is not None
    return failed.name


NAMES = ["bft", "bft_absent", "tlog", "tlog_absent", "raw", "weak"]


@pytest.mark.parametrize("name", NAMES)
def test_issued_evidence_passes_all_seven_checks(bundles: Bundles, name: str) -> None:
    ev: pb.Evidence = getattr(bundles, name)
    report = bundles.world.check(ev)
    assert report.ok, report.checks
    assert [c.name for c in report.checks] == list(STEP_NAMES)
    assert report.chain_verified
    assert report.height == ev.height


def test_bundles_have_the_documented_shape(bundles: Bundles) -> None:
    assert len(bundles.bft.trust_path) >= 1  # anchor -> hop -> header
    assert bundles.bft.header_format == pb.HEADER_FORMAT_COMETBFT_LIGHT_BLOCK
    assert bundles.tlog.header_format == pb.HEADER_FORMAT_C2SP_CHECKPOINT
    assert bundles.tlog.header_consistency_proof  # from the anchor's size
    assert bundles.bft_absent.WhichOneof("record") is None
    assert not bundles.bft_absent.HasField("value")
    assert bundles.raw.value == b"1" and bundles.raw.WhichOneof("record") is None
    assert bundles.weak.assurance == pb.ASSURANCE_WITNESS_QUORUM_UNMET
    assert bundles.weak_info.assurance == pb.ASSURANCE_WITNESS_QUORUM_UNMET
    assert bundles.tlog.assurance == bundles.bft.assurance == pb.ASSURANCE_FULL


def _flip(data: bytes, index: int = -1) -> bytes:
    i = index % len(data)
    return data[:i] + bytes([data[i] ^ 0x01]) + data[i + 1 :]


def _other_record(bundles: Bundles) -> bytes:
    ev = bundles.bft
    for key, record in bundles.world.data[ESTATE].records:
        value = record.SerializeToString(deterministic=True)  # type: ignore[attr-defined]
        if key.WhichOneof("record") == "ownership" and value != ev.value:
            return value
    raise AssertionError


Mutation = Callable[[Bundles, pb.Evidence], None]


def _set_step_header(b: Bundles, ev: pb.Evidence) -> None:
    ev.trust_path[0].header = _flip(ev.trust_path[0].header, 40)


def _expire(b: Bundles, ev: pb.Evidence) -> None:
    ev.header_verified_at.seconds += 30 * DAY


def _disorder(b: Bundles, ev: pb.Evidence) -> None:
    ev.trust_path[0].height = ev.height + 1


def _record_changed(b: Bundles, ev: pb.Evidence) -> None:
    ev.ownership.description += "!"


def _record_kind(b: Bundles, ev: pb.Evidence) -> None:
    ev.history.CopyFrom(pb.AssetHistory(asset=ev.ownership.asset))


def _value(b: Bundles, ev: pb.Evidence) -> None:
    ev.value = _other_record(b)


def _absent_claim(b: Bundles, ev: pb.Evidence) -> None:
    ev.ClearField("value")
    ev.ClearField("ownership")


MUTATIONS: dict[str, tuple[Mutation, str]] = {
    "version": (lambda b, ev: setattr(ev, "version", 2), "format"),
    "no-header": (lambda b, ev: ev.ClearField("header"), "format"),
    "unknown-chain": (lambda b, ev: setattr(ev, "chain_id", "elsewhere"), "anchor"),
    "client-type": (lambda b, ev: setattr(ev, "client_type", pb.CLIENT_TYPE_TLOG), "anchor"),
    "proof-spec": (lambda b, ev: setattr(ev, "proof_spec", pb.PROOF_SPEC_ICS23_IAVL), "anchor"),
    "header-byte": (lambda b, ev: setattr(ev, "header", _flip(ev.header, 30)), "trust_path"),
    "step-header": (_set_step_header, "trust_path"),
    "expired-hop": (_expire, "trust_path"),
    "no-verified-at": (lambda b, ev: ev.ClearField("header_verified_at"), "trust_path"),
    "heights": (_disorder, "trust_path"),
    "repeated-hop": (lambda b, ev: ev.trust_path.append(ev.trust_path[0]), "trust_path"),
    "assurance": (lambda b, ev: setattr(ev, "assurance", 2), "trust_path"),
    "state-root": (lambda b, ev: setattr(ev, "state_root", b"\x00" * 32), "state_root"),
    "header-time": (lambda b, ev: setattr(ev.header_time, "nanos", 7), "state_root"),
    "proof-byte": (lambda b, ev: setattr(ev, "proof", _flip(ev.proof)), "proof"),
    "value": (_value, "proof"),
    "absence-claimed": (_absent_claim, "proof"),
    "key": (lambda b, ev: setattr(ev, "key", ev.key + b"\x00"), "proof"),
    "proof-format": (lambda b, ev: setattr(ev, "proof_format", 2), "proof"),
    "record": (_record_changed, "record"),
    "record-kind": (_record_kind, "record"),
}


@pytest.mark.parametrize("mutation", sorted(MUTATIONS))
def test_tampering_fails_at_the_check_that_covers_it(bundles: Bundles, mutation: str) -> None:
    change, expected = MUTATIONS[mutation]
    ev = copy(bundles.bft)
    change(bundles, ev)
    # Re-signed by the relay, so only steps 1-6 can catch it: they need no trust in the relay.
    SIGNER.sign(ev)
    assert first_failure(bundles, ev) == expected


def test_log_hop_tampering_and_absence_record(bundles: Bundles) -> None:
    ev = copy(bundles.tlog)
    ev.header_consistency_proof[0] = _flip(ev.header_consistency_proof[0])
    SIGNER.sign(ev)
    assert first_failure(bundles, ev) == "trust_path"
    weak = copy(bundles.weak)
    weak.assurance = pb.ASSURANCE_FULL  # overclaiming the witness quorum is caught
    SIGNER.sign(weak)
    assert first_failure(bundles, weak) == "trust_path"
    absent = copy(bundles.tlog_absent)
    absent.ownership.CopyFrom(bundles.tlog.ownership)
    SIGNER.sign(absent)
    assert first_failure(bundles, absent) == "record"


def test_attestation_is_checked_independently(bundles: Bundles) -> None:
    ev = copy(bundles.bft)
    ev.relay_attestation.signature = _flip(ev.relay_attestation.signature)
    report = bundles.world.check(ev)
    assert report.chain_verified and not report.ok
    assert report.first_failure is not None and report.first_failure.name == "attestation"
    unknown = verify_evidence(bundles.bft, anchors=bundles.world.anchors(), relay_keys={})
    assert unknown.chain_verified and not unknown.ok
    other = RelayKey(
        key_id=SIGNER.key_id, algorithm=pb.SIGNATURE_ALGORITHM_SM2, public_key=SIGNER.public_key
    )
    wrong = verify_evidence(
        bundles.bft, anchors=bundles.world.anchors(), relay_keys={SIGNER.key_id: other}
    )
    assert not wrong.ok
    unsigned = copy(bundles.bft)
    unsigned.ClearField("relay_attestation")
    assert not bundles.world.check(unsigned).ok
    # A tampered value is caught even though the signature (over the original) is intact
    # only for the original bytes: both the proof and the attestation fail.
    tampered = copy(bundles.bft)
    tampered.value = _other_record(bundles)
    checks = {c.name: c.passed for c in bundles.world.check(tampered).checks}
    assert checks["proof"] is False and checks["attestation"] is False


def test_anchor_replayed_at_its_own_height(bundles: Bundles) -> None:
    anchors = bundles.world.anchors()
    anchor = anchors[ESTATE]
    assert anchor.tendermint is not None
    ev = copy(bundles.bft)
    ev.height = anchor.tendermint.anchor.height
    ev.ClearField("trust_path")
    ev.header = _flip(anchor.tendermint.anchor.light_block, 20)
    SIGNER.sign(ev)
    assert first_failure(bundles, ev) == "trust_path"


def test_json_round_trip_keeps_the_signed_bytes(bundles: Bundles) -> None:
    for ev in (bundles.bft, bundles.tlog_absent, bundles.raw):
        text = json_format.MessageToJson(ev)
        back = evidence_from_json(text)
        assert back.SerializeToString(deterministic=True) == ev.SerializeToString(
            deterministic=True
        )
        assert bundles.world.check(back).ok


def test_malformed_input_raises_typed_errors(bundles: Bundles) -> None:
    with pytest.raises(MalformedInputError):
        evidence_from_bytes(b"\xff\xff\xff")
    with pytest.raises(LimitExceededError):
        evidence_from_bytes(b"\x00" * 100, max_bytes=10)
    text = json_format.MessageToJson(bundles.bft)
    with pytest.raises(MalformedInputError):
        evidence_from_json(text[:-1] + ', "newField": 1}')
    with pytest.raises(MalformedInputError):
        evidence_from_json("not json")
    with pytest.raises(MalformedInputError):
        verify_evidence(b"bytes", anchors={}, relay_keys={})  # type: ignore[arg-type]
    broken = pb.ChainDescriptor()
    broken.CopyFrom(bundles.world.descriptors[ESTATE])
    broken.tendermint.anchor.light_block = b"\x0a\x02xx"
    with pytest.raises(VerificationError):
        verify_evidence(
            bundles.bft,
            anchors={ESTATE: ChainAnchor.from_descriptor(broken)},
            relay_keys={},
        )


def test_unknown_fields_are_refused(bundles: Bundles) -> None:
    data = bundles.bft.SerializeToString() + b"\xf8\x07\x01"  # field 127, varint 1
    ev = evidence_from_bytes(data)
    report = bundles.world.check(ev)
    assert report.first_failure is not None and report.first_failure.name == "format"


@pytest.mark.fuzz
@settings(
    max_examples=150,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(data=st.data())
def test_fuzz_flipped_or_cut_bundles_never_verify_or_crash(
    bundles: Bundles, data: st.DataObject
) -> None:
    source = data.draw(st.sampled_from([bundles.bft, bundles.tlog, bundles.bft_absent]))
    raw = source.SerializeToString(deterministic=True)
    if data.draw(st.booleans()):
        i = data.draw(st.integers(0, len(raw) - 1))
        bit = data.draw(st.integers(0, 7))
        mutated = raw[:i] + bytes([raw[i] ^ (1 << bit)]) + raw[i + 1 :]
    else:
        mutated = raw[: data.draw(st.integers(0, len(raw) - 1))]
    try:
        ev = evidence_from_bytes(mutated)
    except MalformedInputError:
        return
    if ev.SerializeToString(deterministic=True) == raw:
        return  # decodes to the very same bundle
    report = bundles.world.check(ev)
    assert not report.ok


def test_failed_checks_carry_the_verifier_reason(bundles: Bundles) -> None:
    ev = copy(bundles.bft)
    ev.state_root = b"\x00" * 32
    ev.proof = _flip(ev.proof)
    SIGNER.sign(ev)
    failed = bundles.world.check(ev).first_failure
    assert failed is not None and (failed.name, failed.reason) == ("state_root", "")
    ev = copy(bundles.bft)
    ev.value = _other_record(bundles)
    SIGNER.sign(ev)
    failed = bundles.world.check(ev).first_failure
    assert failed is not None and (failed.name, failed.reason) == ("proof", "VALUE_MISMATCH")


@pytest.mark.parametrize(
    ("field", "value"),
    [("header_time", -1), ("header_time", 10**9), ("header_verified_at", 10**9 + 7)],
)
def test_out_of_range_timestamps_fail_a_check_instead_of_raising(
    bundles: Bundles, field: str, value: int
) -> None:
    # Found by the every-byte tamper test: a flipped byte in a timestamp's nanos raised a
    # MalformedInputError out of verify_evidence instead of failing the step that reads it.
    ev = copy(bundles.bft)
    getattr(ev, field).nanos = value
    report = bundles.world.check(ev)
    assert not report.ok
    assert report.first_failure is not None
    assert report.first_failure.reason == "MALFORMED_INPUT"
