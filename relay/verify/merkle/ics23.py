"""ICS-23 vector-commitment proofs (cosmos/ics23): decode, check against a pinned spec, verify.

Implements the client side of ICS-23 (cosmos/ibc ``spec/core/ics-023-vector-commitments``)
with the semantics of cosmos/ics23's Go implementation (``go/ics23.go``, ``go/proof.go``,
``go/ops.go``, v0.11 plus the later spec-validation fixes): every proof is first checked
against a :class:`ProofSpec` the caller pins (IAVL, Tendermint simple Merkle, SMT, or an SM3
variant), including the rules added after the October 2022 advisory (IAVL prefixes parsed as
height/size/version varints, Tendermint inner prefixes, leaf prefix never starting an inner
prefix, ``max_prefix_length < min_prefix_length + child_size``, ``max_depth`` 128 when unset);
only then is the root computed and compared. Chained verification
(:func:`verify_chained_membership`) follows ibc-go ``modules/core/23-commitment``: a store
proof, then the multistore proof of that store's root in the app hash.

Three rules are stricter than upstream, so that no byte of a proof is without effect and a
sibling of the wrong length is named as such: proofs must be canonically encoded protobuf, a
non-existence proof's ``key`` field must name the key being proven, and an inner prefix must
be constant bytes within the spec's bounds plus whole children. The ``SM3`` hash op (100)
and the ``*_SM3_SPEC`` constants are a project extension for partner chains bound to GM/T
algorithms.

Proofs are decoded once into tuples (:class:`ExistenceProof`, ...) so verification does not
pay protobuf attribute access; specs are Python values chosen by the caller, never read from
the proof. Failures raise :mod:`relay.verify.errors` types whose ``context`` holds a stable
``check`` name and the values involved.
"""

from __future__ import annotations

import enum
import importlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import NamedTuple, TypeAlias

from google.protobuf.message import DecodeError

from relay.pb.cosmos.ics23.v1 import proofs_pb2 as _pb
from relay.verify import hashing
from relay.verify.errors import (
    InvalidProofError,
    KeyMismatchError,
    LimitExceededError,
    MalformedInputError,
    MismatchError,
    ProofShapeError,
    RootMismatchError,
    UnsupportedError,
    VerificationError,
)

# --------------------------------------------------------------------------------------------
# Limits

MAX_PROOF_BYTES = 1 << 20
"""Default size limit of an encoded CommitmentProof. Real IAVL store proofs are a few KiB."""

MAX_PATH_STEPS = 1024
"""Decode-time cap on inner steps per existence proof. Specs allow far fewer (128 by default,
256 for SMT); this cap only bounds the work done before a spec is consulted."""

MAX_BATCH_ENTRIES = 4096
"""Decode-time cap on the entries of a batch (or compressed batch) proof."""

DEFAULT_MAX_DEPTH = 128
"""Depth limit applied when a spec leaves ``max_depth`` at 0 (cosmos/ics23 PR #352)."""


# --------------------------------------------------------------------------------------------
# Operation codes (values are the wire values of proofs.proto)


class HashOp(enum.IntEnum):
    """Hash operations of ICS-23. ``SM3`` (100) is a project extension, see proofs.proto."""

    NO_HASH = 0
    SHA256 = 1
    SHA512 = 2
    KECCAK256 = 3
    RIPEMD160 = 4
    BITCOIN = 5
    SHA512_256 = 6
    BLAKE2B_512 = 7
    BLAKE2S_256 = 8
    BLAKE3 = 9
    SM3 = 100


class LengthOp(enum.IntEnum):
    """How a leaf writes the length of its (pre-hashed) key and value."""

    NO_PREFIX = 0
    VAR_PROTO = 1
    VAR_RLP = 2
    FIXED32_BIG = 3
    FIXED32_LITTLE = 4
    FIXED64_BIG = 5
    FIXED64_LITTLE = 6
    REQUIRE_32_BYTES = 7
    REQUIRE_64_BYTES = 8


# --------------------------------------------------------------------------------------------
# Decoded proofs: plain tuples, built once by decode_commitment_proof().


class LeafOp(NamedTuple):
    """``hash(prefix || len(pk(key)) || pk(key) || len(pv(value)) || pv(value))``.

    Also the type of :attr:`ProofSpec.leaf_spec`. Op codes are plain ints (wire values).
    """

    hash: int = 0
    prehash_key: int = 0
    prehash_value: int = 0
    length: int = 0
    prefix: bytes = b""


class InnerOp(NamedTuple):
    """One step towards the root: ``hash(prefix || child || suffix)``."""

    hash: int
    prefix: bytes
    suffix: bytes


class ExistenceProof(NamedTuple):
    """Proves ``key -> value``: apply ``leaf``, then every step of ``path`` (leaf first)."""

    key: bytes
    value: bytes
    leaf: LeafOp | None
    path: tuple[InnerOp, ...]


class NonExistenceProof(NamedTuple):
    """Proves a key absent by its neighbours. ``key`` names the key the proof was made for
    (upstream ignores it; :func:`verify_non_membership` requires it to match)."""

    key: bytes
    left: ExistenceProof | None
    right: ExistenceProof | None


class BatchProof(NamedTuple):
    """Several proofs against one root (compressed batches are expanded at decode)."""

    entries: tuple[ExistenceProof | NonExistenceProof, ...]


CommitmentProof: TypeAlias = ExistenceProof | NonExistenceProof | BatchProof


# --------------------------------------------------------------------------------------------
# Specs


class OpRules(enum.Enum):
    """Tree-specific checks of inner and leaf prefixes on top of the generic spec checks.

    ``AUTO`` is upstream's behaviour: IAVL rules when the spec equals IAVL_SPEC and
    Tendermint rules when it equals TENDERMINT_SPEC, in the fields upstream's ``SpecEquals``
    compares (hash ops, length op, prefix bounds, child size, number of children). The SM3
    variants name their rules explicitly, since their hash ops differ from upstream's specs.
    """

    AUTO = "auto"
    NONE = "none"
    IAVL = "iavl"
    TENDERMINT = "tendermint"


@dataclass(frozen=True, slots=True)
class InnerSpec:
    """Layout of inner nodes (cosmos/ics23 ``InnerSpec``)."""

    child_order: tuple[int, ...] = ()
    child_size: int = 0
    min_prefix_length: int = 0
    max_prefix_length: int = 0
    empty_child: bytes = b""
    hash: int = HashOp.NO_HASH

    def __post_init__(self) -> None:
        # Accept any sequence for convenience, but keep the spec hashable and immutable.
        object.__setattr__(self, "child_order", tuple(self.child_order))


