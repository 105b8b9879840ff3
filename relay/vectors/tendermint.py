"""CometBFT light-client vectors: tendermint-rs model-based single-step cases and real
CometBFT RPC captures.

``tendermint-single-step``: each file holds an initial trusted block (signed header and next
validator set), a trusting period in nanoseconds and a list of inputs, each a light block, a
``now`` and a verdict (SUCCESS / NOT_ENOUGH_TRUST / INVALID). Inputs are applied in order with
trust level 1/3 and zero clock drift; a SUCCESS input becomes the trusted block, as in
tendermint-rs ``light-client/tests/model_based.rs``. One case per input, named after its
expected verdict. ``expected`` is whether the verdict is SUCCESS; for a failing input ``ok``
means "not rejected with the expected kind of failure", so rejecting a NOT_ENOUGH_TRUST input
as INVALID (or the reverse) counts as a mismatch.

``tendermint-commit``: folders holding ``genesis.json`` and ``commit_at_height_N.json`` (and
optionally ``block_at_height_N.json``) captured from a running chain. The commit must verify
under the genesis validator set: the header hash recomputed from its fields equals the
commit's block id, the validator set hashes to the header's, and more than 2/3 of the power
signed. A block capture must hash to its block id, its ``last_commit`` must hash to the
header's ``last_commit_hash`` and verify for the previous block under the same validators.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from relay.vectors import CaseResult, VectorFileError, read_json, verdict, walk
from relay.verify.errors import MalformedInputError, VerificationError
from relay.verify.lightclient import cometbft_types as ct
from relay.verify.lightclient import tendermint as tm
from relay.verify.lightclient.cometbft_encoding import parse_rfc3339_ns

_VERDICTS = ("SUCCESS", "NOT_ENOUGH_TRUST", "INVALID")
_PARAMS = ct.DEFAULT_PARAMS
_COMMIT_FILE = re.compile(r"commit_at_height_(\d+)\.json")
_BLOCK_FILE = re.compile(r"block_at_height_(\d+)\.json")


def _field(obj: Any, key: str, path: Path) -> Any:
    if not isinstance(obj, dict) or key not in obj:
        raise VectorFileError(f"{path}: missing {key!r}")
    return obj[key]


def _is_single_step(path: Path) -> bool:
    return path.suffix == ".json"


def _run_input(
    trusted: tm.TrustedBlock, item: Any, options: tm.TrustOptions, path: Path
) -> tuple[str, tm.TrustedBlock | None, str | None]:
    """Verify one input; return (actual verdict, new trusted block on success, error text)."""
    block_json = _field(item, "block", path)
    now_text = _field(item, "now", path)
    try:
        now = parse_rfc3339_ns(now_text) if isinstance(now_text, str) else None
    except VerificationError as e:
        raise VectorFileError(f"{path}: bad 'now': {e}") from e
    if now is None:
        raise VectorFileError(f"{path}: 'now' must be a string")
    try:
        block = ct.decode_light_block(block_json, params=_PARAMS)
        tm.verify_light_block(trusted=trusted, untrusted=block, options=options, now=now)
        return "SUCCESS", tm.TrustedBlock.from_light_block(block), None
    except tm.NotEnoughTrust as e:
        return "NOT_ENOUGH_TRUST", None, f"{e.reason}: {e}"
    except VerificationError as e:
        return "INVALID", None, f"{e.reason}: {e}"


def run_single_step(path: Path) -> Iterator[CaseResult]:
    """Run every input of every model-based single-step file under ``path``."""
    for file in walk(path, _is_single_step):
        data = read_json(file)
        initial = _field(data, "initial", file)
        inputs = _field(data, "input", file)
        if not isinstance(inputs, list):
            raise VectorFileError(f"{file}: 'input' must be a list")
        period = _field(initial, "trusting_period", file)
        if not isinstance(period, str | int) or not str(period).isdigit():
            raise VectorFileError(f"{file}: 'trusting_period' must be nanoseconds")
        try:
            signed = ct.decode_signed_header(_field(initial, "signed_header", file), params=_PARAMS)
            next_vals = ct.decode_validator_set(
                _field(initial, "next_validator_set", file), params=_PARAMS
            )
            trusted = tm.TrustedBlock.of(signed.header, next_vals)
        except VerificationError as e:
            raise VectorFileError(f"{file}: initial trusted block does not decode: {e}") from e
        options = tm.TrustOptions(
            chain_id=signed.header.chain_id,
            trusting_period_ns=int(period),
            max_clock_drift_ns=0,
            trust_level=tm.ONE_THIRD,
            params=_PARAMS,
        )
        for i, item in enumerate(inputs):
            want = _field(item, "verdict", file)
            if want not in _VERDICTS:
                raise VectorFileError(f"{file}: input {i}: unknown verdict {want!r}")
            got, new_trusted, error = _run_input(trusted, item, options, file)
            if new_trusted is not None:
                trusted = new_trusted
            expected = want == "SUCCESS"
            ok = got == "SUCCESS" if expected else got != want
            if got != want and error is None:
                error = f"expected {want}, verified SUCCESS"
            elif got != want:
                error = f"expected {want}, got {got}: {error}"
            yield CaseResult(str(file), f"input {i} ({want})", ok, expected, error)


def _genesis_validators(path: Path) -> tuple[str, ct.ValidatorSet]:
    data = read_json(path)
    genesis = data.get("result", {}).get("genesis") if isinstance(data, dict) else None
    if not isinstance(genesis, dict):
        raise VectorFileError(f"{path}: not a /genesis response")
    try:
        vals = ct.decode_validator_set(_field(genesis, "validators", path), params=_PARAMS)
    except VerificationError as e:
        raise VectorFileError(f"{path}: genesis validators do not decode: {e}") from e
    chain_id = _field(genesis, "chain_id", path)
    if not isinstance(chain_id, str):
        raise VectorFileError(f"{path}: chain_id must be a string")
    return chain_id, vals


def verify_commit_response(
    response: Any, *, chain_id: str, validators: ct.ValidatorSet
) -> tm.Tally:
    """Check a ``/commit`` response: the signed header is for ``chain_id``, signed by more
    than 2/3 of ``validators``, and its commit is for the header's recomputed hash."""
    result = response.get("result") if isinstance(response, dict) else None
    if not isinstance(result, dict):
        raise MalformedInputError("not a /commit response")
    signed = ct.decode_signed_header(result.get("signed_header"), params=_PARAMS)
    block = ct.LightBlock(signed, validators)
    tm.validate_light_block(block, chain_id=chain_id, params=_PARAMS)
    tally, _ = tm.verify_commit_light(signed, validators)
    return tally


