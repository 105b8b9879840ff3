"""Record schema 1: keys, party keys and strict value decoding."""

from __future__ import annotations

import contextlib
import hashlib

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from relay.pb.relay.v1 import types_pb2 as pb
from relay.verify import records
from relay.verify.errors import LimitExceededError, MalformedInputError, VerificationError
from relay.verify.hashing import SHA256, SM3

SALT = bytes(range(16))
FLAT = pb.AssetRef(kind=pb.ASSET_KIND_REAL_ESTATE, registry="110105", id="110105-0032-0017")


def test_party_key_follows_the_documented_formula() -> None:
    expected = hashlib.sha256(
        b"relay.v1.party-key\x00"
        + b"\x00\x10"
        + SALT
        + (1).to_bytes(4, "big")
        + b"11010519491231002X"
    ).digest()
    got = records.party_key(
        hasher=SHA256, salt=SALT, id_type=pb.ID_TYPE_RESIDENT_ID, party_id=" 11010519491231002x "
    )
    assert got == expected
    sm3 = records.party_key(
        hasher=SM3, salt=SALT, id_type=pb.ID_TYPE_RESIDENT_ID, party_id="11010519491231002X"
    )
    assert sm3 != expected and len(sm3) == 32


def test_party_keys_differ_by_salt_type_and_id() -> None:
    base = {"hasher": SHA256, "salt": SALT, "id_type": 1, "party_id": "A1"}
    keys = {
        records.party_key(**base),
        records.party_key(**{**base, "salt": SALT[::-1]}),
        records.party_key(**{**base, "id_type": 2}),
        records.party_key(**{**base, "party_id": "A2"}),
    }
    assert len(keys) == 4


@pytest.mark.parametrize(
    ("salt", "id_type", "party_id"), [(b"short", 1, "x"), (SALT, 0, "x"), (SALT, 1, "   ")]
)
def test_party_key_refuses_bad_input(salt: bytes, id_type: int, party_id: str) -> None:
    with pytest.raises(MalformedInputError):
        records.party_key(hasher=SHA256, salt=salt, id_type=id_type, party_id=party_id)


def test_keys_are_distinct_per_record_kind() -> None:
    keys = {
        records.ownership_key(FLAT),
        records.account_key(FLAT),
        records.history_key(FLAT),
        records.credit_key(b"\x01" * 32),
        records.holdings_key(b"\x01" * 32),
    }
    assert len(keys) == 5
    with pytest.raises(MalformedInputError):
        records.encode_key(pb.RecordKey())


def test_decode_round_trip_and_strictness() -> None:
    record = pb.OwnershipRecord(asset=FLAT, description="3rd floor flat")
    value = record.SerializeToString(deterministic=True)
    key, decoded = records.decode_for_key(records.ownership_key(FLAT), value)
    assert decoded == record and key.ownership == FLAT
    with pytest.raises(VerificationError, match="canonical"):
        records.decode_for_key(records.ownership_key(FLAT), value + b"\xf8\x01\x01")
    with pytest.raises(MalformedInputError, match="not a valid"):
        records.decode_for_key(records.ownership_key(FLAT), b"\xff\xff")
    with pytest.raises(LimitExceededError):
        records.decode(pb.OwnershipRecord, b"\x00" * (records.MAX_RECORD_BYTES + 1), what="x")
    # a credit key decodes its value as a CreditRecord, whatever the adapter claims
    with pytest.raises(VerificationError):
        records.decode_for_key(records.credit_key(b"\x02" * 32), b"\x0a\x03abc")


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=200))
def test_decode_only_raises_typed_errors(data: bytes) -> None:
    with contextlib.suppress(VerificationError):
        records.decode_for_key(records.ownership_key(FLAT), data)
