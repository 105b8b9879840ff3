"""The protobuf light-block codec (tendermint.types.LightBlock): real CometBFT captures and the
tendermint-rs model-based blocks survive JSON -> protobuf -> decode unchanged (same header
hash); generated blocks of every key type round-trip and still verify; the hand-written
encoder writes exactly what the generated protobuf classes write; every truncation, bit flip
or non-canonical form fails with a typed error; a fuzz run never crashes."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from conftest import vectors_path
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from relay.pb.tendermint.crypto import keys_pb2
from relay.pb.tendermint.types import types_pb2, validator_pb2
from relay.testing.tendermint import (
    TestChain,
    make_validators,
    sm2_chain_params,
    sm2_key,
)
from relay.verify.errors import (
    LimitExceededError,
    MalformedInputError,
    MismatchError,
    UnsupportedError,
    VerificationError,
)
from relay.verify.lightclient import cometbft_types as ct
from relay.verify.lightclient import tendermint as tm
from relay.verify.lightclient.cometbft_proto import (
    decode_light_block_proto,
    encode_light_block_proto,
)
from relay.verify.merkle.rfc6962 import RFC6962_SM3

P = ct.DEFAULT_PARAMS
VERSIONS = ("v0_37", "v0_38")


def round_trip(block: ct.LightBlock, params: ct.ChainParams = P) -> ct.LightBlock:
    data = encode_light_block_proto(block)
    decoded = decode_light_block_proto(data, params=params)
    assert encode_light_block_proto(decoded) == data
    return decoded


def same_block(a: ct.LightBlock, b: ct.LightBlock) -> None:
    assert a.signed_header == b.signed_header
    assert a.header.hash == b.header.hash
    assert a.validator_set == b.validator_set
    assert a.validator_set.hash == b.validator_set.hash


# --- public vectors --------------------------------------------------------------------------


def _load(version: str, name: str) -> Any:
    return json.loads(vectors_path("tendermint", "rpc_captures", version, name).read_text())


@pytest.mark.parametrize("version", VERSIONS)
def test_real_cometbft_commit_survives_protobuf(version: str) -> None:
    genesis = _load(version, "genesis.json")["result"]["genesis"]
    vals = ct.decode_validator_set(genesis["validators"], params=P)
    signed = ct.decode_signed_header(
        _load(version, "commit_at_height_10.json")["result"]["signed_header"], params=P
    )
    block = ct.LightBlock(signed, vals, None)
    decoded = round_trip(block)
    same_block(decoded, block)
    # the header hash recomputed from the protobuf is the one the validators signed
    assert decoded.header.hash == decoded.commit.block_id.hash
    # and the decoded block still verifies as the real one did
    tm.verify_commit_light(decoded.signed_header, decoded.validator_set)
    # a kvstore chain never rotates its validator: the next set is provably the same
    assert decoded.next_validator_set == vals


def _single_step_blocks() -> list[tuple[str, Any]]:
    folder = vectors_path("tendermint", "model_based", "single_step")
    out = []
    for path in sorted(Path(folder).glob("*.json")):
        data = json.loads(path.read_text())
        for i, item in enumerate(data["input"]):
            out.append((f"{path.name}#{i}", item["block"]))
    return out


def test_model_based_blocks_survive_protobuf() -> None:
    checked = 0
    for name, block_json in _single_step_blocks():
        try:
            block = ct.decode_light_block(block_json, params=P)
        except VerificationError:
            continue  # inputs that are meant not to decode have nothing to round-trip
        decoded = round_trip(block)
        same_block(decoded, block)
        if block.next_validator_set is not None:
            expected = (
                block.next_validator_set
                if block.next_validator_set.hash == block.validator_set.hash
                else None
            )
            assert decoded.next_validator_set == expected, name
        checked += 1
    assert checked >= 90  # 99 inputs in 41 files


# --- generated blocks ------------------------------------------------------------------------


def _chain(params: ct.ChainParams = P, key: Any = None) -> TestChain:
    if key is None:
        return TestChain(validators=make_validators(4, powers=[7, 5, 3, 1]), params=params)
    return TestChain(validators=make_validators(4, key=key), params=params, chain_id="gm-chain")


def test_generated_blocks_round_trip_with_absent_and_nil_votes() -> None:
    chain = _chain()
    vals = chain.validators_at(3)
    block = chain.light_block(
        3, signers=[vals[0].address, vals[1].address], nil_signers=[vals[2].address]
    )
    decoded = round_trip(block)
    same_block(decoded, block)
    assert [s.block_id_flag for s in decoded.commit.signatures] == [2, 2, 3, 1]
    assert decoded.next_validator_set == block.validator_set


def test_the_encoder_writes_what_the_generated_classes_write() -> None:
    block = _chain().light_block(5)
    data = encode_light_block_proto(block)
    msg = types_pb2.LightBlock()
    msg.ParseFromString(data)
    assert msg.SerializeToString(deterministic=True) == data
    # spot checks of field placement against the generated definitions
    assert msg.signed_header.header.height == 5
    assert msg.signed_header.header.chain_id == "test-chain"
    assert msg.signed_header.header.version.block == 11
    assert msg.signed_header.commit.block_id.hash == block.header.hash
    assert msg.validator_set.total_voting_power == 16
    assert msg.validator_set.proposer.address == block.header.proposer_address
    assert [v.pub_key.ed25519 for v in msg.validator_set.validators] == [
        v.pub_key.data for v in block.validator_set.validators
    ]


def test_decoded_blocks_verify_sequentially_and_skipping() -> None:
    chain = _chain()
    options = tm.TrustOptions(
        chain_id="test-chain", trusting_period_ns=10**15, max_clock_drift_ns=10**9
    )
    decoded = {h: round_trip(chain.light_block(h)) for h in range(1, 12)}
    now = chain.time_at(11) + 10**9
    trusted = tm.TrustedBlock.from_light_block(decoded[1])
    for h in range(2, 12):
        tm.verify_light_block(trusted=trusted, untrusted=decoded[h], options=options, now=now)
        trusted = tm.TrustedBlock.from_light_block(decoded[h])
    result = tm.verify_skipping(
        trusted=tm.TrustedBlock.from_light_block(decoded[1]),
        target=11,
        fetch=decoded.__getitem__,
        options=options,
        now=now,
    )
    assert result.trusted.height == 11


def test_a_rotation_leaves_the_next_set_unknown() -> None:
    chain = _chain()
    chain.rotate(at_height=4, validators=make_validators(3, prefix="new"))
    before = round_trip(chain.light_block(3))
    assert before.header.next_validators_hash != before.validator_set.hash
    assert before.next_validator_set is None
    # the next set is the validator set of the next light block, hash-checked on use
    after = round_trip(chain.light_block(4))
    assert tm.TrustedBlock.of(before.header, after.validator_set).height == 3


@pytest.mark.parametrize("field", [16, 5])
def test_sm2_keys_in_the_chains_own_field_number(field: int) -> None:
    params = sm2_chain_params(signer_id=b"court-chain-01", hasher=RFC6962_SM3)
    kt = ct.sm2_key_type(params.key_types[0].scheme, proto_field=field)
    params = ct.ChainParams(hasher=RFC6962_SM3, key_types=(kt,))
    chain = _chain(params, key=lambda s: sm2_key(s, key_type=kt))
    block = chain.light_block(2)
    data = encode_light_block_proto(block)
    decoded = decode_light_block_proto(data, params=params)
    same_block(decoded, block)
    tm.verify_commit_light(decoded.signed_header, decoded.validator_set)
    msg = types_pb2.LightBlock()
    msg.ParseFromString(data)
    key = msg.validator_set.validators[0].pub_key
    assert key.WhichOneof("sum") == ("sm2" if field == 16 else None)
    # a chain expecting its SM2 keys in another field number refuses them
    other = ct.ChainParams(
        hasher=RFC6962_SM3,
        key_types=(ct.sm2_key_type(kt.scheme, proto_field=17 if field == 16 else 16),),
    )
    with pytest.raises(UnsupportedError):
        decode_light_block_proto(data, params=other)


def test_a_key_type_the_chain_does_not_enable_is_refused() -> None:
    data = encode_light_block_proto(_chain().light_block(2))
    sm2_only = sm2_chain_params()
    with pytest.raises(ct.UnknownKeyTypeError):
        decode_light_block_proto(data, params=sm2_only)


# --- negative cases --------------------------------------------------------------------------


@pytest.fixture(scope="module")
def block_bytes() -> bytes:
    chain = _chain()
    vals = chain.validators_at(4)
    return encode_light_block_proto(chain.light_block(4, signers=[v.address for v in vals[:3]]))


def _message(data: bytes) -> types_pb2.LightBlock:
    msg = types_pb2.LightBlock()
    msg.ParseFromString(data)
    return msg


def test_every_truncation_is_a_typed_error(block_bytes: bytes) -> None:
    for n in range(len(block_bytes)):
        with pytest.raises(VerificationError):
            decode_light_block_proto(block_bytes[:n], params=P)


def test_every_bit_flip_is_refused_or_changes_the_block(block_bytes: bytes) -> None:
    original = decode_light_block_proto(block_bytes, params=P)
    accepted = 0
    for i in range(len(block_bytes)):
        for bit in (0, 7):
            mutated = bytearray(block_bytes)
            mutated[i] ^= 1 << bit
            try:
                block = decode_light_block_proto(bytes(mutated), params=P)
            except VerificationError:
                continue
            accepted += 1
            # no two encodings of one block: what decodes is a different block
            assert (block.signed_header, block.validator_set) != (
                original.signed_header,
                original.validator_set,
            ), f"flip of bit {bit} at byte {i} decoded to the same block"
    assert accepted > 0  # flips inside signatures and hashes decode (and then fail to verify)


def _mutate(data: bytes, change: Any) -> bytes:
    msg = _message(data)
    change(msg)
    return msg.SerializeToString(deterministic=True)


def _set(path: str, value: Any) -> Any:
    """A mutation setting the field at dotted ``path`` (list indexes as numbers)."""

    def change(msg: types_pb2.LightBlock) -> None:
        *parents, last = path.split(".")
        node: Any = msg
        for part in parents:
            node = node[int(part)] if part.isdigit() else getattr(node, part)
        if isinstance(value, bytes | int | str):
            setattr(node, last, value)
        else:
            getattr(node, last).CopyFrom(value(msg))

    return change


def _clear(path: str) -> Any:
    def change(msg: types_pb2.LightBlock) -> None:
        *parents, last = path.split(".")
        node: Any = msg
        for part in parents:
            node = node[int(part)] if part.isdigit() else getattr(node, part)
        node.ClearField(last)

    return change


def _merge(path: str, raw: bytes) -> Any:
    def change(msg: types_pb2.LightBlock) -> None:
        node: Any = msg
        for part in path.split("."):
            node = node[int(part)] if part.isdigit() else getattr(node, part)
        node.MergeFromString(raw)

    return change


def _reverse_validators(msg: types_pb2.LightBlock) -> None:
    msg.validator_set.validators.reverse()


def _duplicate_validator(msg: types_pb2.LightBlock) -> None:
    msg.validator_set.validators[1].CopyFrom(msg.validator_set.validators[0])


STRANGER = validator_pb2.Validator(
    address=b"a" * 20, voting_power=1, pub_key=keys_pb2.PublicKey(ed25519=b"k" * 32)
)
SH = "signed_header"
SIG = f"{SH}.commit.signatures"
V0 = "validator_set.validators.0"

MALFORMED = [
    pytest.param(_clear("validator_set"), MalformedInputError, id="no-validator-set"),
    pytest.param(_clear(f"{SH}.commit"), MalformedInputError, id="no-commit"),
    pytest.param(_clear(f"{SH}.header.time"), MalformedInputError, id="no-time"),
    pytest.param(_clear(f"{SH}.header.version"), MalformedInputError, id="no-version"),
    pytest.param(_clear(f"{SH}.header.last_block_id"), MalformedInputError, id="no-last-block"),
    pytest.param(_clear(f"{SH}.commit.block_id"), MalformedInputError, id="no-commit-block-id"),
    pytest.param(_set(f"{SH}.header.time.nanos", 10**9), MalformedInputError, id="nanos"),
    pytest.param(_set(f"{SH}.header.time.seconds", -(10**12)), MalformedInputError, id="year"),
    pytest.param(_set(f"{SH}.header.height", -1), MalformedInputError, id="negative-height"),
    pytest.param(_set(f"{SH}.header.proposer_address", b"x" * 19), MalformedInputError, id="addr"),
    pytest.param(_set(f"{SH}.header.app_hash", b"x" * 300), LimitExceededError, id="app-hash"),
    pytest.param(_set(f"{SH}.header.chain_id", "c" * 51), LimitExceededError, id="chain-id"),
    pytest.param(_set(f"{SIG}.0.block_id_flag", 7), MalformedInputError, id="flag"),
    pytest.param(_set(f"{SIG}.0.signature", b""), MalformedInputError, id="no-signature"),
    pytest.param(
        _set(f"{SIG}.3.timestamp", lambda m: m.signed_header.header.time),
        MalformedInputError,
        id="absent-vote-with-time",
    ),
    pytest.param(_set("validator_set.total_voting_power", 17), MismatchError, id="total-power"),
    pytest.param(_clear("validator_set.total_voting_power"), MismatchError, id="no-total-power"),
    pytest.param(_set(f"{V0}.voting_power", 0), MalformedInputError, id="zero-power"),
    pytest.param(_set(f"{V0}.address", b"a" * 20), MalformedInputError, id="address-not-key"),
    pytest.param(_set(f"{V0}.pub_key.ed25519", b"k" * 31), MalformedInputError, id="key-length"),
    pytest.param(_merge(f"{V0}.pub_key", b"\x8a\x01\x01\x02"), MalformedInputError, id="two-keys"),
    pytest.param(_merge(f"{V0}.pub_key", b"\x88\x01\x01"), MalformedInputError, id="varint-key"),
    pytest.param(_clear(f"{V0}.pub_key"), MalformedInputError, id="no-key"),
    pytest.param(_duplicate_validator, ct.DuplicateValidatorError, id="duplicate-validator"),
    pytest.param(_reverse_validators, MalformedInputError, id="validator-order"),
    pytest.param(_set("validator_set.proposer.proposer_priority", 5), MalformedInputError, id="pp"),
    pytest.param(_set("validator_set.proposer", lambda m: STRANGER), MalformedInputError, id="p"),
    pytest.param(_merge(f"{SH}.header.version", b"\x18\x01"), MalformedInputError, id="unknown"),
]


@pytest.mark.parametrize(("change", "error"), MALFORMED)
def test_malformed_blocks_get_typed_errors(block_bytes: bytes, change: Any, error: type) -> None:
    with pytest.raises(error):
        decode_light_block_proto(_mutate(block_bytes, change), params=P)


def test_non_canonical_encodings_are_refused_unless_asked_for(block_bytes: bytes) -> None:
    # the same message with its two top-level fields swapped
    msg = _message(block_bytes)
    sh = msg.signed_header.SerializeToString(deterministic=True)
    vs = msg.validator_set.SerializeToString(deterministic=True)
    swapped = b"\x12" + _varint(len(vs)) + vs + b"\x0a" + _varint(len(sh)) + sh
    with pytest.raises(MalformedInputError, match="canonical"):
        decode_light_block_proto(swapped, params=P)
    lenient = decode_light_block_proto(swapped, params=P, canonical=False)
    assert lenient.signed_header == decode_light_block_proto(block_bytes, params=P).signed_header
    # unknown fields are refused either way
    with pytest.raises(MalformedInputError, match="does not know"):
        decode_light_block_proto(block_bytes + b"\x18\x01", params=P, canonical=False)


def _varint(n: int) -> bytes:
    out = b""
    while n >= 0x80:
        out += bytes([(n & 0x7F) | 0x80])
        n >>= 7
    return out + bytes([n])


def test_limits(block_bytes: bytes) -> None:
    with pytest.raises(LimitExceededError):
        decode_light_block_proto(block_bytes, params=P, max_bytes=len(block_bytes) - 1)
    with pytest.raises(LimitExceededError):
        decode_light_block_proto(block_bytes, params=P, max_validators=3)
    decode_light_block_proto(block_bytes, params=P, max_bytes=len(block_bytes), max_validators=4)
    with pytest.raises(MalformedInputError):
        decode_light_block_proto("not bytes", params=P)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "data", [b"", b"\x07", b"\xff" * 8, b"\x0a\x05abc", b'{"signed_header": {}}', bytes(64)]
)
def test_garbage_is_malformed(data: bytes) -> None:
    with pytest.raises(MalformedInputError):
        decode_light_block_proto(data, params=P)


@pytest.mark.fuzz
@settings(
    max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(data=st.data())
def test_fuzz_decoder_returns_a_block_or_a_typed_error(
    block_bytes: bytes, data: st.DataObject
) -> None:
    mode = data.draw(st.sampled_from(["random", "splice", "flip"]))
    if mode == "random":
        blob = data.draw(st.binary(max_size=512))
    elif mode == "splice":
        at = data.draw(st.integers(0, len(block_bytes)))
        blob = block_bytes[:at] + data.draw(st.binary(max_size=16)) + block_bytes[at:]
    else:
        blob = bytearray(block_bytes)
        for i in data.draw(st.lists(st.integers(0, len(blob) - 1), min_size=1, max_size=4)):
            blob[i] = data.draw(st.integers(0, 255))
        blob = bytes(blob)
    canonical = data.draw(st.booleans())
    try:
        block = decode_light_block_proto(blob, params=P, canonical=canonical)
    except VerificationError:
        return
    assert isinstance(block, ct.LightBlock)
    # whatever decodes re-encodes to something that decodes to the same block
    again = decode_light_block_proto(encode_light_block_proto(block), params=P)
    assert again.signed_header == block.signed_header
    assert again.validator_set == block.validator_set
