"""Runners for the cosmos/ics23 public test vectors (``testdata/`` of cosmos/ics23).

``run_proofs`` checks the 18 proof files ``{iavl,tendermint,smt}/{exist,nonexist}_*.json``
(hex ``key``, ``value``, ``root``, ``proof``; the folder names the spec; an optional
``want_err: true`` marks a negative case). ``run_unit`` checks the 7 ``Test*Data.json`` files
of upstream's Go unit tests: protobuf-JSON messages (base64 bytes, integer enums) keyed by
case name, with Go's field names (matched case-insensitively, as Go's ``encoding/json`` does).
"""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from google.protobuf import json_format
from google.protobuf.message import Message

from relay.pb.cosmos.ics23.v1 import proofs_pb2 as pb
from relay.vectors import CaseResult, VectorFileError, read_json, verdict, walk
from relay.verify.errors import MismatchError
from relay.verify.merkle import ics23

_PROOF_FILE = re.compile(r"(exist|nonexist)_\w+\.json")


# --------------------------------------------------------------------------------------------
# Field helpers: every malformed field is a VectorFileError naming the file and field.


def _field(case: dict[str, Any], name: str) -> Any:
    """``case[name]`` matched case-insensitively (Go json semantics); None when absent."""
    if name in case:
        return case[name]
    lowered = name.lower()
    for key, value in case.items():
        if key.lower() == lowered:
            return value
    return None


def _hex(case: dict[str, Any], name: str, file: Path) -> bytes:
    value = case.get(name)
    if not isinstance(value, str):
        raise VectorFileError(f"{file}: field {name!r} must be a hex string")
    try:
        return bytes.fromhex(value)
    except ValueError as e:
        raise VectorFileError(f"{file}: field {name!r} is not hex: {e}") from e


def _b64(value: Any, file: Path, name: str) -> bytes:
    if value is None:
        return b""  # Go decodes JSON null into a nil slice
    if not isinstance(value, str):
        raise VectorFileError(f"{file}: field {name!r} must be a base64 string or null")
    try:
        return base64.b64decode(value, validate=True)
    except binascii.Error as e:
        raise VectorFileError(f"{file}: field {name!r} is not base64: {e}") from e


def _bool(value: Any, file: Path, name: str) -> bool:
    if value is None:
        return False
    if not isinstance(value, bool):
        raise VectorFileError(f"{file}: field {name!r} must be a boolean")
    return value


def _parse(value: Any, message: Message, file: Path, name: str) -> Any:
    if value is None:
        return message
    if not isinstance(value, dict):
        raise VectorFileError(f"{file}: field {name!r} must be an object")
    try:
        return json_format.ParseDict(value, message)
    except json_format.ParseError as e:
        raise VectorFileError(f"{file}: field {name!r} is not a valid message: {e}") from e


def _leaf(value: Any, file: Path, name: str) -> ics23.LeafOp:
    m = _parse(value, pb.LeafOp(), file, name)
    return ics23.LeafOp(m.hash, m.prehash_key, m.prehash_value, m.length, m.prefix)


def _inner(value: Any, file: Path, name: str) -> ics23.InnerOp:
    m = _parse(value, pb.InnerOp(), file, name)
    return ics23.InnerOp(m.hash, m.prefix, m.suffix)


def _spec(value: Any, file: Path, name: str) -> ics23.ProofSpec:
    m = _parse(value, pb.ProofSpec(), file, name)
    ls, ins = m.leaf_spec, m.inner_spec
    return ics23.ProofSpec(
        leaf_spec=ics23.LeafOp(ls.hash, ls.prehash_key, ls.prehash_value, ls.length, ls.prefix),
        inner_spec=ics23.InnerSpec(
            child_order=tuple(ins.child_order),
            child_size=ins.child_size,
            min_prefix_length=ins.min_prefix_length,
            max_prefix_length=ins.max_prefix_length,
            empty_child=ins.empty_child,
            hash=ins.hash,
        ),
        max_depth=m.max_depth,
        min_depth=m.min_depth,
        prehash_key_before_comparison=m.prehash_key_before_comparison,
    )


