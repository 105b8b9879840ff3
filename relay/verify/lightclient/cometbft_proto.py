"""CometBFT light blocks in their protobuf wire form (``tendermint.types.LightBlock``, CometBFT
0.34 and later; see proto/tendermint/), decoded into the values of
:mod:`~relay.verify.lightclient.cometbft_types` and encoded back.

This is the encoding adapters send (``LIGHT_BLOCK_ENCODING_COMETBFT_PROTO``), anchors and
evidence carry (``HEADER_FORMAT_COMETBFT_LIGHT_BLOCK``). Decoding goes through the same
constructors as the JSON decoder (:func:`make_validator_set`, :func:`make_header`,
:func:`make_commit`), so a block is checked and hashed the same way whichever encoding it
came in. Every size is bounded before anything is built from it; unknown fields are refused;
by default the bytes must be the canonical encoding (what CometBFT's gogoproto writes), so one
light block has one byte string. Failures raise :class:`LimitExceededError`,
:class:`MalformedInputError` or another :class:`~relay.verify.errors.VerificationError`,
never a protobuf error.

The encoder is written by hand from :mod:`~relay.verify.lightclient.cometbft_encoding` (the
same field writers the header hash uses), so it can write a per-chain SM2 key field number
that the generated classes do not know; tests compare it with the generated encoder.

CometBFT's ``LightBlock`` has no next validator set: it is the validator set of the next
height's light block. The decoder sets ``next_validator_set`` only where it is provably the
block's own set (the header's ``next_validators_hash`` equals the set's hash), and leaves it
``None`` across a rotation.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any, Final

from google.protobuf.message import DecodeError, Message
from google.protobuf.unknown_fields import UnknownFieldSet

from relay.pb.tendermint.crypto import keys_pb2
from relay.pb.tendermint.types import types_pb2, validator_pb2
from relay.verify.errors import LimitExceededError, MalformedInputError, MismatchError
from relay.verify.lightclient import cometbft_encoding as enc
from relay.verify.lightclient.cometbft_types import (
    ABSENT_TIME_NS,
    BLOCK_ID_FLAG_ABSENT,
    MAX_VALIDATORS,
    BlockID,
    ChainParams,
    Commit,
    CommitSig,
    Header,
    KeyType,
    LightBlock,
    PublicKey,
    UnknownKeyTypeError,
    Validator,
    ValidatorSet,
    make_commit,
    make_header,
    make_signed_header,
    make_validator_set,
)

MAX_LIGHT_BLOCK_BYTES: Final = 8 << 20
"""Default size limit of an encoded light block. A block of 10,000 Ed25519 validators (the
validator limit) takes about 2.2 MB; real chains with a few hundred validators take tens of
KB."""

_WIRE_LEN = 2  # length-delimited wire type
_UNIX_EPOCH_NS = 0


# --- decoding --------------------------------------------------------------------------------


def _children(msg: Message) -> Iterator[tuple[str, Message]]:
    for fd, value in msg.ListFields():
        if fd.message_type is None:
            continue
        if fd.is_repeated:
            for i, item in enumerate(value):
                yield f"{fd.name}[{i}]", item
        else:
            yield fd.name, value


def _unknown_fields(msg: Message) -> list[tuple[int, int, bytes]]:
    """(field number, wire type, data) of each field the parser did not know."""
    fields: Any = UnknownFieldSet(msg)
    # Only length-delimited fields carry bytes; a varint's data is an int (never bytes(int),
    # which would allocate that many bytes).
    return [
        (f.field_number, f.wire_type, f.data if f.wire_type == _WIRE_LEN else b"") for f in fields
    ]


def _refuse_unknown_fields(msg: Message, path: str) -> None:
    """Refuse fields these definitions do not know. Public keys are left to
    :func:`_public_key`: a key in a field number the generated ``PublicKey`` does not declare
    may be a per-chain key type."""
    if isinstance(msg, keys_pb2.PublicKey):
        return
    unknown = _unknown_fields(msg)
    if unknown:
        raise MalformedInputError(
            "light block has a field this decoder does not know",
            path=path or "LightBlock",
            field_number=unknown[0][0],
        )
    for name, child in _children(msg):
        _refuse_unknown_fields(child, f"{path}.{name}" if path else name)


def _require(msg: Message, field: str, path: str) -> None:
    if not msg.HasField(field):
        raise MalformedInputError(f"{path}.{field} is missing")


def _time(ts: Message, what: str) -> int:
    seconds: int = ts.seconds  # type: ignore[attr-defined]
    nanos: int = ts.nanos  # type: ignore[attr-defined]
    if not 0 <= nanos < enc.NANOS_PER_SECOND:
        raise MalformedInputError(f"{what} nanos out of range", nanos=nanos)
    if not enc.MIN_TIMESTAMP_SECONDS <= seconds <= enc.MAX_TIMESTAMP_SECONDS:
        raise MalformedInputError(f"{what} outside 0001-01-01..9999-12-31", seconds=seconds)
    return seconds * enc.NANOS_PER_SECOND + nanos


def _block_id(m: types_pb2.BlockID) -> BlockID:
    psh = m.part_set_header
    return BlockID(m.hash, psh.total, psh.hash)


def _public_key(m: keys_pb2.PublicKey, what: str, by_field: dict[int, KeyType]) -> PublicKey:
    which = m.WhichOneof("sum")
    unknown = _unknown_fields(m)
    if len(unknown) + (which is not None) != 1:
        raise MalformedInputError(
            f"{what} must hold exactly one key", keys=len(unknown) + (which is not None)
        )
    if which is not None:
        number = m.DESCRIPTOR.fields_by_name[which].number
        data: bytes = getattr(m, which)
    else:
        number, wire_type, data = unknown[0]
        if wire_type != _WIRE_LEN:
            raise MalformedInputError(f"{what} is not a byte string", field_number=number)
    kt = by_field.get(number)
    if kt is None:
        raise UnknownKeyTypeError(
            "validator key type not enabled for this chain",
            key_field=number,
            allowed=sorted(by_field),
        )
    if len(data) not in kt.key_lengths:
        raise MalformedInputError(
            f"{kt.name} public key has the wrong length", length=len(data), expected=kt.key_lengths
        )
    return PublicKey(kt, data)


def _validator(
    m: validator_pb2.Validator, what: str, by_field: dict[int, KeyType], canonical: bool
) -> Validator:
    if canonical:
        _require(m, "pub_key", what)
    return Validator(
        address=m.address,
        pub_key=_public_key(m.pub_key, f"{what}.pub_key", by_field),
        voting_power=m.voting_power,
        proposer_priority=m.proposer_priority,
    )


def _validator_set(
    m: validator_pb2.ValidatorSet,
    *,
    params: ChainParams,
    by_field: dict[int, KeyType],
    max_validators: int,
    canonical: bool,
) -> ValidatorSet:
    count = len(m.validators)
    if count > max_validators:
        raise LimitExceededError(
            "validator set has too many validators", count=count, limit=max_validators
        )
    vals = [
        _validator(v, f"validator_set.validators[{i}]", by_field, canonical)
        for i, v in enumerate(m.validators)
    ]
    vs = make_validator_set(vals, params=params)
    if canonical and tuple(vals) != vs.validators:
        # CometBFT writes a set in its canonical order; another order is another encoding
        # of the same set.
        raise MalformedInputError(
            "validators are not in canonical order (power descending, then address)"
        )
    if (m.total_voting_power or canonical) and m.total_voting_power != vs.total_voting_power:
        raise MismatchError(
            "validator set's total_voting_power is not the sum of its validators' power",
            expected=vs.total_voting_power,
            calculated=m.total_voting_power,
        )
    if m.HasField("proposer"):
        p = _validator(m.proposer, "validator_set.proposer", by_field, canonical)
        if vs.get(p.address) != p:
            raise MalformedInputError(
                "validator set's proposer is not one of its validators", address=p.address
            )
    return vs


def _header(m: types_pb2.Header, *, params: ChainParams, canonical: bool) -> Header:
    if canonical:
        for name in ("version", "last_block_id"):
            _require(m, name, "header")
        _require(m.last_block_id, "part_set_header", "header.last_block_id")
    _require(m, "time", "header")
    return make_header(
        params=params,
        version_block=m.version.block,
        version_app=m.version.app,
        chain_id=m.chain_id,
        height=m.height,
        time_ns=_time(m.time, "header.time"),
        last_block_id=_block_id(m.last_block_id),
        last_commit_hash=m.last_commit_hash,
        data_hash=m.data_hash,
        validators_hash=m.validators_hash,
        next_validators_hash=m.next_validators_hash,
        consensus_hash=m.consensus_hash,
        app_hash=m.app_hash,
        last_results_hash=m.last_results_hash,
        evidence_hash=m.evidence_hash,
        proposer_address=m.proposer_address,
    )


def _commit_sig(m: types_pb2.CommitSig, index: int, canonical: bool) -> CommitSig:
    what = f"commit.signatures[{index}]"
    flag = int(m.block_id_flag)
    if flag == BLOCK_ID_FLAG_ABSENT:
        # CometBFT writes Go's zero time for an absent vote; other encoders leave it out or
        # write the Unix epoch. All mean "no time"; only the first is canonical.
        if m.HasField("timestamp"):
            t = _time(m.timestamp, f"{what}.timestamp")
            if t != ABSENT_TIME_NS and (canonical or t != _UNIX_EPOCH_NS):
                raise MalformedInputError("absent commit signature carries a time", index=index)
        elif canonical:
            raise MalformedInputError(f"{what}.timestamp is missing")
        return CommitSig(flag, m.validator_address, ABSENT_TIME_NS, m.signature)
    _require(m, "timestamp", what)
    return CommitSig(
        flag, m.validator_address, _time(m.timestamp, f"{what}.timestamp"), m.signature
    )


def _commit(
    m: types_pb2.Commit, *, params: ChainParams, max_signatures: int, canonical: bool
) -> Commit:
    count = len(m.signatures)
    if count > max_signatures:
        raise LimitExceededError(
            "commit has too many signatures", count=count, limit=max_signatures
        )
    _require(m, "block_id", "commit")
    if canonical:
        _require(m.block_id, "part_set_header", "commit.block_id")
    return make_commit(
        height=m.height,
        round_=m.round,
        block_id=_block_id(m.block_id),
        signatures=[_commit_sig(s, i, canonical) for i, s in enumerate(m.signatures)],
        params=params,
    )


def decode_light_block_proto(
    data: bytes,
    *,
    params: ChainParams,
    max_bytes: int = MAX_LIGHT_BLOCK_BYTES,
    max_validators: int = MAX_VALIDATORS,
    canonical: bool = True,
) -> LightBlock:
    """Decode a protobuf ``tendermint.types.LightBlock`` under the chain's ``params``.

    Requires at most ``max_bytes`` bytes, at most ``max_validators`` validators and commit
    signatures, no unknown fields (a public key may sit in a key type's per-chain field
    number), key types the chain enables, and everything :mod:`cometbft_types` checks. With
    ``canonical`` (the default) the bytes must also be exactly the canonical encoding of what
    they decode to: fields in order, defaults omitted, minimal varints, every non-nullable
    submessage written, Go's zero time on absent votes, validators in canonical order and
    their total power written, as CometBFT writes them. The set's ``proposer`` (which
    the value does not keep) must, when present, be one of its validators, field for field.

    The header hash is recomputed, never read. ``next_validator_set`` is the block's own set
    when the header says the set does not change, else ``None``. Says nothing about trust:
    verify the result with :mod:`relay.verify.lightclient.tendermint`.

    Raises :class:`LimitExceededError`, :class:`MalformedInputError` (including
    :class:`~relay.verify.lightclient.cometbft_types.DuplicateValidatorError`),
    :class:`~relay.verify.lightclient.cometbft_types.UnknownKeyTypeError` or
    :class:`MismatchError` (a ``total_voting_power`` that is not the sum).
    """
    if not isinstance(data, bytes | bytearray | memoryview):
        raise MalformedInputError("light block must be bytes", got=type(data).__name__)
    if len(data) > max_bytes:
        raise LimitExceededError("light block is too large", length=len(data), limit=max_bytes)
    raw = bytes(data)
    msg = types_pb2.LightBlock()
    try:
        msg.ParseFromString(raw)
    except DecodeError as e:
        raise MalformedInputError("bytes are not a protobuf LightBlock", detail=str(e)) from None
    except Exception as e:  # any other failure of the protobuf runtime is bad input too
        raise MalformedInputError(
            "bytes are not a protobuf LightBlock", detail=f"{type(e).__name__}: {e}"
        ) from None
    by_field = {kt.proto_field: kt for kt in params.key_types}
    _refuse_unknown_fields(msg, "")
    if canonical and msg.SerializeToString(deterministic=True) != raw:
        raise MalformedInputError(
            "light block is not canonically encoded (fields out of order, defaults written "
            "or non-minimal varints)",
            length=len(raw),
        )
    _require(msg, "signed_header", "light_block")
    _require(msg, "validator_set", "light_block")
    _require(msg.signed_header, "header", "signed_header")
    _require(msg.signed_header, "commit", "signed_header")
    vals = _validator_set(
        msg.validator_set,
        params=params,
        by_field=by_field,
        max_validators=max_validators,
        canonical=canonical,
    )
    header = _header(msg.signed_header.header, params=params, canonical=canonical)
    commit = _commit(
        msg.signed_header.commit, params=params, max_signatures=max_validators, canonical=canonical
    )
    return LightBlock(
        signed_header=make_signed_header(header, commit),
        validator_set=vals,
        next_validator_set=vals if header.next_validators_hash == vals.hash else None,
    )


# --- encoding --------------------------------------------------------------------------------


def _public_key_proto(key: PublicKey) -> bytes:
    return enc.len_field(key.key_type.proto_field, key.data)


def _validator_proto(v: Validator) -> bytes:
    return (
        enc.opt_len_field(1, v.address)
        + enc.len_field(2, _public_key_proto(v.pub_key))
        + enc.opt_varint_field(3, v.voting_power)
        + enc.opt_varint_field(4, v.proposer_priority)
    )


def validator_set_proto(vs: ValidatorSet, *, proposer_address: bytes = b"") -> bytes:
    """``tendermint.types.ValidatorSet`` of ``vs`` (canonical order), naming the validator at
    ``proposer_address`` as proposer when it is a member."""
    out = b"".join(enc.len_field(1, _validator_proto(v)) for v in vs.validators)
    proposer = vs.get(proposer_address) if proposer_address else None
    if proposer is not None:
        out += enc.len_field(2, _validator_proto(proposer))
    return out + enc.opt_varint_field(3, vs.total_voting_power)


def header_proto(h: Header) -> bytes:
    """``tendermint.types.Header`` as CometBFT writes it (version, time and last block id
    always present)."""
    version = enc.opt_varint_field(1, h.version_block) + enc.opt_varint_field(2, h.version_app)
    return (
        enc.len_field(1, version)
        + enc.opt_len_field(2, h.chain_id.encode("utf-8"))
        + enc.opt_varint_field(3, h.height)
        + enc.len_field(4, enc.timestamp_proto(h.time_ns))
        + enc.len_field(5, h.last_block_id.proto())
        + enc.opt_len_field(6, h.last_commit_hash)
        + enc.opt_len_field(7, h.data_hash)
        + enc.opt_len_field(8, h.validators_hash)
        + enc.opt_len_field(9, h.next_validators_hash)
        + enc.opt_len_field(10, h.consensus_hash)
        + enc.opt_len_field(11, h.app_hash)
        + enc.opt_len_field(12, h.last_results_hash)
        + enc.opt_len_field(13, h.evidence_hash)
        + enc.opt_len_field(14, h.proposer_address)
    )


def commit_proto(c: Commit) -> bytes:
    """``tendermint.types.Commit`` (block id always present; one slot per validator)."""
    sigs = b"".join(
        enc.len_field(
            4,
            enc.commit_sig_proto(
                block_id_flag=s.block_id_flag,
                address=s.validator_address,
                time_ns=s.timestamp_ns,
                signature=s.signature,
            ),
        )
        for s in c.signatures
    )
    return (
        enc.opt_varint_field(1, c.height)
        + enc.opt_varint_field(2, c.round)
        + enc.len_field(3, c.block_id.proto())
        + sigs
    )


def encode_light_block_proto(block: LightBlock) -> bytes:
    """The canonical protobuf ``tendermint.types.LightBlock`` of ``block``: signed header and
    validator set (with the header's proposer as the set's proposer). ``next_validator_set``
    is not part of the message and is not written."""
    header = block.header
    signed = enc.len_field(1, header_proto(header)) + enc.len_field(2, commit_proto(block.commit))
    vals = validator_set_proto(block.validator_set, proposer_address=header.proposer_address)
    return enc.len_field(1, signed) + enc.len_field(2, vals)


def with_next_validator_set(block: LightBlock, next_validator_set: ValidatorSet) -> LightBlock:
    """``block`` with its next validator set, taken from the next height's light block (the
    protobuf light block does not carry it). The set must hash to the header's
    ``next_validators_hash``; raises :class:`MismatchError` otherwise."""
    expected = block.header.next_validators_hash
    if next_validator_set.hash != expected:
        raise MismatchError(
            "validator set does not hash to the header's next_validators_hash",
            expected=expected,
            calculated=next_validator_set.hash,
            height=block.height,
        )
    return LightBlock(block.signed_header, block.validator_set, next_validator_set)
