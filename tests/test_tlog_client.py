"""The transparency-log light client against logs built and signed by relay.testing.tlog:
witness quorums, clock drift, split views and freezing, recovery, many successive
checkpoints, SM3/SM2 and P-256 logs, entry inclusion and the map-root extension."""

from __future__ import annotations

import base64
import dataclasses
import random
from collections.abc import Sequence

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from relay.testing.tlog import (
    NoteSigner,
    SimulatedLog,
    ed25519_signer,
    p256_signer,
    sm2_signer,
)
from relay.verify import note
from relay.verify.errors import (
    InvalidProofError,
    MalformedInputError,
    MismatchError,
    RootMismatchError,
    VerificationError,
)
from relay.verify.lightclient import tlog
from relay.verify.lightclient.tlog import (
    ClientFrozenError,
    MissingLogSignatureError,
    QuorumNotMetError,
    RecoveryRefusedError,
    SplitViewError,
    TlogClientState,
    TlogTrustConfig,
)
from relay.verify.merkle.rfc6962 import RFC6962_SHA256, RFC6962_SM3, TreeHasher

NOW = 1_750_000_000
ORIGIN = "registry.example/land-log"


def _log(
    *,
    n: int = 5,
    signer: NoteSigner | None = None,
    witnesses: Sequence[NoteSigner] | None = None,
    hasher: TreeHasher = RFC6962_SHA256,
    entries: int = 6,
) -> SimulatedLog:
    ws = (
        [ed25519_signer(f"witness{i}.example", cosigner=True) for i in range(n)]
        if witnesses is None
        else list(witnesses)
    )
    log = SimulatedLog(ORIGIN, signer or ed25519_signer(ORIGIN), ws, hasher)
    log.append(*(b"entry %d" % i for i in range(entries)))
    return log


def _config(log: SimulatedLog, quorum: int, **kw: object) -> TlogTrustConfig:
    return TlogTrustConfig(
        origin=log.origin,
        log_key=log.log_signer.verifier(),
        hasher=log.hasher,
        witnesses=tuple(w.verifier() for w in log.witnesses),
        quorum=quorum,
        **kw,  # type: ignore[arg-type]
    )


def _client(log: SimulatedLog, quorum: int = 3, **kw: object) -> TlogClientState:
    return tlog.initialize(
        config=_config(log, quorum, **kw), anchor_note=log.checkpoint(timestamp=NOW), now=NOW
    )


def _grow(log: SimulatedLog, k: int, tag: bytes = b"new") -> None:
    log.append(*(tag + b" %d" % (log.size + i) for i in range(k)))


# --- witness quorum -------------------------------------------------------------------------


def test_quorum_met_exactly() -> None:
    log = _log()
    state = _client(log)
    old_size = log.size
    _grow(log, 3)
    cp = log.checkpoint(timestamp=NOW + 5, witnesses=log.witnesses[1:4])
    new = tlog.update(state, cp, log.consistency_proof(old_size), now=NOW + 10)
    assert new.trusted.size == log.size and new.trusted.note == cp
    assert [name for name, _ in new.trusted.cosignatures] == [
        "witness1.example",
        "witness2.example",
        "witness3.example",
    ]
    assert all(ts == NOW + 5 for _, ts in new.trusted.cosignatures)
    assert state.trusted.size == old_size  # the old state is untouched


def test_k_minus_one_witnesses_is_not_enough() -> None:
    log = _log()
    state = _client(log)
    old_size = log.size
    _grow(log, 2)
    cp = log.checkpoint(timestamp=NOW, witnesses=log.witnesses[:2])
    with pytest.raises(QuorumNotMetError) as info:
        tlog.update(state, cp, log.consistency_proof(old_size), now=NOW)
    assert (info.value.context["expected"], info.value.context["calculated"]) == (3, 2)
    assert info.value.reason == "WITNESS_QUORUM_NOT_MET"


