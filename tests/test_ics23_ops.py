"""ICS-23 building blocks: hash and length ops, the spec rules added after the 2022 advisory
(IAVL varint prefixes, Tendermint prefixes, spec validity, default depth), spec constants and
the wire enums."""

from __future__ import annotations

import dataclasses
import hashlib

import pytest
import sha3

from relay.pb.cosmos.ics23.v1 import proofs_pb2 as pb
from relay.verify.errors import (
    InvalidProofError,
    MismatchError,
    ProofShapeError,
    UnsupportedError,
    VerificationError,
)
from relay.verify.merkle import ics23
from relay.verify.merkle.ics23 import HashOp, InnerOp, LeafOp, LengthOp


def zigzag(n: int) -> bytes:
    """Go binary.PutVarint, written independently for the tests."""
    ux = (n << 1) ^ (n >> 63)
    ux &= (1 << 64) - 1
    out = b""
    while ux >= 0x80:
        out += bytes([(ux & 0x7F) | 0x80])
        ux >>= 7
    return out + bytes([ux])


def iavl_prefix(height: int = 5, size: int = 10, version: int = 20, rest: bytes = b"\x20") -> bytes:
    return zigzag(height) + zigzag(size) + zigzag(version) + rest


def check(spec: ics23.ProofSpec, op: InnerOp, layer: int = 1) -> ProofShapeError | None:
    try:
        ics23.check_inner_op(op, spec=spec, layer=layer)
    except ProofShapeError as e:
        return e
    return None


def test_wire_enums_match_the_module_enums() -> None:
    for op in HashOp:
        assert pb.HashOp.Value(op.name) == op.value
    for length in LengthOp:
        assert pb.LengthOp.Value(length.name) == length.value
    # Upstream's values stop at BLAKE3 = 9; the SM3 extension must stay clear of them.
    assert int(HashOp.SM3) == 100
    assert sorted(v for v in pb.HashOp.values() if v != 100) == list(range(10))


@pytest.mark.parametrize(
    ("op", "expected"),
    [
        (HashOp.SHA256, hashlib.sha256(b"food").digest()),
        (HashOp.SHA512, hashlib.sha512(b"food").digest()),
        (HashOp.KECCAK256, sha3.keccak_256(b"food").digest()),
        (HashOp.BITCOIN, hashlib.new("ripemd160", hashlib.sha256(b"food").digest()).digest()),
        (HashOp.BLAKE2B_512, hashlib.blake2b(b"food").digest()),
        (HashOp.BLAKE2S_256, hashlib.blake2s(b"food").digest()),
    ],
)
def test_do_hash(op: HashOp, expected: bytes) -> None:
    assert ics23.do_hash(op, b"food") == expected


def test_sm3_known_answer() -> None:
    # GB/T 32905-2016 appendix A, example 1.
    assert ics23.do_hash(HashOp.SM3, b"abc").hex() == (
        "66c7f0f462eeedd9d1f2d46bdc10e4e24167c4875cf2f7a2297da02b8f4ba8e0"
    )


def test_unusable_hash_ops_raise_typed_errors() -> None:
    with pytest.raises(ProofShapeError):
        ics23.do_hash(HashOp.NO_HASH, b"x")
    with pytest.raises(UnsupportedError):
        ics23.do_hash(12345, b"x")
    try:
        import blake3  # type: ignore[import-not-found]  # noqa: F401
    except ImportError:
        with pytest.raises(UnsupportedError):
            ics23.do_hash(HashOp.BLAKE3, b"food")
    else:  # upstream rust/src/ops.rs known answer
        assert ics23.do_hash(HashOp.BLAKE3, b"food").hex().startswith("f775a8ccf8cb78cd")
    assert ics23.prehash(HashOp.NO_HASH, b"x") == b"x"


def test_length_ops() -> None:
    data = bytes(300)
    assert ics23.do_length(LengthOp.NO_PREFIX, data) == data
    assert ics23.do_length(LengthOp.VAR_PROTO, data)[:3] == b"\xac\x02\x00"
    assert ics23.do_length(LengthOp.FIXED32_BIG, b"ab") == b"\x00\x00\x00\x02ab"
    assert ics23.do_length(LengthOp.FIXED32_LITTLE, b"ab") == b"\x02\x00\x00\x00ab"
    assert ics23.do_length(LengthOp.FIXED64_BIG, b"ab") == bytes(7) + b"\x02ab"
    assert ics23.do_length(LengthOp.FIXED64_LITTLE, b"ab") == b"\x02" + bytes(7) + b"ab"
    assert ics23.do_length(LengthOp.REQUIRE_32_BYTES, bytes(32)) == bytes(32)
    assert ics23.do_length(LengthOp.REQUIRE_64_BYTES, bytes(64)) == bytes(64)
    with pytest.raises(InvalidProofError):
        ics23.do_length(LengthOp.REQUIRE_32_BYTES, bytes(31))
    with pytest.raises(InvalidProofError):
        ics23.do_length(LengthOp.REQUIRE_64_BYTES, bytes(32))
    with pytest.raises(UnsupportedError):
        ics23.do_length(LengthOp.VAR_RLP, b"x")
    with pytest.raises(UnsupportedError):
        ics23.do_length(99, b"x")


