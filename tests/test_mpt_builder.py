"""The trie builder against a naive insertion-based reference, and builder-made proofs
(present and absent keys) through the verifier, on random tries."""

from __future__ import annotations

import hashlib

import pytest
import sha3
from hypothesis import given, settings
from hypothesis import strategies as st

from relay.verify.errors import (
    LimitExceededError,
    MalformedInputError,
    MismatchError,
    RootMismatchError,
    VerificationError,
)
from relay.verify.hashing import KECCAK256
from relay.verify.merkle import mpt

# --- naive reference: a mutable trie grown by insertion, hashed at the end ---------------
# Written independently of the module under test: its own RLP, hex-prefix and node rules.


def ref_rlp(x: object) -> bytes:
    if isinstance(x, bytes):
        if len(x) == 1 and x[0] < 0x80:
            return x
        return ref_len(len(x), 0x80) + x
    assert isinstance(x, list)
    payload = b"".join(ref_rlp(i) for i in x)
    return ref_len(len(payload), 0xC0) + payload


def ref_len(n: int, offset: int) -> bytes:
    if n < 56:
        return bytes([offset + n])
    b = n.to_bytes((n.bit_length() + 7) // 8, "big")
    return bytes([offset + 55 + len(b)]) + b


def ref_hp(nibbles: tuple[int, ...], leaf: bool) -> bytes:
    flag = 2 if leaf else 0
    padded = (flag + 1, *nibbles) if len(nibbles) % 2 else (flag, 0, *nibbles)
    return bytes(16 * padded[i] + padded[i + 1] for i in range(0, len(padded), 2))


def nibbles_of(key: bytes) -> tuple[int, ...]:
    return tuple(n for b in key for n in (b >> 4, b & 15))


def common(a: tuple[int, ...], b: tuple[int, ...]) -> int:
    k = 0
    while k < len(a) and k < len(b) and a[k] == b[k]:
        k += 1
    return k


def ref_insert(node: list | None, path: tuple[int, ...], value: bytes) -> list:
    if node is None:
        return ["leaf", path, value]
    if node[0] == "branch":
        if not path:
            node[2] = value
        else:
            node[1][path[0]] = ref_insert(node[1][path[0]], path[1:], value)
        return node
    kind, p, payload = node
    k = common(p, path)
    if kind == "leaf" and p == path:
        return ["leaf", p, value]
    if kind == "ext" and k == len(p):
        return ["ext", p, ref_insert(payload, path[k:], value)]
    branch: list = ["branch", [None] * 16, None]
    if kind == "leaf":
        branch = ref_insert(branch, p[k:], payload)
    else:
        rest = p[k + 1 :]
        branch[1][p[k]] = ["ext", rest, payload] if rest else payload
    branch = ref_insert(branch, path[k:], value)
    return ["ext", path[:k], branch] if k else branch


def ref_structure(node: list) -> list:
    if node[0] == "leaf":
        return [ref_hp(node[1], True), node[2]]
    if node[0] == "ext":
        return [ref_hp(node[1], False), ref_child(node[2])]
    return [b"" if c is None else ref_child(c) for c in node[1]] + [node[2] or b""]


def ref_child(node: list) -> bytes | list:
    s = ref_structure(node)
    enc = ref_rlp(s)
    return s if len(enc) < 32 else sha3.keccak_256(enc).digest()


def ref_root(items: dict[bytes, bytes]) -> bytes:
    root = None
    for k, v in items.items():
        root = ref_insert(root, nibbles_of(k), v)
    if root is None:
        return sha3.keccak_256(b"\x80").digest()
    return sha3.keccak_256(ref_rlp(ref_structure(root))).digest()


# --- properties ------------------------------------------------------------------------------

SHORT_KEYS = mpt.MptSpec(
    name="test-variable-keys",
    hasher=KECCAK256,
    key_bytes=None,
    max_key_bytes=6,
    max_proof_nodes=13,
    max_node_bytes=4096,
)

# Short keys drawn from a small alphabet share prefixes, which makes extensions, branch values
# (a key that is a prefix of another) and embedded nodes (tiny values) common.
short_keys = st.binary(max_size=6).map(lambda b: bytes(x % 3 for x in b))
values = st.binary(min_size=1, max_size=40)
short_tries = st.dictionaries(short_keys, values, max_size=30)
secure_tries = st.dictionaries(st.binary(min_size=32, max_size=32), values, max_size=40)


def test_known_roots() -> None:
    assert mpt.trie_root({}, spec=mpt.ETHEREUM_SECURE_TRIE) == mpt.EMPTY_TRIE_ROOT
    assert mpt.EMPTY_TRIE_ROOT.hex() == (
        "56e81f171bcc55a6ff8345e692c0f86e5b48e01b996cadc001622fb5e363b421"
    )
    # The Ethereum wiki's worked example: do, dog, doge, horse.
    items = {b"do": b"verb", b"dog": b"puppy", b"doge": b"coin", b"horse": b"stallion"}
    spec = mpt.MptSpec(
        name="wiki", hasher=KECCAK256, key_bytes=None, max_key_bytes=8,
        max_proof_nodes=17, max_node_bytes=1024,
    )  # fmt: skip
    assert mpt.trie_root(items, spec=spec) == ref_root(items)
    assert mpt.trie_root(items, spec=spec).hex() == (
        "5991bb8c6514148a29db676a14ac506cd2cd5775ace63c30a4fe457715e9ac84"
    )


@settings(max_examples=300, deadline=None)
@given(items=short_tries)
def test_builder_agrees_with_reference_short_keys(items: dict[bytes, bytes]) -> None:
    assert mpt.trie_root(items, spec=SHORT_KEYS) == ref_root(items)


@settings(max_examples=150, deadline=None)
@given(items=secure_tries)
def test_builder_agrees_with_reference_secure(items: dict[bytes, bytes]) -> None:
    assert mpt.trie_root(items, spec=mpt.ETHEREUM_SECURE_TRIE) == ref_root(items)


@settings(max_examples=200, deadline=None)
@given(items=short_tries, probes=st.lists(short_keys, max_size=8))
def test_builder_proofs_verify_present_and_absent(
    items: dict[bytes, bytes], probes: list[bytes]
) -> None:
    trie = mpt.build_trie(items, spec=SHORT_KEYS)
    for key, value in items.items():
        proof = trie.prove(key)
        got = mpt.verify_inclusion(root=trie.root, key=key, proof=proof, spec=SHORT_KEYS)
        assert got == value
        mpt.verify_inclusion(root=trie.root, key=key, proof=proof, value=value, spec=SHORT_KEYS)
        with pytest.raises(mpt.KeyPresentError):
            mpt.verify_absence(root=trie.root, key=key, proof=proof, spec=SHORT_KEYS)
    for key in probes:
        proof = trie.prove(key)
        if key in items:
            assert (
                mpt.verify_proof(root=trie.root, key=key, proof=proof, spec=SHORT_KEYS)
                == (items[key])
            )
        else:
            mpt.verify_absence(root=trie.root, key=key, proof=proof, spec=SHORT_KEYS)
            with pytest.raises(mpt.KeyAbsentError):
                mpt.verify_inclusion(root=trie.root, key=key, proof=proof, spec=SHORT_KEYS)


@settings(max_examples=100, deadline=None)
@given(items=secure_tries, absent=st.binary(min_size=32, max_size=32))
def test_secure_trie_proofs(items: dict[bytes, bytes], absent: bytes) -> None:
    spec = mpt.ETHEREUM_SECURE_TRIE
    trie = mpt.build_trie(items, spec=spec)
    for key, value in items.items():
        assert mpt.verify_inclusion(root=trie.root, key=key, proof=trie.prove(key)) == value
    if absent not in items:
        mpt.verify_absence(root=trie.root, key=absent, proof=trie.prove(absent))


@settings(max_examples=200, deadline=None)
@given(items=short_tries.filter(bool), data=st.data())
def test_builder_proofs_reject_any_node_byte_flip(
    items: dict[bytes, bytes], data: st.DataObject
) -> None:
    trie = mpt.build_trie(items, spec=SHORT_KEYS)
    key = data.draw(st.sampled_from(sorted(items)))
    proof = list(trie.prove(key))
    i = data.draw(st.integers(0, len(proof) - 1))
    j = data.draw(st.integers(0, len(proof[i]) - 1))
    node = bytearray(proof[i])
    node[j] ^= data.draw(st.integers(1, 255))
    proof[i] = bytes(node)
    with pytest.raises(MismatchError if i else RootMismatchError):
        mpt.verify_proof(root=trie.root, key=key, proof=proof, spec=SHORT_KEYS)


@settings(max_examples=100, deadline=None)
@given(items=short_tries.filter(bool), data=st.data())
def test_builder_proofs_for_one_key_do_not_prove_another(
    items: dict[bytes, bytes], data: st.DataObject
) -> None:
    trie = mpt.build_trie(items, spec=SHORT_KEYS)
    key = data.draw(st.sampled_from(sorted(items)))
    other = data.draw(short_keys.filter(lambda k: k != key))
    try:
        got = mpt.verify_proof(root=trie.root, key=other, proof=trie.prove(key), spec=SHORT_KEYS)
    except VerificationError:
        return
    # Accepted only when the proof honestly answers for ``other`` too.
    assert got == items.get(other)


def test_hex_prefix_roundtrip_and_known_values() -> None:
    # Yellow Paper appendix C examples as used by the Ethereum wiki.
    assert mpt.encode_hex_prefix("12345", leaf=False).hex() == "112345"
    assert mpt.encode_hex_prefix("012345", leaf=False).hex() == "00012345"
    assert mpt.encode_hex_prefix("0f1cb8", leaf=True).hex() == "200f1cb8"
    assert mpt.encode_hex_prefix("f1cb8", leaf=True).hex() == "3f1cb8"
    for nibbles in ("", "a", "ab", "abc", "0123456789abcdef0"):
        for leaf in (False, True):
            assert mpt.decode_hex_prefix(mpt.encode_hex_prefix(nibbles, leaf=leaf)) == (
                nibbles,
                leaf,
            )
    for bad in (b"", b"\x01", b"\x21", b"\x40", b"\xf0"):
        with pytest.raises(MalformedInputError):
            mpt.decode_hex_prefix(bad)


def test_builder_limits() -> None:
    spec = mpt.ETHEREUM_SECURE_TRIE
    with pytest.raises(MalformedInputError):
        mpt.build_trie({b"short": b"v"}, spec=spec)
    with pytest.raises(MalformedInputError):
        mpt.build_trie({b"\x00" * 32: b""}, spec=spec)
    with pytest.raises(LimitExceededError):
        mpt.build_trie({b"\x00" * 32: b"v" * 2000}, spec=spec)
    with pytest.raises(LimitExceededError):
        mpt.build_trie({b"\x00" * 7: b"v"}, spec=SHORT_KEYS)
    tiny = mpt.MptSpec(
        name="tiny", hasher=KECCAK256, key_bytes=None, max_key_bytes=2,
        max_proof_nodes=5, max_node_bytes=64, max_items=3,
    )  # fmt: skip
    with pytest.raises(LimitExceededError):
        mpt.build_trie({bytes([i]): b"v" for i in range(4)}, spec=tiny)
    with pytest.raises(MalformedInputError):
        mpt.MptSpec(
            name="huge keys", hasher=KECCAK256, key_bytes=None, max_key_bytes=10_000,
            max_proof_nodes=5, max_node_bytes=64,
        )  # fmt: skip


def test_empty_trie_proofs() -> None:
    trie = mpt.build_trie({}, spec=mpt.ETHEREUM_SECURE_TRIE)
    key = hashlib.sha256(b"x").digest()
    assert trie.prove(key) == ()
    mpt.verify_absence(root=trie.root, key=key, proof=())
    mpt.verify_absence(root=trie.root, key=key, proof=[b"\x80"])
