"""Transparency-log light client: C2SP checkpoints, witness quorums, split-view detection.

Implements the client side of https://c2sp.org/tlog-checkpoint (a signed note whose text is
the origin line, the decimal tree size without leading zeros, the base64 RFC 6962 root hash,
then optional non-empty extension lines) and https://c2sp.org/tlog-cosignature (witness
``cosignature/v1`` signatures with a timestamp), on top of :mod:`relay.verify.note`, with
RFC 6962 / RFC 9162 2.1.4 consistency proofs (:mod:`relay.verify.merkle.rfc6962`) between the
trusted checkpoint and each new one.

A client trusts a log through a :class:`TlogTrustConfig` (origin, log key, tree hasher,
witness keys and a k-of-n quorum, clock drift) and one trusted checkpoint. :func:`update`
accepts a newer checkpoint only if the log signed it, at least ``quorum`` distinct known
witnesses cosigned it (cosignatures dated more than ``max_clock_drift`` seconds after ``now``
do not count) and it is consistent with the trusted one. Two log-signed, quorum-cosigned
checkpoints that conflict are a split view: the client freezes, keeps both notes as
:class:`SplitViewEvidence`, and refuses everything until :func:`recover` installs a new trust
anchor chosen by an operator. Every state is an immutable value; functions return new ones.

Extension lines are opaque except ``map-root <base64>``, the root of the registry's current-
state map (an ICS-23 sparse Merkle tree proved elsewhere); :class:`Checkpoint` exposes it.
Witnesses make no statement about extension lines (tlog-cosignature), so a map root rests on
the log's signature alone.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Sequence
from dataclasses import dataclass

from relay.verify.errors import (
    InvalidProofError,
    LimitExceededError,
    MalformedInputError,
    MismatchError,
    RootMismatchError,
    SignatureError,
    VerificationError,
)
from relay.verify.merkle.rfc6962 import MAX_TREE_SIZE, TreeHasher, verify_consistency
from relay.verify.merkle.rfc6962 import verify_inclusion as verify_rfc6962_inclusion
from relay.verify.note import (
    DEFAULT_NOTE_LIMITS,
    CosignatureVerifier,
    NoteLimits,
    NoteVerifier,
    cosignature_timestamp,
    decode_base64,
    open_note,
)

MAP_ROOT_KEYWORD = "map-root"
"""Extension line ``map-root <base64>``: the root of the registry's state map at this size."""

_SIZE = re.compile(r"0|[1-9][0-9]{0,18}")
_CONTROL = re.compile(r"[\x00-\x1f]")


# --- checkpoints -------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class CheckpointLimits:
    """Bounds on a checkpoint body, checked before anything is decoded."""

    max_text_bytes: int = 64 * 1024
    max_line_bytes: int = 4096
    max_extension_lines: int = 16
    map_root_size: int = 32


DEFAULT_CHECKPOINT_LIMITS = CheckpointLimits()


@dataclass(frozen=True, slots=True)
class Checkpoint:
    """A parsed checkpoint body. ``text`` is the exact note text that was signed."""

    origin: str
    size: int
    root_hash: bytes
    extensions: tuple[str, ...]
    map_root: bytes | None
    text: bytes