def test_leaf_and_inner_need_input() -> None:
    leaf = LeafOp(hash=HashOp.SHA256)
    assert ics23.apply_leaf(leaf, key=b"foo", value=b"bar") == hashlib.sha256(b"foobar").digest()
    for key, value in ((b"", b"bar"), (b"foo", b"")):
        with pytest.raises(InvalidProofError):
            ics23.apply_leaf(leaf, key=key, value=value)
    with pytest.raises(InvalidProofError):
        ics23.apply_inner(InnerOp(HashOp.SHA256, b"\x01", b""), b"")


# --------------------------------------------------------------------------------------------
# IAVL rules (upstream validateIavlOps), as a first-layer inner step of IAVL_SPEC


@pytest.mark.parametrize(
    ("prefix", "layer", "check_name"),
    [
        (iavl_prefix(), 1, None),
        (iavl_prefix(rest=b"\x20" + bytes(32) + b"\x20"), 1, None),
        (iavl_prefix(height=1), 1, None),
        (iavl_prefix(height=1), 2, "iavl_height"),
        (zigzag(-1), 1, "iavl_height"),
        (zigzag(5), 1, "iavl_varint"),
        (zigzag(5) + zigzag(-1), 1, "iavl_size"),
        (zigzag(5) + zigzag(10), 1, "iavl_varint"),
        (zigzag(5) + zigzag(10) + zigzag(-1), 1, "iavl_version"),
        (iavl_prefix(rest=b"\x20\x01"), 1, "iavl_remainder"),
        (iavl_prefix(rest=b"\x20" + bytes(31) + b"\x20"), 1, "iavl_remainder"),
        (b"\xff" * 10 + b"\x00\x00\x00\x20", 1, "iavl_varint"),  # more than 10 varint bytes
        (b"\xff" * 9 + b"\x02" + b"\x00\x00\x20", 1, "iavl_varint"),  # overflows 64 bits
        # 11 bytes of varints (5-byte size and version) still fit max_prefix_length 12...
        (iavl_prefix(height=9, size=2**33 - 1, version=2**33 - 1), 1, None),
        # ...12 would put the prefix between "no sibling" and "one sibling" (project rule).
        (iavl_prefix(height=9, size=2**34, version=2**33 - 1), 1, "inner_prefix_children"),
    ],
)
def test_iavl_inner_prefix_rules(prefix: bytes, layer: int, check_name: str | None) -> None:
    err = check(ics23.IAVL_SPEC, InnerOp(HashOp.SHA256, prefix, b""), layer)
    if check_name is None:
        assert err is None
    else:
        assert err is not None and err.context["check"] == check_name, err


def test_iavl_leaf_prefix_rules() -> None:
    leaf = ics23.IAVL_SPEC.leaf_spec
    ics23.check_leaf_op(leaf._replace(prefix=iavl_prefix(height=0, rest=b"")), spec=ics23.IAVL_SPEC)
    with pytest.raises(ProofShapeError, match="remaining prefix length to be 0"):
        ics23.check_leaf_op(leaf._replace(prefix=iavl_prefix(height=0)), spec=ics23.IAVL_SPEC)
    # Depth and prefix are not part of upstream's SpecEquals, so a depth-limited copy of the
    # IAVL spec still gets the IAVL rules.
    limited = dataclasses.replace(ics23.IAVL_SPEC, max_depth=4, min_depth=1)
    with pytest.raises(ProofShapeError, match="IAVL"):
        ics23.check_leaf_op(leaf._replace(prefix=b"\x00\x02"), spec=limited)


def test_iavl_sm3_spec_keeps_the_iavl_rules() -> None:
    err = check(ics23.IAVL_SM3_SPEC, InnerOp(HashOp.SM3, zigzag(5), b""))
    assert err is not None and err.context["check"] == "iavl_varint"
    assert check(ics23.IAVL_SM3_SPEC, InnerOp(HashOp.SM3, iavl_prefix(), b"")) is None


# --------------------------------------------------------------------------------------------
# Tendermint rules (upstream validateTendermintOps) and generic inner checks


