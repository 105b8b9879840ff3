"""Decoding CometBFT light-block JSON: typed errors for wrong lengths, unknown key types,
duplicate validators, absurd counts and powers and non-canonical encodings; round trips of
generated blocks; a short fuzz run that must end in a value or a typed error."""

from __future__ import annotations

import contextlib
import copy
import json
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from relay.testing.tendermint import SECOND, TestChain, light_block_json, make_validators
from relay.verify.errors import (
    LimitExceededError,
    MalformedInputError,
    UnsupportedError,
    VerificationError,
)
from relay.verify.lightclient import cometbft_types as ct
from relay.verify.lightclient import tendermint as tm

P = ct.DEFAULT_PARAMS


@pytest.fixture(scope="module")
def block_json() -> dict[str, Any]:
    chain = TestChain(validators=make_validators(4, powers=[7, 5, 3, 1]))
    return light_block_json(chain.light_block(3))


def decode(value: Any) -> ct.LightBlock:
    return ct.decode_light_block(value, params=P)


def mutated(base: dict[str, Any], path: str, value: Any) -> dict[str, Any]:
    out = copy.deepcopy(base)
    node: Any = out
    keys = path.split(".")
    for k in keys[:-1]:
        node = node[int(k)] if isinstance(node, list) else node[k]
    last = keys[-1]
    if isinstance(node, list):
        node[int(last)] = value
    elif value is _DELETE:
        del node[last]
    else:
        node[last] = value
    return out


_DELETE = object()
SH = "signed_header"
H = f"{SH}.header"
C = f"{SH}.commit"
V0 = "validator_set.validators.0"


def test_generated_block_round_trips(block_json: dict[str, Any]) -> None:
    chain = TestChain(validators=make_validators(4, powers=[7, 5, 3, 1]))
    assert decode(json.loads(json.dumps(block_json))) == chain.light_block(3)


def test_validator_order_in_json_does_not_matter(block_json: dict[str, Any]) -> None:
    shuffled = copy.deepcopy(block_json)
    shuffled["validator_set"]["validators"].reverse()
    assert decode(shuffled).validator_set == decode(block_json).validator_set


