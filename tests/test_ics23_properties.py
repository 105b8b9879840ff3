"""Negative properties of ICS-23 verification on the public happy-path vectors, and bad input.

Every single-byte change to a proof, root, key or value, every truncation of a proof and any
appended bytes must make verification fail with a VerificationError (never another exception).
The byte flips and truncations are exhaustive over every position; Hypothesis adds random
masks and appended data. Then: malformed protobuf, absurd sizes, proofs deeper than the spec
allows and hashes of the wrong length each raise a typed error that names the problem.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass

import pytest
from conftest import vectors_path
from hypothesis import given, settings
from hypothesis import strategies as st

from relay.pb.cosmos.ics23.v1 import proofs_pb2 as pb
from relay.verify.errors import (
    KeyMismatchError,
    LimitExceededError,
    MalformedInputError,
    ProofShapeError,
    RootMismatchError,
    VerificationError,
)
from relay.verify.merkle import ics23


@dataclass(frozen=True)
class Case:
    name: str
    spec: ics23.ProofSpec
    proof: bytes
    root: bytes
    key: bytes
    value: bytes | None  # None for non-existence

    def verify(self, **changes: bytes) -> None:
        decoded = ics23.decode_commitment_proof(changes.get("proof", self.proof))
        root = changes.get("root", self.root)
        key = changes.get("key", self.key)
        if self.value is None:
            ics23.verify_non_membership(spec=self.spec, root=root, proof=decoded, key=key)
        else:
            value = changes.get("value", self.value)
            ics23.verify_membership(spec=self.spec, root=root, proof=decoded, key=key, value=value)


@pytest.fixture(scope="module")
def cases() -> list[Case]:
    out = []
    base = vectors_path("ics23", "testdata")
    for tree in ("iavl", "tendermint", "smt"):
        for file in sorted((base / tree).glob("*exist_*.json")):
            d = {k: bytes.fromhex(v) for k, v in json.loads(file.read_text()).items()}
            exist = file.name.startswith("exist_")
            out.append(
                Case(
                    f"{tree}/{file.stem}",
                    ics23.SPECS[tree],
                    d["proof"],
                    d["root"],
                    d["key"],
                    d["value"] if exist else None,
                )
            )
    assert len(out) == 18
    return out


def _fields(case: Case) -> list[str]:
    return ["proof", "root", "key"] + ([] if case.value is None else ["value"])


def _rejects(case: Case, **changes: bytes) -> VerificationError:
    with pytest.raises(VerificationError) as info:
        case.verify(**changes)
    return info.value


def test_vectors_verify_unchanged(cases: list[Case]) -> None:
    for case in cases:
        case.verify()


@pytest.mark.parametrize("mask", [0x01, 0x80, 0xFF])
def test_every_single_byte_flip_is_rejected(cases: list[Case], mask: int) -> None:
    flips = 0
    for case in cases:
        for name in _fields(case):
            data = getattr(case, name)
            for i in range(len(data)):
                changed = bytearray(data)
                changed[i] ^= mask
                _rejects(case, **{name: bytes(changed)})
                flips += 1
    assert flips > 10_000


def test_every_truncation_is_rejected(cases: list[Case]) -> None:
    for case in cases:
        for name in _fields(case):
            data = getattr(case, name)
            for n in range(len(data)):
                _rejects(case, **{name: data[:n]})


@settings(max_examples=300, deadline=None)
@given(data=st.data())
def test_random_flips_and_appends_are_rejected(cases: list[Case], data: st.DataObject) -> None:
    case = cases[data.draw(st.integers(0, len(cases) - 1), label="case")]
    name = data.draw(st.sampled_from(_fields(case)), label="field")
    original: bytes = getattr(case, name)
    if data.draw(st.booleans(), label="append"):
        changed = original + data.draw(st.binary(min_size=1, max_size=64))
    else:
        positions = st.lists(st.integers(0, len(original) - 1), min_size=1, max_size=4, unique=True)
        flipped = bytearray(original)
        for i in data.draw(positions, label="positions"):
            flipped[i] ^= data.draw(st.integers(1, 255))
        changed = bytes(flipped)
    _rejects(case, **{name: changed})


# --------------------------------------------------------------------------------------------
# Bad input, each with a typed error naming what is wrong


@pytest.mark.parametrize(
    "data",
    [b"", b"\xff", b"\x0a", b"\x0a\x05\x0a\x03ab", b"\x08\x01", b"\x2a\x00", b"\x0a\x80\x80"],
)
def test_malformed_protobuf(data: bytes) -> None:
    with pytest.raises(MalformedInputError):
        ics23.decode_commitment_proof(data)


def test_non_canonical_encoding_is_refused(cases: list[Case]) -> None:
    case = cases[0]
    # The same message with an unknown field appended, and with a redundant default field.
    unknown = case.proof + b"\x2a\x00"
    with pytest.raises(MalformedInputError, match="canonical"):
        ics23.decode_commitment_proof(unknown)
    assert ics23.decode_commitment_proof(unknown, canonical=False) == (
        ics23.decode_commitment_proof(case.proof)
    )


def test_absurd_sizes_hit_limits(cases: list[Case]) -> None:
    with pytest.raises(LimitExceededError) as info:
        ics23.decode_commitment_proof(bytes(ics23.MAX_PROOF_BYTES + 1))
    assert info.value.context["limit"] == ics23.MAX_PROOF_BYTES
    with pytest.raises(LimitExceededError):
        ics23.decode_commitment_proof(cases[0].proof, max_bytes=len(cases[0].proof) - 1)
    step = pb.InnerOp(hash=pb.SHA256, prefix=b"\x01", suffix=bytes(32))
    long_path = pb.ExistenceProof(
        key=b"k", value=b"v", leaf=pb.LeafOp(hash=pb.SHA256), path=[step] * 2000
    )
    wire = pb.CommitmentProof(exist=long_path).SerializeToString()
    with pytest.raises(LimitExceededError, match="too many inner steps"):
        ics23.decode_commitment_proof(wire)
    entries = [pb.BatchEntry(exist=pb.ExistenceProof(key=b"k"))] * 20
    batch = pb.CommitmentProof(batch=pb.BatchProof(entries=entries)).SerializeToString()
    with pytest.raises(LimitExceededError, match="too many entries"):
        ics23.decode_commitment_proof(batch, max_entries=10)


def _tendermint_leaf(key: bytes, value: bytes) -> bytes:
    import hashlib

    hv = hashlib.sha256(value).digest()
    return hashlib.sha256(b"\x00" + bytes([len(key)]) + key + bytes([len(hv)]) + hv).digest()


def _deep_proof(depth: int, spec: ics23.ProofSpec) -> tuple[ics23.ExistenceProof, bytes]:
    step = ics23.InnerOp(spec.inner_spec.hash, b"\x01", bytes(range(32)))
    proof = ics23.ExistenceProof(b"k", b"v", spec.leaf_spec, (step,) * depth)
    return proof, ics23.calculate_existence_root(proof, spec=None)


@pytest.mark.parametrize(("spec", "limit"), [(ics23.TENDERMINT_SPEC, 128), (ics23.SMT_SPEC, 256)])
def test_proofs_deeper_than_the_spec_allows(spec: ics23.ProofSpec, limit: int) -> None:
    proof, root = _deep_proof(limit, spec)
    ics23.verify_membership(spec=spec, root=root, proof=proof, key=b"k", value=b"v")
    proof, root = _deep_proof(limit + 1, spec)
    with pytest.raises(ProofShapeError) as info:
        ics23.verify_membership(spec=spec, root=root, proof=proof, key=b"k", value=b"v")
    assert info.value.context["check"] == "depth_too_long"
    assert info.value.context["max_depth"] == limit


def test_wrong_hash_lengths_are_named(cases: list[Case]) -> None:
    tm = next(c for c in cases if c.name == "tendermint/exist_left")
    err = _rejects(tm, root=tm.root[:-1])
    assert isinstance(err, MalformedInputError)
    assert err.context["check"] == "root_length"
    err = _rejects(tm, root=tm.root + b"\x00")
    assert err.context["check"] == "root_length"

    def sibling_cut(
        case_name: str, edit: Callable[[ics23.InnerOp], ics23.InnerOp], check: str
    ) -> None:
        case = next(c for c in cases if c.name == case_name)
        proof = ics23.decode_commitment_proof(case.proof)
        assert isinstance(proof, ics23.ExistenceProof)
        bad = proof._replace(path=(edit(proof.path[0]), *proof.path[1:]))
        with pytest.raises(ProofShapeError) as info:
            ics23.verify_membership(
                spec=case.spec, root=case.root, proof=bad, key=case.key, value=case.value or b""
            )
        assert info.value.context["check"] == check, info.value

    def shorten(op: ics23.InnerOp) -> ics23.InnerOp:
        # Drop one byte of the sibling hash, wherever the step carries it.
        if op.suffix:
            return op._replace(suffix=op.suffix[:-1])
        return op._replace(prefix=op.prefix[:-1])

    for name in ("tendermint/exist_left", "tendermint/exist_right", "smt/exist_left"):
        case = next(c for c in cases if c.name == name)
        proof = ics23.decode_commitment_proof(case.proof)
        assert isinstance(proof, ics23.ExistenceProof)
        expected = "inner_suffix_length" if proof.path[0].suffix else "inner_prefix_children"
        sibling_cut(name, shorten, expected)
    for name in ("iavl/exist_left", "iavl/exist_right"):
        case = next(c for c in cases if c.name == name)
        proof = ics23.decode_commitment_proof(case.proof)
        assert isinstance(proof, ics23.ExistenceProof)
        expected = "inner_suffix_length" if proof.path[0].suffix else "iavl_remainder"
        sibling_cut(name, shorten, expected)


def test_root_mismatch_carries_both_roots(cases: list[Case]) -> None:
    case = next(c for c in cases if c.name == "iavl/exist_middle")
    other = bytes(32)
    err = _rejects(case, root=other)
    assert isinstance(err, RootMismatchError)
    assert err.expected == other
    assert err.calculated == case.root


def test_a_proof_about_another_key_is_a_key_mismatch(cases: list[Case]) -> None:
    """A valid proof of another record is refused as KEY_MISMATCH (existence and
    non-existence), naming both keys, not as a value mismatch."""
    for case in cases:
        other = case.key + b"-other"
        err = _rejects(case, key=other)
        if isinstance(err, KeyMismatchError):
            assert err.reason == "KEY_MISMATCH" and err.expected == other, case.name
            assert err.calculated != other
        else:  # a non-existence proof whose neighbours do not bracket the other key
            assert case.value is None, (case.name, err)
    existence = [c for c in cases if c.value is not None]
    assert existence and all(
        isinstance(_rejects(c, key=c.key + b"-other"), KeyMismatchError) for c in existence
    )