def parse_checkpoint(
    text: bytes, *, hasher: TreeHasher, limits: CheckpointLimits = DEFAULT_CHECKPOINT_LIMITS
) -> Checkpoint:
    """Parse a C2SP checkpoint body (the note text, final newline included).

    The root hash must be ``hasher.digest_size`` bytes, and the root of an empty tree must be
    ``hasher.empty_root()``. Raises :class:`LimitExceededError` / :class:`MalformedInputError`
    for anything else, :class:`RootMismatchError` for a wrong empty-tree root.
    """
    if len(text) > limits.max_text_bytes:
        raise LimitExceededError(
            "checkpoint is too large", length=len(text), limit=limits.max_text_bytes
        )
    try:
        body = text.decode("utf-8")
    except UnicodeDecodeError as e:
        raise MalformedInputError("checkpoint is not valid UTF-8", offset=e.start) from e
    if not body.endswith("\n"):
        raise MalformedInputError("checkpoint text must end with a newline")
    lines = body[:-1].split("\n")
    if len(lines) < 3:
        raise MalformedInputError("checkpoint needs origin, size and root hash lines")
    if len(lines) - 3 > limits.max_extension_lines:
        raise LimitExceededError(
            "checkpoint has too many extension lines",
            count=len(lines) - 3,
            limit=limits.max_extension_lines,
        )
    for number, line in enumerate(lines, 1):
        if not line:
            raise MalformedInputError("checkpoint lines must not be empty", line=number)
        if len(line.encode("utf-8")) > limits.max_line_bytes:
            raise LimitExceededError(
                "checkpoint line is too long", line=number, limit=limits.max_line_bytes
            )
        match = _CONTROL.search(line)
        if match is not None:
            raise MalformedInputError("checkpoint has a control character", line=number)
    origin, size_line, root_line, *extensions = lines
    if _SIZE.fullmatch(size_line) is None:
        raise MalformedInputError(
            "tree size must be ASCII decimal without leading zeros", value=size_line[:40]
        )
    size = int(size_line)
    if size >= MAX_TREE_SIZE:
        raise MalformedInputError("tree size is out of range", size=size)
    root = decode_base64(root_line, what="checkpoint root hash")
    if len(root) != hasher.digest_size:
        raise MalformedInputError(
            "root hash has the wrong length for the log's hash",
            expected=hasher.digest_size,
            calculated=len(root),
        )
    if size == 0 and root != hasher.empty_root():
        raise RootMismatchError(
            "an empty tree's root must be the hash of the empty string",
            expected=hasher.empty_root(),
            calculated=root,
        )
    return Checkpoint(origin, size, root, tuple(extensions), _map_root(extensions, limits), text)


def _map_root(extensions: Sequence[str], limits: CheckpointLimits) -> bytes | None:
    found: bytes | None = None
    for line in extensions:
        keyword, space, value = line.partition(" ")
        if keyword != MAP_ROOT_KEYWORD:
            continue
        if not space or not value:
            raise MalformedInputError("map-root extension line has no value")
        if found is not None:
            raise MalformedInputError("checkpoint has more than one map-root line")
        found = decode_base64(value, what="map-root value")
        if len(found) != limits.map_root_size:
            raise MalformedInputError(
                "map-root has the wrong length",
                expected=limits.map_root_size,
                calculated=len(found),
            )
    return found


# --- trust configuration and verified checkpoints ----------------------------------------


@dataclass(frozen=True, slots=True)
class TlogTrustConfig:
    """How one log is trusted: fixed by the chain descriptor an operator approved.

    ``witnesses`` must be cosignature keys (:class:`~relay.verify.note.CosignatureVerifier`);
    ``quorum`` is k of the n witnesses (0 disables witnessing). ``max_clock_drift`` is how
    many seconds a cosignature's timestamp may lie ahead of ``now`` and still count.
    ``freeze_on_inconsistent_proof`` also freezes when a well-formed consistency proof fails
    between two checkpoints of different sizes. It is off by default: a failing proof is not
    self-proving (a lying adapter can send one to freeze an honest log), so it is refused as
    an invalid proof instead; see :func:`update`.
    """

    origin: str
    log_key: NoteVerifier
    hasher: TreeHasher
    witnesses: tuple[NoteVerifier, ...] = ()
    quorum: int = 0
    max_clock_drift: int = 300
    freeze_on_inconsistent_proof: bool = False
    checkpoint_limits: CheckpointLimits = DEFAULT_CHECKPOINT_LIMITS
    note_limits: NoteLimits = DEFAULT_NOTE_LIMITS

    def __post_init__(self) -> None:
        object.__setattr__(self, "witnesses", tuple(self.witnesses))
        if not self.origin or "\n" in self.origin or _CONTROL.search(self.origin):
            raise MalformedInputError("origin must be one non-empty line", origin=self.origin)
        slots = {(self.log_key.name, self.log_key.key_id)}
        keys: set[bytes] = set()
        for w in self.witnesses:
            if not isinstance(w, CosignatureVerifier):
                raise MalformedInputError(
                    "witness keys must be cosignature keys (type 0x04 or a cosignature extension)",
                    witness=w.name,
                )
            if (w.name, w.key_id) in slots or w.public_key in keys:
                raise MalformedInputError(
                    "witness keys must be distinct from each other and from the log key",
                    witness=w.name,
                )
            slots.add((w.name, w.key_id))
            keys.add(w.public_key)
        if not 0 <= self.quorum <= len(self.witnesses):
            raise MalformedInputError(
                "quorum must be between 0 and the number of witnesses",
                quorum=self.quorum,
                witnesses=len(self.witnesses),
            )
        if self.max_clock_drift < 0:
            raise MalformedInputError("max_clock_drift must not be negative")