def _existence_proof(value: Any, file: Path, name: str) -> ics23.ExistenceProof:
    # Go through the wire format so the vectors also exercise the real decoder.
    m = _parse(value, pb.ExistenceProof(), file, name)
    wire = pb.CommitmentProof(exist=m).SerializeToString()
    proof = ics23.decode_commitment_proof(wire)
    if not isinstance(proof, ics23.ExistenceProof):
        raise VectorFileError(f"{file}: field {name!r} did not decode as an existence proof")
    return proof


def _equal(name: str, expected: bytes | tuple[bool, bool], calculated: object) -> None:
    if calculated != expected:
        raise MismatchError(
            f"{name} differs from the vector", expected=expected, calculated=calculated
        )


# --------------------------------------------------------------------------------------------
# Proof files


def run_proofs(path: Path) -> Iterator[CaseResult]:
    """Verify each proof file against the spec its folder names; one result per file."""
    for file in walk(path, lambda p: _PROOF_FILE.fullmatch(p.name) is not None):
        folder = file.parent.name
        spec = ics23.SPECS.get(folder)
        if spec is None:
            raise VectorFileError(
                f"{file}: folder {folder!r} names no ICS-23 spec (known: {', '.join(ics23.SPECS)})"
            )
        data = read_json(file)
        if not isinstance(data, dict):
            raise VectorFileError(f"{file}: not an ICS-23 proof vector object")
        key = _hex(data, "key", file)
        root = _hex(data, "root", file)
        proof = _hex(data, "proof", file)
        expected = not _bool(data.get("want_err"), file, "want_err")
        case = f"{folder}/{file.stem}"
        if file.name.startswith("exist_"):
            value = _hex(data, "value", file)
            yield verdict(
                file,
                case,
                expected,
                _check_exist,
                spec=spec,
                root=root,
                proof=proof,
                key=key,
                value=value,
            )
        else:
            yield verdict(
                file, case, expected, _check_absent, spec=spec, root=root, proof=proof, key=key
            )


def _check_exist(
    *, spec: ics23.ProofSpec, root: bytes, proof: bytes, key: bytes, value: bytes
) -> None:
    decoded = ics23.decode_commitment_proof(proof)
    ics23.verify_membership(spec=spec, root=root, proof=decoded, key=key, value=value)


def _check_absent(*, spec: ics23.ProofSpec, root: bytes, proof: bytes, key: bytes) -> None:
    decoded = ics23.decode_commitment_proof(proof)
    ics23.verify_non_membership(spec=spec, root=root, proof=decoded, key=key)


# --------------------------------------------------------------------------------------------
# Unit-case files


def _cases(data: Any, file: Path) -> Iterator[tuple[str, dict[str, Any]]]:
    if isinstance(data, dict):
        items = [(str(k), v) for k, v in data.items()]
    elif isinstance(data, list):
        items = [(f"case {i}", v) for i, v in enumerate(data)]
    else:
        raise VectorFileError(f"{file}: expected an object or a list of cases")
    for name, case in items:
        if not isinstance(case, dict):
            raise VectorFileError(f"{file}: case {name!r} is not an object")
        yield name, case


def _unit_leaf_op(file: Path, name: str, case: dict[str, Any]) -> CaseResult:
    op = _leaf(_field(case, "Op"), file, "Op")
    key = _b64(_field(case, "Key"), file, "Key")
    value = _b64(_field(case, "Value"), file, "Value")
    is_err = _bool(_field(case, "IsErr"), file, "IsErr")
    want = _b64(_field(case, "Expected"), file, "Expected")

    def check() -> None:
        got = ics23.apply_leaf(op, key=key, value=value)
        if not is_err:
            _equal("leaf hash", want, got)

    return verdict(file, name, not is_err, check)


def _unit_inner_op(file: Path, name: str, case: dict[str, Any]) -> CaseResult:
    op = _inner(_field(case, "Op"), file, "Op")
    child = _b64(_field(case, "Child"), file, "Child")
    is_err = _bool(_field(case, "IsErr"), file, "IsErr")
    want = _b64(_field(case, "Expected"), file, "Expected")

    def check() -> None:
        got = ics23.apply_inner(op, child)
        if not is_err:
            _equal("inner hash", want, got)

    return verdict(file, name, not is_err, check)


