"""CometBFT public vectors: tendermint-rs model-based single-step cases, and real v0.37/v0.38
RPC captures that must stop verifying when any signature byte, header field, commit field or
validator key is changed."""

from __future__ import annotations

import base64
import copy
import hashlib
import json
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from conftest import vectors_path

from relay.vectors import VectorFileError, load_runner
from relay.vectors import tendermint as tv
from relay.verify.errors import MalformedInputError, VerificationError
from relay.verify.lightclient import cometbft_types as ct
from relay.verify.lightclient import tendermint as tm
from relay.verify.lightclient.cometbft_encoding import parse_rfc3339_ns

VERSIONS = ("v0_37", "v0_38")


# --- model-based single-step vectors ---------------------------------------------------------


def test_every_single_step_input_gets_its_verdict() -> None:
    results = list(
        load_runner("tendermint-single-step")(
            vectors_path("tendermint", "model_based", "single_step")
        )
    )
    assert len({r.file for r in results}) == 41
    assert len(results) == 99
    mismatched = [r for r in results if not r.matched]
    assert not mismatched, mismatched[:3]
    kinds = {r.case.split("(")[1].rstrip(")") for r in results}
    assert kinds == {"SUCCESS", "NOT_ENOUGH_TRUST", "INVALID"}


def _copy_with_verdict(tmp_path: Path, name: str, index: int, verdict: str) -> Path:
    src = vectors_path("tendermint", "model_based", "single_step", name)
    data = json.loads(src.read_text())
    data["input"][index]["verdict"] = verdict
    dst = tmp_path / name
    dst.write_text(json.dumps(data))
    return dst


@pytest.mark.parametrize(
    ("name", "index", "was", "claim"),
    [
        ("MC4_4_faulty_TestSuccess.json", 0, "NOT_ENOUGH_TRUST", "INVALID"),
        ("MC4_4_faulty_TestFailure.json", 2, "INVALID", "NOT_ENOUGH_TRUST"),
        ("MC4_4_faulty_TestSuccess.json", 1, "SUCCESS", "INVALID"),
        ("MC4_4_faulty_TestFailure.json", 2, "INVALID", "SUCCESS"),
    ],
)
def test_a_wrong_kind_of_verdict_is_a_mismatch(
    tmp_path: Path, name: str, index: int, was: str, claim: str
) -> None:
    path = _copy_with_verdict(tmp_path, name, index, claim)
    results = list(tv.run_single_step(path))
    assert not results[index].matched
    assert f"expected {claim}" in (results[index].error or "")
    # the untouched original agrees with the verifier
    original = list(
        tv.run_single_step(vectors_path("tendermint", "model_based", "single_step", name))
    )
    assert original[index].matched and was in original[index].case


def test_suite_descriptor_files_are_not_vector_files() -> None:
    # model_based/MC*_faulty.json only list the test names of a TLA+ model; no cases inside.
    with pytest.raises(VectorFileError):
        list(tv.run_single_step(vectors_path("tendermint", "model_based", "MC4_4_faulty.json")))


# --- RPC captures ----------------------------------------------------------------------------


def test_rpc_captures_verify() -> None:
    results = list(load_runner("tendermint-commit")(vectors_path("tendermint", "rpc_captures")))
    assert sorted(Path(r.file).parent.name + "/" + r.case for r in results) == [
        f"{v}/{f}_at_height_10.json" for v in VERSIONS for f in ("block", "commit")
    ]
    assert all(r.ok and r.matched for r in results), results


def _load(version: str, name: str) -> Any:
    return json.loads(vectors_path("tendermint", "rpc_captures", version, name).read_text())


def _genesis(version: str) -> tuple[str, ct.ValidatorSet, dict[str, Any]]:
    genesis = _load(version, "genesis.json")["result"]["genesis"]
    vals = ct.decode_validator_set(genesis["validators"], params=ct.DEFAULT_PARAMS)
    return genesis["chain_id"], vals, genesis


def _check_commit(version: str, response: Any, vals: ct.ValidatorSet | None = None) -> None:
    chain_id, genesis_vals, _ = _genesis(version)
    tv.verify_commit_response(response, chain_id=chain_id, validators=vals or genesis_vals)


@pytest.mark.parametrize("version", VERSIONS)
def test_unchanged_commit_verifies_with_the_expected_tally(version: str) -> None:
    chain_id, vals, _ = _genesis(version)
    tally = tv.verify_commit_response(
        _load(version, "commit_at_height_10.json"), chain_id=chain_id, validators=vals
    )
    assert tally == tm.Tally(tallied=10, needed=6, total=10)


def _flip_base64(value: str, byte: int) -> str:
    raw = bytearray(base64.b64decode(value))
    raw[byte] ^= 0x01
    return base64.b64encode(bytes(raw)).decode()


