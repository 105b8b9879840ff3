"""Ethereum Merkle Patricia Trie: proof verification, a small trie builder, EIP-1186 account
and storage proofs, and the receipts trie of EIP-2718 typed receipts.

Trie format: Ethereum Yellow Paper appendix C (hex-prefix encoding) and D (modified Merkle
Patricia tree): a node is the RLP of a 17-item branch or a 2-item leaf/extension; a child
whose RLP is shorter than 32 bytes is embedded in its parent, any other is referenced by
its Keccak-256. Proofs are the list of referenced nodes on the key's path, root first, as
``eth_getProof`` returns them (EIP-1186).

:func:`verify_proof` walks a proof and returns the value or ``None`` for a *proven* absence
(the path ends at an empty branch slot, a branch without a value, or a leaf/extension whose
path diverges from the key); anything else raises a typed error. :func:`verify_inclusion`
and :func:`verify_absence` turn that into a verdict. The builder (:func:`build_trie`) makes
roots and proofs for receipts tries and for tests.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

from relay.verify import rlp
from relay.verify.errors import (
    InvalidProofError,
    LimitExceededError,
    MalformedInputError,
    MismatchError,
    ProofShapeError,
    RootMismatchError,
)
from relay.verify.hashing import KECCAK256, Hasher

# --- specs -----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class MptSpec:
    """What a trie's proofs may look like. Chosen by the caller per trie, never by a proof.

    ``key_bytes`` fixes the key length (secure tries hash their keys to 32 bytes); ``None``
    allows any length up to ``max_key_bytes``. ``max_proof_nodes`` and ``max_node_bytes``
    bound the work a proof can cause.
    """

    name: str
    hasher: Hasher
    key_bytes: int | None
    max_key_bytes: int
    max_proof_nodes: int
    max_node_bytes: int
    max_items: int = 1 << 20
    """Most key/value pairs :func:`build_trie` accepts."""

    empty_root: bytes = field(init=False)
    """Root of the empty trie: the hash of ``RLP(b"")``."""

    def __post_init__(self) -> None:
        # The builder recurses once per key nibble; bounding the key keeps that shallow.
        if not 0 < self.max_key_bytes <= 128:
            raise MalformedInputError("max_key_bytes must be in 1..128", spec=self.name)
        if self.key_bytes is not None and not 0 < self.key_bytes <= self.max_key_bytes:
            raise MalformedInputError("key_bytes must be in 1..max_key_bytes", spec=self.name)
        if self.hasher.digest_size < _EMBED_BELOW:
            raise MalformedInputError("node hashes must be at least 32 bytes", spec=self.name)
        object.__setattr__(self, "empty_root", self.hasher.hash(_EMPTY_NODE))


_EMBED_BELOW = 32
"""Nodes whose RLP is shorter than this are embedded in their parent (Yellow Paper D, n)."""

_EMPTY_NODE = b"\x80"
_NODE_MAX_DEPTH = 8
"""RLP nesting inside one node: the node, then embedded children. Embedded nodes are under
32 bytes, so a canonical node never nests more than 5 levels; 8 leaves a margin."""

ETHEREUM_SECURE_TRIE = MptSpec(
    name="ethereum-secure-trie",
    hasher=KECCAK256,
    key_bytes=32,
    max_key_bytes=32,
    # 64 nibbles: at most one branch per nibble plus the leaf.
    max_proof_nodes=65,
    # A full branch is 3 + 16 * 33 + 1 = 532 bytes; an account leaf is under 200.
    max_node_bytes=1024,
)
"""The state trie and storage tries: keys are Keccak-256 of the address or slot."""

ETHEREUM_RECEIPTS_TRIE = MptSpec(
    name="ethereum-receipts-trie",
    hasher=KECCAK256,
    key_bytes=None,
    # RLP of a 64-bit index.
    max_key_bytes=9,
    max_proof_nodes=19,
    # A leaf holds a whole receipt; log data costs 8 gas a byte, so even a 100M-gas block
    # stays under 13 MB of logs.
    max_node_bytes=16 * 1024 * 1024,
    max_items=1 << 20,
)
"""Receipts (and transactions) tries: the key is RLP(transaction index)."""

# --- errors ----------------------------------------------------------------------------------


class KeyAbsentError(InvalidProofError):
    """The proof is valid but proves the key is absent, where inclusion was required."""

    reason = "KEY_ABSENT"


class KeyPresentError(InvalidProofError):
    """The proof is valid but proves the key holds a value, where absence was required."""

    reason = "KEY_PRESENT"


# --- hex-prefix encoding (Yellow Paper appendix C) -------------------------------------------

_NIBBLE = {c: i for i, c in enumerate("0123456789abcdef")}


def decode_hex_prefix(encoded: bytes) -> tuple[str, bool]:
    """Split a hex-prefix path into its nibbles (as a lowercase hex string, one character per
    nibble) and the leaf flag. Rejects unknown flags and a non-zero pad nibble."""
    h = encoded.hex()
    flag = h[:1]
    if flag == "0" or flag == "2":
        if h[1:2] != "0":
            raise MalformedInputError("hex-prefix pad nibble is not zero", path=encoded)
        return h[2:], flag == "2"
    if flag == "1" or flag == "3":
        return h[1:], flag == "3"
    raise MalformedInputError("hex-prefix flag is not 0-3", path=encoded)


def encode_hex_prefix(nibbles: str, *, leaf: bool) -> bytes:
    """Hex-prefix encode a path given as a hex string of nibbles."""
    flag = 2 if leaf else 0
    if len(nibbles) % 2:
        return bytes.fromhex(f"{flag + 1:x}{nibbles}")
    return bytes.fromhex(f"{flag:x}0{nibbles}")


# --- verification ----------------------------------------------------------------------------


def _check_common(*, spec: MptSpec, root: bytes, key: bytes, proof: Sequence[bytes]) -> None:
    if len(root) != spec.hasher.digest_size:
        raise MalformedInputError(
            "trie root has the wrong length",
            spec=spec.name,
            length=len(root),
            expected=spec.hasher.digest_size,
        )
    if spec.key_bytes is not None and len(key) != spec.key_bytes:
        raise MalformedInputError(
            "trie key has the wrong length",
            spec=spec.name,
            length=len(key),
            expected=spec.key_bytes,
        )
    if len(key) > spec.max_key_bytes:
        raise LimitExceededError(
            "trie key too long", spec=spec.name, length=len(key), limit=spec.max_key_bytes
        )
    if len(proof) > spec.max_proof_nodes:
        raise LimitExceededError(
            "proof has too many nodes",
            spec=spec.name,
            nodes=len(proof),
            limit=spec.max_proof_nodes,
        )
    for i, node in enumerate(proof):
        if not isinstance(node, bytes):
            raise MalformedInputError("proof node must be bytes", node=i)
        if len(node) > spec.max_node_bytes:
            raise LimitExceededError(
                "proof node too large", node=i, length=len(node), limit=spec.max_node_bytes
            )


def _check_ref(child: rlp.Item, *, digest_size: int, node: int) -> None:
    """A child reference is empty, a hash, or an embedded node shorter than 32 bytes."""
    if isinstance(child, bytes):
        if len(child) != digest_size and child:
            raise MalformedInputError(
                "child reference is neither empty nor a hash", node=node, length=len(child)
            )
    elif len(rlp.encode(child)) >= _EMBED_BELOW:
        raise MalformedInputError("embedded node is 32 bytes or longer", node=node)


def verify_proof(
    *, root: bytes, key: bytes, proof: Sequence[bytes], spec: MptSpec = ETHEREUM_SECURE_TRIE
) -> bytes | None:
    """Walk ``proof`` from the trusted ``root`` along ``key``; return the value stored under
    ``key``, or ``None`` when the proof proves that no value is stored there.

    Requires ``root`` of the hash's size, ``key`` of the spec's length, and ``proof`` the
    hashed nodes on the key's path, root first (embedded nodes stay inside their parent).
    An empty proof proves absence only for the empty trie's root.

    Raises :class:`RootMismatchError` if the first node does not hash to ``root``,
    :class:`MismatchError` if a later node does not hash to its parent's reference,
    :class:`InvalidProofError` if the proof stops before the path does,
    :class:`ProofShapeError` if nodes are left over, :class:`MalformedInputError` for
    nodes that are not canonical trie nodes, :class:`LimitExceededError` beyond the spec.
    """
    _check_common(spec=spec, root=root, key=key, proof=proof)
    n = len(proof)
    if n == 0:
        if root == spec.empty_root:
            return None
        raise InvalidProofError(
            "proof is empty but the root is not the empty trie's", spec=spec.name, root=root
        )
    hash_fn = spec.hasher.hash
    digest_size = spec.hasher.digest_size
    max_node = spec.max_node_bytes
    path = key.hex()
    end = len(path)
    pos = 0
    used = 0
    ref: rlp.Item = root
    must_branch = False  # an extension's child is a branch in a canonical trie
    result: bytes | None
    while True:
        if isinstance(ref, bytes):
            if used == n:
                raise InvalidProofError(
                    "proof ends before the key's path does", spec=spec.name, nodes=n, key=key
                )
            encoded = proof[used]
            calculated = hash_fn(encoded)
            if calculated != ref:
                if used == 0:
                    raise RootMismatchError(
                        "first proof node does not hash to the trusted root",
                        spec=spec.name,
                        expected=root,
                        calculated=calculated,
                    )
                raise MismatchError(
                    "proof node does not hash to the reference its parent holds",
                    spec=spec.name,
                    node=used,
                    expected=ref,
                    calculated=calculated,
                )
            node = rlp.decode(encoded, max_bytes=max_node, max_depth=_NODE_MAX_DEPTH)
            used += 1
            if not isinstance(node, list):
                if used == 1 and node == b"":
                    result = None  # the empty trie, proved by the node RLP(b"")
                    break
                raise MalformedInputError("trie node is not an RLP list", node=used - 1)
        else:
            node = ref
        at = used - 1
        if len(node) == 17:
            for child in node[:16]:
                # Inline check of the common cases (empty slot, hash); see _check_ref.
                if child.__class__ is not bytes or (child and len(child) != digest_size):
                    _check_ref(child, digest_size=digest_size, node=at)
            value = rlp.as_bytes(node[16], what="branch value")
            if pos == end:
                result = value or None
                break
            ref = node[_NIBBLE[path[pos]]]
            pos += 1
            if ref == b"":
                result = None
                break
            must_branch = False
            continue
        if len(node) != 2:
            raise MalformedInputError("trie node has neither 2 nor 17 items", node=at)
        if must_branch:
            raise MalformedInputError("extension node points to a non-branch node", node=at)
        nibbles, is_leaf = decode_hex_prefix(rlp.as_bytes(node[0], what="node path"))
        if is_leaf:
            value = rlp.as_bytes(node[1], what="leaf value")
            if not value:
                raise MalformedInputError("leaf node holds an empty value", node=at)
            result = value if path[pos:] == nibbles else None
            break
        if not nibbles:
            raise MalformedInputError("extension node has an empty path", node=at)
        ref = node[1]
        if ref == b"":
            raise MalformedInputError("extension node has no child", node=at)
        _check_ref(ref, digest_size=digest_size, node=at)
        if path[pos : pos + len(nibbles)] != nibbles:
            result = None
            break
        pos += len(nibbles)
        must_branch = True
    if used != n:
        raise ProofShapeError(
            "proof has nodes past the end of the key's path",
            spec=spec.name,
            nodes=n,
            used=used,
        )
    return result


def verify_inclusion(
    *,
    root: bytes,
    key: bytes,
    proof: Sequence[bytes],
    value: bytes | None = None,
    spec: MptSpec = ETHEREUM_SECURE_TRIE,
) -> bytes:
    """Verify that ``proof`` shows ``key`` holding a value under ``root`` and return it; if
    ``value`` is given, it must be that value (else :class:`MismatchError`).

    Raises :class:`KeyAbsentError` if the proof proves the key absent, and everything
    :func:`verify_proof` raises.
    """
    proven = verify_proof(root=root, key=key, proof=proof, spec=spec)
    if proven is None:
        raise KeyAbsentError("proof shows the key is absent", spec=spec.name, key=key)
    if value is not None and proven != value:
        raise MismatchError(
            "value in the trie differs from the claimed value",
            spec=spec.name,
            key=key,
            expected=value,
            calculated=proven,
        )
    return proven


def verify_absence(
    *, root: bytes, key: bytes, proof: Sequence[bytes], spec: MptSpec = ETHEREUM_SECURE_TRIE
) -> None:
    """Verify that ``proof`` shows no value stored under ``key`` in the trie of ``root``.

    Raises :class:`KeyPresentError` (carrying the value) if the key is present, and
    everything :func:`verify_proof` raises.
    """
    proven = verify_proof(root=root, key=key, proof=proof, spec=spec)
    if proven is not None:
        raise KeyPresentError("proof shows the key holds a value", key=key, value=proven)


# --- builder ---------------------------------------------------------------------------------


class Trie:
    """A trie built by :func:`build_trie`: its root and the hashed nodes, to make proofs."""

    __slots__ = ("_nodes", "root", "spec")

    def __init__(self, *, root: bytes, nodes: dict[bytes, bytes], spec: MptSpec) -> None:
        self.root = root
        self.spec = spec
        self._nodes = nodes

    @property
    def nodes(self) -> Mapping[bytes, bytes]:
        """Every hashed node of the trie, by hash (the root included)."""
        return self._nodes

    def prove(self, key: bytes) -> tuple[bytes, ...]:
        """The proof :func:`verify_proof` takes for ``key``, present or absent: the hashed
        nodes from the root along the key's path (empty for the empty trie, as Ethereum
        clients return it)."""
        if self.root == self.spec.empty_root:
            return ()
        path = key.hex()
        pos = 0
        proof = [self._nodes[self.root]]
        node = rlp.decode(proof[0], max_depth=_NODE_MAX_DEPTH)
        while isinstance(node, list):
            if len(node) == 17:
                if pos == len(path):
                    break
                child = node[_NIBBLE[path[pos]]]
                pos += 1
            else:
                nibbles, is_leaf = decode_hex_prefix(rlp.as_bytes(node[0], what="path"))
                if is_leaf or path[pos : pos + len(nibbles)] != nibbles:
                    break
                pos += len(nibbles)
                child = node[1]
            if isinstance(child, list):
                node = child
            elif child:
                proof.append(self._nodes[child])
                node = rlp.decode(proof[-1], max_depth=_NODE_MAX_DEPTH)
            else:
                break
        return tuple(proof)


def build_trie(items: Mapping[bytes, bytes], *, spec: MptSpec) -> Trie:
    """Build the trie holding ``items`` (key -> non-empty value) and return its root and
    nodes. Keys must fit ``spec``; an empty value would mean "deleted", so it is refused.

    Follows the Yellow Paper's structural definition (appendix D, function c): the node
    over a set of keys is a leaf for one key, an extension over their longest common
    prefix, else a branch on the next nibble.
    """
    if len(items) > spec.max_items:
        raise LimitExceededError(
            "too many trie items", spec=spec.name, items=len(items), limit=spec.max_items
        )
    # A value must fit in its node with room for the path, or a full branch around it.
    overhead = spec.max_key_bytes + 32 + (16 * 33 if spec.key_bytes is None else 0)
    max_value = spec.max_node_bytes - overhead
    entries: list[tuple[str, bytes]] = []
    for key, value in items.items():
        if spec.key_bytes is not None and len(key) != spec.key_bytes:
            raise MalformedInputError(
                "trie key has the wrong length", length=len(key), expected=spec.key_bytes
            )
        if len(key) > spec.max_key_bytes:
            raise LimitExceededError("trie key too long", length=len(key))
        if not value:
            raise MalformedInputError("trie values must be non-empty", key=key)
        if len(value) > max_value:
            raise LimitExceededError(
                "trie value too large for a node", key=key, length=len(value), limit=max_value
            )
        entries.append((key.hex(), value))
    nodes: dict[bytes, bytes] = {}
    hash_fn = spec.hasher.hash
    if not entries:
        root = spec.empty_root
        nodes[root] = _EMPTY_NODE
        return Trie(root=root, nodes=nodes, spec=spec)
    entries.sort()
    encoded = _build(entries, 0, len(entries), 0, nodes, hash_fn)
    root = hash_fn(encoded)
    nodes[root] = encoded
    return Trie(root=root, nodes=nodes, spec=spec)


def trie_root(items: Mapping[bytes, bytes], *, spec: MptSpec) -> bytes:
    """Root of the trie holding ``items`` (see :func:`build_trie`)."""
    return build_trie(items, spec=spec).root


_EMPTY_SLOT = rlp.encode_bytes(b"")


def _build(
    entries: list[tuple[str, bytes]],
    lo: int,
    hi: int,
    depth: int,
    nodes: dict[bytes, bytes],
    hash_fn: Callable[[bytes], bytes],
) -> bytes:
    """RLP of the node over ``entries[lo:hi]`` (sorted, sharing ``depth`` leading nibbles)."""
    if hi - lo == 1:
        key, value = entries[lo]
        path = encode_hex_prefix(key[depth:], leaf=True)
        return rlp.encode_list_payload(rlp.encode_bytes(path) + rlp.encode_bytes(value))
    first = entries[lo][0]
    last = entries[hi - 1][0]
    # In a sorted range the common prefix of all keys is that of the first and the last.
    common = depth
    limit = min(len(first), len(last))
    while common < limit and first[common] == last[common]:
        common += 1
    if common > depth:
        child = _build(entries, lo, hi, common, nodes, hash_fn)
        path = encode_hex_prefix(first[depth:common], leaf=False)
        return rlp.encode_list_payload(rlp.encode_bytes(path) + _ref(child, nodes, hash_fn))
    slots = [_EMPTY_SLOT] * 16
    value = b""
    i = lo
    if len(entries[i][0]) == depth:  # a key that ends here sorts first
        value = entries[i][1]
        i += 1
    while i < hi:
        nibble = entries[i][0][depth]
        j = i + 1
        while j < hi and entries[j][0][depth] == nibble:
            j += 1
        slots[_NIBBLE[nibble]] = _ref(
            _build(entries, i, j, depth + 1, nodes, hash_fn), nodes, hash_fn
        )
        i = j
    return rlp.encode_list_payload(b"".join(slots) + rlp.encode_bytes(value))


def _ref(encoded: bytes, nodes: dict[bytes, bytes], hash_fn: Callable[[bytes], bytes]) -> bytes:
    """The RLP a parent holds for a child: the child itself if short, else its hash."""
    if len(encoded) < _EMBED_BELOW:
        return encoded
    digest = hash_fn(encoded)
    nodes[digest] = encoded
    return rlp.encode_bytes(digest)


# --- EIP-1186 account and storage proofs -----------------------------------------------------

EMPTY_CODE_HASH = KECCAK256.hash(b"")
"""Code hash of an account without code."""

EMPTY_TRIE_ROOT = ETHEREUM_SECURE_TRIE.empty_root
"""Storage root of an account without storage."""

MAX_STORAGE_PROOFS = 1024
"""Most storage slots one ``eth_getProof`` answer may carry."""


@dataclass(frozen=True, slots=True)
class Account:
    """An account as the state trie stores it: RLP([nonce, balance, storageRoot, codeHash])."""

    nonce: int
    balance: int
    storage_root: bytes
    code_hash: bytes


EMPTY_ACCOUNT = Account(0, 0, EMPTY_TRIE_ROOT, EMPTY_CODE_HASH)
"""What ``eth_getProof`` reports for an account that is not in the state trie."""


def decode_account(value: bytes) -> Account:
    """Decode a state-trie value strictly (canonical RLP, 4 fields, 32-byte hashes, nonce at
    most 64 bits as EIP-2681 bounds it, balance at most 256 bits)."""
    fields = rlp.as_list(
        rlp.decode(value, max_bytes=ETHEREUM_SECURE_TRIE.max_node_bytes, max_depth=1),
        what="account",
        length=4,
    )
    return Account(
        nonce=rlp.decode_uint(fields[0], what="nonce", max_bytes=8),
        balance=rlp.decode_uint(fields[1], what="balance", max_bytes=32),
        storage_root=rlp.as_bytes(fields[2], what="storageRoot", length=32),
        code_hash=rlp.as_bytes(fields[3], what="codeHash", length=32),
    )


def encode_account(account: Account) -> bytes:
    """The state-trie value of ``account``."""
    if len(account.storage_root) != 32 or len(account.code_hash) != 32:
        raise MalformedInputError("account hashes must be 32 bytes")
    return rlp.encode_list(
        [
            rlp.uint_bytes(account.nonce),
            rlp.uint_bytes(account.balance),
            account.storage_root,
            account.code_hash,
        ]
    )


@dataclass(frozen=True, slots=True)
class StorageProof:
    """One ``storageProof`` entry of an ``eth_getProof`` answer: the 32-byte slot, the value
    the answer claims, and the storage-trie nodes."""

    slot: bytes
    value: int
    proof: tuple[bytes, ...]


@dataclass(frozen=True, slots=True)
class AccountProof:
    """An ``eth_getProof`` answer (EIP-1186), decoded from JSON but not yet verified: the
    claimed account fields, the state-trie nodes and the storage proofs."""

    address: bytes
    nonce: int
    balance: int
    storage_hash: bytes
    code_hash: bytes
    account_proof: tuple[bytes, ...]
    storage_proofs: tuple[StorageProof, ...] = ()

    def claimed(self) -> Account:
        return Account(self.nonce, self.balance, self.storage_hash, self.code_hash)


def verify_account(
    *,
    state_root: bytes,
    address: bytes,
    proof: Sequence[bytes],
    spec: MptSpec = ETHEREUM_SECURE_TRIE,
) -> Account | None:
    """Return the account the state trie of ``state_root`` holds for the 20-byte
    ``address`` (key Keccak-256(address)), or ``None`` when the proof proves it absent."""
    if len(address) != 20:
        raise MalformedInputError("address must be 20 bytes", length=len(address))
    key = spec.hasher.hash(address)
    value = verify_proof(root=state_root, key=key, proof=proof, spec=spec)
    return None if value is None else decode_account(value)


def verify_storage(
    *,
    storage_root: bytes,
    slot: bytes,
    proof: Sequence[bytes],
    spec: MptSpec = ETHEREUM_SECURE_TRIE,
) -> int:
    """Return the value of the 32-byte storage ``slot`` under ``storage_root`` (key
    Keccak-256(slot), value RLP of the big-endian integer without leading zeros); a proven
    absence is the value zero."""
    if len(slot) != 32:
        raise MalformedInputError("storage slot must be 32 bytes", length=len(slot))
    value = verify_proof(root=storage_root, key=spec.hasher.hash(slot), proof=proof, spec=spec)
    if value is None:
        return 0
    number = rlp.decode_uint(rlp.decode(value, max_depth=0), what="storage value", max_bytes=32)
    if number == 0:
        # Clients delete zeroed slots; a stored zero is not a canonical trie.
        raise MalformedInputError("storage trie stores a zero value", slot=slot)
    return number


_ACCOUNT_FIELDS = (
    ("nonce", "nonce"),
    ("balance", "balance"),
    ("storageHash", "storage_root"),
    ("codeHash", "code_hash"),
)


def verify_get_proof(
    *, state_root: bytes, answer: AccountProof, spec: MptSpec = ETHEREUM_SECURE_TRIE
) -> Account | None:
    """Verify a whole ``eth_getProof`` answer against the trusted ``state_root``: the account
    proof, every claimed account field, and every storage slot against the proven storage
    root. Returns the proven account, or ``None`` for a proven-absent account (whose claimed
    fields must then be those of :data:`EMPTY_ACCOUNT`, and its slots zero).

    Raises :class:`MismatchError` naming the field whose claim (``expected``) differs from
    what the proof shows (``calculated``), and everything :func:`verify_proof` raises.
    """
    if len(answer.storage_proofs) > MAX_STORAGE_PROOFS:
        raise LimitExceededError(
            "too many storage proofs",
            count=len(answer.storage_proofs),
            limit=MAX_STORAGE_PROOFS,
        )
    proven = verify_account(
        state_root=state_root, address=answer.address, proof=answer.account_proof, spec=spec
    )
    account = EMPTY_ACCOUNT if proven is None else proven
    claimed = answer.claimed()
    for name, attr in _ACCOUNT_FIELDS:
        want = getattr(claimed, attr)
        got = getattr(account, attr)
        if want != got:
            raise MismatchError(
                "claimed account field differs from the proven account",
                field=name,
                address=answer.address,
                absent=proven is None,
                expected=want,
                calculated=got,
            )
    for sp in answer.storage_proofs:
        got = verify_storage(
            storage_root=account.storage_root, slot=sp.slot, proof=sp.proof, spec=spec
        )
        if got != sp.value:
            raise MismatchError(
                "claimed storage value differs from the proven value",
                slot=sp.slot,
                expected=sp.value,
                calculated=got,
            )
    return proven


# --- receipts (EIP-2718 typed receipts) ------------------------------------------------------

MAX_LOGS_PER_RECEIPT = 1 << 16
"""A log costs at least 375 gas; this is far above what any block's gas allows."""