@pytest.mark.parametrize(
    ("path", "value", "error"),
    [
        # wrong lengths
        (f"{H}.proposer_address", "AB" * 19, MalformedInputError),
        (f"{H}.data_hash", "AB" * 31, MalformedInputError),
        (f"{H}.data_hash", "AB" * 33, LimitExceededError),
        (f"{H}.validators_hash", "", MalformedInputError),
        (f"{H}.app_hash", "AB" * 257, LimitExceededError),
        (f"{H}.last_block_id.parts.hash", "AB" * 16, MalformedInputError),
        (f"{C}.signatures.0.validator_address", "AB" * 21, LimitExceededError),
        (f"{V0}.pub_key.value", "AAAA", MalformedInputError),
        (f"{V0}.address", "AB" * 20, MalformedInputError),  # not derived from the key
        (f"{H}.chain_id", "c" * 51, LimitExceededError),
        # unknown key types
        (f"{V0}.pub_key.type", "tendermint/PubKeySecp256k1", ct.UnknownKeyTypeError),
        (f"{V0}.pub_key.type", "tendermint/PubKeyBls12_381", UnsupportedError),
        # numbers out of range or not canonical
        (f"{H}.height", "0", MalformedInputError),
        (f"{H}.height", "-3", MalformedInputError),
        (f"{H}.height", "03", MalformedInputError),
        (f"{H}.height", "+3", MalformedInputError),
        (f"{H}.height", " 3", MalformedInputError),
        (f"{H}.height", "9223372036854775808", MalformedInputError),
        (f"{H}.height", True, MalformedInputError),
        (f"{H}.height", 3.0, MalformedInputError),
        (f"{C}.round", -1, MalformedInputError),
        (f"{C}.round", "1", MalformedInputError),  # rounds are JSON numbers
        (f"{C}.signatures.0.block_id_flag", 4, MalformedInputError),
        (f"{C}.signatures.0.block_id_flag", "2", MalformedInputError),
        (f"{V0}.voting_power", "0", MalformedInputError),
        (f"{V0}.voting_power", "-5", MalformedInputError),
        (f"{V0}.voting_power", str(2**60 + 1), LimitExceededError),
        # non-canonical text
        (f"{H}.data_hash", "ABC", MalformedInputError),
        (f"{H}.data_hash", "AB CD" + "AB" * 30, MalformedInputError),
        (f"{C}.signatures.0.signature", "AAAA AAAA", MalformedInputError),
        (f"{V0}.pub_key.value", "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8", MalformedInputError),
        (
            f"{V0}.pub_key.value",
            "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh9=",
            MalformedInputError,
        ),
        (f"{H}.time", "2023-11-14T22:13:23+00:00", MalformedInputError),
        (f"{H}.time", "2023-11-14T22:13:23.1234567890Z", MalformedInputError),
        (f"{H}.time", "2023-02-29T22:13:23Z", MalformedInputError),
        (f"{H}.time", "2023-11-14T24:00:00Z", MalformedInputError),
        (f"{H}.time", "2023-11-14 22:13:23Z", MalformedInputError),
        (f"{H}.time", "0000-12-31T23:59:59Z", MalformedInputError),
        # shapes
        (SH, [], MalformedInputError),
        (f"{H}.version", _DELETE, MalformedInputError),
        (f"{C}.signatures", {}, MalformedInputError),
        (f"{C}.signatures.0", "sig", MalformedInputError),
        (f"{C}.signatures", [], MalformedInputError),
        (f"{C}.block_id", None, MalformedInputError),
        (f"{H}.chain_id", "\ud800", MalformedInputError),
    ],
)
def test_bad_fields_raise_typed_errors(
    block_json: dict[str, Any], path: str, value: Any, error: type[Exception]
) -> None:
    with pytest.raises(error):
        decode(mutated(block_json, path, value))


def test_duplicate_validators_are_rejected(block_json: dict[str, Any]) -> None:
    doubled = copy.deepcopy(block_json)
    vals = doubled["validator_set"]["validators"]
    vals.append(copy.deepcopy(vals[0]))
    with pytest.raises(ct.DuplicateValidatorError):
        decode(doubled)


def test_absurd_validator_and_signature_counts_are_refused_before_work() -> None:
    one = light_block_json(TestChain(validators=make_validators(1)).light_block(2))
    many = copy.deepcopy(one)
    many["validator_set"]["validators"] = [0] * (ct.MAX_VALIDATORS + 1)
    with pytest.raises(LimitExceededError):
        decode(many)
    many = copy.deepcopy(one)
    many[SH]["commit"]["signatures"] = [0] * (ct.MAX_VALIDATORS + 1)
    with pytest.raises(LimitExceededError):
        decode(many)


def test_total_voting_power_is_capped() -> None:
    assert ct.MAX_TOTAL_VOTING_POWER == 2**60 - 1  # int64 max / 8
    too_much = make_validators(8, powers=2**57)  # each allowed, together 2**60
    with pytest.raises(LimitExceededError):
        ct.make_validator_set([v.validator() for v in too_much], params=P)
    ok = make_validators(7, powers=2**57)
    vs = ct.make_validator_set([v.validator() for v in ok], params=P)
    assert vs.total_voting_power == 7 * 2**57
    with pytest.raises(LimitExceededError):
        ct.make_validator_set([make_validators(1, powers=2**60)[0].validator()], params=P)