@pytest.mark.parametrize("version", VERSIONS)
@pytest.mark.parametrize("byte", range(64))
def test_any_signature_byte_changed_fails(version: str, byte: int) -> None:
    response = _load(version, "commit_at_height_10.json")
    sig = response["result"]["signed_header"]["commit"]["signatures"][0]
    sig["signature"] = _flip_base64(sig["signature"], byte)
    with pytest.raises(tm.CommitSignatureInvalid):
        _check_commit(version, response)


def _flip_hex(value: str) -> str:
    return ("1" if value[0] == "0" else "0") + value[1:]


def _bump_decimal(value: str) -> str:
    return str(int(value) + 1)


def _bump_time(value: str) -> str:
    # change the last fraction digit: one nanosecond
    digit = int(value[-2])
    return value[:-2] + str((digit + 1) % 10) + "Z"


_HASH_FIELDS = (
    "last_commit_hash",
    "data_hash",
    "validators_hash",
    "next_validators_hash",
    "consensus_hash",
    "app_hash",
    "last_results_hash",
    "evidence_hash",
    "proposer_address",
)


def _flip_field(name: str) -> Callable[[dict[str, Any]], None]:
    def mutate(h: dict[str, Any]) -> None:
        h[name] = _flip_hex(h[name])

    return mutate


HEADER_MUTATIONS: dict[str, Callable[[dict[str, Any]], None]] = {
    "version.block": lambda h: h["version"].update(block=_bump_decimal(h["version"]["block"])),
    "version.app": lambda h: h["version"].update(app=_bump_decimal(h["version"]["app"])),
    "chain_id": lambda h: h.update(chain_id=h["chain_id"] + "x"),
    "height": lambda h: h.update(height=_bump_decimal(h["height"])),
    "time": lambda h: h.update(time=_bump_time(h["time"])),
    "last_block_id.hash": lambda h: h["last_block_id"].update(
        hash=_flip_hex(h["last_block_id"]["hash"])
    ),
    "last_block_id.parts.total": lambda h: h["last_block_id"]["parts"].update(total=2),
    "last_block_id.parts.hash": lambda h: h["last_block_id"]["parts"].update(
        hash=_flip_hex(h["last_block_id"]["parts"]["hash"])
    ),
    **{name: _flip_field(name) for name in _HASH_FIELDS},
}


@pytest.mark.parametrize("version", VERSIONS)
@pytest.mark.parametrize("field", sorted(HEADER_MUTATIONS))
def test_any_header_field_changed_fails(version: str, field: str) -> None:
    response = _load(version, "commit_at_height_10.json")
    before = json.dumps(response, sort_keys=True)
    HEADER_MUTATIONS[field](response["result"]["signed_header"]["header"])
    assert json.dumps(response, sort_keys=True) != before
    with pytest.raises(VerificationError):
        _check_commit(version, response)


COMMIT_MUTATIONS: dict[str, Callable[[dict[str, Any]], None]] = {
    "height": lambda c: c.update(height=_bump_decimal(c["height"])),
    "round": lambda c: c.update(round=c["round"] + 1),
    "block_id.hash": lambda c: c["block_id"].update(hash=_flip_hex(c["block_id"]["hash"])),
    "block_id.parts.total": lambda c: c["block_id"]["parts"].update(total=2),
    "block_id.parts.hash": lambda c: c["block_id"]["parts"].update(
        hash=_flip_hex(c["block_id"]["parts"]["hash"])
    ),
    "signature.timestamp": lambda c: c["signatures"][0].update(
        timestamp=_bump_time(c["signatures"][0]["timestamp"])
    ),
    "signature.validator_address": lambda c: c["signatures"][0].update(
        validator_address=_flip_hex(c["signatures"][0]["validator_address"])
    ),
    "signature.block_id_flag nil": lambda c: c["signatures"][0].update(block_id_flag=3),
    "signature.block_id_flag absent": lambda c: c["signatures"][0].update(
        block_id_flag=1, validator_address="", signature=None, timestamp=None
    ),
}


@pytest.mark.parametrize("version", VERSIONS)
@pytest.mark.parametrize("field", sorted(COMMIT_MUTATIONS))
def test_any_commit_field_changed_fails(version: str, field: str) -> None:
    response = _load(version, "commit_at_height_10.json")
    COMMIT_MUTATIONS[field](response["result"]["signed_header"]["commit"])
    with pytest.raises(VerificationError):
        _check_commit(version, response)


@pytest.mark.parametrize("version", VERSIONS)
@pytest.mark.parametrize("byte", range(32))
def test_any_validator_key_byte_changed_fails(version: str, byte: int) -> None:
    _, _, genesis = _genesis(version)
    validator = copy.deepcopy(genesis["validators"][0])
    validator["pub_key"]["value"] = _flip_base64(validator["pub_key"]["value"], byte)
    # keeping the address: the key no longer derives it
    with pytest.raises(MalformedInputError):
        ct.decode_validator_set([validator], params=ct.DEFAULT_PARAMS)
    # with the address derived from the changed key: the set no longer hashes to the header
    key = base64.b64decode(validator["pub_key"]["value"])
    validator["address"] = hashlib.sha256(key).hexdigest()[:40].upper()
    vals = ct.decode_validator_set([validator], params=ct.DEFAULT_PARAMS)
    with pytest.raises(tm.HeaderMismatch):
        _check_commit(version, _load(version, "commit_at_height_10.json"), vals)