@dataclass(frozen=True, slots=True)
class Log:
    """One log entry: RLP([address, [topics...], data])."""

    address: bytes
    topics: tuple[bytes, ...]
    data: bytes


@dataclass(frozen=True, slots=True)
class Receipt:
    """A transaction receipt. ``tx_type`` 0 is a legacy receipt; 1..0x7f are EIP-2718 typed
    receipts. Exactly one of ``status`` (0 or 1, EIP-658) and ``post_state`` (the 32-byte
    intermediate state root of pre-Byzantium legacy receipts) is set."""

    tx_type: int
    status: int | None
    post_state: bytes | None
    cumulative_gas_used: int
    logs_bloom: bytes
    logs: tuple[Log, ...]


def encode_receipt(receipt: Receipt) -> bytes:
    """Consensus encoding of ``receipt``: RLP([status or root, cumulativeGasUsed, logsBloom,
    logs]) for legacy receipts, ``type || RLP(...)`` for typed ones (EIP-2718)."""
    r = receipt
    if not 0 <= r.tx_type <= 0x7F:
        raise MalformedInputError("receipt type must be 0..0x7f", type=r.tx_type)
    if (r.status is None) == (r.post_state is None):
        raise MalformedInputError("receipt needs exactly one of status and post-state root")
    if r.status is not None:
        if r.status not in (0, 1):
            raise MalformedInputError("receipt status must be 0 or 1", status=r.status)
        # EIP-658: failure is the empty string, success the single byte 0x01.
        head = b"\x01" if r.status else b""
    else:
        assert r.post_state is not None
        if r.tx_type != 0 or len(r.post_state) != 32:
            raise MalformedInputError("post-state root must be 32 bytes in a legacy receipt")
        head = r.post_state
    if len(r.logs_bloom) != 256:
        raise MalformedInputError("logs bloom must be 256 bytes", length=len(r.logs_bloom))
    if not 0 <= r.cumulative_gas_used < 1 << 64:
        raise MalformedInputError("cumulative gas used out of range")
    logs: list[rlp.Item] = []
    for i, log in enumerate(r.logs):
        if len(log.address) != 20 or len(log.topics) > 4:
            raise MalformedInputError("log needs a 20-byte address and 0-4 topics", log=i)
        if any(len(t) != 32 for t in log.topics):
            raise MalformedInputError("log topics must be 32 bytes", log=i)
        logs.append([log.address, list(log.topics), log.data])
    body = rlp.encode([head, rlp.uint_bytes(r.cumulative_gas_used), r.logs_bloom, logs])
    return body if r.tx_type == 0 else bytes((r.tx_type,)) + body