@dataclass(frozen=True, slots=True)
class VerifiedCheckpoint:
    """A checkpoint whose log signature and witness quorum verified. ``note`` is the signed
    note exactly as received; ``cosignatures`` lists the witnesses counted, with their
    timestamps."""

    checkpoint: Checkpoint
    note: bytes
    cosignatures: tuple[tuple[str, int], ...]

    @property
    def size(self) -> int:
        return self.checkpoint.size

    @property
    def root_hash(self) -> bytes:
        return self.checkpoint.root_hash


class MissingLogSignatureError(SignatureError):
    """The checkpoint carries no signature from the log's own key."""

    reason = "LOG_SIGNATURE_MISSING"


class QuorumNotMetError(SignatureError):
    """Fewer than ``quorum`` distinct known witnesses validly cosigned the checkpoint."""

    reason = "WITNESS_QUORUM_NOT_MET"


class ClientFrozenError(VerificationError):
    """The client saw a split view and refuses updates until recovered with a new anchor."""

    reason = "CLIENT_FROZEN"


class RecoveryRefusedError(VerificationError):
    """:func:`recover` was called on a client that is not frozen."""

    reason = "RECOVERY_REFUSED"


def verify_checkpoint(*, config: TlogTrustConfig, note: bytes, now: int) -> VerifiedCheckpoint:
    """Open a signed checkpoint and check the log signature, origin and witness quorum.

    ``now`` is POSIX seconds. Raises the note errors of :func:`~relay.verify.note.open_note`
    (a known key's bad signature rejects the whole note), :class:`MissingLogSignatureError`,
    :class:`MismatchError` (origin), :class:`QuorumNotMetError`, and checkpoint parse errors.
    """
    opened = open_note(
        note, verifiers=(config.log_key, *config.witnesses), limits=config.note_limits
    )
    if opened.verified_by(config.log_key) is None:
        raise MissingLogSignatureError(
            "checkpoint is not signed by the log key",
            log_key=f"{config.log_key.name}+{config.log_key.key_id:08x}",
        )
    checkpoint = parse_checkpoint(
        opened.text, hasher=config.hasher, limits=config.checkpoint_limits
    )
    if checkpoint.origin != config.origin:
        raise MismatchError(
            "checkpoint origin is not the configured log",
            expected=config.origin,
            calculated=checkpoint.origin,
        )
    counted: list[tuple[str, int]] = []
    future: list[str] = []
    for witness in config.witnesses:
        sig = opened.verified_by(witness)
        if sig is None:
            continue
        timestamp = cosignature_timestamp(sig.signature)
        if timestamp > now + config.max_clock_drift:
            future.append(witness.name)
        else:
            counted.append((witness.name, timestamp))
    if len(counted) < config.quorum:
        raise QuorumNotMetError(
            "too few witnesses cosigned the checkpoint",
            expected=config.quorum,
            calculated=len(counted),
            cosigned=[name for name, _ in counted],
            future_dated=future,
            unknown_signers=[s.name for s in opened.unverified],
            size=checkpoint.size,
        )
    return VerifiedCheckpoint(checkpoint, note, tuple(counted))


# --- client state ------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class SplitViewEvidence:
    """Two signed checkpoints of one log that cannot both be true.

    ``kind`` is ``same-size`` (equal sizes, different roots: self-proving, both notes carry
    the log's signature) or ``inconsistent`` (different sizes and the supplied consistency
    proof, kept here, fails against them).
    """

    origin: str
    kind: str
    trusted_note: bytes
    conflicting_note: bytes
    consistency_proof: tuple[bytes, ...]
    detail: str


