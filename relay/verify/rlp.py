"""Recursive Length Prefix (RLP) serialisation, Ethereum Yellow Paper appendix B.

Decoding is strict: only the one canonical encoding of an item is accepted (no single byte
below 0x80 wrapped as a string, no long form for a payload under 56 bytes, no leading zero
in a length, no bytes after the item), so that equal items always have equal bytes and a
hash over the bytes commits to the item. Every decode is bounded in input size and nesting
depth; violations raise :class:`~relay.verify.errors.MalformedInputError` or
:class:`~relay.verify.errors.LimitExceededError`, never a bare Python exception.

An item is ``bytes`` (a string) or a ``list`` of items.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TypeAlias

from relay.verify.errors import LimitExceededError, MalformedInputError

Item: TypeAlias = "bytes | list[Item]"
"""A decoded RLP item: a byte string or a list of items."""

DEFAULT_MAX_BYTES = 16 * 1024 * 1024
"""Largest input :func:`decode` accepts unless the caller passes a tighter bound."""

DEFAULT_MAX_DEPTH = 32
"""Deepest list nesting accepted unless the caller says otherwise (Ethereum structures nest
at most a handful of levels: a receipt is list > logs > log > topics)."""

_MAX_LENGTH_OF_LENGTH = 8
"""The Yellow Paper bounds the length-of-length by 8 bytes (payloads below 2**64)."""


def decode(
    data: bytes, *, max_bytes: int = DEFAULT_MAX_BYTES, max_depth: int = DEFAULT_MAX_DEPTH
) -> Item:
    """Decode exactly one canonical RLP item that spans all of ``data``.

    Raises :class:`LimitExceededError` when ``data`` is longer than ``max_bytes`` or lists
    nest deeper than ``max_depth`` (a top-level list is depth 1), and
    :class:`MalformedInputError` for empty, truncated, non-canonical or trailing input.
    """
    if not isinstance(data, bytes):
        raise MalformedInputError("RLP input must be bytes", type=type(data).__name__)
    end = len(data)
    if end > max_bytes:
        raise LimitExceededError("RLP input too large", length=end, limit=max_bytes)
    if end == 0:
        raise MalformedInputError("RLP input is empty")
    item, pos = _decode_at(data, 0, end, max_depth)
    if pos != end:
        raise MalformedInputError("trailing bytes after the RLP item", offset=pos, length=end)
    return item


def _length(data: bytes, pos: int, size: int, end: int) -> int:
    """Read a ``size``-byte big-endian length at ``pos``, rejecting non-canonical forms."""
    if pos + size > end:
        raise MalformedInputError("RLP length runs past the end of the input", offset=pos)
    if data[pos] == 0:
        raise MalformedInputError("RLP length has a leading zero byte", offset=pos)
    n = int.from_bytes(data[pos : pos + size], "big")
    if n < 56:
        raise MalformedInputError("RLP long form used for a payload under 56 bytes", offset=pos)
    return n


def _decode_at(data: bytes, pos: int, end: int, depth: int) -> tuple[Item, int]:
    b0 = data[pos]
    if b0 < 0x80:
        return data[pos : pos + 1], pos + 1
    if b0 < 0xB8:
        start = pos + 1
        stop = start + b0 - 0x80
        if stop > end:
            raise MalformedInputError("RLP string runs past the end of the input", offset=pos)
        if stop == start + 1 and data[start] < 0x80:
            raise MalformedInputError("RLP single byte below 0x80 wrapped as a string", offset=pos)
        return data[start:stop], stop
    if b0 < 0xC0:
        size = b0 - 0xB7
        start = pos + 1 + size
        stop = start + _length(data, pos + 1, size, end)
        if stop > end:
            raise MalformedInputError("RLP string runs past the end of the input", offset=pos)
        return data[start:stop], stop
    if b0 < 0xF8:
        start = pos + 1
        stop = start + b0 - 0xC0
    else:
        size = b0 - 0xF7
        start = pos + 1 + size
        stop = start + _length(data, pos + 1, size, end)
    if stop > end:
        raise MalformedInputError("RLP list runs past the end of the input", offset=pos)
    if depth <= 0:
        raise LimitExceededError("RLP lists nest too deeply", offset=pos)
    items: list[Item] = []
    append = items.append
    p = start
    while p < stop:
        b = data[p]
        if b < 0x80:
            append(data[p : p + 1])
            p += 1
            continue
        # Short strings dominate Ethereum nodes (hashes, paths); decoding them inline
        # instead of recursing doubles the speed of trie-node decoding.
        if 0x80 <= b < 0xB8:
            q = p + 1 + b - 0x80
            if q > stop:
                raise MalformedInputError("RLP item runs past the end of its list", offset=p)
            if q == p + 2 and data[p + 1] < 0x80:
                raise MalformedInputError(
                    "RLP single byte below 0x80 wrapped as a string", offset=p
                )
            append(data[p + 1 : q])
            p = q
            continue
        item, p = _decode_at(data, p, stop, depth - 1)
        append(item)
    return items, stop


def encode(item: Item, *, max_depth: int = DEFAULT_MAX_DEPTH) -> bytes:
    """Encode ``item`` (bytes or nested lists of bytes) canonically.

    Raises :class:`LimitExceededError` when lists nest deeper than ``max_depth`` and
    :class:`MalformedInputError` for anything that is neither bytes nor a list.
    """
    out: list[bytes] = []
    _encode_into(item, out, max_depth)
    return b"".join(out)


def _header(length: int, short_base: int) -> bytes:
    if length < 56:
        return bytes((short_base + length,))
    size = (length.bit_length() + 7) // 8
    if size > _MAX_LENGTH_OF_LENGTH:
        raise LimitExceededError("RLP payload longer than 2**64 bytes", length=length)
    return bytes((short_base + 55 + size,)) + length.to_bytes(size, "big")


def encode_bytes(value: bytes) -> bytes:
    """Encode one byte string."""
    if len(value) == 1 and value[0] < 0x80:
        return value
    return _header(len(value), 0x80) + value


def encode_list_payload(payload: bytes) -> bytes:
    """Wrap the concatenated encodings of a list's items in a list header."""
    return _header(len(payload), 0xC0) + payload


