"""CometBFT light blocks as frozen values, decoded from the JSON of the CometBFT RPC
(``/commit``, ``/validators``, ``/genesis``) and of tendermint-rs light blocks.

Decoding is pure: it takes already-parsed JSON (dicts, lists, strings, ints) and either
returns immutable values or raises a typed error. Every size is bounded (validators,
signatures, chain id, hashes, voting power) before anything is allocated in proportion to it,
and encodings must be canonical (no leading zeros or signs in integers, canonical padded
base64, even-length hex, RFC 3339 UTC times). The checks of CometBFT's ``ValidateBasic``
methods (``types/block.go``, ``types/validator.go``, ``types/validator_set.go``) that need no
other state happen here; everything that relates a block to trust happens in
:mod:`relay.verify.lightclient.tendermint`.

The hash algorithm and the supported key types are per-chain parameters
(:class:`ChainParams`): SHA-256 and Ed25519 as in CometBFT by default; SM3 hashing and SM2
validator keys as a project extension for consortium chains that use the GM/T algorithms.
"""

from __future__ import annotations

import binascii
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

from relay.verify.errors import (
    LimitExceededError,
    MalformedInputError,
    UnsupportedError,
)
from relay.verify.hashing import SHA256
from relay.verify.lightclient import cometbft_encoding as enc
from relay.verify.merkle.rfc6962 import RFC6962_SHA256, TreeHasher
from relay.verify.signatures import ED25519, SignatureScheme

# --- limits ----------------------------------------------------------------------------------

MAX_VALIDATORS = 10_000
"""Largest validator set (and commit) accepted; CometBFT chains run at most a few hundred."""

MAX_CHAIN_ID_BYTES = 50
"""``types.MaxChainIDLen``."""

ADDRESS_SIZE = 20
"""``crypto.AddressSize``: validator and proposer addresses are 20 bytes."""

MAX_TOTAL_VOTING_POWER = (2**63 - 1) // 8
"""``types.MaxTotalVotingPower``: int64 max / 8, so power arithmetic never overflows."""

MAX_APP_HASH_BYTES = 256
"""CometBFT leaves the app hash unbounded; real applications use 8 to 64 bytes."""

MAX_INT64 = 2**63 - 1
MIN_INT64 = -(2**63)
MAX_INT32 = 2**31 - 1
MAX_UINT32 = 2**32 - 1
MAX_UINT64 = 2**64 - 1

_MAX_INT_TEXT = 20
_MAX_KEY_TYPE_TEXT = 64


# --- errors ----------------------------------------------------------------------------------


class DuplicateValidatorError(MalformedInputError):
    """A validator set lists the same address twice."""

    reason = "DUPLICATE_VALIDATOR"


class UnknownKeyTypeError(UnsupportedError):
    """A public key's type is not one the chain's parameters allow."""

    reason = "UNKNOWN_KEY_TYPE"


# --- per-chain parameters --------------------------------------------------------------------


def _sha256_truncated(public_key: bytes) -> bytes:
    # tmhash.SumTruncated: ed25519 (and the SM2 extension) addresses.
    return SHA256.hash(public_key)[:ADDRESS_SIZE]


def _ripemd160_sha256(public_key: bytes) -> bytes:
    # secp256k1 addresses are RIPEMD160(SHA256(compressed key)), as in Bitcoin.
    from relay.verify.hashing import by_name

    return by_name("ripemd160").hash(SHA256.hash(public_key))


@dataclass(frozen=True, slots=True)
class KeyType:
    """One validator key algorithm: its JSON type name, its ``PublicKey`` oneof field number
    (which the validator-set hash commits to), its key lengths, how its address derives from
    the key and the scheme that checks its signatures."""

    name: str
    json_type: str
    proto_field: int
    key_lengths: tuple[int, ...]
    max_signature_length: int
    scheme: SignatureScheme
    address: Callable[[bytes], bytes]


ED25519_KEY = KeyType(
    name="ed25519",
    json_type="tendermint/PubKeyEd25519",
    proto_field=1,
    key_lengths=(32,),
    max_signature_length=64,
    scheme=ED25519,
    address=_sha256_truncated,
)
"""CometBFT's default validator key."""


