"""A sparse Merkle tree that produces ICS-23 proofs under the SMT proof specs
(:data:`relay.verify.merkle.ics23.SMT_SPEC`, and its SM3 variant ``SMT_SM3_SPEC``).

The layout is celestiaorg/smt's, the one cosmos/ics23's ``SmtSpec`` describes: a key's leaf
sits on the path given by the bits of ``H(key)`` (most significant bit first); a subtree
holding a single leaf is that leaf itself (so depth grows with log2 of the key count, not
256); an empty subtree is 32 zero bytes; a leaf hashes as ``H(0x00 || H(key) || H(value))``
and an inner node as ``H(0x01 || left || right)``. Proofs are serialized
``cosmos.ics23.v1.CommitmentProof`` messages: an existence proof for a present key, a
non-existence proof (its neighbours in ``H(key)`` order) for an absent one.

Nodes are immutable and shared between versions, so :meth:`SparseMerkleTree.copy` is O(1)
and a chain keeps one snapshot per height for free; hashes are computed lazily, once per
node, so a batch of writes costs one hash per changed node when the root is next read.
Proofs are assembled from wire-format pieces cached on those immutable nodes (each inner
node's two possible ``InnerOp`` steps, each leaf's key/value/leaf-op fields), so serving a
proof is one walk from the root and a join, the way a partner node serves proofs from its
store; the bytes are exactly :func:`encode_proof`'s canonical encoding.

For test partner chains and reference registries; the verifier never imports it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass

from relay.pb.cosmos.ics23.v1 import proofs_pb2 as pb
from relay.verify.merkle import ics23
from relay.verify.merkle.ics23 import SMT_SPEC, ProofSpec

_LEAF = b"\x00"
_INNER = b"\x01"


class _Leaf:
    __slots__ = ("hash", "head", "key", "path", "value")

    def __init__(self, path: bytes, key: bytes, value: bytes, leaf_hash: bytes) -> None:
        self.path = path
        self.key = key
        self.value = value
        self.hash = leaf_hash
        # The key, value and leaf fields of this leaf's ExistenceProof (wire format), once
        # a proof of it was asked for.
        self.head: bytes | None = None


class _Inner:
    __slots__ = ("_hash", "_steps", "left", "right")

    def __init__(self, left: _Node, right: _Node) -> None:
        self.left = left
        self.right = right
        self._hash: bytes | None = None
        # The encoded ``path`` entries of a proof passing through this node: (via the left
        # child, via the right child). Both children are fixed, so they never change.
        self._steps: tuple[bytes, bytes] | None = None


_Node = _Leaf | _Inner | None


def _bit(path: bytes, depth: int) -> int:
    return (path[depth >> 3] >> (7 - (depth & 7))) & 1


def _varint(n: int) -> bytes:
    out = bytearray()
    while n >= 0x80:
        out.append((n & 0x7F) | 0x80)
        n >>= 7
    out.append(n)
    return bytes(out)


def _field(tag: int, data: bytes) -> bytes:
    """A length-delimited protobuf field (``tag`` is the one-byte key: number << 3 | 2)."""
    return bytes((tag,)) + _varint(len(data)) + data


# One-byte keys of the length-delimited fields of cosmos.ics23.v1 messages used here.
_F1, _F2, _F3, _F4 = 0x0A, 0x12, 0x1A, 0x22


@dataclass(frozen=True, slots=True)
class _Hashing:
    """The hash functions a spec implies, resolved once."""

    key: Callable[[bytes], bytes]
    value: Callable[[bytes], bytes]
    leaf: Callable[[bytes], bytes]
    inner: Callable[[bytes], bytes]
    empty: bytes
    inner_op: int
    leaf_field: bytes
    """ExistenceProof field 3: the spec's LeafOp, which every proof of the tree carries."""


def _hashing(spec: ProofSpec) -> _Hashing:
    ls, ins = spec.leaf_spec, spec.inner_spec
    problems = []
    if tuple(ins.child_order) != (0, 1) or ins.child_size != 32:
        problems.append("a binary tree of 32-byte children")
    if (ins.min_prefix_length, ins.max_prefix_length) != (1, 1) or ls.prefix != _LEAF:
        problems.append("leaf prefix 00 and inner prefix 01")
    if ls.length != ics23.LengthOp.NO_PREFIX or not spec.prehash_key_before_comparison:
        problems.append("unprefixed lengths and keys ordered by their hash")
    if ls.prehash_key == ics23.HashOp.NO_HASH or ls.prehash_value == ics23.HashOp.NO_HASH:
        problems.append("pre-hashed keys and values")
    if ins.empty_child != bytes(32):
        problems.append("32 zero bytes as the empty child")
    if problems:
        raise ValueError("not a sparse-Merkle-tree spec: needs " + ", ".join(problems))

    def fn(op: int) -> Callable[[bytes], bytes]:
        return lambda data: ics23.do_hash(op, data)

    return _Hashing(
        key=fn(ls.prehash_key),
        value=fn(ls.prehash_value),
        leaf=fn(ls.hash),
        inner=fn(ins.hash),
        empty=ins.empty_child,
        inner_op=ins.hash,
        leaf_field=_field(_F3, _leaf_pb(ls).SerializeToString(deterministic=True)),
    )


