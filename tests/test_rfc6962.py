"""RFC 6962/9162 proofs: public vectors, a naive reference, negative properties, edge cases."""

from __future__ import annotations

import contextlib
import hashlib
from pathlib import Path

import pytest
from conftest import vectors_path
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from relay.vectors import load_runner
from relay.verify.errors import (
    InvalidProofError,
    MalformedInputError,
    RootMismatchError,
    VerificationError,
)
from relay.verify.merkle import rfc6962
from relay.verify.merkle.rfc6962 import RFC6962_SHA256, RFC6962_SM3

# --- naive reference: RFC 9162 2.1.1 MTH written as literally as possible ----------------


def naive_mth(leaves: list[bytes], h=hashlib.sha256) -> bytes:
    n = len(leaves)
    if n == 0:
        return h(b"").digest()
    if n == 1:
        return h(b"\x00" + leaves[0]).digest()
    k = 1
    while k * 2 < n:
        k *= 2
    return h(b"\x01" + naive_mth(leaves[:k], h) + naive_mth(leaves[k:], h)).digest()


def leaf_hashes(leaves: list[bytes], hasher=RFC6962_SHA256) -> list[bytes]:
    return [hasher.hash_leaf(x) for x in leaves]


# --- public vectors --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kind", "folder"),
    [("rfc6962-inclusion", "inclusion"), ("rfc6962-consistency", "consistency")],
)
def test_transparency_dev_vectors(kind: str, folder: str) -> None:
    path = vectors_path("rfc6962", "testdata", folder)
    results = list(load_runner(kind)(path))
    assert len(results) == 98
    mismatched = [r for r in results if not r.matched]
    assert not mismatched, mismatched[:3]
    # the files hold both kinds of case; a runner that accepted or rejected all would fail
    assert {r.expected for r in results} == {True, False}


def _happy_paths(folder: str) -> list[Path]:
    try:
        root = vectors_path("rfc6962", "testdata", folder)
    except pytest.skip.Exception:
        return []
    return sorted(root.rglob("happy-path.json"))


# --- reference agreement on random trees -------------------------------------------------------

leaves_st = st.lists(st.binary(max_size=12), min_size=1, max_size=70)


@settings(max_examples=150, deadline=None)
@given(leaves=leaves_st, data=st.data())
def test_root_and_inclusion_agree_with_naive_reference(leaves: list[bytes], data) -> None:
    hashes = leaf_hashes(leaves)
    root = rfc6962.root_hash(hasher=RFC6962_SHA256, leaf_hashes=hashes)
    assert root == naive_mth(leaves)
    index = data.draw(st.integers(0, len(leaves) - 1))
    proof = rfc6962.inclusion_proof(hasher=RFC6962_SHA256, leaf_hashes=hashes, index=index)
    rfc6962.verify_inclusion(
        hasher=RFC6962_SHA256,
        index=index,
        size=len(leaves),
        leaf_hash=hashes[index],
        proof=proof,
        root=root,
    )


@settings(max_examples=150, deadline=None)
@given(leaves=leaves_st, data=st.data())
def test_consistency_between_every_prefix(leaves: list[bytes], data) -> None:
    hashes = leaf_hashes(leaves)
    size1 = data.draw(st.integers(1, len(leaves)))
    root1 = naive_mth(leaves[:size1])
    root2 = naive_mth(leaves)
    proof = rfc6962.consistency_proof(hasher=RFC6962_SHA256, leaf_hashes=hashes, size1=size1)
    rfc6962.verify_consistency(
        hasher=RFC6962_SHA256,
        size1=size1,
        size2=len(leaves),
        proof=proof,
        root1=root1,
        root2=root2,
    )
    got = rfc6962.root_from_consistency_proof(
        hasher=RFC6962_SHA256, size1=size1, size2=len(leaves), proof=proof, root1=root1
    )
    assert got == root2


# --- negative properties: any mutation of a valid proof is rejected ----------------------------