@dataclass(frozen=True, slots=True)
class ProofSpec:
    """What proofs of one tree format must look like (cosmos/ics23 ``ProofSpec``).

    ``max_depth`` 0 means :data:`DEFAULT_MAX_DEPTH`; ``min_depth`` 0 means no minimum.
    ``rules`` selects the tree-specific prefix checks (see :class:`OpRules`). A spec is not
    validated when built (upstream reports spec defects while checking proofs, and so does
    this module: an inner step checked against an invalid spec fails).
    """

    leaf_spec: LeafOp = field(default_factory=LeafOp)
    inner_spec: InnerSpec = field(default_factory=InnerSpec)
    max_depth: int = 0
    min_depth: int = 0
    prehash_key_before_comparison: bool = False
    rules: OpRules = OpRules.AUTO
    _c: _Compiled = field(init=False, repr=False, compare=False, hash=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "_c", _Compiled(self))


def _shape_key(spec: ProofSpec) -> tuple[int, ...]:
    # The fields cosmos/ics23 SpecEquals compares; prefixes and depths are deliberately not.
    ls, ins = spec.leaf_spec, spec.inner_spec
    return (
        ls.hash,
        ls.prehash_key,
        ls.prehash_value,
        ls.length,
        ins.hash,
        ins.min_prefix_length,
        ins.max_prefix_length,
        ins.child_size,
        len(ins.child_order),
    )


_IAVL_SHAPE = (1, 0, 1, 1, 1, 4, 12, 33, 2)
_TENDERMINT_SHAPE = (1, 0, 1, 1, 1, 1, 1, 32, 2)


class _Compiled:
    """Per-spec values the hot path needs, computed once when the spec is built."""

    __slots__ = (
        "child_limit",
        "child_size",
        "iavl",
        "inner_hash",
        "leaf_prefix",
        "leaf_spec",
        "max_depth",
        "max_prefix",
        "min_depth",
        "min_prefix",
        "prefix_slack",
        "root_sizes",
        "spec_problem",
        "tendermint",
    )

    def __init__(self, spec: ProofSpec) -> None:
        ls, ins = spec.leaf_spec, spec.inner_spec
        rules = spec.rules
        if rules is OpRules.AUTO:
            shape = _shape_key(spec)
            rules = (
                OpRules.IAVL
                if shape == _IAVL_SHAPE
                else OpRules.TENDERMINT
                if shape == _TENDERMINT_SHAPE
                else OpRules.NONE
            )
        self.iavl = rules is OpRules.IAVL
        self.tendermint = rules is OpRules.TENDERMINT
        self.leaf_spec = ls
        self.leaf_prefix = ls.prefix
        self.inner_hash = ins.hash
        self.min_depth = spec.min_depth
        self.max_depth = spec.max_depth if spec.max_depth != 0 else DEFAULT_MAX_DEPTH
        self.child_size = ins.child_size
        self.min_prefix = ins.min_prefix_length
        self.prefix_slack = ins.max_prefix_length - ins.min_prefix_length
        # Sibling children to the left of the proven child travel in the prefix.
        self.max_prefix = ins.max_prefix_length + (len(ins.child_order) - 1) * ins.child_size
        # Upstream only bounds a step's output by child_size when children are hash-sized.
        self.child_limit = ins.child_size if ins.child_size >= 32 else 0
        self.spec_problem: str | None = None
        if ins.child_size <= 0:
            self.spec_problem = "inner_spec.child_size must be >= 1"
        elif ins.max_prefix_length >= ins.min_prefix_length + ins.child_size:
            # Otherwise a sibling hash could be passed off as constant prefix bytes, which
            # lets a forged step claim any child position (cosmos/ics23 max-prefix fix).
            self.spec_problem = (
                "inner_spec.max_prefix_length must be < "
                "inner_spec.min_prefix_length + inner_spec.child_size"
            )
        # A root is the output of the last inner step, or of the leaf when the path is empty.
        sizes = (_DIGEST_SIZES.get(ls.hash), _DIGEST_SIZES.get(ins.hash))
        self.root_sizes: frozenset[int] = frozenset(s for s in sizes if s is not None)


# --------------------------------------------------------------------------------------------
# Hash and length operations


def _bitcoin(
    sha256: Callable[[bytes], bytes], ripemd: Callable[[bytes], bytes]
) -> Callable[[bytes], bytes]:
    def bitcoin(data: bytes) -> bytes:
        return ripemd(sha256(data))

    return bitcoin


def _optional(name: str) -> tuple[Callable[[bytes], bytes], int] | None:
    try:
        hasher = hashing.by_name(name)
    except UnsupportedError:
        return None
    return hasher.hash, hasher.digest_size


def _blake3() -> tuple[Callable[[bytes], bytes], int] | None:
    # BLAKE3 is only available when the optional ``blake3`` binding is installed.
    try:
        module = importlib.import_module("blake3")
    except ImportError:
        return None
    ctor = module.blake3

    def blake3(data: bytes) -> bytes:
        digest: bytes = ctor(data).digest()
        return digest

    return blake3, 32


def _hash_table() -> tuple[dict[int, Callable[[bytes], bytes]], dict[int, int]]:
    fns: dict[int, Callable[[bytes], bytes]] = {}
    sizes: dict[int, int] = {}
    named = {
        HashOp.SHA256: "sha256",
        HashOp.SHA512: "sha512",
        HashOp.KECCAK256: "keccak256",
        HashOp.RIPEMD160: "ripemd160",
        HashOp.SHA512_256: "sha512_256",
        HashOp.BLAKE2B_512: "blake2b_512",
        HashOp.BLAKE2S_256: "blake2s_256",
        HashOp.SM3: "sm3",
    }
    for op, name in named.items():
        found = _optional(name)
        if found is not None:
            fns[int(op)], sizes[int(op)] = found
    if HashOp.SHA256 in fns and HashOp.RIPEMD160 in fns:
        fns[HashOp.BITCOIN] = _bitcoin(fns[HashOp.SHA256], fns[HashOp.RIPEMD160])
        sizes[HashOp.BITCOIN] = 20
    found = _blake3()
    if found is not None:
        fns[HashOp.BLAKE3], sizes[HashOp.BLAKE3] = found
    return fns, sizes


_HASH_FNS, _DIGEST_SIZES = _hash_table()


def _op_name(op: int, enum_type: type[HashOp] | type[LengthOp]) -> str:
    try:
        return enum_type(op).name
    except ValueError:
        return f"unknown({op})"


def _hash_fn(hash_op: int) -> Callable[[bytes], bytes]:
    fn = _HASH_FNS.get(hash_op)
    if fn is None:
        if hash_op == HashOp.NO_HASH:
            raise ProofShapeError(
                "NO_HASH is not a valid hash for a leaf or inner operation", check="hash_op"
            )
        raise UnsupportedError(
            "hash operation not supported by this build",
            check="hash_op",
            hash_op=_op_name(hash_op, HashOp),
        )
    return fn