def secp256k1_key_type(scheme: SignatureScheme) -> KeyType:
    """CometBFT's secp256k1 validator key (``PublicKey.secp256k1`` = 2): 33-byte compressed
    keys, 64-byte ``r || s`` signatures over SHA-256, RIPEMD160(SHA256) addresses."""
    return KeyType(
        name="secp256k1",
        json_type="tendermint/PubKeySecp256k1",
        proto_field=2,
        key_lengths=(33,),
        max_signature_length=64,
        scheme=scheme,
        address=_ripemd160_sha256,
    )


SM2_PROTO_FIELD = 16
"""``PublicKey`` oneof field number of SM2 keys in this project's extension. Field numbers 1 to
4 are taken upstream (ed25519, secp256k1, bls12381, secp256k1eth in CometBFT v1) and the forks
that added SM2 do not agree on one, so a chain descriptor names the number its chain uses."""


def sm2_key_type(scheme: SignatureScheme, *, proto_field: int = SM2_PROTO_FIELD) -> KeyType:
    """Project extension for consortium chains using GM/T algorithms: SM2 validator keys
    (``tendermint/PubKeySm2``; 33-byte compressed or 65-byte uncompressed points), signatures
    checked by ``scheme`` (which carries the chain's signer id), addresses the first 20 bytes
    of SHA-256 of the key as for ed25519. ``proto_field`` must match the chain's encoding."""
    return KeyType(
        name="sm2",
        json_type="tendermint/PubKeySm2",
        proto_field=proto_field,
        key_lengths=(33, 65),
        max_signature_length=80,  # DER of two 32-byte integers is at most 72 bytes
        scheme=scheme,
        address=_sha256_truncated,
    )


@dataclass(frozen=True, slots=True)
class ChainParams:
    """How one chain hashes and signs: chosen by the chain's descriptor, never read from the
    data being verified. ``block_protocol`` is the header ``version.block`` the chain runs."""

    hasher: TreeHasher = RFC6962_SHA256
    key_types: tuple[KeyType, ...] = (ED25519_KEY,)
    block_protocol: int = 11
    _by_json: Mapping[str, KeyType] = field(init=False, repr=False, compare=False, hash=False)

    def __post_init__(self) -> None:
        by_json: dict[str, KeyType] = {}
        fields_seen: set[int] = set()
        for kt in self.key_types:
            if kt.json_type in by_json or kt.proto_field in fields_seen:
                raise ValueError(f"key type {kt.name} clashes with another one")
            if not 1 <= kt.proto_field < 2**29:
                raise ValueError(f"key type {kt.name} has an invalid proto field number")
            by_json[kt.json_type] = kt
            fields_seen.add(kt.proto_field)
        object.__setattr__(self, "_by_json", MappingProxyType(by_json))

    @property
    def digest_size(self) -> int:
        return self.hasher.digest_size

    def key_type(self, json_type: str) -> KeyType:
        kt = self._by_json.get(json_type)
        if kt is None:
            raise UnknownKeyTypeError(
                "validator key type not enabled for this chain",
                key_type=json_type[:_MAX_KEY_TYPE_TEXT],
                allowed=sorted(self._by_json),
            )
        return kt


DEFAULT_PARAMS = ChainParams()
"""SHA-256 and Ed25519, as every stock CometBFT chain."""


# --- values ----------------------------------------------------------------------------------

BLOCK_ID_FLAG_ABSENT = 1
BLOCK_ID_FLAG_COMMIT = 2
BLOCK_ID_FLAG_NIL = 3

ABSENT_TIME_NS = enc.MIN_TIME_NS
"""Go's zero ``time.Time`` (0001-01-01T00:00:00Z): the time of every absent commit signature,
which the commit hash (``Commit.Hash``) encodes."""


@dataclass(frozen=True, slots=True)
class PublicKey:
    key_type: KeyType
    data: bytes


@dataclass(frozen=True, slots=True)
class Validator:
    address: bytes
    pub_key: PublicKey
    voting_power: int
    proposer_priority: int = 0