def _unit_do_hash(file: Path, name: str, case: dict[str, Any]) -> CaseResult:
    hash_op = _field(case, "HashOp")
    preimage = _field(case, "Preimage")
    expected_hex = _field(case, "ExpectedHash")
    if not isinstance(hash_op, int) or isinstance(hash_op, bool):
        raise VectorFileError(f"{file}: case {name!r}: 'HashOp' must be an integer")
    if not isinstance(preimage, str) or not isinstance(expected_hex, str):
        raise VectorFileError(f"{file}: case {name!r}: 'Preimage'/'ExpectedHash' must be strings")
    try:
        want = bytes.fromhex(expected_hex)
    except ValueError as e:
        raise VectorFileError(f"{file}: case {name!r}: 'ExpectedHash' is not hex") from e

    def check() -> None:
        _equal("hash", want, ics23.do_hash(hash_op, preimage.encode()))

    return verdict(file, name, True, check)


def _unit_check_leaf(file: Path, name: str, case: dict[str, Any]) -> CaseResult:
    leaf = _leaf(_field(case, "Leaf"), file, "Leaf")
    spec = ics23.ProofSpec(leaf_spec=_leaf(_field(case, "Spec"), file, "Spec"))
    is_err = _bool(_field(case, "IsErr"), file, "IsErr")
    return verdict(file, name, not is_err, lambda: ics23.check_leaf_op(leaf, spec=spec))


def _unit_check_against_spec(file: Path, name: str, case: dict[str, Any]) -> CaseResult:
    proof = _existence_proof(_field(case, "Proof"), file, "Proof")
    spec = _spec(_field(case, "Spec"), file, "Spec")
    err = _field(case, "Err")
    if not isinstance(err, str):
        raise VectorFileError(f"{file}: case {name!r}: 'Err' must be a string")
    return verdict(file, name, err == "", lambda: ics23.check_existence_proof(proof, spec=spec))


def _unit_empty_branch(file: Path, name: str, case: dict[str, Any]) -> CaseResult:
    op = _inner(_field(case, "Op"), file, "Op")
    spec = _spec(_field(case, "Spec"), file, "Spec")
    want = (
        _bool(_field(case, "IsLeft"), file, "IsLeft"),
        _bool(_field(case, "IsRight"), file, "IsRight"),
    )

    def check() -> None:
        # Upstream first requires the step to be valid for the spec, as a first-layer step.
        ics23.check_inner_op(op, spec=spec, layer=1)
        got = (
            ics23.left_branches_are_empty(spec.inner_spec, op),
            ics23.right_branches_are_empty(spec.inner_spec, op),
        )
        _equal("(left empty, right empty)", want, got)

    return verdict(file, name, True, check)


def _unit_existence_proof(file: Path, name: str, case: dict[str, Any]) -> CaseResult:
    proof = _existence_proof(_field(case, "Proof"), file, "Proof")
    is_err = _bool(_field(case, "IsErr"), file, "IsErr")
    want = _b64(_field(case, "Expected"), file, "Expected")

    def check() -> None:
        # Upstream's Calculate(): no spec, just the hash chain.
        got = ics23.calculate_existence_root(proof, spec=None)
        if not is_err:
            _equal("root", want, got)

    return verdict(file, name, not is_err, check)


_UNIT: dict[str, Callable[[Path, str, dict[str, Any]], CaseResult]] = {
    "TestLeafOpData.json": _unit_leaf_op,
    "TestInnerOpData.json": _unit_inner_op,
    "TestDoHashData.json": _unit_do_hash,
    "TestCheckLeafData.json": _unit_check_leaf,
    "TestCheckAgainstSpecData.json": _unit_check_against_spec,
    "TestEmptyBranchData.json": _unit_empty_branch,
    "TestExistenceProofData.json": _unit_existence_proof,
}


def run_unit(path: Path) -> Iterator[CaseResult]:
    """Run upstream's unit cases: one result per case of each known ``Test*Data.json``."""
    for file in walk(path, lambda p: p.name in _UNIT):
        handler = _UNIT[file.name]
        for name, case in _cases(read_json(file), file):
            yield handler(file, name, case)