def test_unknown_witness_does_not_count() -> None:
    log = _log()
    state = _client(log)
    old_size = log.size
    _grow(log, 2)
    stranger = ed25519_signer("stranger.example", cosigner=True)
    body = log.text()
    cp = log.checkpoint(
        timestamp=NOW, witnesses=log.witnesses[:2], extra=[stranger.sign(body, timestamp=NOW)]
    )
    with pytest.raises(QuorumNotMetError) as info:
        tlog.update(state, cp, log.consistency_proof(old_size), now=NOW)
    assert info.value.context["calculated"] == 2
    assert info.value.context["unknown_signers"] == ["stranger.example"]
    # A witness's key under another name is unknown too (name and key ID select the key).
    renamed = dataclasses.replace(log.witnesses[3], name="witness-renamed.example")
    cp = log.checkpoint(
        timestamp=NOW, witnesses=log.witnesses[:2], extra=[renamed.sign(body, timestamp=NOW)]
    )
    with pytest.raises(QuorumNotMetError):
        tlog.update(state, cp, log.consistency_proof(old_size), now=NOW)


def test_duplicate_cosignatures_from_one_witness_count_once() -> None:
    log = _log()
    state = _client(log)
    old_size = log.size
    _grow(log, 2)
    body = log.text()
    w0, w1 = log.witnesses[:2]
    identical = w0.sign(body, timestamp=NOW)
    later = w0.sign(body, timestamp=NOW + 1)  # a second, different valid cosignature
    cp = log.checkpoint(timestamp=NOW, witnesses=[w0, w1], extra=[identical, later, later])
    with pytest.raises(QuorumNotMetError) as info:
        tlog.update(state, cp, log.consistency_proof(old_size), now=NOW)
    assert info.value.context["calculated"] == 2
    assert info.value.context["cosigned"] == ["witness0.example", "witness1.example"]


def test_future_cosignatures_beyond_drift_do_not_count() -> None:
    log = _log()
    state = _client(log, max_clock_drift=60)
    old_size = log.size
    _grow(log, 1)
    body = log.text()
    on_time = [w.sign(body, timestamp=NOW) for w in log.witnesses[:2]]
    within = log.witnesses[2].sign(body, timestamp=NOW + 60)
    beyond = log.witnesses[2].sign(body, timestamp=NOW + 61)
    proof = log.consistency_proof(old_size)
    ok = note.format_note(body, [log.log_signer.sign(body), *on_time, within])
    assert tlog.update(state, ok, proof, now=NOW).trusted.size == log.size
    late = note.format_note(body, [log.log_signer.sign(body), *on_time, beyond])
    with pytest.raises(QuorumNotMetError) as info:
        tlog.update(state, late, proof, now=NOW)
    assert info.value.context["future_dated"] == ["witness2.example"]
    # The same checkpoint counts once the clock has caught up.
    assert tlog.update(state, late, proof, now=NOW + 1).trusted.size == log.size


def test_log_signature_is_required_and_checked() -> None:
    log = _log()
    state = _client(log)
    old_size = log.size
    _grow(log, 1)
    body = log.text()
    only_witnesses = note.format_note(body, [w.sign(body, timestamp=NOW) for w in log.witnesses])
    with pytest.raises(MissingLogSignatureError):
        tlog.update(state, only_witnesses, log.consistency_proof(old_size), now=NOW)
    bad = note.NoteSignature(log.log_signer.name, log.log_signer.key_id, bytes(64))
    forged = note.format_note(body, [bad, *(w.sign(body, timestamp=NOW) for w in log.witnesses)])
    with pytest.raises(note.InvalidNoteSignatureError):
        tlog.update(state, forged, log.consistency_proof(old_size), now=NOW)


def test_bad_witness_signature_rejects_the_checkpoint() -> None:
    log = _log()
    state = _client(log)
    old_size = log.size
    _grow(log, 1)
    w = log.witnesses[0]
    junk = note.NoteSignature(w.name, w.key_id, NOW.to_bytes(8, "big") + bytes(64))
    cp = log.checkpoint(timestamp=NOW, witnesses=log.witnesses[1:], extra=[junk])
    with pytest.raises(note.InvalidNoteSignatureError) as info:
        tlog.update(state, cp, log.consistency_proof(old_size), now=NOW)
    assert info.value.context["signer"] == w.name


