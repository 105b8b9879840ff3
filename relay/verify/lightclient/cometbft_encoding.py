"""CometBFT's canonical byte encodings (v0.34 and later), written by hand so every byte is ours.

What is hashed and signed in CometBFT is protobuf as gogoproto writes it (proto3: zero scalars
and empty bytes/strings are omitted; fields marked ``(gogoproto.nullable) = false`` are always
written, even when empty):

- the header hash is the RFC 6962 Merkle root (``crypto/merkle.HashFromByteSlices``) of the
  14 field encodings of ``types.Header.Hash`` (cometbft ``types/block.go``): the ``Consensus``
  version message, ``StringValue``/``Int64Value``/``BytesValue`` wrappers (``cdcEncode``), the
  ``google.protobuf.Timestamp`` of the block time and the ``BlockID`` message;
- the validator-set hash is the Merkle root of ``SimpleValidator{pub_key, voting_power}``
  encodings in the set's canonical order (``types/validator.go`` ``Bytes``);
- a precommit's sign bytes are the length-delimited ``CanonicalVote`` of
  ``proto/tendermint/types/canonical.proto`` (``types/vote.go`` ``VoteSignBytes``).

Times are integers of nanoseconds since the Unix epoch (UTC), because Python's datetime has
only microseconds and CometBFT signs nanoseconds.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from relay.verify.errors import MalformedInputError
from relay.verify.merkle.rfc6962 import TreeHasher, root_hash

NANOS_PER_SECOND = 1_000_000_000

# google.protobuf.Timestamp's valid range: 0001-01-01T00:00:00Z .. 9999-12-31T23:59:59.999999999Z
MIN_TIMESTAMP_SECONDS = -62_135_596_800
MAX_TIMESTAMP_SECONDS = 253_402_300_799
MIN_TIME_NS = MIN_TIMESTAMP_SECONDS * NANOS_PER_SECOND
MAX_TIME_NS = MAX_TIMESTAMP_SECONDS * NANOS_PER_SECOND + NANOS_PER_SECOND - 1

_UINT64_MASK = (1 << 64) - 1

PRECOMMIT_TYPE = 2
"""``SignedMsgType`` of a precommit (``SIGNED_MSG_TYPE_PRECOMMIT``); commits hold precommits."""


# --- protobuf wire format --------------------------------------------------------------------


def uvarint(value: int) -> bytes:
    """Base-128 varint of a non-negative integer below 2**64."""
    if value < 0x80:
        return bytes((value,))
    out = bytearray()
    while value >= 0x80:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def varint_int64(value: int) -> bytes:
    """Varint of an ``int64`` as protobuf writes it: negatives as 10-byte two's complement."""
    return uvarint(value & _UINT64_MASK)


def _tag(field: int, wire_type: int) -> bytes:
    return uvarint((field << 3) | wire_type)


def len_field(field: int, payload: bytes) -> bytes:
    """A length-delimited field (wire type 2), written even when ``payload`` is empty."""
    return _tag(field, 2) + uvarint(len(payload)) + payload


def opt_len_field(field: int, payload: bytes) -> bytes:
    """A proto3 ``bytes``/``string`` field: omitted when empty."""
    return len_field(field, payload) if payload else b""


def opt_varint_field(field: int, value: int) -> bytes:
    """A proto3 ``int64``/``uint64``/``uint32``/enum field: omitted when zero."""
    return _tag(field, 0) + varint_int64(value) if value else b""


def opt_sfixed64_field(field: int, value: int) -> bytes:
    """A proto3 ``sfixed64`` field: omitted when zero, else 8 little-endian bytes."""
    if not value:
        return b""
    return _tag(field, 1) + (value & _UINT64_MASK).to_bytes(8, "little")


def length_delimited(message: bytes) -> bytes:
    """``protoio.MarshalDelimited``: a uvarint length prefix, then the message."""
    return uvarint(len(message)) + message


# --- time ------------------------------------------------------------------------------------


def timestamp_proto(time_ns: int) -> bytes:
    """``google.protobuf.Timestamp{seconds, nanos}`` of a time (``gogotypes.StdTimeMarshal``)."""
    seconds, nanos = divmod(time_ns, NANOS_PER_SECOND)
    return opt_varint_field(1, seconds) + opt_varint_field(2, nanos)