class SparseMerkleTree:
    """A map from byte keys to byte values with a Merkle root and ICS-23 proofs.

    ``spec`` fixes the hash functions (SHA-256 for ``SMT_SPEC``, SM3 for ``SMT_SM3_SPEC``); it
    must describe a binary sparse Merkle tree as above. Keys and values are non-empty bytes;
    :meth:`set` replaces, :meth:`delete` removes (a tree is a pure function of its contents:
    the same map always has the same root, whatever the order of writes).
    """

    __slots__ = ("_h", "_root", "_size", "spec")

    def __init__(self, spec: ProofSpec = SMT_SPEC) -> None:
        self.spec = spec
        self._h = _hashing(spec)
        self._root: _Node = None
        self._size = 0

    # --- reading ---

    def __len__(self) -> int:
        return self._size

    def __contains__(self, key: bytes) -> bool:
        return self._find(key) is not None

    def get(self, key: bytes) -> bytes | None:
        """The value under ``key``, or ``None``."""
        leaf = self._find(key)
        return None if leaf is None else leaf.value

    def items(self) -> Iterator[tuple[bytes, bytes]]:
        """(key, value) pairs in tree order (by ``H(key)``)."""
        stack: list[_Node] = [self._root]
        while stack:
            node = stack.pop()
            if isinstance(node, _Leaf):
                yield node.key, node.value
            elif isinstance(node, _Inner):
                stack.append(node.right)
                stack.append(node.left)

    @property
    def root(self) -> bytes:
        """The root hash (32 zero bytes for the empty tree)."""
        return self._hash(self._root)

    def copy(self) -> SparseMerkleTree:
        """An independent tree with the same contents, in O(1): later writes to either do
        not affect the other (nodes are never modified, only replaced)."""
        other = SparseMerkleTree.__new__(SparseMerkleTree)
        other.spec = self.spec
        other._h = self._h
        other._root = self._root
        other._size = self._size
        return other

    # --- writing ---

    def set(self, key: bytes, value: bytes) -> None:
        """Store ``value`` under ``key`` (replacing any previous value). ICS-23 proves
        neither empty keys nor empty values, so both are refused (``ValueError``)."""
        if not key or not value:
            raise ValueError("ICS-23 leaves need a non-empty key and a non-empty value")
        h = self._h
        path = h.key(key)
        leaf = _Leaf(path, bytes(key), bytes(value), h.leaf(_LEAF + path + h.value(value)))
        self._root, added = self._insert(self._root, leaf, 0)
        self._size += added

    def update(self, items: Iterable[tuple[bytes, bytes]]) -> None:
        """:meth:`set` every (key, value) pair."""
        for key, value in items:
            self.set(key, value)

    def delete(self, key: bytes) -> bool:
        """Remove ``key``; return whether it was present."""
        path = self._h.key(key)
        root, removed = self._remove(self._root, path, 0)
        if removed:
            self._root = root
            self._size -= 1
        return removed

    def _insert(self, node: _Node, leaf: _Leaf, depth: int) -> tuple[_Node, int]:
        if node is None:
            return leaf, 1
        if isinstance(node, _Leaf):
            if node.path == leaf.path:
                return leaf, 0
            return self._split(node, leaf, depth), 1
        if _bit(leaf.path, depth):
            right, added = self._insert(node.right, leaf, depth + 1)
            return _Inner(node.left, right), added
        left, added = self._insert(node.left, leaf, depth + 1)
        return _Inner(left, node.right), added

    @staticmethod
    def _split(old: _Leaf, new: _Leaf, depth: int) -> _Node:
        # Two leaves share a subtree: inner nodes down to the first bit where they differ.
        d = depth
        while _bit(old.path, d) == _bit(new.path, d):
            d += 1
        node: _Node = _Inner(new, old) if _bit(new.path, d) == 0 else _Inner(old, new)
        while d > depth:
            d -= 1
            node = _Inner(node, None) if _bit(new.path, d) == 0 else _Inner(None, node)
        return node

    def _remove(self, node: _Node, path: bytes, depth: int) -> tuple[_Node, bool]:
        if node is None:
            return None, False
        if isinstance(node, _Leaf):
            return (None, True) if node.path == path else (node, False)
        if _bit(path, depth):
            right, removed = self._remove(node.right, path, depth + 1)
            left = node.left
        else:
            left, removed = self._remove(node.left, path, depth + 1)
            right = node.right
        if not removed:
            return node, False
        # Keep the tree compact: a subtree left with a single leaf becomes that leaf.
        if left is None and (right is None or isinstance(right, _Leaf)):
            return right, True
        if right is None and isinstance(left, _Leaf):
            return left, True
        return _Inner(left, right), True

    # --- hashing ---

    def _hash(self, node: _Node) -> bytes:
        if node is None:
            return self._h.empty
        if isinstance(node, _Leaf):
            return node.hash
        if node._hash is not None:
            return node._hash
        # Iterative post-order, so deep chains of single-child nodes never recurse deeply.
        inner, empty = self._h.inner, self._h.empty
        stack: list[_Inner] = [node]
        while stack:
            top = stack[-1]
            pending = [
                c for c in (top.left, top.right) if isinstance(c, _Inner) and c._hash is None
            ]
            if pending:
                stack.extend(pending)
                continue
            stack.pop()
            left, right = top.left, top.right
            lh = empty if left is None else left.hash if isinstance(left, _Leaf) else left._hash
            rh = empty if right is None else right.hash if isinstance(right, _Leaf) else right._hash
            assert lh is not None and rh is not None
            top._hash = inner(_INNER + lh + rh)
        assert node._hash is not None
        return node._hash

    # --- proofs ---

    def _find(self, key: bytes) -> _Leaf | None:
        path = self._h.key(key)
        node, depth = self._root, 0
        while isinstance(node, _Inner):
            node = node.right if _bit(path, depth) else node.left
            depth += 1
        if isinstance(node, _Leaf) and node.path == path:
            return node
        return None

    def _path_ops(self, path: bytes) -> tuple[_Leaf | None, list[ics23.InnerOp]]:
        """The node reached by following ``path`` and the inner ops above it, leaf first."""
        op = self.spec.inner_spec.hash
        ops: list[ics23.InnerOp] = []
        node, depth = self._root, 0
        while isinstance(node, _Inner):
            if _bit(path, depth):
                ops.append(ics23.InnerOp(op, _INNER + self._hash(node.left), b""))
                node = node.right
            else:
                ops.append(ics23.InnerOp(op, _INNER, self._hash(node.right)))
                node = node.left
            depth += 1
        ops.reverse()
        return node, ops

    def _existence(self, leaf: _Leaf) -> ics23.ExistenceProof:
        reached, ops = self._path_ops(leaf.path)
        assert reached is leaf
        return ics23.ExistenceProof(leaf.key, leaf.value, self.spec.leaf_spec, tuple(ops))

    def _neighbours(self, path: bytes) -> tuple[_Leaf | None, _Leaf | None]:
        """The leaves just before and just after ``path`` in tree order."""
        left: _Leaf | None = None
        right: _Leaf | None = None
        left_subtree: _Node = None
        right_subtree: _Node = None
        node, depth = self._root, 0
        while isinstance(node, _Inner):
            if _bit(path, depth):
                if node.left is not None:
                    left_subtree = node.left
                node = node.right
            else:
                if node.right is not None:
                    right_subtree = node.right
                node = node.left
            depth += 1
        if isinstance(node, _Leaf):
            # A compacted leaf on the path: it lies on one side of ``path``.
            if node.path < path:
                left = node
            elif node.path > path:
                right = node
        if left is None and left_subtree is not None:
            left = _extreme(left_subtree, last=True)
        if right is None and right_subtree is not None:
            right = _extreme(right_subtree, last=False)
        return left, right

    def existence_proof(self, key: bytes) -> ics23.ExistenceProof:
        """The decoded existence proof of a present ``key`` (``KeyError`` if absent)."""
        leaf = self._find(key)
        if leaf is None:
            raise KeyError(key)
        return self._existence(leaf)

    def non_existence_proof(self, key: bytes) -> ics23.NonExistenceProof:
        """The decoded non-existence proof of an absent ``key``: its neighbours in ``H(key)``
        order. Raises ``KeyError`` if ``key`` is present and ``ValueError`` on an empty tree
        (ICS-23 cannot prove absence without a neighbour)."""
        if not key:
            raise ValueError("ICS-23 cannot prove anything about the empty key")
        if self._find(key) is not None:
            raise KeyError(key)
        path = self._h.key(key)
        left, right = self._neighbours(path)
        if left is None and right is None:
            raise ValueError("an empty tree has no ICS-23 non-existence proofs")
        # The proof's key field holds the key itself (the verifier also accepts H(key)).
        return ics23.NonExistenceProof(
            bytes(key),
            None if left is None else self._existence(left),
            None if right is None else self._existence(right),
        )

    def prove(self, key: bytes) -> bytes:
        """A serialized ``CommitmentProof`` for ``key`` against :attr:`root`: an existence
        proof when ``key`` is present, a non-existence proof otherwise (the bytes
        :func:`encode_proof` gives for :meth:`existence_proof` / :meth:`non_existence_proof`).
        """
        return self.lookup(key)[1]

    def lookup(self, key: bytes) -> tuple[bytes | None, bytes]:
        """``(value or None, proof)``: :meth:`get` and :meth:`prove` in one walk."""
        if not key:
            raise ValueError("ICS-23 cannot prove anything about the empty key")
        path = self._h.key(key)
        steps: list[bytes] = []
        node, depth = self._root, 0
        while isinstance(node, _Inner):
            bit = _bit(path, depth)
            steps.append(self._steps(node)[bit])
            node = node.right if bit else node.left
            depth += 1
        if isinstance(node, _Leaf) and node.path == path:
            steps.append(self._head(node))
            steps.reverse()
            return node.value, _field(_F1, b"".join(steps))
        left, right = self._neighbours(path)
        if left is None and right is None:
            raise ValueError("an empty tree has no ICS-23 non-existence proofs")
        # The proof's key field holds the key itself (the verifier also accepts H(key)).
        parts = [_field(_F1, bytes(key))]
        if left is not None:
            parts.append(_field(_F2, self._exist_body(left)))
        if right is not None:
            parts.append(_field(_F3, self._exist_body(right)))
        return None, _field(_F2, b"".join(parts))

    def _steps(self, node: _Inner) -> tuple[bytes, bytes]:
        """The encoded ``path`` entries through ``node`` (see :meth:`_path_ops`)."""
        steps = node._steps
        if steps is None:
            op = self._h.inner_op
            via_left = pb.InnerOp(hash=op, prefix=_INNER, suffix=self._hash(node.right))  # type: ignore[arg-type]
            via_right = pb.InnerOp(hash=op, prefix=_INNER + self._hash(node.left))  # type: ignore[arg-type]
            steps = (
                _field(_F4, via_left.SerializeToString(deterministic=True)),
                _field(_F4, via_right.SerializeToString(deterministic=True)),
            )
            node._steps = steps
        return steps

    def _head(self, leaf: _Leaf) -> bytes:
        head = leaf.head
        if head is None:
            head = _field(_F1, leaf.key) + _field(_F2, leaf.value) + self._h.leaf_field
            leaf.head = head
        return head

    def _exist_body(self, leaf: _Leaf) -> bytes:
        """The encoded ExistenceProof (without its own field key) of a leaf of this tree."""
        steps: list[bytes] = []
        node, depth = self._root, 0
        while isinstance(node, _Inner):
            bit = _bit(leaf.path, depth)
            steps.append(self._steps(node)[bit])
            node = node.right if bit else node.left
            depth += 1
        assert node is leaf
        steps.append(self._head(leaf))
        steps.reverse()
        return b"".join(steps)