def do_hash(hash_op: int, data: bytes) -> bytes:
    """Hash ``data`` with ``hash_op`` (cosmos/ics23 ``doHash``).

    Raises :class:`ProofShapeError` for ``NO_HASH`` and :class:`UnsupportedError` for an op
    this build lacks (BLAKE3 without the ``blake3`` package, unknown values).
    """
    return _hash_fn(hash_op)(data)


def prehash(hash_op: int, data: bytes) -> bytes:
    """``data`` unchanged for ``NO_HASH``, else :func:`do_hash` (upstream ``doHashOrNoop``)."""
    if hash_op == HashOp.NO_HASH:
        return data
    return _hash_fn(hash_op)(data)


def _uvarint(n: int) -> bytes:
    out = bytearray()
    while n >= 0x80:
        out.append((n & 0x7F) | 0x80)
        n >>= 7
    out.append(n)
    return bytes(out)


def do_length(length_op: int, data: bytes) -> bytes:
    """Prepend the length of ``data`` as ``length_op`` says (upstream ``doLengthOp``).

    ``REQUIRE_32_BYTES``/``REQUIRE_64_BYTES`` write nothing but raise
    :class:`InvalidProofError` when ``data`` has another length; ``VAR_RLP`` and unknown
    values raise :class:`UnsupportedError` (no ICS-23 implementation defines RLP here).
    """
    n = len(data)
    if length_op == LengthOp.NO_PREFIX:
        return data
    if length_op == LengthOp.VAR_PROTO:
        return _uvarint(n) + data
    if length_op == LengthOp.REQUIRE_32_BYTES or length_op == LengthOp.REQUIRE_64_BYTES:
        want = 32 if length_op == LengthOp.REQUIRE_32_BYTES else 64
        if n != want:
            raise InvalidProofError(
                "leaf data has the wrong length for its length operation",
                check="length_op",
                expected=want,
                got=n,
            )
        return data
    if length_op == LengthOp.FIXED32_BIG or length_op == LengthOp.FIXED32_LITTLE:
        width = 4
    elif length_op == LengthOp.FIXED64_BIG or length_op == LengthOp.FIXED64_LITTLE:
        width = 8
    else:
        width = 0
    if width:
        if n >= 1 << (8 * width):
            raise LimitExceededError(
                "leaf data too long for its length operation", check="length_op", size=n
            )
        big = length_op == LengthOp.FIXED32_BIG or length_op == LengthOp.FIXED64_BIG
        return n.to_bytes(width, "big" if big else "little") + data
    raise UnsupportedError(
        "length operation not supported", check="length_op", length_op=_op_name(length_op, LengthOp)
    )


def _prepare_leaf_data(hash_op: int, length_op: int, data: bytes) -> bytes:
    return do_length(length_op, prehash(hash_op, data))


def apply_leaf(op: LeafOp, *, key: bytes, value: bytes) -> bytes:
    """The leaf hash of ``key -> value`` under ``op`` (upstream ``LeafOp.Apply``).

    Requires non-empty ``key`` and ``value``; raises :class:`InvalidProofError` otherwise.
    """
    if not key:
        raise InvalidProofError("leaf operation needs a non-empty key", check="leaf_key_empty")
    if not value:
        raise InvalidProofError("leaf operation needs a non-empty value", check="leaf_value_empty")
    pkey = _prepare_leaf_data(op.prehash_key, op.length, key)
    pvalue = _prepare_leaf_data(op.prehash_value, op.length, value)
    return _hash_fn(op.hash)(op.prefix + pkey + pvalue)


def apply_inner(op: InnerOp, child: bytes) -> bytes:
    """``hash(prefix || child || suffix)`` (upstream ``InnerOp.Apply``); ``child`` non-empty."""
    if not child:
        raise InvalidProofError("inner operation needs a non-empty child", check="inner_child")
    return _hash_fn(op.hash)(op.prefix + child + op.suffix)


# --------------------------------------------------------------------------------------------
# Checks against the spec (upstream CheckAgainstSpec, validateIavlOps, validateTendermintOps)


def _shape(check: str, message: str, **context: object) -> ProofShapeError:
    return ProofShapeError(message, check=check, **context)


_IAVL_FIELDS = ("height", "size", "version")


def _check_iavl(prefix: bytes, layer: int, hash_op: int, want_hash: int) -> None:
    # IAVL node preimages start with height, size and version as signed varints. Parsing
    # them pins a step's meaning: a leaf (layer 0) has nothing after them, an inner node
    # exactly a length byte (child on the left) or length + 32-byte hash + length byte
    # (child on the right), and its height is at least its distance from the leaf.
    n = len(prefix)
    pos = 0
    for which in range(3):
        # Go binary.ReadVarint: a zig-zag varint of at most 10 bytes, parsed inline here
        # because this loop runs for every step of every IAVL proof.
        ux = 0
        shift = 0
        while True:
            if pos >= n:
                raise _shape(
                    "iavl_varint",
                    f"failed to read IAVL {_IAVL_FIELDS[which]} varint: unexpected end",
                    step=layer,
                )
            b = prefix[pos]
            pos += 1
            if b < 0x80:
                if shift == 63 and b > 1:
                    shift = 70  # overflow, reported below
                else:
                    ux |= b << shift
                break
            if shift == 63:
                shift = 70
                break
            ux |= (b & 0x7F) << shift
            shift += 7
        if shift == 70:
            raise _shape(
                "iavl_varint",
                f"failed to read IAVL {_IAVL_FIELDS[which]} varint: overflow",
                step=layer,
            )
        value = (ux >> 1) ^ -(ux & 1)
        if which == 0:
            if value < 0 or value < layer:
                raise _shape(
                    "iavl_height",
                    f"IAVL height ({value}) must be non-negative and greater than or equal "
                    f"to the layer number ({layer})",
                    step=layer,
                )
        elif value < 0:
            raise _shape(
                f"iavl_{_IAVL_FIELDS[which]}",
                f"IAVL {_IAVL_FIELDS[which]} must be non-negative",
                step=layer,
                value=value,
            )
    remaining = len(prefix) - pos
    if layer == 0:
        if remaining != 0:
            raise _shape(
                "iavl_remainder",
                f"expected remaining prefix length to be 0, got: {remaining}",
                step=layer,
            )
        return
    if remaining != 1 and remaining != 34:
        raise _shape(
            "iavl_remainder",
            f"remainder of prefix must be of length 1 or 34, got: {remaining}",
            step=layer,
        )
    if hash_op != want_hash:
        raise _shape(
            "iavl_hash",
            f"IAVL hash op must be {_op_name(want_hash, HashOp)}",
            step=layer,
            hash_op=_op_name(hash_op, HashOp),
        )