def _encode_into(item: Item, out: list[bytes], depth: int) -> None:
    if isinstance(item, bytes | bytearray):
        out.append(encode_bytes(bytes(item)))
        return
    if not isinstance(item, list | tuple):
        raise MalformedInputError("RLP item must be bytes or a list", type=type(item).__name__)
    if depth <= 0:
        raise LimitExceededError("RLP lists nest too deeply to encode")
    parts: list[bytes] = []
    for child in item:
        _encode_into(child, parts, depth - 1)
    out.append(encode_list_payload(b"".join(parts)))


def uint_bytes(value: int) -> bytes:
    """Big-endian bytes of ``value`` without leading zeros (``b""`` for zero), as RLP
    represents scalars (Yellow Paper appendix B, BE)."""
    if value < 0:
        raise MalformedInputError("RLP scalars are non-negative", value=value)
    return value.to_bytes((value.bit_length() + 7) // 8, "big")


def encode_uint(value: int) -> bytes:
    """Encode a non-negative integer as an RLP scalar."""
    return encode_bytes(uint_bytes(value))


def decode_uint(value: Item, *, what: str, max_bytes: int = 32) -> int:
    """Interpret a decoded string as a canonical scalar: at most ``max_bytes`` bytes and no
    leading zero byte (zero is the empty string). ``what`` names the field in errors."""
    if not isinstance(value, bytes):
        raise MalformedInputError("RLP scalar must be a string, not a list", field=what)
    if len(value) > max_bytes:
        raise MalformedInputError(
            "RLP scalar too long", field=what, length=len(value), limit=max_bytes
        )
    if value[:1] == b"\x00":
        raise MalformedInputError("RLP scalar has a leading zero byte", field=what)
    return int.from_bytes(value, "big")


def as_bytes(value: Item, *, what: str, length: int | None = None) -> bytes:
    """Return ``value`` if it is a string (of exactly ``length`` bytes when given)."""
    if not isinstance(value, bytes):
        raise MalformedInputError("expected an RLP string, found a list", field=what)
    if length is not None and len(value) != length:
        raise MalformedInputError(
            "RLP string has the wrong length", field=what, length=len(value), expected=length
        )
    return value


def as_list(value: Item, *, what: str, length: int | None = None) -> list[Item]:
    """Return ``value`` if it is a list (of exactly ``length`` items when given)."""
    if not isinstance(value, list):
        raise MalformedInputError("expected an RLP list, found a string", field=what)
    if length is not None and len(value) != length:
        raise MalformedInputError(
            "RLP list has the wrong number of items",
            field=what,
            items=len(value),
            expected=length,
        )
    return value


def encode_list(items: Sequence[bytes]) -> bytes:
    """Encode a flat list of byte strings (the common case, without recursion)."""
    return encode_list_payload(b"".join(encode_bytes(x) for x in items))