def test_a_short_signature_decodes_but_does_not_verify(block_json: dict[str, Any]) -> None:
    block = decode(mutated(block_json, f"{C}.signatures.0.signature", "AAAA"))
    chain = TestChain(validators=make_validators(4, powers=[7, 5, 3, 1]))
    trusted = tm.TrustedBlock.from_light_block(chain.light_block(2))
    options = tm.TrustOptions(
        chain_id="test-chain", trusting_period_ns=10**15, max_clock_drift_ns=0
    )
    with pytest.raises(tm.CommitSignatureInvalid):
        tm.verify_light_block(
            trusted=trusted, untrusted=block, options=options, now=chain.time_at(3) + SECOND
        )


def test_absent_signature_must_be_empty(block_json: dict[str, Any]) -> None:
    absent = {"block_id_flag": 1, "validator_address": "", "timestamp": None, "signature": None}
    ok = mutated(block_json, f"{C}.signatures.3", absent)
    decode(ok)
    for key, value in (
        ("validator_address", "AB" * 20),
        ("signature", "AAAA"),
        ("timestamp", "2023-11-14T22:13:23Z"),
    ):
        with pytest.raises(MalformedInputError):
            decode(mutated(block_json, f"{C}.signatures.3", {**absent, key: value}))


def test_both_part_set_header_spellings_decode_alike(block_json: dict[str, Any]) -> None:
    rs = copy.deepcopy(block_json)
    bid = rs[SH]["commit"]["block_id"]
    bid["part_set_header"] = bid.pop("parts")
    assert decode(rs) == decode(block_json)


def test_key_type_configuration_is_checked() -> None:
    with pytest.raises(ValueError):
        ct.ChainParams(key_types=(ct.ED25519_KEY, ct.ED25519_KEY))


# --- fuzz ------------------------------------------------------------------------------------

_json = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**70), 2**70) | st.text(max_size=80),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=12), inner, max_size=4)
    ),
    max_leaves=12,
)


def _paths(value: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    out: list[tuple[Any, ...]] = []
    if isinstance(value, dict):
        for k, v in value.items():
            out.append((*prefix, k))
            out.extend(_paths(v, (*prefix, k)))
    elif isinstance(value, list):
        for i, v in enumerate(value[:3]):
            out.append((*prefix, i))
            out.extend(_paths(v, (*prefix, i)))
    return out


def _replaced(base: Any, path: tuple[Any, ...], value: Any) -> Any:
    out = copy.deepcopy(base)
    node = out
    for k in path[:-1]:
        node = node[k]
    node[path[-1]] = value
    return out


@pytest.mark.fuzz
@settings(
    max_examples=400, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(data=st.data())
def test_fuzz_light_block_decoder(block_json: dict[str, Any], data: st.DataObject) -> None:
    """Replace fields of a valid light block with arbitrary JSON: the decoder returns a value
    or raises a VerificationError, and whatever decodes verifies or is rejected cleanly."""
    value = block_json
    for _ in range(data.draw(st.integers(1, 3))):
        paths = _paths(value)
        if not paths:
            break
        path = data.draw(st.sampled_from(paths))
        value = _replaced(value, path, data.draw(_json))
    try:
        block = decode(value)
    except VerificationError:
        return
    chain = TestChain(validators=make_validators(4, powers=[7, 5, 3, 1]))
    trusted = tm.TrustedBlock.from_light_block(chain.light_block(2))
    options = tm.TrustOptions(
        chain_id="test-chain", trusting_period_ns=10**15, max_clock_drift_ns=0
    )
    with contextlib.suppress(VerificationError):
        tm.verify_light_block(
            trusted=trusted, untrusted=block, options=options, now=chain.time_at(3) + SECOND
        )


@pytest.mark.fuzz
@settings(max_examples=300, deadline=None)
@given(value=_json)
def test_fuzz_arbitrary_json_never_crashes(value: Any) -> None:
    for decoder in (ct.decode_light_block, ct.decode_validator_set, ct.decode_signed_header):
        with contextlib.suppress(VerificationError):
            decoder(value, params=P)