def test_checkpoint_of_another_origin_is_refused() -> None:
    log = _log()
    state = _client(log)
    other = SimulatedLog("registry.example/other", log.log_signer, log.witnesses)
    other.append(*log.entries)
    with pytest.raises(MismatchError) as info:
        tlog.update(state, other.checkpoint(timestamp=NOW), [], now=NOW)
    assert info.value.expected == ORIGIN


# --- consistency and split views ------------------------------------------------------------


def test_many_successive_checkpoints() -> None:
    rng = random.Random(7)
    log = _log(entries=1)
    state = _client(log)
    history: list[tuple[int, bytes]] = [(log.size, log.checkpoint(timestamp=NOW))]
    for step in range(40):
        old = state.trusted.size
        _grow(log, rng.choice([0, 1, 1, 2, 3, 7, 16]))
        cp = log.checkpoint(timestamp=NOW + step)
        history.append((log.size, cp))
        state = tlog.update(state, cp, log.consistency_proof(old), now=NOW + step)
        assert state.trusted.size == log.size and not state.frozen
    assert state.trusted.root_hash == log.root()
    # Older checkpoints, with proofs from them to the trusted one, change nothing.
    for size, cp in rng.sample(history, 5):
        proof = log.consistency_proof(size, state.trusted.size)
        assert tlog.update(state, cp, proof, now=NOW + 100) is state


def _frozen_by(error: pytest.ExceptionInfo[SplitViewError], kind: str) -> TlogClientState:
    evidence = error.value.evidence
    assert evidence.kind == kind and evidence.origin == ORIGIN
    frozen = error.value.frozen_state
    assert frozen.frozen and frozen.misbehaviour == evidence
    assert frozen.frozen_reason is not None and kind in frozen.frozen_reason
    return frozen


def test_split_view_same_size_different_root_freezes() -> None:
    log = _log()
    state = _client(log)
    fork = log.fork(log.size - 1)
    fork.append(b"a different last entry")
    assert fork.size == log.size and fork.root() != log.root()
    evil = fork.checkpoint(timestamp=NOW)
    with pytest.raises(SplitViewError) as info:
        tlog.update(state, evil, [], now=NOW)
    frozen = _frozen_by(info, "same-size")
    assert info.value.evidence.trusted_note == state.trusted.note
    assert info.value.evidence.conflicting_note == evil
    assert not state.frozen  # nothing was mutated
    tlog.check_split_view_evidence(config=state.config, evidence=frozen.misbehaviour, now=NOW)  # type: ignore[arg-type]
    # Frozen: every update is refused, even a perfectly good one, and nothing is proved.
    _grow(log, 2)
    with pytest.raises(ClientFrozenError):
        tlog.update(frozen, log.checkpoint(timestamp=NOW), log.consistency_proof(6), now=NOW)
    with pytest.raises(ClientFrozenError):
        tlog.verify_entry_inclusion(
            state=frozen, leaf=log.entries[0], index=0, proof=log.inclusion_proof(0, 6)
        )


def test_split_view_inconsistent_larger_checkpoint_freezes() -> None:
    log = _log(entries=7)
    state = _client(log, freeze_on_inconsistent_proof=True)
    fork = log.fork(5)
    _grow(fork, 4, b"rewritten")
    with pytest.raises(SplitViewError) as info:
        tlog.update(state, fork.checkpoint(timestamp=NOW), fork.consistency_proof(7), now=NOW)
    frozen = _frozen_by(info, "inconsistent")
    assert frozen.trusted == state.trusted  # the trusted checkpoint stays the old one
    tlog.check_split_view_evidence(config=state.config, evidence=frozen.misbehaviour, now=NOW)  # type: ignore[arg-type]