@dataclass(frozen=True, slots=True)
class ValidatorSet:
    """Validators in CometBFT's canonical order (voting power descending, then address
    ascending), whatever order they arrived in, with the set's hash under the chain's
    parameters. Build through :func:`make_validator_set` or :func:`decode_validator_set`."""

    validators: tuple[Validator, ...]
    total_voting_power: int
    hash: bytes
    index: Mapping[bytes, int] = field(repr=False, compare=False, hash=False)

    def __len__(self) -> int:
        return len(self.validators)

    def get(self, address: bytes) -> Validator | None:
        i = self.index.get(address)
        return None if i is None else self.validators[i]


@dataclass(frozen=True, slots=True)
class BlockID:
    hash: bytes
    part_set_total: int
    part_set_hash: bytes

    @property
    def is_zero(self) -> bool:
        return not self.hash and not self.part_set_total and not self.part_set_hash

    def proto(self) -> bytes:
        return enc.block_id_proto(self.hash, self.part_set_total, self.part_set_hash)


ZERO_BLOCK_ID = BlockID(b"", 0, b"")


@dataclass(frozen=True, slots=True)
class Header:
    """A CometBFT block header. ``hash`` is computed by :func:`make_header` under the chain's
    parameters (it is what commits sign), never taken from the input."""

    version_block: int
    version_app: int
    chain_id: str
    height: int
    time_ns: int
    last_block_id: BlockID
    last_commit_hash: bytes
    data_hash: bytes
    validators_hash: bytes
    next_validators_hash: bytes
    consensus_hash: bytes
    app_hash: bytes
    last_results_hash: bytes
    evidence_hash: bytes
    proposer_address: bytes
    hash: bytes


@dataclass(frozen=True, slots=True)
class CommitSig:
    block_id_flag: int
    validator_address: bytes
    timestamp_ns: int
    signature: bytes


@dataclass(frozen=True, slots=True)
class Commit:
    height: int
    round: int
    block_id: BlockID
    signatures: tuple[CommitSig, ...]


@dataclass(frozen=True, slots=True)
class SignedHeader:
    """A header with the commit that signs it. ``vote_sign_bytes`` builds each precommit's
    sign bytes from the parts all precommits of the commit share (see
    :class:`~relay.verify.lightclient.cometbft_encoding.VoteSignBytes`)."""

    header: Header
    commit: Commit
    vote_sign_bytes: enc.VoteSignBytes = field(repr=False, compare=False, hash=False)

    def sign_bytes(self, index: int) -> bytes:
        """Sign bytes of the precommit at ``index`` of the commit (``Commit.VoteSignBytes``)."""
        sig = self.commit.signatures[index]
        if sig.block_id_flag == BLOCK_ID_FLAG_NIL:
            return self.vote_sign_bytes.for_nil(sig.timestamp_ns)
        return self.vote_sign_bytes.for_commit(sig.timestamp_ns)


@dataclass(frozen=True, slots=True)
class LightBlock:
    """What a light client receives for one height: the signed header, the validator set that
    signed it and (needed to trust later heights from this one) the next validator set."""

    signed_header: SignedHeader
    validator_set: ValidatorSet
    next_validator_set: ValidatorSet | None = None

    @property
    def height(self) -> int:
        return self.signed_header.header.height

    @property
    def header(self) -> Header:
        return self.signed_header.header

    @property
    def commit(self) -> Commit:
        return self.signed_header.commit


# --- constructors (compute hashes; enforce CometBFT's ValidateBasic limits) -----------------