def _mutations(proof: list[bytes], root: bytes, leaf: bytes):
    """Yield (what, proof, root, leaf) for every single-byte flip, truncation and append."""
    for i, p in enumerate(proof):
        for j in range(len(p)):
            flipped = bytearray(p)
            flipped[j] ^= 0x01
            yield f"proof[{i}][{j}]", [*proof[:i], bytes(flipped), *proof[i + 1 :]], root, leaf
    for j in range(len(root)):
        r = bytearray(root)
        r[j] ^= 0x80
        yield f"root[{j}]", proof, bytes(r), leaf
    for j in range(len(leaf)):
        lf = bytearray(leaf)
        lf[j] ^= 0x04
        yield f"leaf[{j}]", proof, root, bytes(lf)
    if proof:
        yield "truncated", proof[:-1], root, leaf
        yield "truncated-bytes", [*proof[:-1], proof[-1][:-1]], root, leaf
    yield "appended-hash", [*proof, b"\x00" * 32], root, leaf
    yield "appended-bytes", [*proof[:-1], proof[-1] + b"\x00"] if proof else [b"\x00"], root, leaf
    yield "root-appended", proof, root + b"\x00", leaf


@pytest.mark.parametrize("size", [1, 2, 3, 7, 8, 9, 31, 64, 100])
def test_every_inclusion_mutation_rejected(size: int) -> None:
    leaves = [f"entry {i}".encode() for i in range(size)]
    hashes = leaf_hashes(leaves)
    root = naive_mth(leaves)
    for index in {0, size // 2, size - 1}:
        proof = rfc6962.inclusion_proof(hasher=RFC6962_SHA256, leaf_hashes=hashes, index=index)
        for what, p, r, lf in _mutations(proof, root, hashes[index]):
            with pytest.raises(VerificationError):
                rfc6962.verify_inclusion(
                    hasher=RFC6962_SHA256, index=index, size=size, leaf_hash=lf, proof=p, root=r
                )
            assert what  # the mutation had a name for the failure message
        for bad_index in {index + 1, index - 1} - {index} & set(range(size)):
            with pytest.raises(VerificationError):
                rfc6962.verify_inclusion(
                    hasher=RFC6962_SHA256,
                    index=bad_index,
                    size=size,
                    leaf_hash=hashes[index],
                    proof=proof,
                    root=root,
                )


@pytest.mark.parametrize(("size1", "size2"), [(1, 2), (3, 7), (4, 8), (5, 9), (8, 100), (63, 64)])
def test_every_consistency_mutation_rejected(size1: int, size2: int) -> None:
    leaves = [f"entry {i}".encode() for i in range(size2)]
    hashes = leaf_hashes(leaves)
    root1, root2 = naive_mth(leaves[:size1]), naive_mth(leaves)
    proof = rfc6962.consistency_proof(hasher=RFC6962_SHA256, leaf_hashes=hashes, size1=size1)
    for what, p, r2, r1 in _mutations(proof, root2, root1):
        with pytest.raises(VerificationError):
            rfc6962.verify_consistency(
                hasher=RFC6962_SHA256, size1=size1, size2=size2, proof=p, root1=r1, root2=r2
            )
        assert what


def test_happy_path_vectors_reject_every_mutation() -> None:
    import base64
    import json

    files = _happy_paths("inclusion")
    if not files:
        pytest.skip("public vectors folder is absent")
    for f in files:
        case = json.loads(f.read_text())
        proof = [base64.b64decode(p) for p in case["proof"] or []]
        root, leaf = base64.b64decode(case["root"]), base64.b64decode(case["leafHash"])
        kw = {"hasher": RFC6962_SHA256, "index": case["leafIdx"], "size": case["treeSize"]}
        rfc6962.verify_inclusion(leaf_hash=leaf, proof=proof, root=root, **kw)
        for _what, p, r, lf in _mutations(proof, root, leaf):
            with pytest.raises(VerificationError):
                rfc6962.verify_inclusion(leaf_hash=lf, proof=p, root=r, **kw)


# --- edge cases ----------------------------------------------------------------------------


def test_edge_cases_raise_typed_errors() -> None:
    h = RFC6962_SHA256
    leaf = h.hash_leaf(b"x")
    with pytest.raises(InvalidProofError, match="beyond the tree size"):
        rfc6962.verify_inclusion(hasher=h, index=1, size=1, leaf_hash=leaf, proof=[], root=leaf)
    with pytest.raises(MalformedInputError, match="leaf hash has the wrong length"):
        rfc6962.verify_inclusion(hasher=h, index=0, size=1, leaf_hash=b"\x00", proof=[], root=b"")
    with pytest.raises(MalformedInputError, match="out of range"):
        rfc6962.verify_inclusion(hasher=h, index=-1, size=1, leaf_hash=leaf, proof=[], root=leaf)
    with pytest.raises(MalformedInputError, match="out of range"):
        rfc6962.verify_inclusion(
            hasher=h, index=0, size=1 << 64, leaf_hash=leaf, proof=[], root=leaf
        )
    with pytest.raises(InvalidProofError, match="longer than any tree"):
        rfc6962.verify_inclusion(
            hasher=h, index=0, size=1 << 62, leaf_hash=leaf, proof=[leaf] * 65, root=leaf
        )
    # size1 = 0 proves nothing; size1 = size2 needs an empty proof and equal roots
    with pytest.raises(InvalidProofError, match="empty tree is meaningless"):
        rfc6962.verify_consistency(hasher=h, size1=0, size2=3, proof=[], root1=b"", root2=leaf)
    rfc6962.verify_consistency(hasher=h, size1=5, size2=5, proof=[], root1=leaf, root2=leaf)
    with pytest.raises(RootMismatchError) as info:
        rfc6962.verify_consistency(
            hasher=h, size1=5, size2=5, proof=[], root1=leaf, root2=h.empty_root()
        )
    assert info.value.expected == h.empty_root() and info.value.calculated == leaf
    with pytest.raises(InvalidProofError, match="not empty"):
        rfc6962.verify_consistency(hasher=h, size1=5, size2=5, proof=[leaf], root1=leaf, root2=leaf)
    with pytest.raises(InvalidProofError, match="smaller than size1"):
        rfc6962.verify_consistency(hasher=h, size1=6, size2=5, proof=[], root1=leaf, root2=leaf)


def test_power_of_two_size1_uses_root1_as_seed() -> None:
    leaves = [bytes([i]) for i in range(13)]
    hashes = leaf_hashes(leaves)
    for size1 in (1, 2, 4, 8):
        proof = rfc6962.consistency_proof(hasher=RFC6962_SHA256, leaf_hashes=hashes, size1=size1)
        # the old root is not repeated in the proof when size1 is a power of two
        assert naive_mth(leaves[:size1]) not in proof
        rfc6962.verify_consistency(
            hasher=RFC6962_SHA256,
            size1=size1,
            size2=13,
            proof=proof,
            root1=naive_mth(leaves[:size1]),
            root2=naive_mth(leaves),
        )


def test_root_mismatch_carries_expected_and_calculated() -> None:
    hashes = leaf_hashes([b"a", b"b", b"c"])
    proof = rfc6962.inclusion_proof(hasher=RFC6962_SHA256, leaf_hashes=hashes, index=1)
    wrong = b"\x11" * 32
    with pytest.raises(RootMismatchError) as info:
        rfc6962.verify_inclusion(
            hasher=RFC6962_SHA256, index=1, size=3, leaf_hash=hashes[1], proof=proof, root=wrong
        )
    assert info.value.expected == wrong
    assert info.value.calculated == naive_mth([b"a", b"b", b"c"])
    assert info.value.reason == "ROOT_MISMATCH"


def test_sm3_log_is_hash_agile() -> None:
    leaves = [f"patent {i}".encode() for i in range(11)]
    sm3 = lambda data=b"": hashlib.new("sm3", data)  # noqa: E731
    hashes = leaf_hashes(leaves, RFC6962_SM3)
    root = rfc6962.root_hash(hasher=RFC6962_SM3, leaf_hashes=hashes)
    assert root == naive_mth(leaves, sm3)
    assert root != naive_mth(leaves)
    proof = rfc6962.inclusion_proof(hasher=RFC6962_SM3, leaf_hashes=hashes, index=6)
    rfc6962.verify_inclusion(
        hasher=RFC6962_SM3, index=6, size=11, leaf_hash=hashes[6], proof=proof, root=root
    )
    with pytest.raises(RootMismatchError):
        rfc6962.verify_inclusion(
            hasher=RFC6962_SHA256, index=6, size=11, leaf_hash=hashes[6], proof=proof, root=root
        )


@pytest.mark.fuzz
@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    index=st.integers(-2, 1 << 65),
    size=st.integers(-2, 1 << 65),
    size1=st.integers(-2, 300),
    leaf=st.binary(max_size=40),
    proof=st.lists(st.binary(max_size=40), max_size=70),
    root=st.binary(max_size=40),
)
def test_fuzz_verifiers_only_raise_typed_errors(index, size, size1, leaf, proof, root) -> None:
    for call in (
        lambda: rfc6962.verify_inclusion(
            hasher=RFC6962_SHA256, index=index, size=size, leaf_hash=leaf, proof=proof, root=root
        ),
        lambda: rfc6962.verify_consistency(
            hasher=RFC6962_SHA256, size1=size1, size2=size, proof=proof, root1=leaf, root2=root
        ),
    ):
        with contextlib.suppress(VerificationError):
            call()