def test_split_view_older_inconsistent_checkpoint_freezes() -> None:
    log = _log(entries=7)
    state = _client(log, freeze_on_inconsistent_proof=True)
    fork = log.fork(3)
    _grow(fork, 2, b"rewritten")
    with pytest.raises(SplitViewError) as info:
        tlog.update(state, fork.checkpoint(timestamp=NOW), log.consistency_proof(5, 7), now=NOW)
    _frozen_by(info, "inconsistent")


def test_malformed_proofs_do_not_freeze() -> None:
    log = _log(entries=7)
    state = _client(log)
    _grow(log, 5)
    cp = log.checkpoint(timestamp=NOW)
    proof = log.consistency_proof(7)
    for bad in (proof[:-1], [*proof, proof[0]], [p[:31] for p in proof], []):
        with pytest.raises((InvalidProofError, MalformedInputError)) as info:
            tlog.update(state, cp, bad, now=NOW)
        assert not isinstance(info.value, SplitViewError)
    with pytest.raises(InvalidProofError):
        tlog.update(state, log.checkpoint(7, timestamp=NOW), proof, now=NOW)  # same size
    assert tlog.update(state, cp, proof, now=NOW).trusted.size == 12


def test_failed_proofs_do_not_freeze_by_default() -> None:
    # A failing proof is not self-proving: a lying adapter could send one to freeze an
    # honest log, so by default it is refused without freezing.
    log = _log(entries=7)
    state = _client(log)
    fork = log.fork(5)
    _grow(fork, 4, b"rewritten")
    with pytest.raises(RootMismatchError) as info:
        tlog.update(state, fork.checkpoint(timestamp=NOW), fork.consistency_proof(7), now=NOW)
    assert not isinstance(info.value, SplitViewError)
    same_size = log.fork(6)
    same_size.append(b"other")
    with pytest.raises(SplitViewError):  # equal sizes, two roots: always misbehaviour
        tlog.update(state, same_size.checkpoint(timestamp=NOW), [], now=NOW)


def test_same_size_same_root_different_body_freezes() -> None:
    # Found in review: the log signs a second body for the same tree (another map-root),
    # which would let it serve two registry states for one size.
    log = _log(entries=7)
    state = _client(log)
    other = log.checkpoint(timestamp=NOW, extensions=("map-root " + "A" * 43 + "=",))
    with pytest.raises(SplitViewError) as info:
        tlog.update(state, other, [], now=NOW)
    assert info.value.frozen_state.frozen


def test_evidence_check_refuses_notes_that_do_not_conflict() -> None:
    log = _log()
    state = _client(log)
    cp = log.checkpoint(timestamp=NOW)
    fake = tlog.SplitViewEvidence(ORIGIN, "same-size", cp, cp, (), "made up")
    with pytest.raises(MismatchError):
        tlog.check_split_view_evidence(config=state.config, evidence=fake, now=NOW)
    old = log.size
    _grow(log, 3)
    honest = tlog.SplitViewEvidence(
        ORIGIN,
        "inconsistent",
        cp,
        log.checkpoint(timestamp=NOW),
        tuple(log.consistency_proof(old)),
        "",
    )
    with pytest.raises(MismatchError, match="valid consistency proof"):
        tlog.check_split_view_evidence(config=state.config, evidence=honest, now=NOW)


# --- recovery -------------------------------------------------------------------------------


