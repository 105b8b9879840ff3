"""EIP-1186 proofs: mainnet answers verify; every mutation of them is rejected with a typed
error; hand-made malformed tries raise the right error; the verifier survives fuzzing."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest
import sha3
from conftest import vectors_path
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from relay.vectors.ethereum import parse_get_proof
from relay.verify import rlp
from relay.verify.errors import (
    InvalidProofError,
    LimitExceededError,
    MalformedInputError,
    MismatchError,
    ProofShapeError,
    RootMismatchError,
    VerificationError,
)
from relay.verify.merkle import mpt

BLOCK = ("ethereum", "mainnet-block-21925176")
SETTINGS = settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)


def keccak(data: bytes) -> bytes:
    return sha3.keccak_256(data).digest()


def load(name: str) -> tuple[bytes, mpt.AccountProof]:
    folder = vectors_path(*BLOCK)
    block = json.loads((folder / "block.json").read_text())
    path = folder / name
    return bytes.fromhex(block["stateRoot"][2:]), parse_get_proof(
        json.loads(path.read_text()), path
    )


@pytest.fixture(params=["proof.json", "block_miner_proof.json"])
def mainnet(request: pytest.FixtureRequest) -> tuple[bytes, mpt.AccountProof]:
    return load(request.param)


# --- mainnet answers verify ----------------------------------------------------------------


def test_mainnet_answers_verify(mainnet: tuple[bytes, mpt.AccountProof]) -> None:
    state_root, answer = mainnet
    account = mpt.verify_get_proof(state_root=state_root, answer=answer)
    assert account == answer.claimed()
    assert len(answer.account_proof) in (8, 9)


def test_mainnet_contract_storage_slot() -> None:
    state_root, answer = load("proof.json")
    account = mpt.verify_account(
        state_root=state_root, address=answer.address, proof=answer.account_proof
    )
    assert account is not None and account.code_hash != mpt.EMPTY_CODE_HASH
    (sp,) = answer.storage_proofs
    value = mpt.verify_storage(storage_root=account.storage_root, slot=sp.slot, proof=sp.proof)
    assert value == sp.value != 0
    # The same proof cannot show a value for another slot: it is refused, or (if the walk
    # happens to be complete for that slot too) it can only prove absence.
    other = (int.from_bytes(sp.slot, "big") + 1).to_bytes(32, "big")
    try:
        got: int | None = mpt.verify_storage(
            storage_root=account.storage_root, slot=other, proof=sp.proof
        )
    except VerificationError:
        got = None
    assert got in (None, 0)


def test_miner_account_is_an_eoa() -> None:
    state_root, answer = load("block_miner_proof.json")
    account = mpt.verify_get_proof(state_root=state_root, answer=answer)
    assert account is not None
    assert account.code_hash == mpt.EMPTY_CODE_HASH
    assert account.storage_root == mpt.EMPTY_TRIE_ROOT


# --- negative properties on the mainnet answers --------------------------------------------


def flip(data: bytes, at: int, mask: int) -> bytes:
    out = bytearray(data)
    out[at] ^= mask
    return bytes(out)


def rejects(state_root: bytes, answer: mpt.AccountProof) -> VerificationError:
    with pytest.raises(VerificationError) as info:
        mpt.verify_get_proof(state_root=state_root, answer=answer)
    return info.value


@SETTINGS
@given(data=st.data())
def test_flipping_any_account_proof_byte_is_rejected(
    mainnet: tuple[bytes, mpt.AccountProof], data: st.DataObject
) -> None:
    state_root, answer = mainnet
    nodes = list(answer.account_proof)
    i = data.draw(st.integers(0, len(nodes) - 1))
    nodes[i] = flip(
        nodes[i], data.draw(st.integers(0, len(nodes[i]) - 1)), data.draw(st.integers(1, 255))
    )
    err = rejects(state_root, dataclasses.replace(answer, account_proof=tuple(nodes)))
    assert isinstance(err, MismatchError)  # a changed node no longer hashes to its reference
    assert isinstance(err, RootMismatchError) == (i == 0)


@SETTINGS
@given(data=st.data())
def test_flipping_any_storage_proof_byte_is_rejected(data: st.DataObject) -> None:
    state_root, answer = load("proof.json")
    (sp,) = answer.storage_proofs
    nodes = list(sp.proof)
    i = data.draw(st.integers(0, len(nodes) - 1))
    nodes[i] = flip(
        nodes[i], data.draw(st.integers(0, len(nodes[i]) - 1)), data.draw(st.integers(1, 255))
    )
    bad = dataclasses.replace(sp, proof=tuple(nodes))
    assert isinstance(
        rejects(state_root, dataclasses.replace(answer, storage_proofs=(bad,))), MismatchError
    )


@SETTINGS
@given(at=st.integers(0, 31), mask=st.integers(1, 255))
def test_flipping_the_root_is_rejected(
    mainnet: tuple[bytes, mpt.AccountProof], at: int, mask: int
) -> None:
    state_root, answer = mainnet
    err = rejects(flip(state_root, at, mask), answer)
    assert isinstance(err, RootMismatchError)
    assert err.expected == flip(state_root, at, mask)


@SETTINGS
@given(at=st.integers(0, 19), mask=st.integers(1, 255))
def test_flipping_the_address_is_rejected(
    mainnet: tuple[bytes, mpt.AccountProof], at: int, mask: int
) -> None:
    state_root, answer = mainnet
    rejects(state_root, dataclasses.replace(answer, address=flip(answer.address, at, mask)))


@SETTINGS
@given(at=st.integers(0, 31), mask=st.integers(1, 255))
def test_flipping_the_storage_slot_is_rejected(at: int, mask: int) -> None:
    state_root, answer = load("proof.json")
    (sp,) = answer.storage_proofs
    bad = dataclasses.replace(sp, slot=flip(sp.slot, at, mask))
    rejects(state_root, dataclasses.replace(answer, storage_proofs=(bad,)))


@SETTINGS
@given(data=st.data())
def test_changing_any_claimed_field_is_rejected(
    mainnet: tuple[bytes, mpt.AccountProof], data: st.DataObject
) -> None:
    state_root, answer = mainnet
    name = data.draw(st.sampled_from(["nonce", "balance", "storage_hash", "code_hash"]))
    old = getattr(answer, name)
    if isinstance(old, int):
        new: object = data.draw(st.integers(0, 2**256 - 1).filter(lambda v: v != old))
    else:
        new = flip(old, data.draw(st.integers(0, 31)), data.draw(st.integers(1, 255)))
    err = rejects(state_root, dataclasses.replace(answer, **{name: new}))
    assert isinstance(err, MismatchError)
    assert (err.expected, err.calculated) == (new, old)


@SETTINGS
@given(new=st.integers(0, 2**256 - 1))
def test_changing_the_claimed_storage_value_is_rejected(new: int) -> None:
    state_root, answer = load("proof.json")
    (sp,) = answer.storage_proofs
    if new == sp.value:
        new += 1
    bad = dataclasses.replace(sp, value=new)
    err = rejects(state_root, dataclasses.replace(answer, storage_proofs=(bad,)))
    assert isinstance(err, MismatchError) and err.calculated == sp.value


def _truncate(nodes: tuple[bytes, ...], data: st.DataObject) -> tuple[bytes, ...]:
    how = data.draw(st.sampled_from(["drop-nodes", "cut-node", "extend-node", "append-node"]))
    out = list(nodes)
    if how == "drop-nodes":
        keep = data.draw(st.lists(st.booleans(), min_size=len(out), max_size=len(out)))
        if all(keep):
            keep[data.draw(st.integers(0, len(out) - 1))] = False
        return tuple(n for n, k in zip(out, keep, strict=True) if k)
    i = data.draw(st.integers(0, len(out) - 1))
    if how == "cut-node":
        out[i] = out[i][: data.draw(st.integers(0, len(out[i]) - 1))]
    elif how == "extend-node":
        out[i] = out[i] + data.draw(st.binary(min_size=1, max_size=40))
    else:
        extra = data.draw(st.one_of(st.binary(max_size=600), st.sampled_from(out)))
        out.insert(data.draw(st.integers(0, len(out))), extra)
    return tuple(out)


@SETTINGS
@given(data=st.data())
def test_truncating_or_padding_the_account_proof_is_rejected(
    mainnet: tuple[bytes, mpt.AccountProof], data: st.DataObject
) -> None:
    state_root, answer = mainnet
    bad = _truncate(answer.account_proof, data)
    rejects(state_root, dataclasses.replace(answer, account_proof=bad))


@SETTINGS
@given(data=st.data())
def test_truncating_or_padding_the_storage_proof_is_rejected(data: st.DataObject) -> None:
    state_root, answer = load("proof.json")
    (sp,) = answer.storage_proofs
    bad = dataclasses.replace(sp, proof=_truncate(sp.proof, data))
    rejects(state_root, dataclasses.replace(answer, storage_proofs=(bad,)))


def test_error_kinds_for_truncation() -> None:
    state_root, answer = load("proof.json")
    nodes = answer.account_proof
    key = keccak(answer.address)
    with pytest.raises(InvalidProofError, match="ends before"):
        mpt.verify_proof(root=state_root, key=key, proof=nodes[:-1])
    with pytest.raises(ProofShapeError):
        mpt.verify_proof(root=state_root, key=key, proof=[*nodes, nodes[-1]])
    with pytest.raises(InvalidProofError, match="empty"):
        mpt.verify_proof(root=state_root, key=key, proof=[])
    with pytest.raises(LimitExceededError):
        mpt.verify_proof(root=state_root, key=key, proof=list(nodes) * 9)


# --- absent accounts and slots -------------------------------------------------------------


def _state(accounts: dict[bytes, mpt.Account]) -> mpt.Trie:
    items = {keccak(a): mpt.encode_account(acc) for a, acc in accounts.items()}
    return mpt.build_trie(items, spec=mpt.ETHEREUM_SECURE_TRIE)


def test_absent_account_is_a_proven_absence() -> None:
    accounts = {
        bytes([i]) * 20: mpt.Account(i, 10**18 * i, mpt.EMPTY_TRIE_ROOT, mpt.EMPTY_CODE_HASH)
        for i in range(1, 40)
    }
    trie = _state(accounts)
    absent = b"\xee" * 20
    proof = trie.prove(keccak(absent))
    assert mpt.verify_account(state_root=trie.root, address=absent, proof=proof) is None
    answer = mpt.AccountProof(
        address=absent, nonce=0, balance=0, storage_hash=mpt.EMPTY_TRIE_ROOT,
        code_hash=mpt.EMPTY_CODE_HASH, account_proof=proof,
        storage_proofs=(mpt.StorageProof(slot=b"\x00" * 32, value=0, proof=()),),
    )  # fmt: skip
    assert mpt.verify_get_proof(state_root=trie.root, answer=answer) is None
    # An absent account cannot claim a balance, or a storage value.
    err = rejects(trie.root, dataclasses.replace(answer, balance=1))
    assert isinstance(err, MismatchError) and err.context["absent"] is True
    bad_slot = mpt.StorageProof(slot=b"\x00" * 32, value=5, proof=())
    rejects(trie.root, dataclasses.replace(answer, storage_proofs=(bad_slot,)))
    # A present account's proof cannot be passed off as an absent one's.
    present = next(iter(accounts))
    with pytest.raises(mpt.KeyPresentError):
        mpt.verify_absence(root=trie.root, key=keccak(present), proof=trie.prove(keccak(present)))


def test_absent_account_in_an_empty_state() -> None:
    answer = mpt.AccountProof(
        address=b"\x01" * 20, nonce=0, balance=0, storage_hash=mpt.EMPTY_TRIE_ROOT,
        code_hash=mpt.EMPTY_CODE_HASH, account_proof=(),
    )  # fmt: skip
    assert mpt.verify_get_proof(state_root=mpt.EMPTY_TRIE_ROOT, answer=answer) is None


def test_storage_trie_values_and_absence() -> None:
    slots = {i.to_bytes(32, "big"): i * 1000 + 1 for i in range(50)}
    items = {keccak(s): rlp.encode_uint(v) for s, v in slots.items()}
    trie = mpt.build_trie(items, spec=mpt.ETHEREUM_SECURE_TRIE)
    for slot, value in slots.items():
        proof = trie.prove(keccak(slot))
        assert mpt.verify_storage(storage_root=trie.root, slot=slot, proof=proof) == value
    missing = (999).to_bytes(32, "big")
    proof = trie.prove(keccak(missing))
    assert mpt.verify_storage(storage_root=trie.root, slot=missing, proof=proof) == 0
    with pytest.raises(MalformedInputError):
        mpt.verify_storage(storage_root=trie.root, slot=b"\x01", proof=proof)


def test_stored_zero_or_bad_account_value_is_malformed() -> None:
    key = keccak(b"\x00" * 32)
    zero = mpt.build_trie({key: rlp.encode_bytes(b"")}, spec=mpt.ETHEREUM_SECURE_TRIE)
    with pytest.raises(MalformedInputError):
        mpt.verify_storage(storage_root=zero.root, slot=b"\x00" * 32, proof=zero.prove(key))
    address = b"\x02" * 20
    for value in (
        rlp.encode([b"\x01", b"\x02", b"\x00" * 32]),  # 3 fields
        rlp.encode([b"\x00\x01", b"", b"\x00" * 32, b"\x00" * 32]),  # nonce leading zero
        rlp.encode([b"", b"", b"\x00" * 31, b"\x00" * 32]),  # short storage root
        rlp.encode([b"\x01" * 9, b"", b"\x00" * 32, b"\x00" * 32]),  # nonce over 64 bits
    ):
        trie = mpt.build_trie({keccak(address): value}, spec=mpt.ETHEREUM_SECURE_TRIE)
        with pytest.raises(MalformedInputError):
            mpt.verify_account(
                state_root=trie.root, address=address, proof=trie.prove(keccak(address))
            )


# --- hand-made malformed nodes: the root commits to them, the walker must still refuse ----

KEY = bytes(range(32))
HASH_CHILD = b"\x11" * 32


def single(node: rlp.Item | bytes, *, raw: bool = False) -> None:
    encoded = node if raw else rlp.encode(node)  # type: ignore[arg-type]
    assert isinstance(encoded, bytes)
    mpt.verify_proof(root=keccak(encoded), key=KEY, proof=[encoded])


def branch(**slots: rlp.Item) -> list[rlp.Item]:
    items: list[rlp.Item] = [b""] * 17
    for k, v in slots.items():
        items[int(k[1:], 16)] = v
    return items


@pytest.mark.parametrize(
    ("node", "match"),
    [
        (b"abc", "not an RLP list"),
        ([b"\x20" + KEY, b"v", b"x"], "neither 2 nor 17"),
        ([], "neither 2 nor 17"),
        (branch(s0=b"\x01" * 5), "neither empty nor a hash"),
        (branch(s0=b"\x01" * 33), "neither empty nor a hash"),
        (branch(s0=[b"\x20" + b"\x00" * 15, b"v" * 20]), "embedded node is 32 bytes"),
        (branch(s0=HASH_CHILD, s10=[b""] * 17), "expected an RLP string"),  # value is a list
        ([b"\x40" + KEY, b"v"], "flag"),
        ([b"\x21" + KEY, b"v"], "pad nibble"),
        ([b"", b"v"], "flag"),
        ([b"\x20" + KEY, b""], "empty value"),
        ([b"\x20" + KEY, [b"v"]], "expected an RLP string"),
        ([b"\x00", HASH_CHILD], "empty path"),
        ([b"\x10", b""], "no child"),
        ([b"\x10", b"\x01" * 31], "neither empty nor a hash"),
        ([b"\x10", [b"\x31", b"v"]], "non-branch"),  # extension to an embedded leaf
        ([b"\x10", [b"\x00\x00", [b""] * 17]], "non-branch"),  # extension to an extension
        ([[b"\x20"], b"v"], "expected an RLP string"),
    ],
)
def test_malformed_nodes(node: rlp.Item, match: str) -> None:
    with pytest.raises(MalformedInputError, match=match):
        single(node)


def test_extension_to_hashed_non_branch_is_malformed() -> None:
    leaf = rlp.encode([mpt.encode_hex_prefix(KEY.hex()[1:], leaf=True), b"v" * 40])
    ext = rlp.encode([b"\x10", keccak(leaf)])
    with pytest.raises(MalformedInputError, match="non-branch"):
        mpt.verify_proof(root=keccak(ext), key=KEY, proof=[ext, leaf])
    # The same leaf under a branch is fine.
    top = rlp.encode(branch(s0=keccak(leaf)))
    assert mpt.verify_proof(root=keccak(top), key=KEY, proof=[top, leaf]) == b"v" * 40


def test_non_canonical_node_encoding_is_malformed() -> None:
    encoded = rlp.encode([b"\x20" + KEY, b"v"]) + b"\x00"
    with pytest.raises(MalformedInputError, match="trailing"):
        single(encoded, raw=True)
    deep = b"\xc0"
    for _ in range(20):
        deep = rlp.encode_list_payload(deep)
    with pytest.raises(LimitExceededError):
        single(deep, raw=True)


def test_wrong_lengths_and_types() -> None:
    node = rlp.encode([b"\x20" + KEY, b"v"])
    root = keccak(node)
    assert mpt.verify_proof(root=root, key=KEY, proof=[node]) == b"v"
    with pytest.raises(MalformedInputError, match="root"):
        mpt.verify_proof(root=root[:31], key=KEY, proof=[node])
    with pytest.raises(MalformedInputError, match="key"):
        mpt.verify_proof(root=root, key=KEY[:31], proof=[node])
    with pytest.raises(MalformedInputError):
        mpt.verify_proof(root=root, key=KEY, proof=[node.hex()])  # type: ignore[list-item]
    with pytest.raises(LimitExceededError):
        mpt.verify_proof(root=root, key=KEY, proof=[b"\xc0" * 2000])
    with pytest.raises(MalformedInputError):
        mpt.verify_account(state_root=root, address=b"\x01" * 19, proof=[node])
    with pytest.raises(MismatchError):
        mpt.verify_inclusion(root=root, key=KEY, proof=[node], value=b"w")
    with pytest.raises(MalformedInputError):
        mpt.encode_account(mpt.Account(0, 0, b"", b""))


def test_value_in_a_branch_and_leaf_divergence() -> None:
    spec = mpt.MptSpec(
        name="t", hasher=mpt.KECCAK256, key_bytes=None, max_key_bytes=4,
        max_proof_nodes=9, max_node_bytes=1024,
    )  # fmt: skip
    trie = mpt.build_trie({b"\x12": b"a" * 40, b"\x12\x34": b"b" * 40}, spec=spec)
    assert mpt.verify_proof(root=trie.root, key=b"\x12", proof=trie.prove(b"\x12"), spec=spec)
    for absent in (b"\x12\x35", b"\x13", b"\x12\x34\x56", b"\x1f"):
        mpt.verify_absence(root=trie.root, key=absent, proof=trie.prove(absent), spec=spec)
    with pytest.raises(LimitExceededError):
        mpt.verify_proof(root=trie.root, key=b"\x00" * 5, proof=[], spec=spec)


# --- fuzzing the verifier --------------------------------------------------------------------

rlp_items = st.recursive(
    st.one_of(st.binary(max_size=40), st.just(b"\x11" * 32)),
    lambda children: st.lists(children, max_size=17),
    max_leaves=40,
)
# Things a node slot may hold: mostly well-formed references, sometimes garbage.
slot_items = st.one_of(
    st.just(b""),
    st.binary(min_size=32, max_size=32),
    st.binary(max_size=40),
    st.recursive(st.binary(max_size=8), lambda c: st.lists(c, max_size=3), max_leaves=4),
)
clean_slots = st.one_of(st.just(b""), st.binary(min_size=32, max_size=32))
hp_paths = st.builds(
    lambda flag, nibble, rest: bytes([flag << 4 | nibble]) + rest,
    st.integers(0, 4),
    st.integers(0, 15),
    st.binary(max_size=33),
)


def branches() -> st.SearchStrategy[list[rlp.Item]]:
    """Mostly well-formed branches (so the walk goes on), sometimes any 17 items."""
    clean = st.tuples(st.lists(clean_slots, min_size=16, max_size=16), st.binary(max_size=4))
    return st.one_of(
        clean.map(lambda t: [*t[0], t[1]]),
        st.lists(slot_items, min_size=17, max_size=17),
    )


@st.composite
def keyed_chains(draw: st.DrawFn) -> tuple[bytes, list[bytes]]:
    """A key and a chain of nodes in which every node hashes to the reference its parent
    holds at the key's next nibble, so the walker decodes and interprets each of them."""
    key = draw(st.binary(min_size=32, max_size=32))
    nib = key.hex()
    kinds = draw(st.lists(st.sampled_from(["branch", "ext"]), max_size=5))
    positions, pos = [], 0
    for kind in kinds:
        positions.append(pos)
        pos += 1 if kind == "branch" else draw(st.integers(1, 3))
    last = draw(st.sampled_from(["leaf-on-path", "leaf", "branch", "random"]))
    if last == "leaf-on-path" and pos <= len(nib):
        tail: rlp.Item = [mpt.encode_hex_prefix(nib[pos:], leaf=True), draw(st.binary(max_size=40))]
    elif last == "leaf":
        tail = [draw(hp_paths), draw(slot_items)]
    elif last == "branch":
        tail = draw(branches())
    else:
        tail = draw(rlp_items)
    encoded = [rlp.encode(tail)]
    for kind, at in zip(reversed(kinds), reversed(positions), strict=True):
        child = keccak(encoded[0])
        if kind == "branch":
            node = draw(branches())
            if at < len(nib):
                node[int(nib[at], 16)] = child
        else:
            step = positions[positions.index(at) + 1] if at != positions[-1] else pos
            node = [mpt.encode_hex_prefix(nib[at:step], leaf=False), child]
        encoded.insert(0, rlp.encode(node))
    return key, encoded