@pytest.mark.parametrize("version", VERSIONS)
def test_more_voting_power_for_the_same_key_fails(version: str) -> None:
    _, _, genesis = _genesis(version)
    validator = copy.deepcopy(genesis["validators"][0])
    validator["power"] = _bump_decimal(validator["power"])
    vals = ct.decode_validator_set([validator], params=ct.DEFAULT_PARAMS)
    with pytest.raises(tm.HeaderMismatch):
        _check_commit(version, _load(version, "commit_at_height_10.json"), vals)


@pytest.mark.parametrize("version", VERSIONS)
@pytest.mark.parametrize(
    "mutation",
    ["last_commit signature", "last_commit timestamp", "block_id", "last_commit_hash"],
)
def test_block_capture_checks_fail_when_changed(version: str, mutation: str) -> None:
    chain_id, vals, _ = _genesis(version)
    response = _load(version, "block_at_height_10.json")
    tv.verify_block_response(copy.deepcopy(response), chain_id=chain_id, validators=vals)
    block = response["result"]["block"]
    sig = block["last_commit"]["signatures"][0]
    if mutation == "last_commit signature":
        sig["signature"] = _flip_base64(sig["signature"], 5)
    elif mutation == "last_commit timestamp":
        sig["timestamp"] = _bump_time(sig["timestamp"])
    elif mutation == "block_id":
        response["result"]["block_id"]["hash"] = _flip_hex(response["result"]["block_id"]["hash"])
    else:
        block["header"]["last_commit_hash"] = _flip_hex(block["header"]["last_commit_hash"])
    with pytest.raises(VerificationError):
        tv.verify_block_response(response, chain_id=chain_id, validators=vals)


def test_commit_runner_fails_on_a_tampered_capture(tmp_path: Path) -> None:
    for name in ("genesis.json", "commit_at_height_10.json"):
        data = _load("v0_38", name)
        if name.startswith("commit"):
            header = data["result"]["signed_header"]["header"]
            header["app_hash"] = _flip_hex(header["app_hash"])
        (tmp_path / name).write_text(json.dumps(data))
    results = list(tv.run_commit(tmp_path))
    assert len(results) == 1 and not results[0].ok and not results[0].matched
    assert "HEADER_MISMATCH" in (results[0].error or "")


def test_commit_runner_needs_a_genesis(tmp_path: Path) -> None:
    (tmp_path / "commit_at_height_10.json").write_text(
        json.dumps(_load("v0_38", "commit_at_height_10.json"))
    )
    with pytest.raises(VectorFileError):
        list(tv.run_commit(tmp_path))


def test_cli_exits_one_when_a_capture_does_not_verify(tmp_path: Path) -> None:
    for name in ("genesis.json", "commit_at_height_10.json"):
        data = _load("v0_37", name)
        if name.startswith("commit"):
            sig = data["result"]["signed_header"]["commit"]["signatures"][0]
            sig["signature"] = _flip_base64(sig["signature"], 0)
        (tmp_path / name).write_text(json.dumps(data))
    run = subprocess.run(
        [
            sys.executable,
            "-m",
            "relay.cli",
            "vectors",
            "check",
            "--kind",
            "tendermint-commit",
            str(tmp_path),
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert run.returncode == 1, run.stderr
    line = json.loads(run.stdout)
    assert line["ok"] is False and "COMMIT_SIGNATURE_INVALID" in line["error"]


@pytest.mark.parametrize("version", VERSIONS)
def test_real_commit_verifies_as_a_skip_from_the_genesis_anchor(version: str) -> None:
    chain_id, vals, genesis = _genesis(version)
    anchor = tm.TrustedBlock.from_genesis(
        chain_id=chain_id,
        genesis_time_ns=parse_rfc3339_ns(genesis["genesis_time"]),
        validators=vals,
    )
    status = _load(version, "status.json")["result"]["sync_info"]
    now = parse_rfc3339_ns(status["latest_block_time"])
    signed = ct.decode_signed_header(
        _load(version, "commit_at_height_10.json")["result"]["signed_header"],
        params=ct.DEFAULT_PARAMS,
    )
    options = tm.TrustOptions(
        chain_id=chain_id, trusting_period_ns=14 * 24 * 3600 * 10**9, max_clock_drift_ns=0
    )
    result = tm.verify_light_block(
        trusted=anchor, untrusted=ct.LightBlock(signed, vals, vals), options=options, now=now
    )
    assert not result.adjacent and result.trusting == tm.Tally(10, 3, 10)
    # and not before the header's own time
    with pytest.raises(tm.HeaderFromFuture):
        tm.verify_light_block(
            trusted=anchor,
            untrusted=ct.LightBlock(signed, vals, vals),
            options=options,
            now=signed.header.time_ns,
        )
