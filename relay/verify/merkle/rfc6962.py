"""Merkle tree hashing, inclusion and consistency proofs of RFC 6962 / RFC 9162 (2.1).

Hash-agile: a :class:`TreeHasher` wraps any :class:`~relay.verify.hashing.Hasher` (SHA-256 as
in the RFC, SM3 for registries that use GM/T algorithms). Verification follows RFC 9162
2.1.3.2 and 2.1.4.2 in the decomposed form of transparency-dev/merkle: compute the root a
proof implies (``root_from_*``), then compare it with the trusted one (``verify_*``), raising
:class:`~relay.verify.errors.RootMismatchError` that carries both.

The generators at the bottom (``root_hash``, ``inclusion_proof``, ``consistency_proof``) are
the RFC's recursive definitions (MTH, PATH, SUBPROOF); they serve logs that publish proofs
and tests that need a reference.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import overload

from relay.verify.errors import InvalidProofError, MalformedInputError, RootMismatchError
from relay.verify.hashing import SHA256, SM3, Hasher

MAX_TREE_SIZE = 1 << 63
"""Sizes are unsigned 64-bit in every log format; we keep one bit of headroom."""

MAX_PROOF_HASHES = 64
"""No inclusion or consistency proof of a tree below 2**64 leaves is longer than 64 hashes."""

_LEAF_PREFIX = b"\x00"
_NODE_PREFIX = b"\x01"


class TreeHasher:
    """RFC 6962 2.1 hashing: ``H(0x00 || leaf)`` for leaves, ``H(0x01 || l || r)`` for nodes."""

    __slots__ = ("_h", "digest_size", "hasher")

    def __init__(self, hasher: Hasher) -> None:
        self.hasher = hasher
        self.digest_size = hasher.digest_size
        self._h = hasher.hash

    def empty_root(self) -> bytes:
        """MTH({}) = HASH() (RFC 9162 2.1.1)."""
        return self._h(b"")

    def hash_leaf(self, leaf: bytes) -> bytes:
        return self._h(_LEAF_PREFIX + leaf)

    def hash_children(self, left: bytes, right: bytes) -> bytes:
        return self._h(_NODE_PREFIX + left + right)

    def __repr__(self) -> str:
        return f"TreeHasher({self.hasher.name})"


RFC6962_SHA256 = TreeHasher(SHA256)
RFC6962_SM3 = TreeHasher(SM3)


def _check_size(name: str, value: int) -> None:
    if not 0 <= value < MAX_TREE_SIZE:
        raise MalformedInputError(f"{name} out of range", **{name: value})


def _check_hashes(hasher: TreeHasher, proof: Sequence[bytes]) -> None:
    if len(proof) > MAX_PROOF_HASHES:
        raise InvalidProofError(
            "proof longer than any tree below 2**64 leaves allows",
            length=len(proof),
            limit=MAX_PROOF_HASHES,
        )
    size = hasher.digest_size
    if any(len(h) != size for h in proof):
        i = next(i for i, h in enumerate(proof) if len(h) != size)
        raise MalformedInputError(
            "proof hash has the wrong length", index=i, length=len(proof[i]), expected=size
        )


def _decompose(index: int, size: int) -> tuple[int, int]:
    """Split the inclusion path of ``index`` in a tree of ``size`` leaves into the part below
    the point where it diverges from the path to leaf ``size-1`` (inner) and above (border)."""
    inner = (index ^ (size - 1)).bit_length()
    border = (index >> inner).bit_count()
    return inner, border


# The chain functions are the hot path: they call the raw hash function directly with the
# node prefix instead of going through TreeHasher.hash_children.


def _chain_inner(hasher: TreeHasher, seed: bytes, proof: Sequence[bytes], index: int) -> bytes:
    h = hasher._h
    for p in proof:
        seed = h(_NODE_PREFIX + p + seed) if index & 1 else h(_NODE_PREFIX + seed + p)
        index >>= 1
    return seed


def _chain_inner_right(
    hasher: TreeHasher, seed: bytes, proof: Sequence[bytes], index: int
) -> bytes:
    # Only left siblings: the hash of this subtree as it was in the smaller tree.
    h = hasher._h
    for p in proof:
        if index & 1:
            seed = h(_NODE_PREFIX + p + seed)
        index >>= 1
    return seed


def _chain_border_right(hasher: TreeHasher, seed: bytes, proof: Sequence[bytes]) -> bytes:
    h = hasher._h
    for p in proof:
        seed = h(_NODE_PREFIX + p + seed)
    return seed


def _match(message: str, *, calculated: bytes, expected: bytes, **context: object) -> None:
    if calculated != expected:
        raise RootMismatchError(message, expected=expected, calculated=calculated, **context)


def root_from_inclusion_proof(
    *, hasher: TreeHasher, index: int, size: int, leaf_hash: bytes, proof: Sequence[bytes]
) -> bytes:
    """Return the root implied by an inclusion proof of leaf ``index`` in a tree of ``size``.

    Requires ``0 <= index < size`` and ``len(proof)`` exactly the RFC 9162 2.1.3.1 path
    length for that index and size; raises :class:`InvalidProofError` otherwise.
    """
    _check_size("size", size)
    _check_size("index", index)
    if index >= size:
        raise InvalidProofError("leaf index is beyond the tree size", index=index, size=size)
    if len(leaf_hash) != hasher.digest_size:
        raise MalformedInputError(
            "leaf hash has the wrong length", length=len(leaf_hash), expected=hasher.digest_size
        )
    _check_hashes(hasher, proof)
    inner, border = _decompose(index, size)
    if len(proof) != inner + border:
        raise InvalidProofError(
            "inclusion proof has the wrong number of hashes",
            expected=inner + border,
            calculated=len(proof),
            index=index,
            size=size,
        )
    root = _chain_inner(hasher, leaf_hash, proof[:inner], index)
    return _chain_border_right(hasher, root, proof[inner:])


def verify_inclusion(
    *,
    hasher: TreeHasher,
    index: int,
    size: int,
    leaf_hash: bytes,
    proof: Sequence[bytes],
    root: bytes,
) -> None:
    """Check that ``leaf_hash`` is leaf ``index`` of the tree of ``size`` leaves with ``root``.

    Raises :class:`RootMismatchError` (expected vs calculated root) or
    :class:`InvalidProofError` / :class:`MalformedInputError` for a malformed proof.
    """
    calculated = root_from_inclusion_proof(
        hasher=hasher, index=index, size=size, leaf_hash=leaf_hash, proof=proof
    )
    _match(
        "inclusion proof does not lead to the trusted root",
        calculated=calculated,
        expected=root,
        index=index,
        size=size,
    )


def root_from_consistency_proof(
    *, hasher: TreeHasher, size1: int, size2: int, proof: Sequence[bytes], root1: bytes
) -> bytes:
    """Return the root of the tree of ``size2`` implied by ``proof`` and the trusted ``root1``
    of its prefix of ``size1`` leaves, after checking that ``proof`` reproduces ``root1``.

    Requires ``0 < size1 <= size2``: every tree extends the empty tree, so a proof from size 0
    proves nothing and is refused (as transparency-dev/merkle does). For ``size1 == size2``
    the proof must be empty and the result is ``root1``.
    """
    _check_size("size1", size1)
    _check_size("size2", size2)
    if size2 < size1:
        raise InvalidProofError("size2 is smaller than size1", size1=size1, size2=size2)
    if size1 == 0:
        raise InvalidProofError("a consistency proof from the empty tree is meaningless")
    if size1 == size2:
        if proof:
            raise InvalidProofError(
                "size1 equals size2 but the proof is not empty", length=len(proof)
            )
        return root1
    if not proof:
        raise InvalidProofError(
            "empty consistency proof for size1 < size2", size1=size1, size2=size2
        )
    _check_hashes(hasher, proof)
    inner, border = _decompose(size1 - 1, size2)
    shift = (size1 & -size1).bit_length() - 1
    inner -= shift
    # The proof starts with the root of the largest complete subtree at the end of the old
    # tree, unless the old tree is itself that complete subtree (then its root is root1).
    if size1 == 1 << shift:
        seed, rest = root1, proof
    else:
        seed, rest = proof[0], proof[1:]
    expected_len = inner + border + (len(proof) - len(rest))
    if len(proof) != expected_len:
        raise InvalidProofError(
            "consistency proof has the wrong number of hashes",
            expected=expected_len,
            calculated=len(proof),
            size1=size1,
            size2=size2,
        )
    mask = (size1 - 1) >> shift
    hash1 = _chain_inner_right(hasher, seed, rest[:inner], mask)
    hash1 = _chain_border_right(hasher, hash1, rest[inner:])
    _match(
        "consistency proof does not reproduce the old root",
        calculated=hash1,
        expected=root1,
        size1=size1,
    )
    hash2 = _chain_inner(hasher, seed, rest[:inner], mask)
    return _chain_border_right(hasher, hash2, rest[inner:])


def verify_consistency(
    *,
    hasher: TreeHasher,
    size1: int,
    size2: int,
    proof: Sequence[bytes],
    root1: bytes,
    root2: bytes,
) -> None:
    """Check that the tree ``(size2, root2)`` is an append-only extension of ``(size1, root1)``
    (RFC 9162 2.1.4.2). Requires ``0 < size1 <= size2``; raises typed errors otherwise."""
    calculated = root_from_consistency_proof(
        hasher=hasher, size1=size1, size2=size2, proof=proof, root1=root1
    )
    _match(
        "consistency proof does not lead to the new root",
        calculated=calculated,
        expected=root2,
        size1=size1,
        size2=size2,
    )


# --- generators: RFC 9162 2.1.1 (MTH), 2.1.3.1 (PATH), 2.1.4.1 (SUBPROOF) -------------------


def _split(n: int) -> int:
    """The largest power of two strictly smaller than ``n`` (requires n > 1)."""
    return 1 << ((n - 1).bit_length() - 1)


def root_hash(*, hasher: TreeHasher, leaf_hashes: Sequence[bytes]) -> bytes:
    """MTH of a list of already-hashed leaves (the empty list gives ``HASH()``)."""
    n = len(leaf_hashes)
    if n == 0:
        return hasher.empty_root()
    # Bottom-up with carried odd nodes equals the RFC's recursive split for any n.
    level = list(leaf_hashes)
    h = hasher.hash_children
    while len(level) > 1:
        nxt = [h(level[i], level[i + 1]) for i in range(0, len(level) - 1, 2)]
        if len(level) % 2:
            nxt.append(level[-1])
        level = nxt
    return level[0]


_KEPT_LEVEL = 8  # complete subtrees of 2**8 = 256 leaves and more keep their roots


class MerkleTree(Sequence[bytes]):
    """An append-only RFC 6962 tree held in memory: its leaf hashes (one bytearray, a
    digest per leaf) and the root of every complete aligned subtree of 256 leaves or more.
    Roots of any size and inclusion and consistency proofs then cost O(log n) kept roots
    plus at most a few subtrees of under 256 leaves hashed, whatever n is (the list
    functions above rehash all n leaves); appending k leaves costs about k hashes.

    Reads as a sequence of leaf hashes: ``len(tree)``, ``tree[i]`` (bytes), ``tree[a:b]``
    (a list). Readers in other threads may run while the owner appends (each read sees a
    prefix; a kept root not yet written is computed from its halves)."""

    __slots__ = ("_data", "_hasher", "_levels", "_width")

    def __init__(self, hasher: TreeHasher, leaf_hashes: Iterable[bytes] = ()) -> None:
        self._hasher = hasher
        self._width = hasher.digest_size
        self._data = bytearray()
        # _levels[j][i]: root of leaves [i * 2**(8+j), (i + 1) * 2**(8+j)).
        self._levels: list[list[bytes]] = []
        self.extend(leaf_hashes)

    def __len__(self) -> int:
        return len(self._data) // self._width

    @overload
    def __getitem__(self, index: int) -> bytes: ...
    @overload
    def __getitem__(self, index: slice) -> list[bytes]: ...
    def __getitem__(self, index: int | slice) -> bytes | list[bytes]:
        w = self._width
        if isinstance(index, slice):
            a, b, step = index.indices(len(self))
            if step != 1:
                return [self[i] for i in range(a, b, step)]
            chunk = bytes(self._data[a * w : max(a, b) * w])
            return [chunk[i : i + w] for i in range(0, len(chunk), w)]
        n = len(self)
        i = index + n if index < 0 else index
        if not 0 <= i < n:
            raise IndexError("leaf index out of range")
        return bytes(self._data[i * w : (i + 1) * w])

    def append(self, leaf_hash: bytes) -> None:
        self.extend((leaf_hash,))

    def extend(self, leaf_hashes: Iterable[bytes]) -> None:
        """Add leaf hashes (each ``digest_size`` bytes) after the last."""
        w = self._width
        chunk = 1 << _KEPT_LEVEL
        for leaf in leaf_hashes:
            if len(leaf) != w:
                raise MalformedInputError("leaf hash has the wrong length", length=len(leaf))
            self._data += leaf
            n = len(self._data) // w
            if n % chunk:
                continue
            # A subtree of 256 leaves is complete: keep its root, then every larger
            # complete subtree it finishes.
            node = root_hash(hasher=self._hasher, leaf_hashes=self[n - chunk : n])
            level = 0
            while True:
                if len(self._levels) == level:
                    self._levels.append([])
                kept = self._levels[level]
                kept.append(node)
                if len(kept) % 2:
                    break
                node = self._hasher.hash_children(kept[-2], kept[-1])
                level += 1

    def _perfect(self, lo: int, n: int) -> bytes:
        """Root of the complete aligned subtree of ``n`` (a power of two) leaves at ``lo``."""
        if n >= 1 << _KEPT_LEVEL:
            level = n.bit_length() - 1 - _KEPT_LEVEL
            if level < len(self._levels) and lo // n < len(self._levels[level]):
                return self._levels[level][lo // n]
            half = n // 2  # being appended right now: from its halves
            return self._hasher.hash_children(
                self._perfect(lo, half), self._perfect(lo + half, half)
            )
        return root_hash(hasher=self._hasher, leaf_hashes=self[lo : lo + n])

    def _mth(self, lo: int, hi: int) -> bytes:
        """MTH(D[lo:hi]) for a node of the RFC 9162 2.1.1 recursion (lo aligned to the
        largest power of two below hi - lo, as every such node is)."""
        n = hi - lo
        if n == 0:
            return self._hasher.empty_root()
        if n & (n - 1) == 0:
            return self._perfect(lo, n)
        k = _split(n)
        return self._hasher.hash_children(self._mth(lo, lo + k), self._mth(lo + k, hi))

    def _size(self, size: int | None) -> int:
        n = len(self)
        if size is None:
            return n
        if not 0 <= size <= n:
            raise InvalidProofError("tree size is beyond the leaves held", size=size, held=n)
        return size

    def root(self, size: int | None = None) -> bytes:
        """MTH of the first ``size`` leaves (all by default)."""
        return self._mth(0, self._size(size))

    def root_with(self, size: int, *, held: int, more: Sequence[bytes]) -> bytes:
        """MTH of a tree whose first ``held`` leaves are this one's and whose next ones are
        ``more`` (e.g. leaves just read, not yet appended), over its first ``size``
        leaves. Only the nodes reaching past ``held`` are rehashed."""
        held = self._size(held)
        if not 0 <= size <= held + len(more):
            raise InvalidProofError("tree size is beyond the leaves given", size=size)

        def mth(lo: int, hi: int) -> bytes:
            if hi <= held:
                return self._mth(lo, hi)
            if lo >= held:
                return root_hash(hasher=self._hasher, leaf_hashes=more[lo - held : hi - held])
            k = _split(hi - lo)
            return self._hasher.hash_children(mth(lo, lo + k), mth(lo + k, hi))

        return mth(0, size)

    def inclusion_proof(self, index: int, size: int | None = None) -> list[bytes]:
        """PATH(index, D[size]) (RFC 9162 2.1.3.1). Requires 0 <= index < size."""
        n = self._size(size)
        if not 0 <= index < n:
            raise InvalidProofError("leaf index is beyond the tree size", index=index, size=n)
        path: list[bytes] = []
        lo, hi = 0, n
        while hi - lo > 1:
            k = _split(hi - lo)
            if index < lo + k:
                path.append(self._mth(lo + k, hi))
                hi = lo + k
            else:
                path.append(self._mth(lo, lo + k))
                lo += k
        path.reverse()
        return path

    def consistency_proof(self, size1: int, size2: int | None = None) -> list[bytes]:
        """PROOF(size1, D[size2]) (RFC 9162 2.1.4.1). Requires 0 < size1 <= size2."""
        n = self._size(size2)
        if not 0 < size1 <= n:
            raise InvalidProofError(
                "consistency proof needs 0 < size1 <= size2", size1=size1, size2=n
            )
        proof: list[bytes] = []
        lo, hi, m, complete = 0, n, size1, True
        while m != hi - lo:
            k = _split(hi - lo)
            if m <= k:
                proof.append(self._mth(lo + k, hi))
                hi = lo + k
            else:
                proof.append(self._mth(lo, lo + k))
                lo, m, complete = lo + k, m - k, False
        if not complete:
            proof.append(self._mth(lo, hi))
        proof.reverse()
        return proof


def inclusion_proof(*, hasher: TreeHasher, leaf_hashes: Sequence[bytes], index: int) -> list[bytes]:
    """PATH(index, D[n]): the audit path of leaf ``index``. Requires 0 <= index < n."""
    n = len(leaf_hashes)
    if not 0 <= index < n:
        raise InvalidProofError("leaf index is beyond the tree size", index=index, size=n)
    if n == 1:
        return []
    k = _split(n)
    if index < k:
        return [
            *inclusion_proof(hasher=hasher, leaf_hashes=leaf_hashes[:k], index=index),
            root_hash(hasher=hasher, leaf_hashes=leaf_hashes[k:]),
        ]
    return [
        *inclusion_proof(hasher=hasher, leaf_hashes=leaf_hashes[k:], index=index - k),
        root_hash(hasher=hasher, leaf_hashes=leaf_hashes[:k]),
    ]


def consistency_proof(
    *, hasher: TreeHasher, leaf_hashes: Sequence[bytes], size1: int
) -> list[bytes]:
    """PROOF(size1, D[n]) for n = len(leaf_hashes). Requires 0 < size1 <= n."""
    n = len(leaf_hashes)
    if not 0 < size1 <= n:
        raise InvalidProofError("consistency proof needs 0 < size1 <= size2", size1=size1, size2=n)
    return _subproof(hasher, leaf_hashes, size1, True)


def _subproof(hasher: TreeHasher, leaves: Sequence[bytes], m: int, complete: bool) -> list[bytes]:
    n = len(leaves)
    if m == n:
        return [] if complete else [root_hash(hasher=hasher, leaf_hashes=leaves)]
    k = _split(n)
    if m <= k:
        return [
            *_subproof(hasher, leaves[:k], m, complete),
            root_hash(hasher=hasher, leaf_hashes=leaves[k:]),
        ]
    return [
        *_subproof(hasher, leaves[k:], m - k, False),
        root_hash(hasher=hasher, leaf_hashes=leaves[:k]),
    ]