def _check_tendermint(prefix: bytes, suffix: bytes, layer: int) -> None:
    # Tendermint inner preimages are 0x01 || left || right: with a right sibling in the
    # suffix the prefix is exactly 0x01; otherwise it is 0x01 followed by the left sibling.
    if not prefix:
        raise _shape("tendermint_prefix", "inner op prefix must not be empty", step=layer)
    if suffix and prefix != b"\x01":
        raise _shape(
            "tendermint_prefix",
            "inner op prefix must be exactly 01 when the suffix is set",
            step=layer,
            prefix=prefix,
        )
    if prefix[0] != 1:
        raise _shape(
            "tendermint_prefix", "inner op prefix must begin with 01", step=layer, prefix=prefix
        )


def _check_leaf(c: _Compiled, leaf: LeafOp) -> None:
    if c.iavl:
        _check_iavl(leaf.prefix, 0, leaf.hash, c.inner_hash)
    want = c.leaf_spec
    if leaf.hash != want.hash:
        raise _shape(
            "leaf_hash",
            f"leaf, unexpected HashOp: {leaf.hash}",
            expected=want.hash,
            got=leaf.hash,
        )
    if leaf.prehash_key != want.prehash_key:
        raise _shape(
            "leaf_prehash_key",
            f"leaf, unexpected PrehashKey: {leaf.prehash_key}",
            expected=want.prehash_key,
            got=leaf.prehash_key,
        )
    if leaf.prehash_value != want.prehash_value:
        raise _shape(
            "leaf_prehash_value",
            f"leaf, unexpected PrehashValue: {leaf.prehash_value}",
            expected=want.prehash_value,
            got=leaf.prehash_value,
        )
    if leaf.length != want.length:
        raise _shape(
            "leaf_length",
            f"leaf, unexpected LengthOp: {leaf.length}",
            expected=want.length,
            got=leaf.length,
        )
    if not leaf.prefix.startswith(want.prefix):
        raise _shape(
            "leaf_prefix",
            "leaf prefix does not start with the spec's leaf prefix",
            expected=want.prefix,
            got=leaf.prefix,
        )


def _check_inner(c: _Compiled, op: InnerOp, layer: int) -> None:
    hash_op, prefix, suffix = op
    if hash_op != c.inner_hash:
        raise _shape(
            "inner_hash",
            f"inner, unexpected HashOp: {hash_op}",
            step=layer,
            expected=c.inner_hash,
            got=hash_op,
        )
    if c.iavl:
        _check_iavl(prefix, layer, hash_op, c.inner_hash)
    elif c.tendermint:
        _check_tendermint(prefix, suffix, layer)
    if prefix.startswith(c.leaf_prefix):
        # A step whose preimage could also be read as a leaf preimage would let a proof
        # stop early or continue past a leaf.
        raise _shape(
            "inner_prefix_is_leaf_prefix",
            "inner prefix starts with the leaf prefix",
            step=layer,
            leaf_prefix=c.leaf_prefix,
        )
    n = len(prefix)
    if n < c.min_prefix:
        raise _shape(
            "inner_prefix_too_short",
            f"innerOp prefix too short ({n})",
            step=layer,
            minimum=c.min_prefix,
        )
    if n > c.max_prefix:
        raise _shape(
            "inner_prefix_too_long",
            f"innerOp prefix too long ({n})",
            step=layer,
            maximum=c.max_prefix,
        )
    if c.spec_problem is not None:
        raise _shape("spec_invalid", c.spec_problem, step=layer)
    if len(suffix) % c.child_size:
        raise _shape(
            "inner_suffix_length",
            "inner suffix is not a whole number of children",
            step=layer,
            suffix_length=len(suffix),
            child_size=c.child_size,
        )
    if (n - c.min_prefix) % c.child_size > c.prefix_slack:
        # Project rule (upstream's padding model assumes it but never checks it): a prefix
        # is constant bytes within [min, max] plus whole children. With the spec rule
        # max - min < child_size the number of children is unambiguous, so a length in
        # between means a sibling of the wrong size.
        raise _shape(
            "inner_prefix_children",
            "inner prefix is not constant bytes plus whole children (sibling of wrong length?)",
            step=layer,
            prefix_length=n,
            child_size=c.child_size,
        )


def check_leaf_op(leaf: LeafOp, *, spec: ProofSpec) -> None:
    """Raise :class:`ProofShapeError` unless ``leaf`` fits ``spec.leaf_spec`` (and the IAVL
    leaf rules when the spec uses them). Upstream ``LeafOp.CheckAgainstSpec``."""
    _check_leaf(spec._c, leaf)


def check_inner_op(op: InnerOp, *, spec: ProofSpec, layer: int) -> None:
    """Raise :class:`ProofShapeError` unless ``op`` fits ``spec`` as the ``layer``-th step
    above the leaf (1-based). Upstream ``InnerOp.CheckAgainstSpec``."""
    _check_inner(spec._c, op, layer)


def _check_existence(c: _Compiled, proof: ExistenceProof) -> LeafOp:
    leaf = proof.leaf
    if leaf is None:
        raise _shape("leaf_missing", "existence Proof needs defined LeafOp")
    _check_leaf(c, leaf)
    path = proof.path
    depth = len(path)
    if c.min_depth > 0 and depth < c.min_depth:
        raise _shape(
            "depth_too_short",
            f"innerOps depth too short: {depth}",
            depth=depth,
            min_depth=c.min_depth,
        )
    if depth > c.max_depth:
        raise _shape(
            "depth_too_long",
            f"innerOps depth too long: {depth}",
            depth=depth,
            max_depth=c.max_depth,
        )
    layer = 1
    for op in path:
        _check_inner(c, op, layer)
        layer += 1
    return leaf


def check_existence_proof(proof: ExistenceProof, *, spec: ProofSpec) -> None:
    """Raise :class:`ProofShapeError` unless every operation of ``proof`` fits ``spec`` and
    its depth is within ``[min_depth, max_depth]``. Upstream ``ExistenceProof.CheckAgainstSpec``.
    """
    _check_existence(spec._c, proof)


# --------------------------------------------------------------------------------------------
# Root calculation


def _calculate(proof: ExistenceProof, leaf: LeafOp, child_limit: int) -> bytes:
    res = apply_leaf(leaf, key=proof.key, value=proof.value)
    layer = 1
    for hash_op, prefix, suffix in proof.path:
        fn = _HASH_FNS.get(hash_op)
        if fn is None:
            fn = _hash_fn(hash_op)  # raises the typed error
        res = fn(prefix + res + suffix)
        if child_limit and len(res) > child_limit:
            raise _shape(
                "child_too_long",
                "inner step output is longer than the spec's child size",
                step=layer,
                length=len(res),
                child_size=child_limit,
            )
        layer += 1
    return res


