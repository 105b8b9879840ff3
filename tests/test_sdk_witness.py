"""The witness protocol of the log registry (relay.sdk.witness client, adapters.witness
server): a witness cosigns only checkpoints signed by the log and consistent with what it
cosigned before, tells a log that is behind which size it knows (409), refuses a rewritten
history, and persists its view across restarts."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from http.server import ThreadingHTTPServer
from pathlib import Path

import pytest

from adapters.witness import Witness, _handler, make_signer
from relay.sdk.witness import WitnessClient, add_checkpoint_body, parse_add_checkpoint
from relay.testing.partners import TlogPartnerRegistry, encode_entry
from relay.testing.tlog import SimulatedLog, ed25519_signer
from relay.verify import note

ORIGIN = "example.cn/test-log"
LOG_SEED = f"{ORIGIN}/log"  # as TlogPartnerRegistry derives its log key


def make_log() -> SimulatedLog:
    return SimulatedLog(ORIGIN, ed25519_signer(ORIGIN, seed=LOG_SEED), ())


def witness(state: Path) -> Witness:
    return Witness(
        signer=make_signer("w1.example.cn", seed="w1", sig="ed25519"),
        log_vkey=ed25519_signer(ORIGIN, seed=LOG_SEED).vkey,
        origin=ORIGIN,
        hash="sha256",
        state=state,
    )


@pytest.fixture
def served(tmp_path: Path) -> Iterator[tuple[Witness, str]]:
    w = witness(tmp_path)
    server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(w))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield w, f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def test_body_round_trips() -> None:
    body = add_checkpoint_body(old_size=5, proof=[b"\x01" * 32, b"\x02" * 32], checkpoint=b"x\n")
    assert parse_add_checkpoint(body) == (5, [b"\x01" * 32, b"\x02" * 32], b"x\n")
    for bad in (b"old x\n\nc", b"new 1\n\nc", b"old 1\nnot base64!\n\nc", b"old 1\n"):
        with pytest.raises(ValueError):
            parse_add_checkpoint(bad)


def test_witness_cosigns_consistent_checkpoints_and_refuses_forks(tmp_path: Path) -> None:
    w = witness(tmp_path)
    log = make_log()
    log.append(b"a", b"b", b"c")
    first = log.checkpoint(timestamp=0)
    status, line = w.add_checkpoint(add_checkpoint_body(old_size=0, proof=[], checkpoint=first))
    assert status == 200
    opened = note.open_note(first + line, verifiers=[w.signer.verifier()])
    assert [s.name for s in opened.verified] == ["w1.example.cn"]
    # Behind: the log claims the witness knows size 0; the witness says 3.
    log.append(b"d")
    second = log.checkpoint(timestamp=0)
    assert w.add_checkpoint(add_checkpoint_body(old_size=0, proof=[], checkpoint=second)) == (
        409,
        b"3\n",
    )
    good = add_checkpoint_body(old_size=3, proof=log.consistency_proof(3, 4), checkpoint=second)
    assert w.add_checkpoint(good)[0] == 200
    # A rewritten history (a fork of size 5 that does not extend size 4) is refused.
    fork = log.fork(2)
    fork.append(b"X", b"Y", b"Z")
    forked = fork.checkpoint(timestamp=0)
    bad = add_checkpoint_body(old_size=4, proof=log.consistency_proof(4, 4), checkpoint=forked)
    assert w.add_checkpoint(bad)[0] in (400, 403)
    # Not signed by the log key: refused.
    other = SimulatedLog(ORIGIN, ed25519_signer(ORIGIN, seed="impostor"), ())
    other.append(b"a")
    assert (
        w.add_checkpoint(
            add_checkpoint_body(old_size=4, proof=[], checkpoint=other.checkpoint(timestamp=0))
        )[0]
        == 403
    )
    # The view survives a restart.
    assert witness(tmp_path).size == 4


def test_registry_publishes_with_remote_cosignatures(served: tuple[Witness, str]) -> None:
    w, url = served
    client = WitnessClient(w.signer.vkey, url)
    registry = TlogPartnerRegistry(ORIGIN, quorum=1, remote_witnesses=[client])
    for i in range(3):
        registry.put_raw(b"key-%d" % i, b"value")
        size = registry.commit(timestamp=1_800_000_000)
        opened = note.open_note(
            registry.checkpoint(size), verifiers=[client.verifier(), registry.log_signer.verifier()]
        )
        assert {s.name for s in opened.verified} == {ORIGIN, "w1.example.cn"}
    assert w.size == registry.log.size
    assert registry.descriptor().tlog.witness_verifier_keys == [w.signer.vkey]


def test_unreachable_witness_leaves_the_checkpoint_uncosigned() -> None:
    signer = make_signer("w2.example.cn", seed="w2", sig="ed25519")
    client = WitnessClient(signer.vkey, "http://127.0.0.1:9", timeout_s=0.5)
    registry = TlogPartnerRegistry(ORIGIN, quorum=1, remote_witnesses=[client])
    registry.put_raw(encode_entry(b"k", b"v"), b"v")
    size = registry.commit(timestamp=1_800_000_000)
    opened = note.open_note(registry.checkpoint(size), verifiers=[registry.log_signer.verifier()])
    assert [s.name for s in opened.verified] == [ORIGIN]
    assert not opened.unverified