_RFC3339 = re.compile(r"(\d{4})-(\d{2})-(\d{2})T(\d{2}):(\d{2}):(\d{2})(?:\.(\d{1,9}))?Z", re.ASCII)
_MAX_TIME_TEXT = 40


def _days_from_civil(year: int, month: int, day: int) -> int:
    # Howard Hinnant's algorithm: days since 1970-01-01 of a proleptic Gregorian date.
    year -= month <= 2
    era = (year if year >= 0 else year - 399) // 400
    yoe = year - era * 400
    doy = (153 * (month + (-3 if month > 2 else 9)) + 2) // 5 + day - 1
    doe = yoe * 365 + yoe // 4 - yoe // 100 + doy
    return era * 146097 + doe - 719468


def _civil_from_days(days: int) -> tuple[int, int, int]:
    days += 719468
    era = (days if days >= 0 else days - 146096) // 146097
    doe = days - era * 146097
    yoe = (doe - doe // 1460 + doe // 36524 - doe // 146096) // 365
    doy = doe - (365 * yoe + yoe // 4 - yoe // 100)
    mp = (5 * doy + 2) // 153
    day = doy - (153 * mp + 2) // 5 + 1
    month = mp + 3 if mp < 10 else mp - 9
    return yoe + era * 400 + (month <= 2), month, day


def _days_in_month(year: int, month: int) -> int:
    if month == 2:
        leap = year % 4 == 0 and (year % 100 != 0 or year % 400 == 0)
        return 29 if leap else 28
    return 30 if month in (4, 6, 9, 11) else 31


def parse_rfc3339_ns(text: str) -> int:
    """Nanoseconds since the epoch of an RFC 3339 UTC time as CometBFT writes it
    (``2023-05-17T14:12:53.088875124Z``; 0 to 9 fraction digits, ``Z`` only, since CometBFT
    canonicalises every time to UTC). Raises :class:`MalformedInputError` otherwise."""
    if len(text) > _MAX_TIME_TEXT:
        raise MalformedInputError("timestamp text too long", length=len(text))
    m = _RFC3339.fullmatch(text)
    if m is None:
        raise MalformedInputError("timestamp is not RFC 3339 UTC (YYYY-MM-DDTHH:MM:SS[.f]Z)")
    year, month, day, hour, minute, second = (int(g) for g in m.groups()[:6])
    if not (1 <= month <= 12 and 1 <= day <= _days_in_month(year, month) and year >= 1):
        raise MalformedInputError("timestamp has an impossible date", time=text)
    if hour > 23 or minute > 59 or second > 59:
        raise MalformedInputError("timestamp has an impossible time of day", time=text)
    fraction = m.group(7) or ""
    nanos = int(fraction.ljust(9, "0")) if fraction else 0
    seconds = _days_from_civil(year, month, day) * 86400 + hour * 3600 + minute * 60 + second
    return seconds * NANOS_PER_SECOND + nanos


def format_rfc3339_ns(time_ns: int) -> str:
    """Go's ``time.RFC3339Nano`` in UTC: trailing zeros of the fraction trimmed."""
    if not MIN_TIME_NS <= time_ns <= MAX_TIME_NS:
        raise MalformedInputError("time outside 0001-01-01..9999-12-31", time_ns=time_ns)
    seconds, nanos = divmod(time_ns, NANOS_PER_SECOND)
    days, rem = divmod(seconds, 86400)
    year, month, day = _civil_from_days(days)
    hour, rem = divmod(rem, 3600)
    minute, second = divmod(rem, 60)
    frac = f".{nanos:09d}".rstrip("0") if nanos else ""
    return f"{year:04d}-{month:02d}-{day:02d}T{hour:02d}:{minute:02d}:{second:02d}{frac}Z"


# --- messages --------------------------------------------------------------------------------


def part_set_header_proto(total: int, hash_: bytes) -> bytes:
    """``PartSetHeader{total uint32 = 1, hash bytes = 2}`` (same bytes as the canonical one)."""
    return opt_varint_field(1, total) + opt_len_field(2, hash_)


def block_id_proto(hash_: bytes, part_total: int, part_hash: bytes) -> bytes:
    """``BlockID{hash = 1, part_set_header = 2 (non-nullable)}``: an empty block id is the two
    bytes ``12 00``, because gogoproto always writes the non-nullable part-set header."""
    return opt_len_field(1, hash_) + len_field(2, part_set_header_proto(part_total, part_hash))


def header_leaves(
    *,
    version_block: int,
    version_app: int,
    chain_id: bytes,
    height: int,
    time_ns: int,
    last_block_id: bytes,
    last_commit_hash: bytes,
    data_hash: bytes,
    validators_hash: bytes,
    next_validators_hash: bytes,
    consensus_hash: bytes,
    app_hash: bytes,
    last_results_hash: bytes,
    evidence_hash: bytes,
    proposer_address: bytes,
) -> list[bytes]:
    """The 14 byte strings ``Header.Hash`` feeds to the Merkle tree, in field order.

    ``chain_id`` is the UTF-8 bytes of the chain id; ``last_block_id`` is the already encoded
    ``BlockID`` message (see :func:`block_id_proto`).
    """
    return [
        opt_varint_field(1, version_block) + opt_varint_field(2, version_app),
        opt_len_field(1, chain_id),
        opt_varint_field(1, height),
        timestamp_proto(time_ns),
        last_block_id,
        opt_len_field(1, last_commit_hash),
        opt_len_field(1, data_hash),
        opt_len_field(1, validators_hash),
        opt_len_field(1, next_validators_hash),
        opt_len_field(1, consensus_hash),
        opt_len_field(1, app_hash),
        opt_len_field(1, last_results_hash),
        opt_len_field(1, evidence_hash),
        opt_len_field(1, proposer_address),
    ]


def merkle_root(hasher: TreeHasher, items: Sequence[bytes]) -> bytes:
    """``merkle.HashFromByteSlices``: RFC 6962 root over the leaf hashes of ``items``."""
    leaf = hasher.hash_leaf
    return root_hash(hasher=hasher, leaf_hashes=[leaf(x) for x in items])


def simple_validator_proto(*, key_field: int, public_key: bytes, voting_power: int) -> bytes:
    """``SimpleValidator{pub_key = 1 (PublicKey oneof), voting_power = 2}``: one leaf of the
    validator-set hash. ``key_field`` is the ``PublicKey.sum`` oneof field number (1 ed25519,
    2 secp256k1; other numbers are per-chain extensions)."""
    return len_field(1, len_field(key_field, public_key)) + opt_varint_field(2, voting_power)


class VoteSignBytes:
    """Sign bytes of the precommits of one commit.

    All precommits of a commit share type, height, round, block id and chain id; only the
    timestamp (and, for nil votes, the absent block id) differs. The shared parts are
    encoded once, so a signature check costs one short concatenation.
    """

    __slots__ = ("_prefix_commit", "_prefix_nil", "_suffix")

    def __init__(
        self,
        *,
        chain_id: bytes,
        height: int,
        round_: int,
        block_hash: bytes,
        part_total: int,
        part_hash: bytes,
    ) -> None:
        head = opt_varint_field(1, PRECOMMIT_TYPE)
        head += opt_sfixed64_field(2, height) + opt_sfixed64_field(3, round_)
        # CanonicalBlockID; nil (omitted) when the block id is zero, as CanonicalizeBlockID does.
        if block_hash or part_total or part_hash:
            canonical_id = opt_len_field(1, block_hash) + len_field(
                2, part_set_header_proto(part_total, part_hash)
            )
            self._prefix_commit = head + len_field(4, canonical_id)
        else:
            self._prefix_commit = head
        self._prefix_nil = head
        self._suffix = opt_len_field(6, chain_id)

    def for_commit(self, time_ns: int) -> bytes:
        """Sign bytes of a precommit for the commit's block (``BlockIDFlagCommit``)."""
        body = self._prefix_commit + len_field(5, timestamp_proto(time_ns)) + self._suffix
        return uvarint(len(body)) + body

    def for_nil(self, time_ns: int) -> bytes:
        """Sign bytes of a precommit for nil (``BlockIDFlagNil``): no block id."""
        body = self._prefix_nil + len_field(5, timestamp_proto(time_ns)) + self._suffix
        return uvarint(len(body)) + body


def commit_sig_proto(
    *, block_id_flag: int, address: bytes, time_ns: int, signature: bytes
) -> bytes:
    """``CommitSig{block_id_flag = 1, validator_address = 2, timestamp = 3 (non-nullable),
    signature = 4}``: one leaf of ``Commit.Hash``, which the next header's
    ``last_commit_hash`` commits to."""
    return (
        opt_varint_field(1, block_id_flag)
        + opt_len_field(2, address)
        + len_field(3, timestamp_proto(time_ns))
        + opt_len_field(4, signature)
    )