def verify_block_response(response: Any, *, chain_id: str, validators: ct.ValidatorSet) -> tm.Tally:
    """Check a ``/block`` response: its header hashes to its block id, its ``last_commit``
    hashes to the header's ``last_commit_hash`` and is signed by more than 2/3 of
    ``validators`` for the previous block (the header's ``last_block_id``)."""
    result = response.get("result") if isinstance(response, dict) else None
    if not isinstance(result, dict):
        raise MalformedInputError("not a /block response")
    block = result.get("block")
    if not isinstance(block, dict):
        raise MalformedInputError("/block response lacks a block")
    header = ct.decode_header(block.get("header"), params=_PARAMS)
    block_id = ct.decode_block_id(result.get("block_id"), "block_id", params=_PARAMS)
    if block_id.hash != header.hash:
        raise tm.HeaderMismatch(
            "block header does not hash to its block id",
            expected=block_id.hash,
            calculated=header.hash,
        )
    last_commit = ct.decode_commit(block.get("last_commit"), params=_PARAMS)
    calculated = ct.commit_hash(last_commit, params=_PARAMS)
    if calculated != header.last_commit_hash:
        raise tm.HeaderMismatch(
            "last commit does not hash to the header's last_commit_hash",
            expected=header.last_commit_hash,
            calculated=calculated,
        )
    if last_commit.block_id != header.last_block_id:
        raise tm.HeaderMismatch(
            "last commit is not for the header's last block id",
            expected=header.last_block_id.hash,
            calculated=last_commit.block_id.hash,
        )
    if last_commit.height != header.height - 1:
        raise tm.HeaderMismatch(
            "last commit is not for the previous height",
            expected=header.height - 1,
            calculated=last_commit.height,
        )
    tally, _ = tm.verify_commit(last_commit, validators, chain_id=chain_id)
    return tally


def _is_capture(path: Path) -> bool:
    return bool(_COMMIT_FILE.fullmatch(path.name) or _BLOCK_FILE.fullmatch(path.name))


def run_commit(path: Path) -> Iterator[CaseResult]:
    """Verify every ``commit_at_height_N.json`` and ``block_at_height_N.json`` under ``path``
    against the ``genesis.json`` of its folder."""
    for file in walk(path, _is_capture):
        genesis = file.parent / "genesis.json"
        if not genesis.is_file():
            raise VectorFileError(f"{file}: no genesis.json beside it")
        chain_id, validators = _genesis_validators(genesis)
        response = read_json(file)
        check = (
            verify_commit_response if _COMMIT_FILE.fullmatch(file.name) else verify_block_response
        )

        def run(
            response: Any = response,
            check: Any = check,
            chain_id: str = chain_id,
            validators: ct.ValidatorSet = validators,
        ) -> None:
            check(response, chain_id=chain_id, validators=validators)

        yield verdict(file, file.name, True, run)