@pytest.mark.parametrize(
    ("prefix", "suffix", "check_name"),
    [
        (b"\x01", bytes(32), None),
        (b"\x01" + bytes(32), b"", None),
        (b"", bytes(32), "tendermint_prefix"),
        (b"\x02", bytes(32), "tendermint_prefix"),
        (b"\x01" + bytes(32), bytes(32), "tendermint_prefix"),
        (b"\x02" + bytes(32), b"", "tendermint_prefix"),
        (b"\x00" + bytes(32), b"", "tendermint_prefix"),
        (b"\x01" + bytes(33), b"", "inner_prefix_too_long"),
        (b"\x01", bytes(31), "inner_suffix_length"),
        (b"\x01" + bytes(31), b"", "inner_prefix_children"),
    ],
)
def test_tendermint_inner_rules(prefix: bytes, suffix: bytes, check_name: str | None) -> None:
    err = check(ics23.TENDERMINT_SPEC, InnerOp(HashOp.SHA256, prefix, suffix))
    if check_name is None:
        assert err is None
    else:
        assert err is not None and err.context["check"] == check_name, err


def test_generic_inner_checks() -> None:
    spec = ics23.SMT_SPEC  # no tree-specific rules
    assert check(spec, InnerOp(HashOp.SHA512, b"\x01", bytes(32))).context["check"] == (  # type: ignore[union-attr]
        "inner_hash"
    )
    err = check(spec, InnerOp(HashOp.SHA256, b"\x00" + bytes(32), b""))
    assert err is not None and err.context["check"] == "inner_prefix_is_leaf_prefix"
    err = check(spec, InnerOp(HashOp.SHA256, b"", bytes(32)))
    assert err is not None and err.context["check"] == "inner_prefix_too_short"
    err = check(spec, InnerOp(HashOp.SHA256, b"\x01", bytes(64)))
    assert err is None  # upstream allows several right siblings; the hash decides


def test_invalid_specs_are_reported_not_crashed() -> None:
    inner = dataclasses.replace(ics23.TENDERMINT_SPEC.inner_spec, max_prefix_length=33)
    # Upstream TestForgeNonExistenceProofWithIncorrectMaxPrefixLength: a spec that lets a
    # sibling hide in the constant prefix must fail every inner step.
    forged = ics23.ProofSpec(leaf_spec=ics23.TENDERMINT_SPEC.leaf_spec, inner_spec=inner)
    err = check(forged, InnerOp(HashOp.SHA256, b"\x01", bytes(32)))
    assert err is not None and err.context["check"] == "spec_invalid"
    zero = ics23.ProofSpec(
        leaf_spec=ics23.TENDERMINT_SPEC.leaf_spec,
        inner_spec=dataclasses.replace(ics23.TENDERMINT_SPEC.inner_spec, child_size=0),
    )
    err = check(zero, InnerOp(HashOp.SHA256, b"\x01", bytes(32)))
    assert err is not None and err.context["check"] == "spec_invalid"


def test_default_max_depth() -> None:
    step = InnerOp(HashOp.SHA256, b"\x01", bytes(32))
    proof = ics23.ExistenceProof(b"k", b"v", ics23.TENDERMINT_SPEC.leaf_spec, (step,) * 128)
    ics23.check_existence_proof(proof, spec=ics23.TENDERMINT_SPEC)
    with pytest.raises(ProofShapeError, match="too long: 129"):
        ics23.check_existence_proof(
            proof._replace(path=(*proof.path, step)), spec=ics23.TENDERMINT_SPEC
        )
    with pytest.raises(ProofShapeError, match="too short: 1"):
        ics23.check_existence_proof(
            proof._replace(path=(step,)),
            spec=dataclasses.replace(ics23.TENDERMINT_SPEC, min_depth=2),
        )


# --------------------------------------------------------------------------------------------
# Neighbour predicates on a binary SMT-like inner spec with a placeholder child


EMPTY = b"E" * 32
SPEC = dataclasses.replace(ics23.SMT_SPEC.inner_spec, empty_child=EMPTY)


def test_empty_branches() -> None:
    left_placeholder = InnerOp(HashOp.SHA256, b"\x01" + EMPTY, b"")
    right_placeholder = InnerOp(HashOp.SHA256, b"\x01", EMPTY)
    assert ics23.left_branches_are_empty(SPEC, left_placeholder)
    assert not ics23.right_branches_are_empty(SPEC, left_placeholder)
    assert ics23.right_branches_are_empty(SPEC, right_placeholder)
    assert not ics23.left_branches_are_empty(SPEC, right_placeholder)
    # A left-most path may pass through nodes whose left child is a placeholder.
    real_left = InnerOp(HashOp.SHA256, b"\x01", b"R" * 32)
    assert ics23.is_left_most(SPEC, [real_left, left_placeholder])
    assert not ics23.is_left_most(SPEC, [InnerOp(HashOp.SHA256, b"\x01" + b"L" * 32, b"")])
    assert ics23.is_right_most(
        SPEC, [InnerOp(HashOp.SHA256, b"\x01" + b"L" * 32, b""), right_placeholder]
    )