def test_merkle_tree_matches_the_list_functions() -> None:
    import random

    rng = random.Random(6962)
    hashes = [RFC6962_SHA256.hash_leaf(i.to_bytes(4, "big")) for i in range(1300)]
    tree = rfc6962.MerkleTree(RFC6962_SHA256)
    assert tree.root() == rfc6962.root_hash(hasher=RFC6962_SHA256, leaf_hashes=[])
    # Grown in uneven batches across 256, 512 and 1024 (kept roots written meanwhile).
    while len(tree) < len(hashes):
        tree.extend(hashes[len(tree) : len(tree) + rng.randint(1, 97)])
        n = len(tree)
        assert tree[:n] == hashes[:n] and tree[n - 1] == hashes[n - 1]
        assert tree.root() == rfc6962.root_hash(hasher=RFC6962_SHA256, leaf_hashes=hashes[:n])
    sizes = [1, 2, 3, 255, 256, 257, 511, 512, 513, 1024, 1025, 1299, 1300]
    sizes += [rng.randint(1, 1300) for _ in range(20)]
    for size in sizes:
        leaves = hashes[:size]
        assert tree.root(size) == rfc6962.root_hash(hasher=RFC6962_SHA256, leaf_hashes=leaves)
        for index in {0, size - 1, size // 2, rng.randrange(size)}:
            assert tree.inclusion_proof(index, size) == rfc6962.inclusion_proof(
                hasher=RFC6962_SHA256, leaf_hashes=leaves, index=index
            ), (size, index)
        for size1 in {1, size, max(1, size // 2), rng.randint(1, size)}:
            assert tree.consistency_proof(size1, size) == rfc6962.consistency_proof(
                hasher=RFC6962_SHA256, leaf_hashes=leaves, size1=size1
            ), (size1, size)
        # Leaves past what the tree holds, given beside it.
        held = rng.randint(0, size)
        partial = rfc6962.MerkleTree(RFC6962_SHA256, hashes[:held])
        assert partial.root_with(size, held=held, more=hashes[held:size]) == tree.root(size)
    with pytest.raises(rfc6962.InvalidProofError):
        tree.inclusion_proof(5, 1301)
    with pytest.raises(rfc6962.InvalidProofError):
        tree.consistency_proof(0, 10)
    with pytest.raises(rfc6962.MalformedInputError):
        tree.append(b"short")
    sm3 = rfc6962.MerkleTree(rfc6962.RFC6962_SM3, hashes[:300])
    assert sm3.root() == rfc6962.root_hash(hasher=rfc6962.RFC6962_SM3, leaf_hashes=hashes[:300])
