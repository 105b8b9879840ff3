"""The fast ICS-23 verifier against small, obviously-correct tree builders written here.

Two naive references build random trees and their proofs the slow, recursive way:

* a CometBFT ``crypto/merkle`` simple tree (split at the largest power of two below n;
  leaf ``H(0x00 || len(key) || key || len(H(value)) || H(value))``, node ``H(0x01 || l || r)``),
  the layout of TENDERMINT_SPEC;
* a sparse Merkle tree in the style of celestiaorg/smt (leaves placed by the bits of
  ``H(key)``, a subtree holding one leaf collapsed into it, empty subtrees 32 zero bytes),
  the layout of SMT_SPEC.

Both run with SHA-256 and SM3 (the project's SM3 specs). The verifier must accept exactly the
true statements about the tree: present keys with their values, absent keys with their true
neighbours; and compute the reference root from every proof.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from relay.pb.cosmos.ics23.v1 import proofs_pb2 as pb
from relay.verify.errors import ProofShapeError, RootMismatchError, VerificationError
from relay.verify.hashing import SM3
from relay.verify.merkle import ics23

Hash = Callable[[bytes], bytes]
ZERO = bytes(32)


def sha256(data: bytes) -> bytes:
    return hashlib.sha256(data).digest()


def varint(n: int) -> bytes:
    out = b""
    while n >= 0x80:
        out += bytes([(n & 0x7F) | 0x80])
        n >>= 7
    return out + bytes([n])


class SimpleTree:
    """CometBFT simple Merkle tree over sorted (key, value) pairs, built recursively."""

    def __init__(self, items: dict[bytes, bytes], h: Hash, spec: ics23.ProofSpec) -> None:
        self.h, self.spec = h, spec
        self.keys = sorted(items)
        self.items = items
        self.leaves = [self.leaf(k, items[k]) for k in self.keys]

    def leaf(self, key: bytes, value: bytes) -> bytes:
        hv = self.h(value)
        return self.h(b"\x00" + varint(len(key)) + key + varint(len(hv)) + hv)

    @staticmethod
    def split(n: int) -> int:
        k = 1
        while k * 2 < n:
            k *= 2
        return k

    def root_of(self, leaves: list[bytes]) -> bytes:
        if len(leaves) == 1:
            return leaves[0]
        k = self.split(len(leaves))
        return self.h(b"\x01" + self.root_of(leaves[:k]) + self.root_of(leaves[k:]))

    @property
    def root(self) -> bytes:
        return self.root_of(self.leaves)

    def path(self, leaves: list[bytes], i: int) -> list[ics23.InnerOp]:
        if len(leaves) == 1:
            return []
        k = self.split(len(leaves))
        op = self.spec.inner_spec.hash
        if i < k:
            step = ics23.InnerOp(op, b"\x01", self.root_of(leaves[k:]))
            return [*self.path(leaves[:k], i), step]
        step = ics23.InnerOp(op, b"\x01" + self.root_of(leaves[:k]), b"")
        return [*self.path(leaves[k:], i - k), step]

    def exist(self, key: bytes) -> ics23.ExistenceProof:
        i = self.keys.index(key)
        path = tuple(self.path(self.leaves, i))
        return ics23.ExistenceProof(key, self.items[key], self.spec.leaf_spec, path)

    def order(self, key: bytes) -> bytes:
        return key

    def nonexist(self, key: bytes) -> ics23.NonExistenceProof:
        """Neighbours of ``key`` among the other keys (even when ``key`` is present)."""
        others = [k for k in self.keys if k != key]
        below = [k for k in others if self.order(k) < self.order(key)]
        above = [k for k in others if self.order(k) > self.order(key)]
        left = self.exist(max(below, key=self.order)) if below else None
        right = self.exist(min(above, key=self.order)) if above else None
        return ics23.NonExistenceProof(self.order(key), left, right)


class SparseTree(SimpleTree):
    """Sparse Merkle tree keyed by H(key), single-leaf subtrees collapsed, built recursively."""

    def __init__(self, items: dict[bytes, bytes], h: Hash, spec: ics23.ProofSpec) -> None:
        super().__init__(items, h, spec)
        self.keys = sorted(items, key=h)

    def leaf(self, key: bytes, value: bytes) -> bytes:
        return self.h(b"\x00" + self.h(key) + self.h(value))

    def order(self, key: bytes) -> bytes:
        return self.h(key)

    @staticmethod
    def bit(path: bytes, depth: int) -> int:
        return (path[depth // 8] >> (7 - depth % 8)) & 1

    def node(self, keys: list[bytes], depth: int) -> bytes:
        if not keys:
            return ZERO
        if len(keys) == 1:
            return self.leaf(keys[0], self.items[keys[0]])
        left = [k for k in keys if self.bit(self.h(k), depth) == 0]
        right = [k for k in keys if self.bit(self.h(k), depth) == 1]
        return self.h(b"\x01" + self.node(left, depth + 1) + self.node(right, depth + 1))

    @property
    def root(self) -> bytes:
        return self.node(self.keys, 0)

    def walk(self, keys: list[bytes], key: bytes, depth: int) -> list[ics23.InnerOp]:
        if len(keys) == 1:
            return []
        left = [k for k in keys if self.bit(self.h(k), depth) == 0]
        right = [k for k in keys if self.bit(self.h(k), depth) == 1]
        op = self.spec.inner_spec.hash
        if self.bit(self.h(key), depth) == 0:
            step = ics23.InnerOp(op, b"\x01", self.node(right, depth + 1))
            return [*self.walk(left, key, depth + 1), step]
        step = ics23.InnerOp(op, b"\x01" + self.node(left, depth + 1), b"")
        return [*self.walk(right, key, depth + 1), step]

    def exist(self, key: bytes) -> ics23.ExistenceProof:
        path = tuple(self.walk(self.keys, key, 0))
        return ics23.ExistenceProof(key, self.items[key], self.spec.leaf_spec, path)


TREES = {
    "tendermint-sha256": (SimpleTree, sha256, ics23.TENDERMINT_SPEC),
    "tendermint-sm3": (SimpleTree, SM3.hash, ics23.TENDERMINT_SM3_SPEC),
    "smt-sha256": (SparseTree, sha256, ics23.SMT_SPEC),
    "smt-sm3": (SparseTree, SM3.hash, ics23.SMT_SM3_SPEC),
}


def _wire(proof: ics23.ExistenceProof | ics23.NonExistenceProof) -> bytes:
    """Encode with the generated protobuf classes (an independent encoder of our tuples)."""

    def exist(e: ics23.ExistenceProof) -> pb.ExistenceProof:
        assert e.leaf is not None
        return pb.ExistenceProof(
            key=e.key,
            value=e.value,
            leaf=pb.LeafOp(
                hash=pb.HashOp.ValueType(e.leaf.hash),
                prehash_key=pb.HashOp.ValueType(e.leaf.prehash_key),
                prehash_value=pb.HashOp.ValueType(e.leaf.prehash_value),
                length=pb.LengthOp.ValueType(e.leaf.length),
                prefix=e.leaf.prefix,
            ),
            path=[
                pb.InnerOp(hash=pb.HashOp.ValueType(o.hash), prefix=o.prefix, suffix=o.suffix)
                for o in e.path
            ],
        )

    if isinstance(proof, ics23.ExistenceProof):
        return pb.CommitmentProof(exist=exist(proof)).SerializeToString()
    n = pb.NonExistenceProof(key=proof.key)
    if proof.left is not None:
        n.left.CopyFrom(exist(proof.left))
    if proof.right is not None:
        n.right.CopyFrom(exist(proof.right))
    return pb.CommitmentProof(nonexist=n).SerializeToString()


keys_st = st.lists(st.binary(min_size=1, max_size=6), min_size=1, max_size=20, unique=True)


@pytest.mark.parametrize("name", sorted(TREES))
@settings(max_examples=60, deadline=None)
@given(keys=keys_st, absent=st.lists(st.binary(min_size=1, max_size=6), max_size=4), data=st.data())
def test_verifier_agrees_with_reference_trees(
    name: str, keys: list[bytes], absent: list[bytes], data: st.DataObject
) -> None:
    kind, h, spec = TREES[name]
    items = {k: data.draw(st.binary(min_size=1, max_size=12)) for k in keys}
    tree = kind(items, h, spec)
    root = tree.root
    for key, value in items.items():
        proof = tree.exist(key)
        decoded = ics23.decode_commitment_proof(_wire(proof))
        assert decoded == proof
        # The fast path computes the reference root from the reference proof...
        assert ics23.calculate_existence_root(decoded, spec=spec) == root
        ics23.verify_membership(spec=spec, root=root, proof=decoded, key=key, value=value)
        # ...and refuses the false statements next to the true one.
        with pytest.raises(VerificationError):
            ics23.verify_membership(
                spec=spec, root=root, proof=decoded, key=key, value=value + b"\x00"
            )
        with pytest.raises(VerificationError):
            ics23.verify_non_membership(spec=spec, root=root, proof=tree.nonexist(key), key=key)
    for key in absent:
        if key in items:
            continue
        absent_proof = tree.nonexist(key)
        decoded = ics23.decode_commitment_proof(_wire(absent_proof))
        ics23.verify_non_membership(spec=spec, root=root, proof=decoded, key=key)
        with pytest.raises(VerificationError):
            ics23.verify_membership(spec=spec, root=root, proof=decoded, key=key, value=b"v")


@pytest.mark.parametrize("name", sorted(TREES))
@settings(max_examples=40, deadline=None)
@given(keys=st.lists(st.binary(min_size=1, max_size=6), min_size=3, max_size=20, unique=True))
def test_non_adjacent_neighbours_are_refused(name: str, keys: list[bytes]) -> None:
    """Skipping a present leaf between the neighbours (hiding it) must fail."""
    kind, h, spec = TREES[name]
    tree = kind(dict.fromkeys(keys, b"v"), h, spec)
    ordered = sorted(keys, key=tree.order)
    hidden = ordered[1]
    # A key between the outer two that is not itself in the tree:
    forged = ics23.NonExistenceProof(
        tree.order(hidden), tree.exist(ordered[0]), tree.exist(ordered[2])
    )
    with pytest.raises(VerificationError):
        ics23.verify_non_membership(spec=spec, root=tree.root, proof=forged, key=hidden)


def test_sha256_trees_do_not_verify_under_sm3_specs() -> None:
    items = {b"a": b"1", b"b": b"2", b"c": b"3"}
    for kind, spec_sha, spec_sm3 in (
        (SimpleTree, ics23.TENDERMINT_SPEC, ics23.TENDERMINT_SM3_SPEC),
        (SparseTree, ics23.SMT_SPEC, ics23.SMT_SM3_SPEC),
    ):
        tree = kind(items, sha256, spec_sha)
        proof = tree.exist(b"b")
        ics23.verify_membership(spec=spec_sha, root=tree.root, proof=proof, key=b"b", value=b"2")
        with pytest.raises(ProofShapeError):
            ics23.verify_membership(
                spec=spec_sm3, root=tree.root, proof=proof, key=b"b", value=b"2"
            )


# --------------------------------------------------------------------------------------------
# Chained (IBC multistore) verification


def _multistore(
    store_items: dict[bytes, bytes],
) -> tuple[SparseTree, SimpleTree, dict[bytes, bytes]]:
    store = SparseTree(store_items, sha256, ics23.SMT_SPEC)
    stores = {b"acc": sha256(b"acc root"), b"bank": store.root, b"ibc": sha256(b"ibc root")}
    return store, SimpleTree(stores, sha256, ics23.TENDERMINT_SPEC), stores


def test_chained_membership_and_non_membership() -> None:
    store, multi, _ = _multistore({b"alice": b"10", b"bob": b"20", b"carol": b"30"})
    specs = (ics23.SMT_SPEC, ics23.TENDERMINT_SPEC)
    app_hash = multi.root
    proofs = (store.exist(b"bob"), multi.exist(b"bank"))
    ics23.verify_chained_membership(
        specs=specs, root=app_hash, proofs=proofs, keys=(b"bank", b"bob"), value=b"20"
    )
    absent = (store.nonexist(b"dave"), multi.exist(b"bank"))
    ics23.verify_chained_non_membership(
        specs=specs, root=app_hash, proofs=absent, keys=(b"bank", b"dave")
    )

    def rejects(**kwargs: object) -> VerificationError:
        args: dict[str, object] = {
            "specs": specs,
            "root": app_hash,
            "proofs": proofs,
            "keys": (b"bank", b"bob"),
            "value": b"20",
        }
        args.update(kwargs)
        with pytest.raises(VerificationError) as info:
            ics23.verify_chained_membership(**args)  # type: ignore[arg-type]
        return info.value

    assert isinstance(rejects(root=sha256(b"other app hash")), RootMismatchError)
    rejects(value=b"21")
    rejects(keys=(b"bob", b"bank"))  # IBC MerklePath order is outermost first
    rejects(keys=(b"acc", b"bob"))
    rejects(specs=(ics23.TENDERMINT_SPEC, ics23.SMT_SPEC))
    rejects(proofs=(multi.exist(b"bank"), store.exist(b"bob")))
    rejects(proofs=(store.exist(b"bob"),), keys=(b"bob",))  # the store root is not the app hash
    rejects(proofs=(), keys=(), specs=())
    rejects(keys=(b"bank",))
    rejects(value=b"")
    rejects(proofs=absent, keys=(b"bank", b"dave"))
    with pytest.raises(VerificationError):
        ics23.verify_chained_non_membership(
            specs=specs, root=app_hash, proofs=absent, keys=(b"bank", b"bob")
        )
    with pytest.raises(VerificationError):
        ics23.verify_chained_non_membership(
            specs=specs, root=app_hash, proofs=proofs, keys=(b"bank", b"bob")
        )
    with pytest.raises(RootMismatchError):
        ics23.verify_chained_non_membership(
            specs=specs, root=sha256(b"x"), proofs=absent, keys=(b"bank", b"dave")
        )
