"""RFC 6962 inclusion and consistency verification vs the raw hash calls they make."""

from __future__ import annotations

import hashlib
import os

from harness import Row, rate

from relay.verify.merkle import rfc6962
from relay.verify.merkle.rfc6962 import RFC6962_SHA256, RFC6962_SM3

TITLE = "RFC 6962 proofs (one core; floor = the same number of raw hash calls, same inputs)"


def _inclusion_row(name: str, hasher: rfc6962.TreeHasher, raw, target: str) -> Row:
    depth = 32
    size = 1 << depth
    index = int.from_bytes(os.urandom(4)) % size
    leaf = hasher.hash_leaf(b"entry")
    proof = [os.urandom(hasher.digest_size) for _ in range(depth)]
    root = rfc6962.root_from_inclusion_proof(
        hasher=hasher, index=index, size=size, leaf_hash=leaf, proof=proof
    )
    inputs = [b"\x01" + leaf + p for p in proof]  # same lengths as the verifier hashes

    def verify() -> None:
        rfc6962.verify_inclusion(
            hasher=hasher, index=index, size=size, leaf_hash=leaf, proof=proof, root=root
        )

    def floor() -> None:
        for data in inputs:
            raw(data)

    return Row(name, rate(verify), rate(floor), target)


def _consistency_row() -> Row:
    leaves = [RFC6962_SHA256.hash_leaf(i.to_bytes(4, "big")) for i in range(1 << 12)]
    size1, n = 2_901, len(leaves)
    proof = rfc6962.consistency_proof(hasher=RFC6962_SHA256, leaf_hashes=leaves, size1=size1)
    root1 = rfc6962.root_hash(hasher=RFC6962_SHA256, leaf_hashes=leaves[:size1])
    root2 = rfc6962.root_hash(hasher=RFC6962_SHA256, leaf_hashes=leaves)
    calls = 2 * len(proof)  # each proof hash is chained into both roots at most once
    inputs = [b"\x01" + root1 + p for p in proof] * 2

    def verify() -> None:
        rfc6962.verify_consistency(
            hasher=RFC6962_SHA256, size1=size1, size2=n, proof=proof, root1=root1, root2=root2
        )

    def floor() -> None:
        for data in inputs:
            hashlib.sha256(data).digest()

    return Row(
        f"consistency {size1}->{n} ({len(proof)} hashes, <= {calls} calls)",
        rate(verify),
        rate(floor),
    )


def rows() -> list[Row]:
    return [
        _inclusion_row(
            "inclusion depth 32, SHA-256",
            RFC6962_SHA256,
            lambda d: hashlib.sha256(d).digest(),
            ">= 60,000/s and >= 0.5 of floor",
        ),
        _inclusion_row(
            "inclusion depth 32, SM3", RFC6962_SM3, lambda d: hashlib.new("sm3", d).digest(), ""
        ),
        _consistency_row(),
    ]