def calculate_existence_root(proof: ExistenceProof, *, spec: ProofSpec | None) -> bytes:
    """The root ``proof`` commits to.

    With a ``spec``, the proof is first checked against it (:func:`check_existence_proof`).
    ``spec=None`` computes without any shape check, like upstream ``Calculate()``: use it only
    to obtain a candidate root that is then verified with a spec.
    """
    if spec is None:
        if proof.leaf is None:
            raise _shape("leaf_missing", "existence Proof needs defined LeafOp")
        return _calculate(proof, proof.leaf, 0)
    c = spec._c
    leaf = _check_existence(c, proof)
    return _calculate(proof, leaf, c.child_limit)


def _verify_existence(c: _Compiled, proof: ExistenceProof, key: bytes, value: bytes) -> bytes:
    # Upstream ExistenceProof.Verify up to the root comparison, which callers do (they know
    # which root, and which error context, applies).
    leaf = _check_existence(c, proof)
    if key != proof.key:
        raise KeyMismatchError(
            "provided key doesn't match proof", check="key", expected=key, calculated=proof.key
        )
    if value != proof.value:
        raise MismatchError(
            "provided value doesn't match proof",
            check="value",
            expected=value,
            calculated=proof.value,
        )
    return _calculate(proof, leaf, c.child_limit)


# --------------------------------------------------------------------------------------------
# Neighbour predicates for non-existence proofs (upstream IsLeftMost & co.). These answer a
# question about a path; the verifiers turn a False into a typed error.


def _position(order: tuple[int, ...], branch: int) -> int | None:
    if branch < 0 or branch >= len(order):
        return None
    for i, item in enumerate(order):
        if item == branch:
            return i
    return None


def _padding(spec: InnerSpec, branch: int) -> tuple[int, int, int] | None:
    """(min prefix, max prefix, suffix) lengths of a step whose child is ``branch``."""
    idx = _position(spec.child_order, branch)
    if idx is None:
        return None
    prefix = idx * spec.child_size
    suffix = (len(spec.child_order) - 1 - idx) * spec.child_size
    return prefix + spec.min_prefix_length, prefix + spec.max_prefix_length, suffix


def _has_padding(op: InnerOp, pad: tuple[int, int, int] | None) -> bool:
    if pad is None:
        return False
    return pad[0] <= len(op.prefix) <= pad[1] and len(op.suffix) == pad[2]


def _order_from_padding(spec: InnerSpec, op: InnerOp) -> int | None:
    for branch in range(len(spec.child_order)):
        if _has_padding(op, _padding(spec, branch)):
            return branch
    return None


def left_branches_are_empty(spec: InnerSpec, op: InnerOp) -> bool:
    """True iff every sibling left of ``op``'s child is ``spec.empty_child`` (a placeholder
    on a left-most path of a sparse tree). Upstream ``leftBranchesAreEmpty``."""
    branch = _order_from_padding(spec, op)
    if branch is None or branch == 0:
        return False
    size = spec.child_size
    start = len(op.prefix) - branch * size
    if start < 0:
        return False
    for i in range(branch):
        pos = _position(spec.child_order, i)
        if pos is None:
            return False
        lo = start + pos * size
        if spec.empty_child != op.prefix[lo : lo + size]:
            return False
    return True


def right_branches_are_empty(spec: InnerSpec, op: InnerOp) -> bool:
    """True iff every sibling right of ``op``'s child is ``spec.empty_child``. Upstream
    ``rightBranchesAreEmpty``."""
    branch = _order_from_padding(spec, op)
    if branch is None:
        return False
    count = len(spec.child_order) - 1 - branch
    if count <= 0:
        return False
    size = spec.child_size
    if len(op.suffix) != count * size:
        return False
    for i in range(count):
        pos = _position(spec.child_order, i)
        if pos is None:
            return False
        lo = pos * size
        if spec.empty_child != op.suffix[lo : lo + size]:
            return False
    return True


def is_left_most(spec: InnerSpec, path: Sequence[InnerOp]) -> bool:
    """True iff ``path`` only ever descends into the first child (or past empty siblings)."""
    pad = _padding(spec, 0)
    return all(_has_padding(op, pad) or left_branches_are_empty(spec, op) for op in path)


def is_right_most(spec: InnerSpec, path: Sequence[InnerOp]) -> bool:
    """True iff ``path`` only ever descends into the last child (or past empty siblings)."""
    pad = _padding(spec, len(spec.child_order) - 1)
    return all(_has_padding(op, pad) or right_branches_are_empty(spec, op) for op in path)


def _is_left_step(spec: InnerSpec, left: InnerOp, right: InnerOp) -> bool:
    lb = _order_from_padding(spec, left)
    rb = _order_from_padding(spec, right)
    return lb is not None and rb is not None and rb == lb + 1


def is_left_neighbor(spec: InnerSpec, *, left: Sequence[InnerOp], right: Sequence[InnerOp]) -> bool:
    """True iff the leaf of path ``right`` is the next leaf after that of path ``left``.

    Strips the common steps near the root; the first differing pair must be adjacent
    children of one node, below which ``left`` is right-most and ``right`` left-most.
    """
    i, j = len(left) - 1, len(right) - 1
    while (
        i >= 0
        and j >= 0
        and left[i].prefix == right[j].prefix
        and (left[i].suffix == right[j].suffix)
    ):
        i -= 1
        j -= 1
    if i < 0 or j < 0:
        # Identical paths (the same leaf) or one path a suffix of the other: not neighbours.
        return False
    if not _is_left_step(spec, left[i], right[j]):
        return False
    return is_right_most(spec, left[:i]) and is_left_most(spec, right[:j])


# --------------------------------------------------------------------------------------------
# Verification


def _check_root(c: _Compiled, root: bytes) -> None:
    if c.root_sizes and len(root) not in c.root_sizes:
        raise MalformedInputError(
            "trusted root has the wrong length for the spec's hash",
            check="root_length",
            length=len(root),
            expected=sorted(c.root_sizes),
        )


def _key_for_comparison(spec: ProofSpec, key: bytes) -> bytes:
    if not spec.prehash_key_before_comparison:
        return key
    return prehash(spec.leaf_spec.prehash_key, key)


def _existence_for_key(proof: CommitmentProof, key: bytes) -> ExistenceProof:
    if isinstance(proof, ExistenceProof):
        if proof.key != key:
            raise KeyMismatchError(
                "existence proof is for another key",
                check="key",
                expected=key,
                calculated=proof.key,
            )
        return proof
    if isinstance(proof, BatchProof):
        for entry in proof.entries:
            if isinstance(entry, ExistenceProof) and entry.key == key:
                return entry
        raise InvalidProofError(
            "batch proof holds no existence proof for the key", check="batch_key", key=key
        )
    if isinstance(proof, NonExistenceProof):
        raise ProofShapeError(
            "membership needs an existence proof, got a non-existence proof", check="proof_type"
        )
    raise MalformedInputError("not a decoded ICS-23 proof", check="proof_type")