@dataclass(frozen=True, slots=True)
class TlogClientState:
    """A log's light-client state: its trust configuration, the latest trusted checkpoint and,
    once a split view was seen, why it is frozen and the evidence."""

    config: TlogTrustConfig
    trusted: VerifiedCheckpoint
    frozen_reason: str | None = None
    misbehaviour: SplitViewEvidence | None = None

    @property
    def frozen(self) -> bool:
        return self.frozen_reason is not None

    @property
    def origin(self) -> str:
        return self.config.origin

    @property
    def hasher(self) -> TreeHasher:
        return self.config.hasher

    @property
    def log_key(self) -> NoteVerifier:
        return self.config.log_key

    @property
    def witnesses(self) -> tuple[NoteVerifier, ...]:
        return self.config.witnesses

    @property
    def quorum(self) -> int:
        return self.config.quorum

    @property
    def checkpoint(self) -> Checkpoint:
        return self.trusted.checkpoint


class SplitViewError(VerificationError):
    """A split view was detected. ``evidence`` holds both signed checkpoints and
    ``frozen_state`` is the client state to persist: frozen, with that evidence."""

    reason = "MISBEHAVIOUR"

    def __init__(
        self, message: str, *, evidence: SplitViewEvidence, frozen_state: TlogClientState
    ) -> None:
        self.evidence = evidence
        self.frozen_state = frozen_state
        super().__init__(
            message,
            origin=evidence.origin,
            kind=evidence.kind,
            trusted_size=frozen_state.trusted.size,
        )


def initialize(*, config: TlogTrustConfig, anchor_note: bytes, now: int) -> TlogClientState:
    """A client trusting ``anchor_note``, which must verify like any update (log signature,
    origin, witness quorum); an operator chose it, so no consistency proof is asked for."""
    return TlogClientState(config, verify_checkpoint(config=config, note=anchor_note, now=now))


def _freeze(
    state: TlogClientState,
    new: VerifiedCheckpoint,
    proof: tuple[bytes, ...],
    kind: str,
    detail: str,
) -> SplitViewError:
    evidence = SplitViewEvidence(state.origin, kind, state.trusted.note, new.note, proof, detail)
    frozen = dataclasses.replace(
        state, frozen_reason=f"split view ({kind}): {detail}", misbehaviour=evidence
    )
    return SplitViewError(
        "log presented a split view; client frozen until recovered with a new trust anchor",
        evidence=evidence,
        frozen_state=frozen,
    )


def _consistent(
    state: TlogClientState,
    new: VerifiedCheckpoint,
    proof: tuple[bytes, ...],
    older: Checkpoint,
    newer: Checkpoint,
) -> None:
    """Check that ``newer`` extends ``older``; freeze on a well-formed proof that fails."""
    if older.size == 0:
        if proof:
            raise InvalidProofError("a proof from the empty tree must be empty", length=len(proof))
        return
    try:
        verify_consistency(
            hasher=state.hasher,
            size1=older.size,
            size2=newer.size,
            proof=proof,
            root1=older.root_hash,
            root2=newer.root_hash,
        )
    except RootMismatchError as e:
        if not state.config.freeze_on_inconsistent_proof:
            raise
        raise _freeze(
            state,
            new,
            proof,
            "inconsistent",
            f"no append-only path from size {older.size} to size {newer.size}: {e.message}",
        ) from e