def _extreme(node: _Node, *, last: bool) -> _Leaf | None:
    while isinstance(node, _Inner):
        if last:
            node = node.right if node.right is not None else node.left
        else:
            node = node.left if node.left is not None else node.right
    return node


def _leaf_pb(leaf: ics23.LeafOp) -> pb.LeafOp:
    return pb.LeafOp(
        hash=pb.HashOp.ValueType(leaf.hash),
        prehash_key=pb.HashOp.ValueType(leaf.prehash_key),
        prehash_value=pb.HashOp.ValueType(leaf.prehash_value),
        length=pb.LengthOp.ValueType(leaf.length),
        prefix=leaf.prefix,
    )


def _exist_pb(e: ics23.ExistenceProof) -> pb.ExistenceProof:
    assert e.leaf is not None
    return pb.ExistenceProof(
        key=e.key,
        value=e.value,
        leaf=_leaf_pb(e.leaf),
        path=[
            pb.InnerOp(hash=pb.HashOp.ValueType(o.hash), prefix=o.prefix, suffix=o.suffix)
            for o in e.path
        ],
    )


def encode_proof(proof: ics23.ExistenceProof | ics23.NonExistenceProof) -> bytes:
    """The canonical ``CommitmentProof`` bytes of a decoded existence or non-existence proof."""
    if isinstance(proof, ics23.ExistenceProof):
        return pb.CommitmentProof(exist=_exist_pb(proof)).SerializeToString(deterministic=True)
    n = pb.NonExistenceProof(key=proof.key)
    if proof.left is not None:
        n.left.CopyFrom(_exist_pb(proof.left))
    if proof.right is not None:
        n.right.CopyFrom(_exist_pb(proof.right))
    return pb.CommitmentProof(nonexist=n).SerializeToString(deterministic=True)