def _walk_or_typed_error(root: bytes, key: bytes, proof: list[bytes]) -> bool:
    """Run the walker; only typed errors may escape it. Return whether it accepted, and
    check that any value it returns was really read from the proof's bytes."""
    try:
        value = mpt.verify_proof(root=root, key=key, proof=proof)
    except VerificationError:
        return False
    assert value is None or any(value in node for node in proof)
    return True


@pytest.mark.fuzz
@settings(max_examples=400, deadline=None)
@given(chain=keyed_chains())
def test_fuzz_verifier_on_hash_consistent_random_nodes(chain: tuple[bytes, list[bytes]]) -> None:
    key, encoded = chain
    _walk_or_typed_error(keccak(encoded[0]), key, encoded)


@pytest.mark.fuzz
@settings(max_examples=300, deadline=None)
@given(data=st.data())
def test_fuzz_verifier_on_mutated_mainnet_proofs(data: st.DataObject) -> None:
    state_root, answer = load("proof.json")
    nodes = list(answer.account_proof)
    for _ in range(data.draw(st.integers(1, 4))):
        i = data.draw(st.integers(0, len(nodes) - 1))
        node = bytearray(nodes[i])
        at = data.draw(st.integers(0, len(node)))
        op = data.draw(st.sampled_from(["set", "insert", "delete"]))
        if op == "set" and at < len(node):
            node[at] = data.draw(st.integers(0, 255))
        elif op == "insert":
            node[at:at] = data.draw(st.binary(min_size=1, max_size=8))
        elif at < len(node):
            del node[at]
        nodes[i] = bytes(node)
    # Re-anchor the root on the mutated first node so the walk goes past the root check.
    root = data.draw(st.sampled_from([state_root, keccak(nodes[0])]))
    accepted = _walk_or_typed_error(root, keccak(answer.address), nodes)
    if root == state_root and tuple(nodes) != answer.account_proof:
        assert not accepted
        rejects(root, dataclasses.replace(answer, account_proof=tuple(nodes)))


def test_vectors_folder_is_where_the_tests_expect() -> None:
    assert Path(vectors_path(*BLOCK), "proof.json").is_file()