def update(
    state: TlogClientState,
    checkpoint_note: bytes,
    consistency_proof: Sequence[bytes],
    *,
    now: int,
) -> TlogClientState:
    """Return the state after ``checkpoint_note``, or raise a typed error.

    ``consistency_proof`` goes from the smaller of the trusted and new checkpoints to the
    larger (empty for equal sizes or from size 0). A larger consistent checkpoint becomes
    trusted; an equal or smaller consistent one leaves the state as it is (no rollback).

    A split view raises :class:`SplitViewError` carrying the evidence and the frozen state:
    always for equal sizes with different roots (self-proving) and, unless the config turns
    it off, for a well-formed proof that fails between different sizes. The latter is not
    self-proving: a lying adapter could send a bad proof and so freeze the client; the
    evidence keeps the proof, an honest log can refute it with the true one, and recovery is
    an operator's decision either way. Malformed proofs (wrong length or count) are refused
    without freezing. A frozen client raises :class:`ClientFrozenError`.
    """
    if state.frozen:
        raise ClientFrozenError(
            "client is frozen after a split view; recover it with a new trust anchor",
            origin=state.origin,
            frozen_reason=state.frozen_reason,
        )
    new = verify_checkpoint(config=state.config, note=checkpoint_note, now=now)
    proof = tuple(consistency_proof)
    old = state.trusted.checkpoint
    if new.size == old.size:
        if new.root_hash != old.root_hash:
            raise _freeze(state, new, proof, "same-size", f"two roots signed for size {old.size}")
        if new.checkpoint.text != old.text:
            # Same tree, different signed body: e.g. another map-root extension line for the
            # same size. Two signed statements for one size is self-proving equivocation.
            raise _freeze(
                state, new, proof, "same-size", f"two checkpoint bodies signed for size {old.size}"
            )
        if proof:
            raise InvalidProofError("proof between equal sizes must be empty", length=len(proof))
        return state
    if new.size > old.size:
        _consistent(state, new, proof, old, new.checkpoint)
        return dataclasses.replace(state, trusted=new)
    _consistent(state, new, proof, new.checkpoint, old)
    return state


def recover(
    state: TlogClientState,
    *,
    new_anchor: bytes,
    now: int,
    config: TlogTrustConfig | None = None,
) -> TlogClientState:
    """Unfreeze a frozen client by trusting ``new_anchor`` (optionally under a new config, e.g.
    a rotated log key). The anchor must verify fully; raises :class:`RecoveryRefusedError` if
    the client is not frozen."""
    if not state.frozen:
        raise RecoveryRefusedError("client is not frozen; nothing to recover", origin=state.origin)
    return initialize(config=config or state.config, anchor_note=new_anchor, now=now)


def verify_entry_inclusion(
    *, state: TlogClientState, leaf: bytes, index: int, proof: Sequence[bytes]
) -> Checkpoint:
    """Prove that ``leaf`` (the raw entry) is entry ``index`` of the trusted checkpoint's tree.

    Returns the checkpoint the proof is anchored to. Raises :class:`ClientFrozenError`, or the
    errors of :func:`~relay.verify.merkle.rfc6962.verify_inclusion`.
    """
    if state.frozen:
        raise ClientFrozenError(
            "client is frozen; it proves nothing until recovered", origin=state.origin
        )
    checkpoint = state.trusted.checkpoint
    verify_rfc6962_inclusion(
        hasher=state.hasher,
        index=index,
        size=checkpoint.size,
        leaf_hash=state.hasher.hash_leaf(leaf),
        proof=proof,
        root=checkpoint.root_hash,
    )
    return checkpoint


def check_split_view_evidence(
    *, config: TlogTrustConfig, evidence: SplitViewEvidence, now: int
) -> None:
    """Re-verify evidence offline: both notes verify under ``config`` and conflict.

    For ``same-size`` this proves the log signed two trees of one size. For ``inconsistent``
    it only shows that the recorded proof fails. Raises :class:`MismatchError` if the notes do
    not conflict as the evidence claims, or the verification errors of either note.
    """
    a = verify_checkpoint(config=config, note=evidence.trusted_note, now=now).checkpoint
    b = verify_checkpoint(config=config, note=evidence.conflicting_note, now=now).checkpoint
    if evidence.kind == "same-size":
        if a.size != b.size or a.root_hash == b.root_hash:
            raise MismatchError(
                "evidence notes are not two roots for one size",
                expected="same size, different roots",
                calculated=(a.size, b.size, a.root_hash == b.root_hash),
            )
        return
    if evidence.kind != "inconsistent" or a.size == b.size:
        raise MalformedInputError("unknown or self-contradictory evidence kind", kind=evidence.kind)
    older, newer = (a, b) if a.size < b.size else (b, a)
    try:
        verify_consistency(
            hasher=config.hasher,
            size1=older.size,
            size2=newer.size,
            proof=evidence.consistency_proof,
            root1=older.root_hash,
            root2=newer.root_hash,
        )
    except RootMismatchError:
        return
    raise MismatchError(
        "the recorded proof is a valid consistency proof: the notes do not conflict",
        expected="failing proof",
        calculated="valid proof",
    )