def test_recovery_only_with_a_new_anchor() -> None:
    log = _log()
    state = _client(log)
    with pytest.raises(RecoveryRefusedError):
        tlog.recover(state, new_anchor=log.checkpoint(timestamp=NOW), now=NOW)
    fork = log.fork(log.size - 1)
    fork.append(b"equivocation")
    with pytest.raises(SplitViewError) as info:
        tlog.update(state, fork.checkpoint(timestamp=NOW), [], now=NOW)
    frozen = info.value.frozen_state
    # A frozen client stays frozen: no update path un-freezes it.
    with pytest.raises(ClientFrozenError):
        tlog.update(frozen, log.checkpoint(timestamp=NOW), [], now=NOW)
    # The new anchor must itself verify (here: not enough witnesses).
    _grow(log, 2)
    weak = log.checkpoint(timestamp=NOW, witnesses=log.witnesses[:1])
    with pytest.raises(QuorumNotMetError):
        tlog.recover(frozen, new_anchor=weak, now=NOW)
    recovered = tlog.recover(frozen, new_anchor=log.checkpoint(timestamp=NOW), now=NOW)
    assert not recovered.frozen and recovered.misbehaviour is None
    assert recovered.trusted.size == log.size
    old = log.size
    _grow(log, 3)
    after = tlog.update(
        recovered, log.checkpoint(timestamp=NOW), log.consistency_proof(old), now=NOW
    )
    assert after.trusted.size == log.size


def test_recovery_under_a_rotated_log_key() -> None:
    log = _log()
    state = _client(log)
    fork = log.fork(log.size - 1)
    fork.append(b"equivocation")
    with pytest.raises(SplitViewError) as info:
        tlog.update(state, fork.checkpoint(timestamp=NOW), [], now=NOW)
    rotated = SimulatedLog(ORIGIN, ed25519_signer(ORIGIN, seed="rotated"), log.witnesses)
    rotated.append(*log.entries)
    anchor = rotated.checkpoint(timestamp=NOW)
    with pytest.raises(MissingLogSignatureError):  # the old config does not know the new key
        tlog.recover(info.value.frozen_state, new_anchor=anchor, now=NOW)
    recovered = tlog.recover(
        info.value.frozen_state, new_anchor=anchor, now=NOW, config=_config(rotated, 3)
    )
    assert recovered.config.log_key.key_id == rotated.log_signer.key_id


# --- other hashes and signature schemes -----------------------------------------------------


