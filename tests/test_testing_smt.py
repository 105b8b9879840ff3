"""The test chains' sparse Merkle tree: its roots equal an independent naive computation, and
its proofs verify with the project's ICS-23 verifier (SMT_SPEC and the SM3 variant) for
random key sets, present and absent keys, after deletions; snapshots are independent; a
10,000-key tree is fast."""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from relay.testing.smt import SparseMerkleTree, encode_proof
from relay.verify.errors import VerificationError
from relay.verify.hashing import SM3
from relay.verify.merkle import ics23

Hash = Callable[[bytes], bytes]
SPECS: dict[str, tuple[ics23.ProofSpec, Hash]] = {
    "sha256": (ics23.SMT_SPEC, lambda d: hashlib.sha256(d).digest()),
    "sm3": (ics23.SMT_SM3_SPEC, SM3.hash),
}


def naive_root(items: dict[bytes, bytes], h: Hash) -> bytes:
    """The celestiaorg/smt root, recursively: split the keys by the bits of H(key); a subtree
    with one key is that key's leaf, an empty one 32 zero bytes."""

    def bit(path: bytes, depth: int) -> int:
        return (path[depth // 8] >> (7 - depth % 8)) & 1

    def node(keys: list[bytes], depth: int) -> bytes:
        if not keys:
            return bytes(32)
        if len(keys) == 1:
            k = keys[0]
            return h(b"\x00" + h(k) + h(items[k]))
        left = [k for k in keys if bit(h(k), depth) == 0]
        right = [k for k in keys if bit(h(k), depth) == 1]
        return h(b"\x01" + node(left, depth + 1) + node(right, depth + 1))

    return node(list(items), 0)


def check_all(tree: SparseMerkleTree, items: dict[bytes, bytes], absent: list[bytes]) -> None:
    spec = tree.spec
    root = tree.root
    for key, value in items.items():
        proof = ics23.decode_commitment_proof(tree.prove(key))
        ics23.verify_membership(spec=spec, root=root, proof=proof, key=key, value=value)
        with pytest.raises(VerificationError):
            ics23.verify_membership(spec=spec, root=root, proof=proof, key=key, value=value + b"!")
    for key in absent:
        proof = ics23.decode_commitment_proof(tree.prove(key))
        ics23.verify_non_membership(spec=spec, root=root, proof=proof, key=key)
        with pytest.raises(VerificationError):
            ics23.verify_membership(spec=spec, root=root, proof=proof, key=key, value=b"v")


keys_st = st.lists(st.binary(min_size=1, max_size=8), min_size=1, max_size=40, unique=True)


@pytest.mark.parametrize("name", sorted(SPECS))
@settings(max_examples=60, deadline=None)
@given(keys=keys_st, absent=st.lists(st.binary(min_size=1, max_size=8), max_size=6), data=st.data())
def test_proofs_verify_and_roots_match_the_naive_tree(
    name: str, keys: list[bytes], absent: list[bytes], data: st.DataObject
) -> None:
    spec, h = SPECS[name]
    items = {k: data.draw(st.binary(min_size=1, max_size=16)) for k in keys}
    tree = SparseMerkleTree(spec)
    for k, v in items.items():
        tree.set(k, v)
    assert tree.root == naive_root(items, h)
    assert len(tree) == len(items)
    assert dict(tree.items()) == items
    check_all(tree, items, [k for k in absent if k not in items])


@pytest.mark.parametrize("name", sorted(SPECS))
@settings(max_examples=40, deadline=None)
@given(keys=keys_st, data=st.data())
def test_deletes_and_rewrites_give_the_tree_of_the_final_contents(
    name: str, keys: list[bytes], data: st.DataObject
) -> None:
    spec, h = SPECS[name]
    tree = SparseMerkleTree(spec)
    for k in keys:
        tree.set(k, b"first " + k)
    removed = data.draw(st.lists(st.sampled_from(keys), unique=True))
    for k in removed:
        assert tree.delete(k)
        assert not tree.delete(k)
    final = {k: b"second " + k for k in keys if k not in removed}
    for k in reversed(list(final)):  # another write order
        tree.set(k, final[k])
    assert tree.root == naive_root(final, h)
    if final:
        check_all(tree, final, removed)
    else:
        assert tree.root == bytes(32)


def test_snapshots_are_independent_and_keep_their_proofs() -> None:
    tree = SparseMerkleTree()
    for i in range(50):
        tree.set(b"k%d" % i, b"v%d" % i)
    snapshot = tree.copy()
    old_root = snapshot.root
    tree.set(b"k3", b"changed")
    tree.delete(b"k4")
    tree.set(b"new", b"x")
    assert snapshot.root == old_root != tree.root
    assert snapshot.get(b"k3") == b"v3" and tree.get(b"k3") == b"changed"
    # the snapshot still proves its own contents against its own root
    proof = ics23.decode_commitment_proof(snapshot.prove(b"k4"))
    ics23.verify_membership(spec=ics23.SMT_SPEC, root=old_root, proof=proof, key=b"k4", value=b"v4")
    absent = ics23.decode_commitment_proof(tree.prove(b"k4"))
    ics23.verify_non_membership(spec=ics23.SMT_SPEC, root=tree.root, proof=absent, key=b"k4")
    # and a proof from one version does not verify against the other
    with pytest.raises(VerificationError):
        ics23.verify_non_membership(spec=ics23.SMT_SPEC, root=old_root, proof=absent, key=b"k4")


def test_a_single_key_is_proven_and_neighbours_at_the_edges_work() -> None:
    tree = SparseMerkleTree()
    tree.set(b"only", b"one")
    check_all(tree, {b"only": b"one"}, [b"a", b"z", b"\x00"])
    assert tree.root == naive_root({b"only": b"one"}, SPECS["sha256"][1])


def test_an_empty_tree_cannot_prove_absence_and_empty_keys_are_refused() -> None:
    tree = SparseMerkleTree()
    assert tree.root == bytes(32)
    with pytest.raises(ValueError, match="empty tree"):
        tree.prove(b"anything")
    with pytest.raises(ValueError, match="non-empty"):
        tree.set(b"", b"v")
    with pytest.raises(ValueError, match="non-empty"):
        tree.set(b"k", b"")
    tree.set(b"k", b"v")
    with pytest.raises(ValueError, match="empty key"):
        tree.prove(b"")


def test_proof_bytes_are_canonical_commitment_proofs() -> None:
    tree = SparseMerkleTree()
    for i in range(20):
        tree.set(b"key-%d" % i, b"value")
    for key in (b"key-3", b"missing"):
        raw = tree.prove(key)
        decoded = ics23.decode_commitment_proof(raw)  # canonical=True by default
        assert encode_proof(decoded) == raw  # type: ignore[arg-type]
    exist = tree.existence_proof(b"key-3")
    assert exist.key == b"key-3" and exist.value == b"value"
    with pytest.raises(KeyError):
        tree.existence_proof(b"missing")
    with pytest.raises(KeyError):
        tree.non_existence_proof(b"key-3")


@pytest.mark.parametrize("name", sorted(SPECS))
@settings(max_examples=40, deadline=None)
@given(keys=keys_st, probe=st.lists(st.binary(min_size=1, max_size=8), max_size=8), data=st.data())
def test_assembled_proofs_equal_the_reference_encoding_across_versions(
    name: str, keys: list[bytes], probe: list[bytes], data: st.DataObject
) -> None:
    """prove()/lookup() assemble proofs from pieces cached on shared nodes; they must be the
    bytes encode_proof gives for the independently built decoded proofs, in every version
    (old snapshots keep their cached pieces while the new version replaces nodes)."""
    spec, _ = SPECS[name]
    tree = SparseMerkleTree(spec)
    for k in keys:
        tree.set(k, b"v " + k)

    def same(t: SparseMerkleTree) -> None:
        for key in [*keys, *probe]:
            value, raw = t.lookup(key)
            assert value == t.get(key) and raw == t.prove(key)
            if value is None:
                assert raw == encode_proof(t.non_existence_proof(key))
            else:
                assert raw == encode_proof(t.existence_proof(key))

    same(tree)  # fills the caches of this version
    before = tree.copy()
    changed = data.draw(st.lists(st.sampled_from(keys), unique=True))
    for k in changed[: len(changed) // 2]:
        tree.delete(k)
    for k in changed[len(changed) // 2 :]:
        tree.set(k, b"changed")
    for k in probe[:2]:
        tree.set(k, b"new")
    if len(tree):
        same(tree)
    same(before)


def test_a_spec_that_is_not_a_sparse_tree_is_refused() -> None:
    with pytest.raises(ValueError, match="not a sparse-Merkle-tree spec"):
        SparseMerkleTree(ics23.IAVL_SPEC)


def test_ten_thousand_records_and_a_copy_on_write_block() -> None:
    # No timing is asserted here (the machine is shared); the point is that a block applied
    # to a copy leaves the previous height's tree and proofs intact.
    items = [(os.urandom(40), os.urandom(300)) for _ in range(10_000)]
    tree = SparseMerkleTree()
    tree.update(items)
    root = tree.root
    next_block = tree.copy()
    next_block.update((k, v + b"!") for k, v in items[:500])  # a block changing 500 records
    next_root = next_block.root
    assert next_root != root == tree.root
    for key, value in items[::997]:
        proof = ics23.decode_commitment_proof(tree.prove(key))
        ics23.verify_membership(spec=ics23.SMT_SPEC, root=root, proof=proof, key=key, value=value)
    # depth stays logarithmic: proofs of a 10,000-key tree have about log2(10,000) steps
    depth = max(len(tree.existence_proof(k).path) for k, _ in items[:200])
    assert depth < 40
