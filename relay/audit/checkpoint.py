"""Signed checkpoints of the audit log: C2SP tlog-checkpoint bodies signed as C2SP signed
notes by the relay's Ed25519 evidence key (https://c2sp.org/tlog-checkpoint,
https://c2sp.org/signed-note).

The checkpoint origin, which is also the signature's key name, is
``relay.judicial/<relay key id>/audit``; the note key ID is the signed-note one
(SHA-256(name || 0x0A || 0x01 || public key)[:4]). Anyone holding the relay key from an
anchors file verifies a checkpoint with :func:`open_checkpoint` (relay.verify.note and
relay.verify.lightclient.tlog do the work).
"""

from __future__ import annotations

import base64
from typing import Any

from relay.verify import note as note_mod
from relay.verify.errors import MalformedInputError, MismatchError, UnsupportedError
from relay.verify.evidence import RelayKey
from relay.verify.hashing import SHA256
from relay.verify.lightclient.tlog import Checkpoint, parse_checkpoint
from relay.verify.merkle.rfc6962 import TreeHasher

TREE_HASHER = TreeHasher(SHA256)
ED25519_ALGORITHM = 1  # relay.v1.SignatureAlgorithm.SIGNATURE_ALGORITHM_ED25519


def audit_origin(key_id: str) -> str:
    """The checkpoint origin (and note key name) of the relay key ``key_id``."""
    origin = f"relay.judicial/{key_id}/audit"
    if not note_mod.is_valid_name(origin):
        raise MalformedInputError(
            "relay key id cannot name an audit log (no spaces or '+')", key_id=key_id
        )
    return origin


def checkpoint_text(*, origin: str, size: int, root: bytes) -> bytes:
    """The checkpoint body: origin, size and base64 root lines."""
    return f"{origin}\n{size}\n{base64.b64encode(root).decode()}\n".encode()


def verifier_for(relay_key: RelayKey) -> note_mod.NoteVerifier:
    """The note verifier of ``relay_key``'s audit checkpoints (Ed25519 keys only)."""
    if relay_key.algorithm != ED25519_ALGORITHM:
        raise UnsupportedError(
            "audit checkpoints are signed with Ed25519 relay keys only",
            key_id=relay_key.key_id,
            algorithm=relay_key.algorithm,
        )
    return note_mod.make_verifier(
        name=audit_origin(relay_key.key_id),
        algorithm=note_mod.ALG_ED25519,
        public_key=relay_key.public_key,
    )


def sign_checkpoint(signer: Any, *, size: int, root: bytes) -> bytes:
    """The signed note of the checkpoint (size, root) by ``signer`` (relay.engine's
    RelaySigner with an Ed25519 key)."""
    key = signer.relay_key()
    verifier = verifier_for(key)
    text = checkpoint_text(origin=verifier.name, size=size, root=root)
    # RelaySigner signs raw bytes with its private half; its public API signs Evidence only.
    signature = signer._sign(text)
    return note_mod.format_note(
        text, [note_mod.NoteSignature(verifier.name, verifier.key_id, signature)]
    )


def open_checkpoint(note: bytes, *, relay_key: RelayKey) -> Checkpoint:
    """Verify ``note`` is an audit checkpoint signed by ``relay_key`` and parse it.

    Raises SignatureError (no or a bad relay signature), MalformedInputError /
    LimitExceededError (not a checkpoint), MismatchError (another log's origin)."""
    verifier = verifier_for(relay_key)
    opened = note_mod.open_note(note, verifiers=[verifier])
    checkpoint = parse_checkpoint(opened.text, hasher=TREE_HASHER)
    if checkpoint.origin != verifier.name:
        raise MismatchError(
            "checkpoint origin is not this relay's audit log",
            expected=verifier.name,
            calculated=checkpoint.origin,
        )
    return checkpoint