def _non_existence_for_key(
    spec: ProofSpec, proof: CommitmentProof, key: bytes
) -> NonExistenceProof:
    if isinstance(proof, NonExistenceProof):
        return proof
    if isinstance(proof, BatchProof):
        kc = _key_for_comparison(spec, key)
        for entry in proof.entries:
            if not isinstance(entry, NonExistenceProof):
                continue
            left, right = entry.left, entry.right
            if (left is None or _key_for_comparison(spec, left.key) < kc) and (
                right is None or _key_for_comparison(spec, right.key) > kc
            ):
                return entry
        raise InvalidProofError(
            "batch proof holds no non-existence proof for the key", check="batch_key", key=key
        )
    if isinstance(proof, ExistenceProof):
        raise ProofShapeError(
            "non-membership needs a non-existence proof, got an existence proof",
            check="proof_type",
        )
    raise MalformedInputError("not a decoded ICS-23 proof", check="proof_type")


def _verify_side(spec: ProofSpec, side: str, proof: ExistenceProof, root: bytes) -> None:
    try:
        calc = _verify_existence(spec._c, proof, proof.key, proof.value)
    except VerificationError as e:
        e.message = f"{side} neighbour: {e.message}"
        e.context["side"] = side
        raise
    if calc != root:
        raise RootMismatchError(
            f"{side} neighbour's proof does not commit to the root",
            expected=root,
            calculated=calc,
            side=side,
        )


def _verify_non_existence(
    spec: ProofSpec, proof: NonExistenceProof, root: bytes, key: bytes
) -> None:
    kc = _key_for_comparison(spec, key)
    if proof.key != key and proof.key != kc:
        # Upstream ignores this field. Producers (cosmos/iavl, celestiaorg/smt via ics23)
        # set it to the key, or to its comparison form; a proof made for another key is
        # refused rather than reinterpreted, so no byte of a proof is meaningless.
        raise KeyMismatchError(
            "non-existence proof was made for another key",
            check="key",
            expected=key,
            calculated=proof.key,
        )
    left, right = proof.left, proof.right
    if left is not None:
        _verify_side(spec, "left", left, root)
    if right is not None:
        _verify_side(spec, "right", right, root)
    if left is None and right is None:
        raise ProofShapeError(
            "non-existence proof has neither a left nor a right neighbour", check="neighbours"
        )
    if right is not None and kc >= _key_for_comparison(spec, right.key):
        raise InvalidProofError(
            "key is not left of the right neighbour", check="key_order", key=key, right=right.key
        )
    if left is not None and kc <= _key_for_comparison(spec, left.key):
        raise InvalidProofError(
            "key is not right of the left neighbour", check="key_order", key=key, left=left.key
        )
    inner = spec.inner_spec
    if left is None:
        assert right is not None
        if not is_left_most(inner, right.path):
            raise InvalidProofError(
                "left neighbour missing, so the right neighbour must be the left-most leaf",
                check="left_most",
            )
    elif right is None:
        if not is_right_most(inner, left.path):
            raise InvalidProofError(
                "right neighbour missing, so the left neighbour must be the right-most leaf",
                check="right_most",
            )
    elif not is_left_neighbor(inner, left=left.path, right=right.path):
        raise InvalidProofError(
            "left and right neighbours are not adjacent leaves", check="neighbours"
        )


def verify_membership(
    *, spec: ProofSpec, root: bytes, proof: CommitmentProof, key: bytes, value: bytes
) -> None:
    """Return iff ``proof`` (an existence proof, or a batch holding one for ``key``) fits
    ``spec`` and proves ``key -> value`` under ``root``. Upstream ``VerifyMembership``.

    Raises :class:`ProofShapeError` (proof does not fit the spec), :class:`MismatchError`
    (key or value differ from the proof's), :class:`RootMismatchError` (carries the trusted
    and the calculated root) or another :class:`VerificationError`.
    """
    exist = _existence_for_key(proof, key)
    c = spec._c
    _check_root(c, root)
    calc = _verify_existence(c, exist, key, value)
    if calc != root:
        raise RootMismatchError(
            "calculated root doesn't match provided root", expected=root, calculated=calc
        )


def verify_non_membership(
    *, spec: ProofSpec, root: bytes, proof: CommitmentProof, key: bytes
) -> None:
    """Return iff ``proof`` (a non-existence proof, or a batch holding one covering ``key``)
    shows ``key`` absent under ``root``: each present neighbour is a valid existence proof
    under ``root``, ``key`` sorts strictly between them (by ``prehash_key`` when the spec sets
    ``prehash_key_before_comparison``), and they are adjacent leaves (or the left-most /
    right-most leaf when one is missing). Upstream ``VerifyNonMembership``, plus one rule of
    this project: the proof's own ``key`` field must be ``key`` or its comparison form.
    """
    nonexist = _non_existence_for_key(spec, proof, key)
    _check_root(spec._c, root)
    _verify_non_existence(spec, nonexist, root, key)


def _check_chain_lengths(
    specs: Sequence[ProofSpec], proofs: Sequence[CommitmentProof], keys: Sequence[bytes]
) -> None:
    if not proofs:
        raise ProofShapeError("chained proof holds no proofs", check="chain_length")
    if len(specs) != len(proofs) or len(keys) != len(proofs):
        raise ProofShapeError(
            "chained proof needs one spec and one key per proof",
            check="chain_length",
            proofs=len(proofs),
            specs=len(specs),
            keys=len(keys),
        )


def _chain_up(
    specs: Sequence[ProofSpec],
    proofs: Sequence[CommitmentProof],
    keys: Sequence[bytes],
    value: bytes,
    start: int,
) -> bytes:
    # Proofs run from the innermost tree outwards; keys in IBC MerklePath order run from the
    # outermost tree inwards, hence the reversed index.
    n = len(proofs)
    for i in range(start, n):
        proof = proofs[i]
        if not isinstance(proof, ExistenceProof):
            raise ProofShapeError(
                "chained membership needs an existence proof at this step",
                check="proof_type",
                step=i,
            )
        key = keys[n - 1 - i]
        try:
            value = _exist_root_for(specs[i], proof, key, value)
        except VerificationError as e:
            e.context["step"] = i
            raise
    return value