def decode_receipt(
    data: bytes, *, max_bytes: int = ETHEREUM_RECEIPTS_TRIE.max_node_bytes
) -> Receipt:
    """Decode a consensus-encoded receipt strictly (the inverse of :func:`encode_receipt`)."""
    if not data:
        raise MalformedInputError("receipt is empty")
    if data[0] >= 0xC0:
        tx_type, body = 0, data
    elif data[0] <= 0x7F:
        tx_type, body = data[0], data[1:]
    else:
        raise MalformedInputError("receipt starts with neither a type byte nor a list")
    if tx_type == 0 and body is not data:
        raise MalformedInputError("type 0 receipts are untyped legacy receipts")
    fields = rlp.as_list(
        rlp.decode(body, max_bytes=max_bytes, max_depth=4), what="receipt", length=4
    )
    head = rlp.as_bytes(fields[0], what="status")
    status: int | None = None
    post_state: bytes | None = None
    if head == b"" or head == b"\x01":
        status = len(head)
    elif len(head) == 32 and tx_type == 0:
        post_state = head
    else:
        raise MalformedInputError("receipt status is neither 0, 1 nor a legacy state root")
    raw_logs = rlp.as_list(fields[3], what="logs")
    if len(raw_logs) > MAX_LOGS_PER_RECEIPT:
        raise LimitExceededError("receipt has too many logs", logs=len(raw_logs))
    logs = []
    for raw in raw_logs:
        entry = rlp.as_list(raw, what="log", length=3)
        topics = rlp.as_list(entry[1], what="topics")
        if len(topics) > 4:
            raise MalformedInputError("log has more than 4 topics", topics=len(topics))
        logs.append(
            Log(
                address=rlp.as_bytes(entry[0], what="log address", length=20),
                topics=tuple(rlp.as_bytes(t, what="topic", length=32) for t in topics),
                data=rlp.as_bytes(entry[2], what="log data"),
            )
        )
    return Receipt(
        tx_type=tx_type,
        status=status,
        post_state=post_state,
        cumulative_gas_used=rlp.decode_uint(fields[1], what="cumulativeGasUsed", max_bytes=8),
        logs_bloom=rlp.as_bytes(fields[2], what="logsBloom", length=256),
        logs=tuple(logs),
    )