def test_left_neighbour() -> None:
    top_l = InnerOp(HashOp.SHA256, b"\x01", b"R" * 32)
    top_r = InnerOp(HashOp.SHA256, b"\x01" + b"L" * 32, b"")
    common = InnerOp(HashOp.SHA256, b"\x01", b"C" * 32)
    assert ics23.is_left_neighbor(SPEC, left=[top_l, common], right=[top_r, common])
    assert not ics23.is_left_neighbor(SPEC, left=[top_r, common], right=[top_l, common])
    assert not ics23.is_left_neighbor(SPEC, left=[common], right=[common])  # the same leaf
    assert not ics23.is_left_neighbor(SPEC, left=[], right=[top_r])
    # Below the split, the left path must keep to the right and vice versa.
    assert not ics23.is_left_neighbor(
        SPEC, left=[top_l, top_l, common], right=[top_r, top_r, common]
    )
    assert ics23.is_left_neighbor(SPEC, left=[top_r, top_l, common], right=[top_l, top_r, common])


# --------------------------------------------------------------------------------------------
# Spec constants


def test_spec_constants_match_upstream() -> None:
    iavl = ics23.IAVL_SPEC
    assert iavl.leaf_spec == LeafOp(HashOp.SHA256, HashOp.NO_HASH, HashOp.SHA256, 1, b"\x00")
    assert (iavl.inner_spec.child_order, iavl.inner_spec.child_size) == ((0, 1), 33)
    assert (iavl.inner_spec.min_prefix_length, iavl.inner_spec.max_prefix_length) == (4, 12)
    tm = ics23.TENDERMINT_SPEC
    assert tm.leaf_spec == iavl.leaf_spec
    assert (tm.inner_spec.child_size, tm.inner_spec.min_prefix_length) == (32, 1)
    assert tm.inner_spec.max_prefix_length == 1
    smt = ics23.SMT_SPEC
    assert smt.leaf_spec == LeafOp(HashOp.SHA256, HashOp.SHA256, HashOp.SHA256, 0, b"\x00")
    assert smt.inner_spec.empty_child == bytes(32)
    assert (smt.max_depth, smt.prehash_key_before_comparison) == (256, True)
    for name in ("iavl", "tendermint", "smt"):
        plain, sm3 = ics23.SPECS[name], ics23.SPECS[f"{name}-sm3"]
        swap: dict[int, int] = {HashOp.NO_HASH: HashOp.NO_HASH, HashOp.SHA256: HashOp.SM3}
        assert sm3.leaf_spec == plain.leaf_spec._replace(
            hash=swap[plain.leaf_spec.hash],
            prehash_key=swap[plain.leaf_spec.prehash_key],
            prehash_value=swap[plain.leaf_spec.prehash_value],
        )
        assert sm3.inner_spec == dataclasses.replace(plain.inner_spec, hash=HashOp.SM3)
    with pytest.raises(dataclasses.FrozenInstanceError):
        ics23.IAVL_SPEC.max_depth = 1  # type: ignore[misc]
    assert len({hash(s) for s in ics23.SPECS.values()}) == len(ics23.SPECS)


def test_proof_type_must_fit_the_question() -> None:
    exist = ics23.ExistenceProof(b"k", b"v", ics23.TENDERMINT_SPEC.leaf_spec, ())
    root = ics23.calculate_existence_root(exist, spec=ics23.TENDERMINT_SPEC)
    ics23.verify_membership(
        spec=ics23.TENDERMINT_SPEC, root=root, proof=exist, key=b"k", value=b"v"
    )
    with pytest.raises(ProofShapeError):
        ics23.verify_non_membership(spec=ics23.TENDERMINT_SPEC, root=root, proof=exist, key=b"j")
    with pytest.raises(MismatchError):
        ics23.verify_membership(
            spec=ics23.TENDERMINT_SPEC, root=root, proof=exist, key=b"j", value=b"v"
        )
    absent = ics23.NonExistenceProof(b"a", None, exist)
    ics23.verify_non_membership(spec=ics23.TENDERMINT_SPEC, root=root, proof=absent, key=b"a")
    with pytest.raises(VerificationError):
        ics23.verify_membership(
            spec=ics23.TENDERMINT_SPEC, root=root, proof=absent, key=b"a", value=b"v"
        )
    # The proof's own key field must name the key asked about.
    with pytest.raises(MismatchError):
        ics23.verify_non_membership(
            spec=ics23.TENDERMINT_SPEC, root=root, proof=absent._replace(key=b"b"), key=b"a"
        )