def _exist_root_for(spec: ProofSpec, proof: ExistenceProof, key: bytes, value: bytes) -> bytes:
    """Check ``proof`` against ``spec``, require it to be about ``key -> value``, and return
    the root it commits to (upstream ``ExistenceProof.Verify`` minus the root comparison)."""
    if proof.key != key:
        raise KeyMismatchError(
            "existence proof is for another key", check="key", expected=key, calculated=proof.key
        )
    return _verify_existence(spec._c, proof, key, value)


def verify_chained_membership(
    *,
    specs: Sequence[ProofSpec],
    root: bytes,
    proofs: Sequence[CommitmentProof],
    keys: Sequence[bytes],
    value: bytes,
) -> None:
    """IBC multi-store membership (ibc-go ``MerkleProof.VerifyMembership``).

    ``proofs[0]`` proves ``keys[-1] -> value`` in the innermost store; each following proof
    proves the previous proof's root under the next key outwards; the last root must equal
    ``root`` (for Cosmos SDK chains: ``specs=(IAVL_SPEC, TENDERMINT_SPEC)``, ``keys=(store
    name, key in store)`` in IBC ``MerklePath`` order, ``root`` the block's app hash).
    ``specs`` pairs with ``proofs``. ``value`` must be non-empty.
    """
    _check_chain_lengths(specs, proofs, keys)
    if not value:
        raise InvalidProofError("membership of an empty value cannot be proven", check="value")
    _check_root(specs[-1]._c, root)
    calc = _chain_up(specs, proofs, keys, value, 0)
    if calc != root:
        raise RootMismatchError(
            "chained proof does not commit to the trusted root", expected=root, calculated=calc
        )


def verify_chained_non_membership(
    *,
    specs: Sequence[ProofSpec],
    root: bytes,
    proofs: Sequence[CommitmentProof],
    keys: Sequence[bytes],
) -> None:
    """IBC multi-store non-membership (ibc-go ``MerkleProof.VerifyNonMembership``).

    ``proofs[0]`` must be a non-existence proof of ``keys[-1]`` in the innermost store,
    verified against the root it computes; that root is then proven to exist, step by step,
    up to ``root`` exactly as in :func:`verify_chained_membership`.
    """
    _check_chain_lengths(specs, proofs, keys)
    first = proofs[0]
    if not isinstance(first, NonExistenceProof):
        raise ProofShapeError(
            "chained non-membership needs a non-existence proof first",
            check="proof_type",
            step=0,
        )
    _check_root(specs[-1]._c, root)
    side = first.left if first.left is not None else first.right
    if side is None:
        raise ProofShapeError(
            "non-existence proof has neither a left nor a right neighbour",
            check="neighbours",
            step=0,
        )
    try:
        subroot = calculate_existence_root(side, spec=specs[0])
        _verify_non_existence(specs[0], first, subroot, keys[-1])
    except VerificationError as e:
        e.context["step"] = 0
        raise
    calc = _chain_up(specs, proofs, keys, subroot, 1)
    if calc != root:
        raise RootMismatchError(
            "chained proof does not commit to the trusted root", expected=root, calculated=calc
        )


# --------------------------------------------------------------------------------------------
# Decoding


def _leaf_from_pb(m: _pb.LeafOp) -> LeafOp:
    return LeafOp(m.hash, m.prehash_key, m.prehash_value, m.length, m.prefix)


def _exist_from_pb(m: _pb.ExistenceProof, max_path: int) -> ExistenceProof:
    path = m.path
    if len(path) > max_path:
        raise LimitExceededError(
            "existence proof has too many inner steps", steps=len(path), limit=max_path
        )
    # tuple.__new__ directly: the NamedTuple constructor is a Python-level call per step.
    new = tuple.__new__
    return ExistenceProof(
        m.key,
        m.value,
        _leaf_from_pb(m.leaf) if m.HasField("leaf") else None,
        tuple([new(InnerOp, (o.hash, o.prefix, o.suffix)) for o in path]),
    )


def _nonexist_from_pb(m: _pb.NonExistenceProof, max_path: int) -> NonExistenceProof:
    return NonExistenceProof(
        m.key,
        _exist_from_pb(m.left, max_path) if m.HasField("left") else None,
        _exist_from_pb(m.right, max_path) if m.HasField("right") else None,
    )


def _compressed_exist(
    m: _pb.CompressedExistenceProof, lookup: Sequence[InnerOp], max_path: int
) -> ExistenceProof:
    if len(m.path) > max_path:
        raise LimitExceededError(
            "existence proof has too many inner steps", steps=len(m.path), limit=max_path
        )
    steps: list[InnerOp] = []
    for index in m.path:
        if not 0 <= index < len(lookup):
            raise MalformedInputError(
                "compressed proof refers to a missing inner step",
                index=index,
                lookup_size=len(lookup),
            )
        steps.append(lookup[index])
    return ExistenceProof(
        m.key,
        m.value,
        _leaf_from_pb(m.leaf) if m.HasField("leaf") else None,
        tuple(steps),
    )


def _batch_from_pb(m: _pb.BatchProof, max_path: int, max_entries: int) -> BatchProof:
    if len(m.entries) > max_entries:
        raise LimitExceededError(
            "batch proof has too many entries", entries=len(m.entries), limit=max_entries
        )
    entries: list[ExistenceProof | NonExistenceProof] = []
    for i, e in enumerate(m.entries):
        kind = e.WhichOneof("proof")
        if kind == "exist":
            entries.append(_exist_from_pb(e.exist, max_path))
        elif kind == "nonexist":
            entries.append(_nonexist_from_pb(e.nonexist, max_path))
        else:
            raise MalformedInputError("batch entry holds no proof", index=i)
    return BatchProof(tuple(entries))


def _decompress(m: _pb.CompressedBatchProof, max_path: int, max_entries: int) -> BatchProof:
    if len(m.entries) > max_entries:
        raise LimitExceededError(
            "batch proof has too many entries", entries=len(m.entries), limit=max_entries
        )
    lookup = [InnerOp(o.hash, o.prefix, o.suffix) for o in m.lookup_inners]
    entries: list[ExistenceProof | NonExistenceProof] = []
    for i, e in enumerate(m.entries):
        kind = e.WhichOneof("proof")
        if kind == "exist":
            entries.append(_compressed_exist(e.exist, lookup, max_path))
        elif kind == "nonexist":
            n = e.nonexist
            entries.append(
                NonExistenceProof(
                    n.key,
                    _compressed_exist(n.left, lookup, max_path) if n.HasField("left") else None,
                    _compressed_exist(n.right, lookup, max_path) if n.HasField("right") else None,
                )
            )
        else:
            raise MalformedInputError("batch entry holds no proof", index=i)
    return BatchProof(tuple(entries))


