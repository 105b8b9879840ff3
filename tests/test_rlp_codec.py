"""RLP (Yellow Paper appendix B): known answers, canonical-only decoding, limits, fuzzing."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from relay.verify import rlp
from relay.verify.errors import LimitExceededError, MalformedInputError

# Known answers from the Yellow Paper's definition and the Ethereum wiki's RLP examples.
KNOWN = [
    (b"dog", "83646f67"),
    ([b"cat", b"dog"], "c88363617483646f67"),
    (b"", "80"),
    ([], "c0"),
    (b"\x00", "00"),
    (b"\x0f", "0f"),
    (b"\x7f", "7f"),
    (b"\x80", "8180"),
    (b"\x04\x00", "820400"),
    ([[], [[]], [[], [[]]]], "c7c0c1c0c3c0c1c0"),
    (
        b"Lorem ipsum dolor sit amet, consectetur adipisicing elit",
        "b838" + b"Lorem ipsum dolor sit amet, consectetur adipisicing elit".hex(),
    ),
    (b"\xaa" * 55, "b7" + "aa" * 55),
    (b"\xbb" * 56, "b838" + "bb" * 56),
    (b"\xcc" * 1024, "b90400" + "cc" * 1024),
    ([b"\x01"] * 55, "f7" + "01" * 55),
    ([b"\x01"] * 56, "f838" + "01" * 56),
]


@pytest.mark.parametrize(("item", "hexstr"), KNOWN)
def test_known_answers(item: rlp.Item, hexstr: str) -> None:
    data = bytes.fromhex(hexstr)
    assert rlp.encode(item) == data
    assert rlp.decode(data) == item


@pytest.mark.parametrize(
    ("value", "hexstr"),
    [(0, "80"), (1, "01"), (15, "0f"), (127, "7f"), (128, "8180"), (1024, "820400")],
)
def test_scalars(value: int, hexstr: str) -> None:
    data = bytes.fromhex(hexstr)
    assert rlp.encode_uint(value) == data
    decoded = rlp.decode(data)
    assert rlp.decode_uint(decoded, what="n") == value


NON_CANONICAL = [
    ("8100", "single byte below 0x80 wrapped"),
    ("817f", "single byte below 0x80 wrapped"),
    ("b800", "long form for an empty string"),
    ("b80161", "long form for a 1-byte string"),
    ("b837" + "61" * 55, "long form for a 55-byte string"),
    ("b90038" + "61" * 56, "leading zero in length"),
    ("f800", "long list form for an empty list"),
    ("f90038" + "01" * 56, "leading zero in list length"),
    ("c28100", "wrapped single byte inside a list"),
    ("8000", "trailing byte"),
    ("c0c0", "trailing list"),
    ("", "empty input"),
    ("81", "truncated string"),
    ("83646f", "truncated string"),
    ("c3646f", "list longer than the input"),
    ("c28364", "item runs past its list"),
    ("b9", "truncated length"),
    ("b901", "truncated length"),
    ("f9", "truncated list length"),
    ("c5830102", "item longer than the list it sits in"),
]


@pytest.mark.parametrize(("hexstr", "why"), NON_CANONICAL)
def test_non_canonical_and_malformed_rejected(hexstr: str, why: str) -> None:
    with pytest.raises(MalformedInputError):
        rlp.decode(bytes.fromhex(hexstr))


def test_absurd_lengths_are_typed_errors() -> None:
    # 8-byte length of 2**64-1 and a 7-byte length: both far beyond the input.
    for data in (b"\xbf" + b"\xff" * 8, b"\xff" + b"\xff" * 8, b"\xbe" + b"\x7f" * 7 + b"a"):
        with pytest.raises(MalformedInputError):
            rlp.decode(data)


def test_size_limit() -> None:
    data = rlp.encode(b"x" * 1000)
    assert rlp.decode(data, max_bytes=len(data)) == b"x" * 1000
    with pytest.raises(LimitExceededError):
        rlp.decode(data, max_bytes=len(data) - 1)


def test_depth_limit_and_deep_nesting() -> None:
    nested = b"\xc0"
    for _ in range(9):
        nested = rlp.encode_list_payload(nested)
    assert rlp.decode(nested, max_depth=10) is not None
    with pytest.raises(LimitExceededError):
        rlp.decode(nested, max_depth=9)
    # 20,000 correctly nested levels would overflow a naive recursive decoder's stack.
    deep = b"\xc0"
    for _ in range(20_000):
        deep = rlp.encode_list_payload(deep)
    with pytest.raises(LimitExceededError):
        rlp.decode(deep)
    # A header claiming one more level than the bytes hold is malformed, not deep.
    with pytest.raises(MalformedInputError):
        rlp.decode(b"\xc1" * 1000 + b"\xc0")
    with pytest.raises(LimitExceededError):
        rlp.encode(_nest(100))
    with pytest.raises(LimitExceededError):
        rlp.decode(b"\xc0", max_depth=0)


def _nest(n: int) -> rlp.Item:
    item: rlp.Item = []
    for _ in range(n):
        item = [item]
    return item


def test_scalar_checks() -> None:
    with pytest.raises(MalformedInputError):
        rlp.decode_uint(b"\x00\x01", what="leading zero")
    with pytest.raises(MalformedInputError):
        rlp.decode_uint(b"\x01" * 33, what="too long")
    with pytest.raises(MalformedInputError):
        rlp.decode_uint([], what="a list")
    with pytest.raises(MalformedInputError):
        rlp.uint_bytes(-1)
    with pytest.raises(MalformedInputError):
        rlp.as_bytes(b"ab", what="x", length=3)
    with pytest.raises(MalformedInputError):
        rlp.as_list([b""], what="x", length=2)
    with pytest.raises(MalformedInputError):
        rlp.as_list(b"", what="x")
    with pytest.raises(MalformedInputError):
        rlp.encode(["not bytes"])  # type: ignore[list-item]
    with pytest.raises(MalformedInputError):
        rlp.decode("c0")  # type: ignore[arg-type]


items = st.recursive(
    st.binary(max_size=70),
    lambda children: st.lists(children, max_size=6),
    max_leaves=30,
)


@settings(max_examples=300, deadline=None)
@given(item=items)
def test_roundtrip(item: rlp.Item) -> None:
    assert rlp.decode(rlp.encode(item)) == item


@settings(max_examples=200, deadline=None)
@given(item=items, data=st.data())
def test_any_truncation_or_extension_is_rejected(item: rlp.Item, data: st.DataObject) -> None:
    encoded = rlp.encode(item)
    cut = data.draw(st.integers(0, len(encoded) - 1))
    with pytest.raises(MalformedInputError):
        rlp.decode(encoded[:cut])
    extra = data.draw(st.binary(min_size=1, max_size=4))
    with pytest.raises(MalformedInputError):
        rlp.decode(encoded + extra)


def _decode_or_typed_error(data: bytes) -> None:
    try:
        item = rlp.decode(data, max_depth=16)
    except MalformedInputError:
        return
    # Strictness means decoding is injective: the only encoding of the item is the input.
    assert rlp.encode(item) == data


@pytest.mark.fuzz
@settings(max_examples=600, deadline=None)
@given(data=st.binary(max_size=200))
def test_fuzz_decoder_random_bytes(data: bytes) -> None:
    _decode_or_typed_error(data)


@pytest.mark.fuzz
@settings(max_examples=400, deadline=None)
@given(item=items, data=st.data())
def test_fuzz_decoder_mutated_encodings(item: rlp.Item, data: st.DataObject) -> None:
    encoded = bytearray(rlp.encode(item))
    for _ in range(data.draw(st.integers(1, 3))):
        op = data.draw(st.sampled_from(["flip", "insert", "delete"]))
        at = data.draw(st.integers(0, len(encoded)))
        if op == "flip" and at < len(encoded):
            encoded[at] ^= data.draw(st.integers(1, 255))
        elif op == "insert":
            encoded[at:at] = data.draw(st.binary(min_size=1, max_size=3))
        elif at < len(encoded):
            del encoded[at]
    _decode_or_typed_error(bytes(encoded))