def make_validator_set(validators: Sequence[Validator], *, params: ChainParams) -> ValidatorSet:
    """Sort ``validators`` canonically, check them and compute the set's hash.

    An empty set is representable (a header may commit to an empty next validator set; no
    block can then follow it); a light block whose own set is empty is rejected when
    verified.

    Raises :class:`LimitExceededError` for too many validators or too much power,
    :class:`DuplicateValidatorError` for an address listed twice, :class:`MalformedInputError`
    for a non-positive power or an address not derived from its key.
    """
    if len(validators) > MAX_VALIDATORS:
        raise LimitExceededError("too many validators", count=len(validators), limit=MAX_VALIDATORS)
    total = 0
    for v in validators:
        if not 0 < v.voting_power <= MAX_TOTAL_VOTING_POWER:
            raise (MalformedInputError if v.voting_power <= 0 else LimitExceededError)(
                "validator voting power out of range",
                address=v.address,
                voting_power=v.voting_power,
                limit=MAX_TOTAL_VOTING_POWER,
            )
        total += v.voting_power
        if total > MAX_TOTAL_VOTING_POWER:
            raise LimitExceededError(
                "total voting power exceeds MaxTotalVotingPower",
                total=total,
                limit=MAX_TOTAL_VOTING_POWER,
            )
        kt = v.pub_key.key_type
        if params._by_json.get(kt.json_type) is not kt:
            raise UnknownKeyTypeError(
                "validator key type not enabled for this chain", key_type=kt.json_type
            )
        if len(v.address) != ADDRESS_SIZE:
            raise MalformedInputError("validator address must be 20 bytes", length=len(v.address))
        derived = kt.address(v.pub_key.data)
        if derived != v.address:
            raise MalformedInputError(
                "validator address is not derived from its public key",
                expected=derived,
                calculated=v.address,
            )
    ordered = tuple(sorted(validators, key=lambda v: (-v.voting_power, v.address)))
    index: dict[bytes, int] = {}
    for i, v in enumerate(ordered):
        if v.address in index:
            raise DuplicateValidatorError("validator listed twice", address=v.address)
        index[v.address] = i
    leaves = [
        enc.simple_validator_proto(
            key_field=v.pub_key.key_type.proto_field,
            public_key=v.pub_key.data,
            voting_power=v.voting_power,
        )
        for v in ordered
    ]
    return ValidatorSet(
        validators=ordered,
        total_voting_power=total,
        hash=enc.merkle_root(params.hasher, leaves),
        index=MappingProxyType(index),
    )


def make_header(
    *,
    params: ChainParams,
    chain_id: str,
    height: int,
    time_ns: int,
    validators_hash: bytes,
    next_validators_hash: bytes,
    proposer_address: bytes,
    version_block: int | None = None,
    version_app: int = 0,
    last_block_id: BlockID = ZERO_BLOCK_ID,
    last_commit_hash: bytes = b"",
    data_hash: bytes = b"",
    consensus_hash: bytes = b"",
    app_hash: bytes = b"",
    last_results_hash: bytes = b"",
    evidence_hash: bytes = b"",
) -> Header:
    """Check a header's fields against CometBFT's ``Header.ValidateBasic`` limits and compute
    its hash (``Header.Hash``) with the chain's hasher."""
    if version_block is None:
        version_block = params.block_protocol
    chain_id_bytes = _chain_id_bytes(chain_id)
    if not 0 < height <= MAX_INT64:
        raise MalformedInputError("header height must be positive", height=height)
    if not enc.MIN_TIME_NS <= time_ns <= enc.MAX_TIME_NS:
        raise MalformedInputError("header time out of range", time_ns=time_ns)
    if not (0 <= version_block <= MAX_UINT64 and 0 <= version_app <= MAX_UINT64):
        raise MalformedInputError("header version out of range")
    size = params.digest_size
    for name, value in (
        ("last_commit_hash", last_commit_hash),
        ("data_hash", data_hash),
        ("evidence_hash", evidence_hash),
        ("consensus_hash", consensus_hash),
        ("last_results_hash", last_results_hash),
    ):
        _check_optional_hash(name, value, size)
    for name, value in (
        ("validators_hash", validators_hash),
        ("next_validators_hash", next_validators_hash),
    ):
        # A header without validators hash has no hash at all in CometBFT (Header.Hash).
        if len(value) != size:
            raise MalformedInputError(f"{name} has the wrong length", length=len(value))
    _check_block_id("last_block_id", last_block_id, size)
    if len(app_hash) > MAX_APP_HASH_BYTES:
        raise LimitExceededError(
            "app_hash too long", length=len(app_hash), limit=MAX_APP_HASH_BYTES
        )
    if len(proposer_address) != ADDRESS_SIZE:
        raise MalformedInputError("proposer address must be 20 bytes", length=len(proposer_address))
    leaves = enc.header_leaves(
        version_block=version_block,
        version_app=version_app,
        chain_id=chain_id_bytes,
        height=height,
        time_ns=time_ns,
        last_block_id=last_block_id.proto(),
        last_commit_hash=last_commit_hash,
        data_hash=data_hash,
        validators_hash=validators_hash,
        next_validators_hash=next_validators_hash,
        consensus_hash=consensus_hash,
        app_hash=app_hash,
        last_results_hash=last_results_hash,
        evidence_hash=evidence_hash,
        proposer_address=proposer_address,
    )
    return Header(
        version_block=version_block,
        version_app=version_app,
        chain_id=chain_id,
        height=height,
        time_ns=time_ns,
        last_block_id=last_block_id,
        last_commit_hash=last_commit_hash,
        data_hash=data_hash,
        validators_hash=validators_hash,
        next_validators_hash=next_validators_hash,
        consensus_hash=consensus_hash,
        app_hash=app_hash,
        last_results_hash=last_results_hash,
        evidence_hash=evidence_hash,
        proposer_address=proposer_address,
        hash=enc.merkle_root(params.hasher, leaves),
    )


