"""Record schema 1: how uniform questions become state keys and how values become records.

Under schema 1 (``ChainDescriptor.record_schema_version == 1``, see proto/relay/v1/types.proto)
a state key is the deterministic protobuf encoding of a ``relay.v1.RecordKey`` and a value is
the encoding of the matching ``relay.v1`` record message. The relay derives the key from the
court's question itself, so an adapter cannot answer another question; parties appear on a
chain only as salted hashes of their identifiers (``party_key``).

Pure: used by the engine, by the offline evidence verifier and by partner chains alike.
"""

from __future__ import annotations

from typing import Final, TypeVar

from google.protobuf.message import DecodeError, Message

from relay.pb.relay.v1 import types_pb2 as pb
from relay.verify.errors import LimitExceededError, MalformedInputError, MismatchError
from relay.verify.hashing import Hasher

SCHEMA_VERSION: Final = 1
MAX_RECORD_BYTES: Final = 1 << 20
"""A record (a history with many entries included) never needs more than 1 MiB."""

MAX_ID_LENGTH: Final = 256
_PARTY_KEY_DOMAIN: Final = b"relay.v1.party-key\x00"

M = TypeVar("M", bound=Message)


def normalise_id(raw: str) -> str:
    """PartyRef.id normalisation: strip surrounding whitespace, upper-case ASCII letters."""
    stripped = raw.strip()
    return "".join(c.upper() if "a" <= c <= "z" else c for c in stripped)


def party_key(*, hasher: Hasher, salt: bytes, id_type: int, party_id: str) -> bytes:
    """The per-chain key of a party, as documented on ``relay.v1.PartyKeySpec``:

    ``H("relay.v1.party-key" || 0x00 || uint16_be(len(salt)) || salt || uint32_be(id_type)
    || UTF-8(normalised id))``. Requires a salt of 16 to 65535 bytes, a known id type
    (> 0) and a non-empty identifier of at most 256 characters.
    """
    if not 16 <= len(salt) <= 0xFFFF:
        raise MalformedInputError("party-key salt must be 16 to 65535 bytes", length=len(salt))
    if not 0 < id_type <= 0xFFFFFFFF:
        raise MalformedInputError("party id_type must be set", id_type=id_type)
    normalised = normalise_id(party_id)
    if not normalised or len(normalised) > MAX_ID_LENGTH:
        raise MalformedInputError("party id must be 1 to 256 characters", length=len(normalised))
    return hasher.hash(
        _PARTY_KEY_DOMAIN
        + len(salt).to_bytes(2, "big")
        + salt
        + id_type.to_bytes(4, "big")
        + normalised.encode("utf-8")
    )


def encode_key(key: pb.RecordKey) -> bytes:
    """The state key of a record: deterministic encoding of a RecordKey with one field set."""
    if key.WhichOneof("record") is None:
        raise MalformedInputError("record key names no record")
    return key.SerializeToString(deterministic=True)


def ownership_key(asset: pb.AssetRef) -> bytes:
    return encode_key(pb.RecordKey(ownership=asset))


def account_key(account: pb.AssetRef) -> bytes:
    return encode_key(pb.RecordKey(account=account))


def history_key(asset: pb.AssetRef) -> bytes:
    return encode_key(pb.RecordKey(history=asset))


def credit_key(party: bytes) -> bytes:
    return encode_key(pb.RecordKey(credit_party_key=party))


def holdings_key(party: bytes) -> bytes:
    return encode_key(pb.RecordKey(holdings_party_key=party))


def decode(cls: type[M], value: bytes, *, what: str, max_bytes: int = MAX_RECORD_BYTES) -> M:
    """Decode a record value strictly: bounded size, valid protobuf, no unknown fields, and
    canonical (re-encoding gives the same bytes), so one record has exactly one encoding.

    Raises :class:`LimitExceededError` or :class:`MalformedInputError` naming ``what``.
    """
    if len(value) > max_bytes:
        raise LimitExceededError(f"{what} is too large", length=len(value), limit=max_bytes)
    message = cls()
    try:
        message.ParseFromString(value)
    except (DecodeError, RecursionError, ValueError) as e:
        raise MalformedInputError(f"{what} is not a valid {cls.__name__}", detail=str(e)) from e
    # Dropping unknown fields (at every depth) and re-encoding must give the input back:
    # this refuses both fields schema 1 does not know and non-canonical encodings.
    message.DiscardUnknownFields()
    canonical = message.SerializeToString(deterministic=True)
    if canonical != value:
        raise MismatchError(
            f"{what} is not the canonical encoding of a schema-1 record",
            expected=canonical,
            calculated=value,
        )
    return message


RECORD_TYPES: Final[dict[str, type[Message]]] = {
    "ownership": pb.OwnershipRecord,
    "credit_party_key": pb.CreditRecord,
    "account": pb.AccountRecord,
    "history": pb.AssetHistory,
    "holdings_party_key": pb.PartyHoldings,
}
"""Which record message a value holds, by the RecordKey field its key sets."""


def decode_for_key(key: bytes, value: bytes) -> tuple[pb.RecordKey, Message]:
    """Decode a (key, value) pair of schema 1: the key as a RecordKey, the value as the record
    type that key names. Used by the offline verifier, which trusts neither."""
    record_key = decode(pb.RecordKey, key, what="record key", max_bytes=4096)
    field = record_key.WhichOneof("record")
    if field is None:
        raise MalformedInputError("record key names no record")
    return record_key, decode(RECORD_TYPES[field], value, what=f"{field} record")
