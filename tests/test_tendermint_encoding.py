"""CometBFT canonical encodings, cross-checked byte for byte against the protobuf runtime
(an independent encoder fed the messages of cometbft ``proto/tendermint``), and RFC 3339
time handling."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest
from google.protobuf import (
    descriptor_pb2,
    descriptor_pool,
    message_factory,
    timestamp_pb2,
    wrappers_pb2,
)
from hypothesis import given, settings
from hypothesis import strategies as st

from relay.verify.errors import MalformedInputError
from relay.verify.lightclient import cometbft_encoding as enc

F = descriptor_pb2.FieldDescriptorProto

# --- the reference: protobuf messages built from CometBFT's .proto definitions ---------------


def _pool() -> descriptor_pool.DescriptorPool:
    pool = descriptor_pool.DescriptorPool()
    pool.AddSerializedFile(timestamp_pb2.DESCRIPTOR.serialized_pb)
    fdp = descriptor_pb2.FileDescriptorProto(
        name="relay_test_cometbft.proto",
        package="ref",
        syntax="proto3",
        dependency=["google/protobuf/timestamp.proto"],
    )

    def message(name: str, *fields: tuple[str, int, int, str | None, int | None]) -> None:
        m = fdp.message_type.add(name=name)
        oneofs: set[int] = set()
        for fname, number, ftype, type_name, oneof in fields:
            f = m.field.add(name=fname, number=number, type=ftype, label=F.LABEL_OPTIONAL)
            if type_name:
                f.type_name = type_name
            if oneof is not None:
                f.oneof_index = oneof
                oneofs.add(oneof)
        for _ in sorted(oneofs):
            m.oneof_decl.add(name="sum")

    message(
        "Consensus", ("block", 1, F.TYPE_UINT64, None, None), ("app", 2, F.TYPE_UINT64, None, None)
    )
    message(
        "PartSetHeader",
        ("total", 1, F.TYPE_UINT32, None, None),
        ("hash", 2, F.TYPE_BYTES, None, None),
    )
    message(
        "BlockID",
        ("hash", 1, F.TYPE_BYTES, None, None),
        ("part_set_header", 2, F.TYPE_MESSAGE, ".ref.PartSetHeader", None),
    )
    message(
        "CanonicalBlockID",
        ("hash", 1, F.TYPE_BYTES, None, None),
        ("part_set_header", 2, F.TYPE_MESSAGE, ".ref.PartSetHeader", None),
    )
    message(
        "CanonicalVote",
        ("type", 1, F.TYPE_INT32, None, None),  # an enum: the same varint on the wire
        ("height", 2, F.TYPE_SFIXED64, None, None),
        ("round", 3, F.TYPE_SFIXED64, None, None),
        ("block_id", 4, F.TYPE_MESSAGE, ".ref.CanonicalBlockID", None),
        ("timestamp", 5, F.TYPE_MESSAGE, ".google.protobuf.Timestamp", None),
        ("chain_id", 6, F.TYPE_STRING, None, None),
    )
    message(
        "PublicKey",
        ("ed25519", 1, F.TYPE_BYTES, None, 0),
        ("secp256k1", 2, F.TYPE_BYTES, None, 0),
        ("sm2", 16, F.TYPE_BYTES, None, 0),
    )
    message(
        "SimpleValidator",
        ("pub_key", 1, F.TYPE_MESSAGE, ".ref.PublicKey", None),
        ("voting_power", 2, F.TYPE_INT64, None, None),
    )
    message(
        "CommitSig",
        ("block_id_flag", 1, F.TYPE_INT32, None, None),
        ("validator_address", 2, F.TYPE_BYTES, None, None),
        ("timestamp", 3, F.TYPE_MESSAGE, ".google.protobuf.Timestamp", None),
        ("signature", 4, F.TYPE_BYTES, None, None),
    )
    pool.Add(fdp)
    return pool


POOL = _pool()


def ref(name: str) -> Any:
    return message_factory.GetMessageClass(POOL.FindMessageTypeByName(f"ref.{name}"))


def ref_timestamp(msg: Any, time_ns: int) -> None:
    seconds, nanos = divmod(time_ns, 10**9)
    msg.seconds = seconds
    msg.nanos = nanos
    msg.SetInParent()  # gogoproto: non-nullable, written even when zero


def serialize(msg: Any) -> bytes:
    return msg.SerializeToString(deterministic=True)


hashes = st.one_of(st.just(b""), st.binary(min_size=32, max_size=32))
times = st.integers(enc.MIN_TIME_NS, enc.MAX_TIME_NS)
int64s = st.integers(-(2**63), 2**63 - 1)


@settings(max_examples=200, deadline=None)
@given(
    chain_id=st.text(max_size=50),
    height=st.integers(1, 2**63 - 1),
    round_=st.integers(0, 2**31 - 1),
    block_hash=hashes,
    total=st.integers(0, 2**32 - 1),
    part_hash=hashes,
    time_ns=times,
    nil=st.booleans(),
)
def test_vote_sign_bytes_match_the_protobuf_runtime(
    chain_id: str,
    height: int,
    round_: int,
    block_hash: bytes,
    total: int,
    part_hash: bytes,
    time_ns: int,
    nil: bool,
) -> None:
    vote = ref("CanonicalVote")()
    vote.type = enc.PRECOMMIT_TYPE
    vote.height = height
    vote.round = round_
    zero_id = not block_hash and not total and not part_hash
    if not nil and not zero_id:
        vote.block_id.hash = block_hash
        vote.block_id.part_set_header.total = total
        vote.block_id.part_set_header.hash = part_hash
        vote.block_id.part_set_header.SetInParent()
    ref_timestamp(vote.timestamp, time_ns)
    vote.chain_id = chain_id
    body = serialize(vote)
    expected = enc.uvarint(len(body)) + body
    builder = enc.VoteSignBytes(
        chain_id=chain_id.encode("utf-8", "surrogatepass"),
        height=height,
        round_=round_,
        block_hash=block_hash,
        part_total=total,
        part_hash=part_hash,
    )
    got = builder.for_nil(time_ns) if nil else builder.for_commit(time_ns)
    assert got == expected


@settings(max_examples=200, deadline=None)
@given(
    block=st.integers(0, 2**64 - 1),
    app=st.integers(0, 2**64 - 1),
    chain_id=st.text(max_size=50),
    height=int64s,
    time_ns=times,
    last_hash=hashes,
    total=st.integers(0, 2**32 - 1),
    part_hash=hashes,
    fields=st.lists(st.binary(max_size=40), min_size=9, max_size=9),
)
def test_header_leaves_match_the_protobuf_runtime(
    block: int,
    app: int,
    chain_id: str,
    height: int,
    time_ns: int,
    last_hash: bytes,
    total: int,
    part_hash: bytes,
    fields: list[bytes],
) -> None:
    version = ref("Consensus")(block=block, app=app)
    ts = timestamp_pb2.Timestamp()
    seconds, nanos = divmod(time_ns, 10**9)
    ts.seconds, ts.nanos = seconds, nanos
    bid = ref("BlockID")(hash=last_hash)
    bid.part_set_header.total = total
    bid.part_set_header.hash = part_hash
    bid.part_set_header.SetInParent()
    expected = [
        serialize(version),
        serialize(wrappers_pb2.StringValue(value=chain_id)),
        serialize(wrappers_pb2.Int64Value(value=height)),
        serialize(ts),
        serialize(bid),
        *(serialize(wrappers_pb2.BytesValue(value=f)) for f in fields),
    ]
    got = enc.header_leaves(
        version_block=block,
        version_app=app,
        chain_id=chain_id.encode("utf-8", "surrogatepass"),
        height=height,
        time_ns=time_ns,
        last_block_id=enc.block_id_proto(last_hash, total, part_hash),
        last_commit_hash=fields[0],
        data_hash=fields[1],
        validators_hash=fields[2],
        next_validators_hash=fields[3],
        consensus_hash=fields[4],
        app_hash=fields[5],
        last_results_hash=fields[6],
        evidence_hash=fields[7],
        proposer_address=fields[8],
    )
    assert got == expected


def test_empty_block_id_is_twelve_zero() -> None:
    # the README note: an absent last_block_id hashes as the two bytes 12 00
    assert enc.block_id_proto(b"", 0, b"") == b"\x12\x00"


@settings(max_examples=100, deadline=None)
@given(
    key_field=st.sampled_from([1, 2, 16]),
    key=st.binary(min_size=32, max_size=65),
    power=st.integers(1, 2**60 - 1),
)
def test_simple_validator_matches_the_protobuf_runtime(
    key_field: int, key: bytes, power: int
) -> None:
    pk = ref("PublicKey")()
    setattr(pk, {1: "ed25519", 2: "secp256k1", 16: "sm2"}[key_field], key)
    sv = ref("SimpleValidator")(voting_power=power)
    sv.pub_key.CopyFrom(pk)
    assert enc.simple_validator_proto(key_field=key_field, public_key=key, voting_power=power) == (
        serialize(sv)
    )


@settings(max_examples=100, deadline=None)
@given(
    flag=st.integers(1, 3),
    address=st.one_of(st.just(b""), st.binary(min_size=20, max_size=20)),
    time_ns=times,
    signature=st.binary(max_size=72),
)
def test_commit_sig_matches_the_protobuf_runtime(
    flag: int, address: bytes, time_ns: int, signature: bytes
) -> None:
    cs = ref("CommitSig")(block_id_flag=flag, validator_address=address, signature=signature)
    ref_timestamp(cs.timestamp, time_ns)
    assert enc.commit_sig_proto(
        block_id_flag=flag, address=address, time_ns=time_ns, signature=signature
    ) == serialize(cs)


# --- varints and time ------------------------------------------------------------------------


@given(st.integers(1, 2**64 - 1))
def test_uvarint_matches_the_protobuf_runtime(n: int) -> None:
    # UInt64Value{value = 1} is the tag byte 08, then the varint
    assert b"\x08" + enc.uvarint(n) == serialize(wrappers_pb2.UInt64Value(value=n))
    if n <= 2**63:
        assert enc.varint_int64(-n) == serialize(wrappers_pb2.Int64Value(value=-n))[1:]


@settings(max_examples=300)
@given(times)
def test_rfc3339_round_trip(time_ns: int) -> None:
    text = enc.format_rfc3339_ns(time_ns)
    assert enc.parse_rfc3339_ns(text) == time_ns
    assert not text.endswith("0Z") or "." not in text  # Go trims trailing zeros


@settings(max_examples=200)
@given(
    st.datetimes(min_value=dt.datetime(1, 1, 1), max_value=dt.datetime(9999, 12, 31, 23, 59, 59))
)
def test_rfc3339_agrees_with_datetime(value: dt.datetime) -> None:
    utc = value.replace(tzinfo=dt.UTC)
    epoch = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
    delta = utc - epoch
    ns = (delta.days * 86400 + delta.seconds) * 10**9 + delta.microseconds * 1000
    text = (
        f"{utc.year:04d}-{utc.month:02d}-{utc.day:02d}T"
        f"{utc.hour:02d}:{utc.minute:02d}:{utc.second:02d}"
        + (f".{utc.microsecond:06d}" if utc.microsecond else "")
    )
    assert enc.parse_rfc3339_ns(text + "Z") == ns


@pytest.mark.parametrize(
    ("text", "ns"),
    [
        ("1970-01-01T00:00:00Z", 0),
        ("1970-01-01T00:00:01Z", 10**9),
        ("2023-05-17T14:12:53.088875124Z", 1684332773088875124),
        ("0001-01-01T00:00:00Z", enc.MIN_TIME_NS),
        ("9999-12-31T23:59:59.999999999Z", enc.MAX_TIME_NS),
        ("1969-12-31T23:59:59.9Z", -(10**8)),
    ],
)
def test_known_times(text: str, ns: int) -> None:
    assert enc.parse_rfc3339_ns(text) == ns
    assert enc.format_rfc3339_ns(ns) == text


def test_times_outside_the_timestamp_range_do_not_format() -> None:
    with pytest.raises(MalformedInputError):
        enc.format_rfc3339_ns(enc.MAX_TIME_NS + 1)
    with pytest.raises(MalformedInputError):
        enc.parse_rfc3339_ns("2023-05-17T14:12:53." + "1" * 40 + "Z")