def make_commit(
    *,
    height: int,
    round_: int,
    block_id: BlockID,
    signatures: Sequence[CommitSig],
    params: ChainParams,
) -> Commit:
    """Check a commit against ``Commit.ValidateBasic`` and ``CommitSig.ValidateBasic``."""
    if not 0 < height <= MAX_INT64:
        raise MalformedInputError("commit height must be positive", height=height)
    if not 0 <= round_ <= MAX_INT32:
        raise MalformedInputError("commit round out of range", round=round_)
    if block_id.is_zero:
        raise MalformedInputError("commit cannot be for the nil block")
    _check_block_id("commit block_id", block_id, params.digest_size)
    if not signatures:
        raise MalformedInputError("commit has no signatures")
    if len(signatures) > MAX_VALIDATORS:
        raise LimitExceededError(
            "too many commit signatures", count=len(signatures), limit=MAX_VALIDATORS
        )
    max_sig = max(kt.max_signature_length for kt in params.key_types)
    for i, s in enumerate(signatures):
        if s.block_id_flag == BLOCK_ID_FLAG_ABSENT:
            if s.validator_address or s.signature or s.timestamp_ns != ABSENT_TIME_NS:
                raise MalformedInputError(
                    "absent commit signature carries an address, time or signature", index=i
                )
        elif s.block_id_flag in (BLOCK_ID_FLAG_COMMIT, BLOCK_ID_FLAG_NIL):
            if len(s.validator_address) != ADDRESS_SIZE:
                raise MalformedInputError(
                    "commit signature address must be 20 bytes",
                    index=i,
                    length=len(s.validator_address),
                )
            if not s.signature:
                raise MalformedInputError("commit signature is missing", index=i)
            if len(s.signature) > max_sig:
                raise LimitExceededError(
                    "commit signature too long", index=i, length=len(s.signature), limit=max_sig
                )
            if not enc.MIN_TIME_NS <= s.timestamp_ns <= enc.MAX_TIME_NS:
                raise MalformedInputError("commit signature time out of range", index=i)
        else:
            raise MalformedInputError(
                "unknown block_id_flag", index=i, block_id_flag=s.block_id_flag
            )
    return Commit(height=height, round=round_, block_id=block_id, signatures=tuple(signatures))


def commit_hash(commit: Commit, *, params: ChainParams) -> bytes:
    """``Commit.Hash``: the Merkle root of the commit's ``CommitSig`` encodings; the next
    block's header carries it as ``last_commit_hash``."""
    return enc.merkle_root(
        params.hasher,
        [
            enc.commit_sig_proto(
                block_id_flag=s.block_id_flag,
                address=s.validator_address,
                time_ns=s.timestamp_ns,
                signature=s.signature,
            )
            for s in commit.signatures
        ],
    )


def make_signed_header(header: Header, commit: Commit) -> SignedHeader:
    """Pair a header with its commit and prepare the commit's shared sign-bytes parts."""
    bid = commit.block_id
    builder = enc.VoteSignBytes(
        chain_id=header.chain_id.encode(),
        height=commit.height,
        round_=commit.round,
        block_hash=bid.hash,
        part_total=bid.part_set_total,
        part_hash=bid.part_set_hash,
    )
    return SignedHeader(header=header, commit=commit, vote_sign_bytes=builder)


def _chain_id_bytes(chain_id: str) -> bytes:
    try:
        raw = chain_id.encode("utf-8")
    except UnicodeEncodeError as e:
        raise MalformedInputError("chain id is not valid UTF-8") from e
    if len(raw) > MAX_CHAIN_ID_BYTES:
        raise LimitExceededError("chain id too long", length=len(raw), limit=MAX_CHAIN_ID_BYTES)
    return raw


