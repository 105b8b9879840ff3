"""Short fuzz runs of the ICS-23 decoder and verifier (in the spirit of cosmos/ics23
``go/fuzz_test.go``): whatever the input, the only failure allowed is a VerificationError."""

from __future__ import annotations

import contextlib
import json

import pytest
from conftest import vectors_path
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from relay.verify.errors import VerificationError
from relay.verify.merkle import ics23

pytestmark = pytest.mark.fuzz

SPECS = list(ics23.SPECS.values())


def _exercise(data: bytes, spec: ics23.ProofSpec, root: bytes, key: bytes, value: bytes) -> None:
    """Decode and run every verifier on ``data``; VerificationError is a fine outcome."""
    for canonical in (True, False):
        try:
            proof = ics23.decode_commitment_proof(data, canonical=canonical)
        except VerificationError:
            continue
        with contextlib.suppress(VerificationError):
            ics23.verify_membership(spec=spec, root=root, proof=proof, key=key, value=value)
        with contextlib.suppress(VerificationError):
            ics23.verify_non_membership(spec=spec, root=root, proof=proof, key=key)
        with contextlib.suppress(VerificationError):
            ics23.verify_chained_membership(
                specs=(spec, ics23.TENDERMINT_SPEC),
                root=root,
                proofs=(proof, proof),
                keys=(b"store", key),
                value=value,
            )
        with contextlib.suppress(VerificationError):
            ics23.verify_chained_non_membership(
                specs=(spec,), root=root, proofs=(proof,), keys=(key,)
            )


@pytest.fixture(scope="module")
def seeds() -> list[dict[str, bytes]]:
    base = vectors_path("ics23", "testdata")
    out = []
    for file in sorted(base.glob("*/*exist_*.json")):
        d = {k: bytes.fromhex(v) for k, v in json.loads(file.read_text()).items()}
        d["spec"] = file.parent.name.encode()
        out.append(d)
    return out


@settings(max_examples=2000, deadline=None)
@given(
    data=st.binary(max_size=512),
    spec=st.sampled_from(SPECS),
    root=st.binary(max_size=40),
    key=st.binary(max_size=8),
)
def test_random_bytes(data: bytes, spec: ics23.ProofSpec, root: bytes, key: bytes) -> None:
    _exercise(data, spec, root, key, b"v")


@settings(max_examples=2000, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.data())
def test_structured_mutations_of_vectors(
    seeds: list[dict[str, bytes]], data: st.DataObject
) -> None:
    seed = seeds[data.draw(st.integers(0, len(seeds) - 1), label="seed")]
    proof = bytearray(seed["proof"])
    for _ in range(data.draw(st.integers(1, 4), label="edits")):
        n = len(proof)
        at = data.draw(st.integers(0, n), label="at")
        kind = data.draw(st.sampled_from(["insert", "delete", "replace", "duplicate"]))
        if kind == "insert":
            proof[at:at] = data.draw(st.binary(min_size=1, max_size=8))
        elif kind == "delete":
            del proof[at : at + data.draw(st.integers(1, 40))]
        elif kind == "replace":
            chunk = data.draw(st.binary(min_size=1, max_size=8))
            proof[at : at + len(chunk)] = chunk
        else:
            length = data.draw(st.integers(1, 80))
            proof[at:at] = proof[at : at + length]
    spec = ics23.SPECS[data.draw(st.sampled_from(sorted(ics23.SPECS)), label="spec")]
    _exercise(bytes(proof), spec, seed["root"], seed["key"], seed.get("value", b""))


hash_ops = st.sampled_from([0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 100, -1, 2**31 - 1])
length_ops = st.sampled_from([0, 1, 2, 3, 4, 5, 6, 7, 8, 9, -1])
small = st.integers(-3, 70)
blobs = st.binary(max_size=70)
leaf_ops = st.builds(ics23.LeafOp, hash_ops, hash_ops, hash_ops, length_ops, blobs)
inner_ops = st.builds(ics23.InnerOp, hash_ops, blobs, blobs)
exist_proofs = st.builds(
    ics23.ExistenceProof,
    st.binary(max_size=8),
    st.binary(max_size=8),
    st.none() | leaf_ops,
    st.lists(inner_ops, max_size=6).map(tuple),
)
specs = st.builds(
    ics23.ProofSpec,
    leaf_spec=leaf_ops,
    inner_spec=st.builds(
        ics23.InnerSpec,
        child_order=st.lists(st.integers(-1, 4), max_size=4).map(tuple),
        child_size=small,
        min_prefix_length=small,
        max_prefix_length=small,
        empty_child=blobs,
        hash=hash_ops,
    ),
    max_depth=st.integers(-2, 10),
    min_depth=st.integers(-2, 10),
    prehash_key_before_comparison=st.booleans(),
    rules=st.sampled_from(list(ics23.OpRules)),
) | st.sampled_from(SPECS)


@settings(max_examples=2000, deadline=None)
@given(
    spec=specs,
    left=st.none() | exist_proofs,
    right=st.none() | exist_proofs,
    root=st.binary(max_size=40),
    key=st.binary(max_size=8),
)
def test_random_structured_proofs_and_specs(
    spec: ics23.ProofSpec,
    left: ics23.ExistenceProof | None,
    right: ics23.ExistenceProof | None,
    root: bytes,
    key: bytes,
) -> None:
    nonexist = ics23.NonExistenceProof(key, left, right)
    for proof in (left, right):
        if proof is None:
            continue
        for action in (
            lambda p=proof: ics23.check_existence_proof(p, spec=spec),
            lambda p=proof: ics23.calculate_existence_root(p, spec=None),
            lambda p=proof: ics23.calculate_existence_root(p, spec=spec),
            lambda p=proof: ics23.verify_membership(
                spec=spec, root=root, proof=p, key=p.key, value=p.value
            ),
        ):
            with contextlib.suppress(VerificationError):
                action()
        for op in proof.path:
            ics23.left_branches_are_empty(spec.inner_spec, op)
            ics23.right_branches_are_empty(spec.inner_spec, op)
        ics23.is_left_most(spec.inner_spec, proof.path)
        ics23.is_right_most(spec.inner_spec, proof.path)
    if left is not None and right is not None:
        ics23.is_left_neighbor(spec.inner_spec, left=left.path, right=right.path)
    for absent in (nonexist, ics23.BatchProof((nonexist,))):
        with contextlib.suppress(VerificationError):
            ics23.verify_non_membership(spec=spec, root=root, proof=absent, key=key)