def receipt_key(index: int) -> bytes:
    """Key of the receipt (or transaction) at ``index`` in its block's trie: RLP(index)."""
    if not 0 <= index < 1 << 64:
        raise MalformedInputError("transaction index out of range", index=index)
    return rlp.encode_uint(index)


def build_receipts_trie(
    receipts: Sequence[bytes], *, spec: MptSpec = ETHEREUM_RECEIPTS_TRIE
) -> Trie:
    """The receipts trie of a block from its consensus-encoded receipts, in order."""
    if len(receipts) > spec.max_items:
        raise LimitExceededError("too many receipts", count=len(receipts), limit=spec.max_items)
    return build_trie({receipt_key(i): r for i, r in enumerate(receipts)}, spec=spec)


def verify_receipts_root(
    *,
    receipts_root: bytes,
    receipts: Sequence[bytes],
    spec: MptSpec = ETHEREUM_RECEIPTS_TRIE,
) -> Trie:
    """Rebuild the receipts trie from a block's encoded receipts and check it against the
    header's ``receipts_root``; return the trie (to make per-receipt proofs).

    Raises :class:`RootMismatchError` with the header's root and the rebuilt one."""
    if len(receipts_root) != spec.hasher.digest_size:
        raise MalformedInputError("receipts root has the wrong length", length=len(receipts_root))
    trie = build_receipts_trie(receipts, spec=spec)
    if trie.root != receipts_root:
        raise RootMismatchError(
            "receipts do not rebuild the header's receipts root",
            receipts=len(receipts),
            expected=receipts_root,
            calculated=trie.root,
        )
    return trie


def verify_receipt(
    *,
    receipts_root: bytes,
    index: int,
    proof: Sequence[bytes],
    receipt: bytes | None = None,
    spec: MptSpec = ETHEREUM_RECEIPTS_TRIE,
) -> Receipt:
    """Verify the inclusion proof of the receipt at ``index`` under ``receipts_root`` and
    return it decoded; if ``receipt`` (its consensus encoding) is given, the proven receipt
    must be exactly it."""
    value = verify_inclusion(
        root=receipts_root, key=receipt_key(index), proof=proof, value=receipt, spec=spec
    )
    return decode_receipt(value, max_bytes=spec.max_node_bytes)
