"""Raw hash throughput of the bindings we use, beside the alternatives we rejected."""

from __future__ import annotations

import hashlib
import os

from harness import Row, rate

from relay.verify import hashing

TITLE = "Hash bindings, 64-byte input (floor = SHA-256 through hashlib)"


def rows() -> list[Row]:
    data = os.urandom(64)
    floor = rate(lambda: hashlib.sha256(data).digest())
    out = [
        Row(f"{h.name} (relay.verify.hashing)", rate(lambda h=h: h.hash(data)), floor)
        for h in (hashing.SHA256, hashing.KECCAK256, hashing.SM3)
    ]
    try:
        from Crypto.Hash import keccak  # pycryptodome: a dev dependency, for this row only
    except ImportError:
        print("pycryptodome is not installed: the Keccak comparison row is left out")
    else:
        out.append(
            Row(
                "keccak256 (pycryptodome)",
                rate(lambda: keccak.new(digest_bits=256, data=data).digest()),
                floor,
            )
        )
    from cryptography.hazmat.primitives import hashes

    def sm3_cryptography() -> bytes:
        h = hashes.Hash(hashes.SM3())
        h.update(data)
        return h.finalize()

    out.append(Row("sm3 (cryptography)", rate(sm3_cryptography), floor))
    return out