def _check_optional_hash(name: str, value: bytes, size: int) -> None:
    # types.ValidateHash: empty, or exactly one digest.
    if value and len(value) != size:
        raise MalformedInputError(f"{name} has the wrong length", length=len(value), expected=size)


def _check_block_id(name: str, bid: BlockID, size: int) -> None:
    # BlockID.ValidateBasic / PartSetHeader.ValidateBasic.
    _check_optional_hash(f"{name}.hash", bid.hash, size)
    _check_optional_hash(f"{name}.part_set_header.hash", bid.part_set_hash, size)
    if not 0 <= bid.part_set_total <= MAX_UINT32:
        raise MalformedInputError(f"{name}.part_set_header.total out of range")


# --- JSON decoding ---------------------------------------------------------------------------

_DECIMAL = re.compile(r"0|-?[1-9][0-9]*", re.ASCII)
_HEX = re.compile(r"(?:[0-9A-Fa-f]{2})*", re.ASCII)
_BASE64 = re.compile(r"(?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?", re.ASCII)

# Absent commit signatures carry Go's zero time; tendermint-rs writes the Unix epoch instead.
_ZERO_TIMES = frozenset({"0001-01-01T00:00:00Z", "1970-01-01T00:00:00Z"})


def _obj(value: Any, what: str) -> Mapping[str, Any]:
    if not isinstance(value, dict):
        raise MalformedInputError(f"{what} must be a JSON object", got=type(value).__name__)
    return value


def _get(obj: Mapping[str, Any], key: str, what: str) -> Any:
    if key not in obj:
        raise MalformedInputError(f"{what} lacks field {key!r}")
    return obj[key]


def _int(value: Any, what: str, *, lo: int, hi: int, allow_str: bool = True) -> int:
    """An integer given as a JSON number or (CometBFT's habit for 64-bit values) a canonical
    decimal string: no sign but '-', no leading zeros, no spaces."""
    if isinstance(value, bool):
        raise MalformedInputError(f"{what} must be an integer, not a boolean")
    if isinstance(value, int):
        n = value
    elif isinstance(value, str) and allow_str:
        if len(value) > _MAX_INT_TEXT or not _DECIMAL.fullmatch(value):
            raise MalformedInputError(f"{what} is not a canonical decimal integer")
        n = int(value)
    else:
        raise MalformedInputError(f"{what} must be an integer", got=type(value).__name__)
    if not lo <= n <= hi:
        raise MalformedInputError(f"{what} out of range", value=n, low=lo, high=hi)
    return n


