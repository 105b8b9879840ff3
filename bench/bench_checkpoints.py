"""Checkpoint verification and raw signature verification throughput on one core.

Checkpoints: a C2SP checkpoint signed by an Ed25519 log key and cosigned by 3 Ed25519
witnesses, verified by ``verify_checkpoint`` (open the note, parse, count the quorum) and by a
full ``update`` (plus an RFC 6962 consistency proof); the floor is the 4 Ed25519 verifications
alone, same keys, same messages, through libsodium directly. Signatures: each scheme's
``verify`` against the library call it wraps, same key, message and signature.

Run: ``.venv/bin/python bench/bench_checkpoints.py``. Prints tables; asserts nothing.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import coincurve
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from harness import Row, print_table, rate
from nacl.signing import VerifyKey

from relay.testing.tlog import (
    P256Key,
    SimulatedLog,
    Sm2Key,
    ed25519_signer,
)
from relay.verify import note
from relay.verify.lightclient import tlog
from relay.verify.merkle.rfc6962 import RFC6962_SHA256
from relay.verify.signatures import (
    ED25519,
    EcdsaP256,
    Secp256k1,
    SignatureEncoding,
    Sm2,
    encode_der_signature,
)

NOW = 1_750_000_000
MESSAGE = b"registry.example/land-log\n1048576\nCsUYapGGPo4dkMgIAUqom/Xajj7h2fB2MPA3j2jxq2I=\n"


def checkpoint_rows() -> list[Row]:
    witnesses = [ed25519_signer(f"witness{i}.example", cosigner=True) for i in range(3)]
    origin = "registry.example/land-log"
    log = SimulatedLog(origin, ed25519_signer(origin), witnesses)
    log.append(*(b"entry %d" % i for i in range(1000)))
    config = tlog.TlogTrustConfig(
        origin=log.origin,
        log_key=log.log_signer.verifier(),
        hasher=RFC6962_SHA256,
        witnesses=tuple(w.verifier() for w in witnesses),
        quorum=3,
    )
    state = tlog.initialize(config=config, anchor_note=log.checkpoint(timestamp=NOW), now=NOW)
    log.append(*(b"entry %d" % i for i in range(1000, 1337)))
    cp = log.checkpoint(timestamp=NOW)
    proof = log.consistency_proof(1000)

    # The floor: exactly the 4 signature checks verify_checkpoint makes, nothing else.
    opened = note.open_note(cp, verifiers=[config.log_key, *config.witnesses])
    body = opened.text
    checks = []
    for signer in (log.log_signer, *witnesses):
        sig = opened.verified_by(signer.verifier())
        assert sig is not None
        if signer.cosigner:
            ts = note.cosignature_timestamp(sig.signature)
            message = note.cosignature_message(text=body, timestamp=ts)
            checks.append((VerifyKey(signer.key.public_key), message, sig.signature[8:]))
        else:
            checks.append((VerifyKey(signer.key.public_key), body, sig.signature))

    def floor() -> None:
        for key, message, signature in checks:
            key.verify(message, signature)

    def verify() -> None:
        tlog.verify_checkpoint(config=config, note=cp, now=NOW)

    def update() -> None:
        tlog.update(state, cp, proof, now=NOW)

    floor_rate = rate(floor)
    return [
        Row("verify_checkpoint, log + 3 witnesses (Ed25519)", rate(verify), floor_rate),
        Row(
            f"update 1000 -> {log.size} (+ {len(proof)}-hash consistency proof)",
            rate(update),
            floor_rate,
        ),
    ]


def signature_rows() -> list[Row]:
    rows: list[Row] = []

    ed = ed25519_signer("bench.example")
    ed_pub, ed_sig = ed.key.public_key, ed.key.sign(MESSAGE)
    ed_key = VerifyKey(ed_pub)
    rows.append(
        Row(
            "ed25519 (PyNaCl / libsodium)",
            rate(lambda: ED25519.verify(public_key=ed_pub, message=MESSAGE, signature=ed_sig)),
            rate(lambda: ed_key.verify(MESSAGE, ed_sig)),
        )
    )

    p256 = P256Key.from_seed("bench")
    p_pub, p_raw, p_der = p256.public_key, p256.sign(MESSAGE), p256.sign_der(MESSAGE)
    p_key = ec.EllipticCurvePublicKey.from_encoded_point(ec.SECP256R1(), p_pub)
    p_scheme = EcdsaP256(encoding=SignatureEncoding.RAW)
    rows.append(
        Row(
            "ecdsa-p256, raw r||s (cryptography / OpenSSL)",
            rate(lambda: p_scheme.verify(public_key=p_pub, message=MESSAGE, signature=p_raw)),
            rate(lambda: p_key.verify(p_der, MESSAGE, ec.ECDSA(hashes.SHA256()))),
        )
    )

    k1 = coincurve.PrivateKey(b"\x42" * 32)
    k_pub = k1.public_key.format()
    k_der = k1.sign(MESSAGE)
    k_scheme = Secp256k1(encoding=SignatureEncoding.DER)
    k_key = coincurve.PublicKey(k_pub)
    rows.append(
        Row(
            "secp256k1 sha256, DER (coincurve / libsecp256k1)",
            rate(lambda: k_scheme.verify(public_key=k_pub, message=MESSAGE, signature=k_der)),
            rate(lambda: k_key.verify(k_der, MESSAGE)),
        )
    )
    k_rsv = k1.sign_recoverable(MESSAGE)
    k_rsv_scheme = Secp256k1(encoding=SignatureEncoding.RSV)
    rows.append(
        Row(
            "secp256k1 sha256, r||s||v (recover + compare)",
            rate(lambda: k_rsv_scheme.verify(public_key=k_pub, message=MESSAGE, signature=k_rsv)),
            rate(lambda: k_key.verify(k_der, MESSAGE)),
        )
    )

    sm2 = Sm2Key.from_seed("bench")
    s_pub, s_raw = sm2.public_key, sm2.sign(MESSAGE)
    s_der = encode_der_signature(int.from_bytes(s_raw[:32]), int.from_bytes(s_raw[32:]))
    s_scheme = Sm2(encoding=SignatureEncoding.RAW)
    from tongsuopy.crypto import hashes as t_hashes
    from tongsuopy.crypto.asymciphers import ec as t_ec

    t_key = t_ec.EllipticCurvePublicKey.from_encoded_point(t_ec.SM2(), s_pub)
    rows.append(
        Row(
            "sm2 + SM3, default ID, raw r||s (tongsuopy / Tongsuo)",
            rate(lambda: s_scheme.verify(public_key=s_pub, message=MESSAGE, signature=s_raw)),
            rate(lambda: t_key.verify(s_der, MESSAGE, t_ec.ECDSA(t_hashes.SM3()))),
        )
    )
    return rows


def main() -> None:
    print_table(
        "Checkpoints (one core; floor = the 4 Ed25519 verifications alone, same keys and messages)",
        checkpoint_rows(),
    )
    print_table(
        "Signature schemes (one core; floor = the wrapped library's own verify, same inputs)",
        signature_rows(),
    )


if __name__ == "__main__":
    main()