def decode_commitment_proof(
    data: bytes,
    *,
    max_bytes: int = MAX_PROOF_BYTES,
    max_path: int = MAX_PATH_STEPS,
    max_entries: int = MAX_BATCH_ENTRIES,
    canonical: bool = True,
) -> CommitmentProof:
    """Decode a protobuf ``cosmos.ics23.v1.CommitmentProof``.

    Compressed batches are expanded into a :class:`BatchProof`. With ``canonical`` (the
    default) the bytes must be exactly the canonical encoding of what they decode to (fields
    in order, no unknown fields, no default values written, minimal varints), as Go, Rust and
    Python protobuf all emit: upstream accepts any parseable encoding, but an evidence bundle
    should have one byte string per proof, and it makes every byte of a proof matter.

    Raises :class:`LimitExceededError` when ``data`` is longer than ``max_bytes`` or a proof
    has more than ``max_path`` steps or ``max_entries`` batch entries, and
    :class:`MalformedInputError` when the bytes are not a (canonical) CommitmentProof or it
    holds no proof. Decoding says nothing about validity: verify with a spec.
    """
    if not isinstance(data, bytes | bytearray | memoryview):
        raise MalformedInputError("ICS-23 proof must be bytes", got=type(data).__name__)
    if len(data) > max_bytes:
        raise LimitExceededError(
            "ICS-23 proof is larger than the limit", size=len(data), limit=max_bytes
        )
    raw = bytes(data)
    msg = _pb.CommitmentProof()
    try:
        msg.ParseFromString(raw)
        if canonical:
            msg.DiscardUnknownFields()
            again = msg.SerializeToString(deterministic=True)
    except DecodeError as e:
        raise MalformedInputError(
            "bytes are not a protobuf CommitmentProof", detail=str(e)
        ) from None
    except Exception as e:  # any other failure of the protobuf runtime is bad input too
        raise MalformedInputError(
            "bytes are not a protobuf CommitmentProof", detail=f"{type(e).__name__}: {e}"
        ) from None
    if canonical and again != raw:
        raise MalformedInputError(
            "CommitmentProof is not canonically encoded (unknown fields, defaults written, "
            "fields out of order or non-minimal varints)",
            size=len(raw),
            canonical_size=len(again),
        )
    kind = msg.WhichOneof("proof")
    if kind == "exist":
        return _exist_from_pb(msg.exist, max_path)
    if kind == "nonexist":
        return _nonexist_from_pb(msg.nonexist, max_path)
    if kind == "batch":
        return _batch_from_pb(msg.batch, max_path, max_entries)
    if kind == "compressed":
        return _decompress(msg.compressed, max_path, max_entries)
    raise MalformedInputError("CommitmentProof holds no proof this verifier knows")


# --------------------------------------------------------------------------------------------
# Spec constants (cosmos/ics23 go/proof.go IavlSpec, TendermintSpec, SmtSpec, and SM3 variants)

IAVL_SPEC = ProofSpec(
    leaf_spec=LeafOp(
        hash=HashOp.SHA256,
        prehash_key=HashOp.NO_HASH,
        prehash_value=HashOp.SHA256,
        length=LengthOp.VAR_PROTO,
        prefix=b"\x00",
    ),
    inner_spec=InnerSpec(
        child_order=(0, 1),
        child_size=33,  # a length byte, then the 32-byte child hash
        min_prefix_length=4,
        max_prefix_length=12,
        empty_child=b"",
        hash=HashOp.SHA256,
    ),
)
"""Cosmos SDK IAVL stores (cosmos/iavl proofs as ICS-23)."""

TENDERMINT_SPEC = ProofSpec(
    leaf_spec=LeafOp(
        hash=HashOp.SHA256,
        prehash_key=HashOp.NO_HASH,
        prehash_value=HashOp.SHA256,
        length=LengthOp.VAR_PROTO,
        prefix=b"\x00",
    ),
    inner_spec=InnerSpec(
        child_order=(0, 1),
        child_size=32,
        min_prefix_length=1,
        max_prefix_length=1,
        empty_child=b"",
        hash=HashOp.SHA256,
    ),
)
"""CometBFT ``crypto/merkle`` simple trees (the Cosmos SDK multistore / app hash)."""

SMT_SPEC = ProofSpec(
    leaf_spec=LeafOp(
        hash=HashOp.SHA256,
        prehash_key=HashOp.SHA256,
        prehash_value=HashOp.SHA256,
        length=LengthOp.NO_PREFIX,
        prefix=b"\x00",
    ),
    inner_spec=InnerSpec(
        child_order=(0, 1),
        child_size=32,
        min_prefix_length=1,
        max_prefix_length=1,
        empty_child=bytes(32),
        hash=HashOp.SHA256,
    ),
    max_depth=256,
    prehash_key_before_comparison=True,
)
"""Sparse Merkle trees as celestiaorg/smt builds them (leaves placed by SHA-256 of the key)."""


def _with_hash(spec: ProofSpec, hash_op: HashOp, rules: OpRules) -> ProofSpec:
    ls, ins = spec.leaf_spec, spec.inner_spec

    def swap(op: int) -> int:
        return hash_op if op != HashOp.NO_HASH else op

    return ProofSpec(
        leaf_spec=ls._replace(
            hash=swap(ls.hash),
            prehash_key=swap(ls.prehash_key),
            prehash_value=swap(ls.prehash_value),
        ),
        inner_spec=InnerSpec(
            child_order=ins.child_order,
            child_size=ins.child_size,
            min_prefix_length=ins.min_prefix_length,
            max_prefix_length=ins.max_prefix_length,
            empty_child=ins.empty_child,
            hash=swap(ins.hash),
        ),
        max_depth=spec.max_depth,
        min_depth=spec.min_depth,
        prehash_key_before_comparison=spec.prehash_key_before_comparison,
        rules=rules,
    )


# Project extension: the same trees hashed with SM3 (32-byte digests, so child sizes and
# empty children are unchanged). Upstream has no such specs; the tree-specific prefix rules
# are named explicitly because upstream's SpecEquals detection keys on SHA-256.
IAVL_SM3_SPEC = _with_hash(IAVL_SPEC, HashOp.SM3, OpRules.IAVL)
TENDERMINT_SM3_SPEC = _with_hash(TENDERMINT_SPEC, HashOp.SM3, OpRules.TENDERMINT)
SMT_SM3_SPEC = _with_hash(SMT_SPEC, HashOp.SM3, OpRules.NONE)

SPECS: dict[str, ProofSpec] = {
    "iavl": IAVL_SPEC,
    "tendermint": TENDERMINT_SPEC,
    "smt": SMT_SPEC,
    "iavl-sm3": IAVL_SM3_SPEC,
    "tendermint-sm3": TENDERMINT_SM3_SPEC,
    "smt-sm3": SMT_SM3_SPEC,
}
"""Specs by the names chain descriptors use."""