def _hex(value: Any, what: str, *, max_len: int) -> bytes:
    if value is None:
        return b""
    if not isinstance(value, str):
        raise MalformedInputError(f"{what} must be a hex string", got=type(value).__name__)
    if len(value) > 2 * max_len:
        raise LimitExceededError(f"{what} too long", length=len(value) // 2, limit=max_len)
    if not _HEX.fullmatch(value):
        raise MalformedInputError(f"{what} is not even-length hex")
    return bytes.fromhex(value)


def _base64(value: Any, what: str, *, max_len: int) -> bytes:
    if value is None:
        return b""
    if not isinstance(value, str):
        raise MalformedInputError(f"{what} must be a base64 string", got=type(value).__name__)
    if len(value) > 4 * ((max_len + 2) // 3):
        raise LimitExceededError(f"{what} too long", limit=max_len)
    if not _BASE64.fullmatch(value):
        raise MalformedInputError(f"{what} is not canonical padded base64")
    raw = binascii.a2b_base64(value, strict_mode=True)
    # Reject set padding bits: only one text may encode these bytes.
    if binascii.b2a_base64(raw, newline=False).decode("ascii") != value:
        raise MalformedInputError(f"{what} is not canonical base64")
    return raw


def _time(value: Any, what: str) -> int:
    if not isinstance(value, str):
        raise MalformedInputError(f"{what} must be an RFC 3339 string", got=type(value).__name__)
    try:
        return enc.parse_rfc3339_ns(value)
    except MalformedInputError as e:
        raise MalformedInputError(f"{what}: {e.message}", **e.context) from e


def _str(value: Any, what: str, *, max_len: int) -> str:
    if not isinstance(value, str):
        raise MalformedInputError(f"{what} must be a string", got=type(value).__name__)
    if len(value) > max_len:
        raise LimitExceededError(f"{what} too long", length=len(value), limit=max_len)
    return value


def _list(value: Any, what: str, *, max_len: int) -> list[Any]:
    if value is None:
        return []
    if not isinstance(value, list):
        raise MalformedInputError(f"{what} must be a JSON array", got=type(value).__name__)
    if len(value) > max_len:
        raise LimitExceededError(f"{what} has too many entries", count=len(value), limit=max_len)
    return value


def decode_block_id(value: Any, what: str, *, params: ChainParams) -> BlockID:
    """A ``BlockID`` (``null`` is the zero block id). The part-set header is ``parts`` in
    CometBFT's RPC JSON and ``part_set_header`` in tendermint-rs."""
    if value is None:
        return ZERO_BLOCK_ID
    obj = _obj(value, what)
    size = params.digest_size
    parts: Any = obj.get("parts", obj.get("part_set_header"))
    if parts is None:
        total, part_hash = 0, b""
    else:
        p = _obj(parts, f"{what}.parts")
        total = _int(p.get("total", 0), f"{what}.parts.total", lo=0, hi=MAX_UINT32, allow_str=False)
        part_hash = _hex(p.get("hash"), f"{what}.parts.hash", max_len=size)
    return BlockID(_hex(obj.get("hash"), f"{what}.hash", max_len=size), total, part_hash)


def decode_header(value: Any, *, params: ChainParams) -> Header:
    """A header from CometBFT JSON; its hash is recomputed, never read."""
    h = _obj(value, "header")
    version = _obj(_get(h, "version", "header"), "header.version")
    size = params.digest_size
    return make_header(
        params=params,
        version_block=_int(_get(version, "block", "version"), "version.block", lo=0, hi=MAX_UINT64),
        version_app=_int(version.get("app", 0), "version.app", lo=0, hi=MAX_UINT64),
        chain_id=_str(_get(h, "chain_id", "header"), "chain_id", max_len=MAX_CHAIN_ID_BYTES),
        height=_int(_get(h, "height", "header"), "header.height", lo=1, hi=MAX_INT64),
        time_ns=_time(_get(h, "time", "header"), "header.time"),
        last_block_id=decode_block_id(h.get("last_block_id"), "last_block_id", params=params),
        last_commit_hash=_hex(h.get("last_commit_hash"), "last_commit_hash", max_len=size),
        data_hash=_hex(h.get("data_hash"), "data_hash", max_len=size),
        validators_hash=_hex(_get(h, "validators_hash", "header"), "validators_hash", max_len=size),
        next_validators_hash=_hex(
            _get(h, "next_validators_hash", "header"), "next_validators_hash", max_len=size
        ),
        consensus_hash=_hex(h.get("consensus_hash"), "consensus_hash", max_len=size),
        app_hash=_hex(h.get("app_hash"), "app_hash", max_len=MAX_APP_HASH_BYTES),
        last_results_hash=_hex(h.get("last_results_hash"), "last_results_hash", max_len=size),
        evidence_hash=_hex(h.get("evidence_hash"), "evidence_hash", max_len=size),
        proposer_address=_hex(
            _get(h, "proposer_address", "header"), "proposer_address", max_len=ADDRESS_SIZE
        ),
    )


def decode_commit_sig(value: Any, index: int, *, max_signature: int) -> CommitSig:
    what = f"signatures[{index}]"
    s = _obj(value, what)
    flag = _int(
        _get(s, "block_id_flag", what), f"{what}.block_id_flag", lo=0, hi=255, allow_str=False
    )
    address = _hex(s.get("validator_address"), f"{what}.validator_address", max_len=ADDRESS_SIZE)
    signature = _base64(s.get("signature"), f"{what}.signature", max_len=max_signature)
    ts = s.get("timestamp")
    if flag == BLOCK_ID_FLAG_ABSENT:
        if ts is not None and ts not in _ZERO_TIMES:
            raise MalformedInputError("absent commit signature carries a time", index=index)
        return CommitSig(flag, address, ABSENT_TIME_NS, signature)
    return CommitSig(flag, address, _time(ts, f"{what}.timestamp"), signature)


def decode_commit(value: Any, *, params: ChainParams) -> Commit:
    c = _obj(value, "commit")
    max_sig = max(kt.max_signature_length for kt in params.key_types)
    raw_sigs = _list(c.get("signatures"), "commit.signatures", max_len=MAX_VALIDATORS)
    return make_commit(
        height=_int(_get(c, "height", "commit"), "commit.height", lo=1, hi=MAX_INT64),
        round_=_int(c.get("round", 0), "commit.round", lo=0, hi=MAX_INT32, allow_str=False),
        block_id=decode_block_id(_get(c, "block_id", "commit"), "commit.block_id", params=params),
        signatures=[decode_commit_sig(s, i, max_signature=max_sig) for i, s in enumerate(raw_sigs)],
        params=params,
    )


def decode_signed_header(value: Any, *, params: ChainParams) -> SignedHeader:
    sh = _obj(value, "signed_header")
    header = decode_header(_get(sh, "header", "signed_header"), params=params)
    commit = decode_commit(_get(sh, "commit", "signed_header"), params=params)
    return make_signed_header(header, commit)


def decode_public_key(value: Any, *, params: ChainParams) -> PublicKey:
    pk = _obj(value, "pub_key")
    kt = params.key_type(_str(_get(pk, "type", "pub_key"), "pub_key.type", max_len=256))
    longest = max(kt.key_lengths)
    data = _base64(_get(pk, "value", "pub_key"), "pub_key.value", max_len=longest)
    if len(data) not in kt.key_lengths:
        raise MalformedInputError(
            f"{kt.name} public key has the wrong length",
            length=len(data),
            expected=kt.key_lengths,
        )
    return PublicKey(kt, data)


def decode_validator(value: Any, *, params: ChainParams) -> Validator:
    """A validator from ``/validators`` JSON (``voting_power``) or ``/genesis`` (``power``)."""
    v = _obj(value, "validator")
    power_value = v["voting_power"] if "voting_power" in v else _get(v, "power", "validator")
    pub_key = decode_public_key(_get(v, "pub_key", "validator"), params=params)
    address = _hex(v.get("address"), "validator.address", max_len=ADDRESS_SIZE)
    if not address:
        # Genesis files may leave the address out; it is a function of the key.
        address = pub_key.key_type.address(pub_key.data)
    return Validator(
        address=address,
        pub_key=pub_key,
        voting_power=_int(power_value, "voting_power", lo=MIN_INT64, hi=MAX_INT64),
        proposer_priority=_int(
            v.get("proposer_priority", 0), "proposer_priority", lo=MIN_INT64, hi=MAX_INT64
        ),
    )


def decode_validator_set(value: Any, *, params: ChainParams) -> ValidatorSet:
    """A validator set: ``{"validators": [...]}`` or a bare list. The JSON's
    ``total_voting_power`` and ``proposer`` are not part of the hash and are not trusted."""
    raw = value.get("validators") if isinstance(value, dict) else value
    items = _list(raw, "validators", max_len=MAX_VALIDATORS)
    return make_validator_set([decode_validator(v, params=params) for v in items], params=params)


def _same_json(a: Any, b: Any) -> bool:
    try:
        return bool(a == b)
    except RecursionError:  # absurdly nested input: just decode it separately
        return False


def decode_light_block(value: Any, *, params: ChainParams) -> LightBlock:
    """A light block: ``signed_header``, ``validator_set`` and optional ``next_validator_set``
    (the tendermint-rs / CometBFT ``LightBlock`` JSON)."""
    lb = _obj(value, "light block")
    vals_raw = _get(lb, "validator_set", "light block")
    next_raw = lb.get("next_validator_set")
    vals = decode_validator_set(vals_raw, params=params)
    if next_raw is None:
        next_vals = None
    elif _same_json(next_raw, vals_raw):
        next_vals = vals  # the set did not change: decode and hash it once
    else:
        next_vals = decode_validator_set(next_raw, params=params)
    return LightBlock(
        signed_header=decode_signed_header(_get(lb, "signed_header", "light block"), params=params),
        validator_set=vals,
        next_validator_set=next_vals,
    )