def _run_log(log: SimulatedLog, quorum: int, steps: int = 6) -> TlogClientState:
    state = _client(log, quorum)
    for step in range(steps):
        old = state.trusted.size
        _grow(log, step + 1)
        state = tlog.update(
            state, log.checkpoint(timestamp=NOW + step), log.consistency_proof(old), now=NOW + step
        )
    assert state.trusted.root_hash == log.root()
    for index in (0, log.size // 2, log.size - 1):
        tlog.verify_entry_inclusion(
            state=state, leaf=log.entries[index], index=index, proof=log.inclusion_proof(index)
        )
    return state


def test_sm3_log_signed_with_sm2() -> None:
    witnesses = [sm2_signer(f"sm2-witness{i}.example", cosigner=True) for i in range(3)]
    log = _log(
        signer=sm2_signer(ORIGIN, signer_id=b"land-registry@example"),
        witnesses=witnesses,
        hasher=RFC6962_SM3,
    )
    state = _run_log(log, quorum=2)
    assert state.hasher is RFC6962_SM3
    assert state.config.log_key.algorithm == note.ALG_RELAY_SM2
    # Read as SHA-256, even its empty tree has the wrong root.
    sha_view = dataclasses.replace(state.config, hasher=RFC6962_SHA256)
    with pytest.raises(RootMismatchError):
        tlog.initialize(config=sha_view, anchor_note=log.checkpoint(0, timestamp=NOW), now=NOW)


def test_p256_signed_log_with_mixed_witnesses() -> None:
    witnesses = [
        p256_signer("p256-witness.example", cosigner=True),
        sm2_signer("sm2-witness.example", cosigner=True),
        ed25519_signer("ed-witness.example", cosigner=True),
    ]
    state = _run_log(_log(signer=p256_signer(ORIGIN), witnesses=witnesses), quorum=3)
    assert state.config.log_key.algorithm == note.ALG_RELAY_ECDSA_P256
    assert len(state.trusted.cosignatures) == 3


# --- entries and the map root ---------------------------------------------------------------


def test_entry_inclusion() -> None:
    log = _log(entries=13)
    state = _client(log)
    for index in range(log.size):
        cp = tlog.verify_entry_inclusion(
            state=state, leaf=log.entries[index], index=index, proof=log.inclusion_proof(index)
        )
        assert cp == state.checkpoint
    with pytest.raises(RootMismatchError):
        tlog.verify_entry_inclusion(
            state=state, leaf=b"entry 99", index=3, proof=log.inclusion_proof(3)
        )
    with pytest.raises(RootMismatchError):
        tlog.verify_entry_inclusion(
            state=state, leaf=log.entries[4], index=3, proof=log.inclusion_proof(3)
        )
    with pytest.raises(InvalidProofError):
        tlog.verify_entry_inclusion(state=state, leaf=log.entries[0], index=13, proof=[])


def test_map_root_extension_flows_through() -> None:
    log = _log()
    state = _client(log)
    map_root = bytes(range(32))
    old = log.size
    _grow(log, 2)
    ext = [f"map-root {base64.b64encode(map_root).decode()}"]
    new = tlog.update(
        state, log.checkpoint(timestamp=NOW, extensions=ext), log.consistency_proof(old), now=NOW
    )
    assert new.checkpoint.map_root == map_root
    assert new.checkpoint.extensions == tuple(ext)
    assert state.checkpoint.map_root is None
    bad = ["map-root not-base64!"]
    with pytest.raises(MalformedInputError):
        tlog.update(
            state,
            log.checkpoint(timestamp=NOW, extensions=bad),
            log.consistency_proof(old),
            now=NOW,
        )


# --- configuration and immutability ---------------------------------------------------------


def test_config_validation() -> None:
    log = _log(n=3)
    with pytest.raises(MalformedInputError):
        _config(log, 4)
    with pytest.raises(MalformedInputError):
        _config(log, -1)
    with pytest.raises(MalformedInputError):
        _config(log, 1, max_clock_drift=-1)
    plain = ed25519_signer("not-a-cosigner.example").verifier()
    with pytest.raises(MalformedInputError, match="cosignature keys"):
        dataclasses.replace(_config(log, 1), witnesses=(plain,))
    w = log.witnesses[0].verifier()
    with pytest.raises(MalformedInputError, match="distinct"):
        dataclasses.replace(_config(log, 1), witnesses=(w, w))
    with pytest.raises(MalformedInputError):
        dataclasses.replace(_config(log, 1), origin="two\nlines")
    assert _config(log, 0).quorum == 0  # an unwitnessed log is a legitimate choice


def test_states_are_immutable() -> None:
    state = _client(_log())
    with pytest.raises(dataclasses.FrozenInstanceError):
        state.frozen_reason = "tampered"  # type: ignore[misc]
    with pytest.raises(dataclasses.FrozenInstanceError):
        state.trusted.checkpoint.size = 0  # type: ignore[misc]


@pytest.mark.fuzz
@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.data())
def test_fuzz_update_never_crashes(data: st.DataObject) -> None:
    log = _FUZZ_LOG
    state = _FUZZ_STATE
    msg = bytearray(_FUZZ_NOTE)
    for _ in range(data.draw(st.integers(0, 3))):
        pos = data.draw(st.integers(0, len(msg) - 1))
        msg[pos] = data.draw(st.integers(0, 255))
    proof = data.draw(
        st.one_of(
            st.just(_FUZZ_PROOF),
            st.lists(st.binary(min_size=30, max_size=33), max_size=6),
        )
    )
    try:
        new = tlog.update(state, bytes(msg), proof, now=NOW)
    except VerificationError:
        return
    assert new.trusted.size in (state.trusted.size, log.size)


_FUZZ_LOG = _log(n=3, entries=5)
_FUZZ_STATE = _client(_FUZZ_LOG, 2)
_grow(_FUZZ_LOG, 4)
_FUZZ_NOTE = _FUZZ_LOG.checkpoint(timestamp=NOW)
_FUZZ_PROOF = _FUZZ_LOG.consistency_proof(5)
