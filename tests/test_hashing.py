"""Known-answer tests for the hash functions behind the Hasher protocol."""

from __future__ import annotations

import pytest

from relay.verify import hashing
from relay.verify.errors import UnsupportedError

# (hasher name, input, digest): published test values.
KNOWN = [
    ("sha256", b"abc", "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"),
    (
        "sha512",
        b"abc",
        "ddaf35a193617abacc417349ae20413112e6fa4e89a97ea20a9eeee64b55d39a"
        "2192992a274fc1a836ba3c23a3feebbd454d4423643ce80e2a9ac94fa54ca49f",
    ),
    # Keccak-256 as Ethereum uses it (original padding), not FIPS 202 SHA3-256.
    ("keccak256", b"", "c5d2460186f7233c927e7db2dcc703c0e500b653ca82273b7bfad8045d85a470"),
    ("keccak256", b"abc", "4e03657aea45a94fc7d47ba826c8d667c0d1e6e33a64a036ec44f58fa12d6c45"),
    # GM/T 0004-2012 appendix A examples.
    ("sm3", b"abc", "66c7f0f462eeedd9d1f2d46bdc10e4e24167c4875cf2f7a2297da02b8f4ba8e0"),
    ("sm3", b"abcd" * 16, "debe9ff92275b8a138604889c18e5a4d6fdb70e5387e5765293dcba39c0c5732"),
]


@pytest.mark.parametrize(("name", "data", "digest"), KNOWN)
def test_known_answers(name: str, data: bytes, digest: str) -> None:
    hasher = hashing.by_name(name)
    assert hasher.hash(data).hex() == digest
    assert hasher.digest_size == len(bytes.fromhex(digest))
    assert hasher.name == name


def test_sm3_fallback_matches_openssl() -> None:
    from cryptography.hazmat.primitives import hashes

    h = hashes.Hash(hashes.SM3())
    h.update(b"abc")
    assert h.finalize() == hashing.SM3.hash(b"abc")


def test_unknown_hash_is_a_typed_error() -> None:
    with pytest.raises(UnsupportedError, match="unknown hash algorithm"):
        hashing.by_name("md5")


@pytest.mark.parametrize("name", ["sha512_256", "blake2b_512", "blake2s_256"])
def test_optional_hashes_have_declared_sizes(name: str) -> None:
    hasher = hashing.by_name(name)
    assert len(hasher.hash(b"x")) == hasher.digest_size
