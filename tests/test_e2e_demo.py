"""Issue 6, "what it must show" 1 and 2, with real processes and real (mutual) TLS: the
reference deployments (adapters/) and the relay as child processes, as ``relay demo`` runs
them. ``relay demo --once`` exits 0 with evidence that verifies offline and leaves no
process; a bank chain switched to equivocate is frozen (CHAIN_FROZEN) while the others
answer; an adapter killed while queries run gives ADAPTER_UNAVAILABLE and recovers when
restarted, while its chain node (a separate process) keeps producing blocks; a registry
whose witnesses stop cosigning is answered with the weaker assurance (and its node restarts
from its journal without a split view); a relay killed with
SIGKILL resumes with its chains and trust, nothing lost or doubled.

Issue 7 on the same demo run: every query of the court session is in the audit log, with a
court's inclusion proof; the export verifies, and deleting or editing one row of the audit
table (the relay stopped) is caught by ``relay audit verify`` on a fresh export and by the
next start's check and checkpoint; the checkpoints are on the judicial chain process,
restarted from its journal, with proofs that verify from its trust anchor."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import shutil
import sqlite3
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest

from relay.demo import CASE, Demo, choose
from relay.pb.relay.v1 import query_pb2 as q
from relay.pb.relay.v1 import query_pb2_grpc
from relay.pb.relay.v1 import types_pb2 as pb
from relay.service.errors import describe_rpc_error
from relay.verify.evidence import verify_evidence

CASE_REF = pb.CaseRef(purpose=pb.CASE_PURPOSE_INVESTIGATION, **CASE)  # type: ignore[arg-type]


@contextlib.contextmanager
def running(tmp_path: Path, names: tuple[str, ...]) -> Iterator[Demo]:
    demo = Demo(tmp_path / "demo", block_interval=0.5)
    try:
        demo.start(lambda text: None, names=names)
        demo.wait_synced(timeout_s=60)
        yield demo
    finally:
        demo.stop()
    assert not [c for c in demo.children() if c.running]


def stub(demo: Demo) -> tuple[Any, Any]:
    channel = demo.channel()
    return channel, query_pb2_grpc.QueryServiceStub(channel)  # type: ignore[no-untyped-call]


def until(what: str, check: Callable[[], Any], *, timeout_s: float = 30.0) -> Any:
    end = time.monotonic() + timeout_s
    last: Any = None
    while time.monotonic() < end:
        last = check()
        if last:
            return last
        time.sleep(0.2)
    raise AssertionError(f"{what} not reached within {timeout_s} s (last: {last!r})")


def reason_of(call: Callable[[], Any]) -> str:
    """ "" when the call succeeds, else the relay's ErrorInfo reason."""
    try:
        call()
    except grpc.RpcError as e:
        return describe_rpc_error(e).reason or e.code().name
    return ""


def node_height(url: str) -> int:
    """The newest height a BFT partner node reports on its own RPC (``/status``)."""
    with urllib.request.urlopen(url + "/status", timeout=5) as answer:
        return int(json.loads(answer.read())["result"]["sync_info"]["latest_block_height"])


def check(demo: Demo, evidence: pb.Evidence) -> None:
    anchors = demo.anchors()
    report = verify_evidence(evidence, anchors=anchors.anchors, relay_keys=dict(anchors.relay_keys))
    assert report.ok, [c for c in report.checks if not c.passed]


def children_with(marker: str) -> list[int]:
    """Processes whose command line mentions ``marker`` (our output folder)."""
    found = []
    for pid in os.listdir("/proc"):
        if not pid.isdigit() or int(pid) == os.getpid():
            continue
        with contextlib.suppress(OSError):
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ")
            if marker.encode() in cmdline and b"pytest" not in cmdline:
                found.append(int(pid))
    return found


def test_relay_demo_once_exits_zero_with_verifiable_evidence(tmp_path: Path) -> None:
    out = tmp_path / "out"
    started = time.monotonic()
    run = subprocess.run(
        [sys.executable, "-m", "relay.cli", "demo", "--once", "--out", str(out)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    assert time.monotonic() - started < 120
    text = run.stdout
    for heading in ("1. Who owns flat", "2. What does debtor", "3. Is ", "4.1 ", "5. "):
        assert heading in text, text[-3000:]
    assert "NONE_PROVEN" in text  # the debtor holds nothing in one system, and it is proven
    assert "FAILED offline" not in text
    assert "verification page on https://localhost:" in text  # issue 5: TLS on every port
    files = sorted((out / "evidence").glob("*.json"))
    summary = json.loads((out / "summary.json").read_text())
    assert summary["evidence_files"] == len(files) >= 8
    assert summary["failed_offline_checks"] == 0
    # The court's own check, with only the anchors file (relay verify).
    verify = subprocess.run(
        [sys.executable, "-m", "relay.cli", "verify", "--anchors", str(out / "anchors.yaml")]
        + [str(f) for f in files],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert verify.returncode == 0, verify.stdout[-2000:] + verify.stderr[-2000:]
    assert not children_with(str(out)), "relay demo left processes behind"
    audit = summary["audit"]
    assert audit["problems"] == []
    assert audit["recorded_queries"] == audit["session_queries"] >= 5
    assert audit["inclusion_proofs_verified"] == audit["session_queries"]
    assert audit["evidence_digests_recorded"] == audit["evidence_digests"] == len(files)
    assert audit["export_verified"] and audit["judicial_height"] > 0
    assert "audit log verified" in text and "is on the judicial chain" in text
    _checkpoints_on_the_restarted_judicial_chain(out, audit)
    _tampered_audit_rows_are_detected(out)


def _relay_signer(out: Path) -> Any:
    from relay.config import load_config, load_signing_key
    from relay.service.app import make_signer

    return make_signer(load_signing_key(load_config(out / "run" / "relay" / "relay.yaml")))


def _checkpoints_on_the_restarted_judicial_chain(out: Path, audit: dict[str, Any]) -> None:
    """The judicial chain process, restarted from its journal, holds the relay's
    checkpoints; each one read back verifies from the chain's trust anchor."""
    from google.protobuf import json_format

    from relay.audit.sink import NotPublishedError, read_published_checkpoint, relay_vkey
    from relay.service.client import ClientTls

    run, pki = out / "run", out / "run" / "pki"
    relay_key = _relay_signer(out).relay_key()
    descriptor_file = run / "judicial" / "restarted.json"
    args = ["-m", "adapters.judicial", "--state", str(run / "judicial" / "state")]
    args += ["--listen", "127.0.0.1:0", "--server-name", "localhost", "--block-interval", "0"]
    args += ["--tls-cert", str(pki / "relay.pem"), "--tls-key", str(pki / "relay.key")]
    args += ["--tls-ca", str(pki / "ca.pem"), "--tls-client-ca", str(pki / "ca.pem")]
    args += ["--relay-vkey", relay_vkey(relay_key)]
    judicial = subprocess.Popen(
        [sys.executable, *args, "--descriptor-out", str(descriptor_file)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        until("judicial chain restarted", descriptor_file.exists, timeout_s=30)
        descriptor = json_format.Parse(descriptor_file.read_text(), pb.ChainDescriptor())
        tls = ClientTls.from_files(
            ca=pki / "ca.pem", cert=pki / "court-bj-chaoyang.pem", key=pki / "court-bj-chaoyang.key"
        )
        lines = [json.loads(line) for line in (out / "audit-export.jsonl").read_text().splitlines()]
        exported = [line["checkpoint"] for line in lines if "checkpoint" in line]
        sizes = [c["size"] for c in exported]
        assert audit["checkpoint_size"] in sizes
        for size in sizes:
            try:
                got = asyncio.run(
                    read_published_checkpoint(
                        descriptor=descriptor, size=size, relay_key=relay_key, tls=tls
                    )
                )
            except NotPublishedError:
                # Only the relay's last checkpoint, signed as it stopped, may have missed the
                # judicial chain (publication gets a bounded time at stop; the relay's next
                # start sends it).
                assert size == sizes[-1] > audit["checkpoint_size"]
                continue
            assert (got.size, got.note.decode()) == (
                size,
                exported[sizes.index(size)]["note"],
            )
    finally:
        judicial.terminate()
        judicial.wait(10)


def _tampered_audit_rows_are_detected(out: Path) -> None:
    """One row of the audit table deleted, or edited, in the stopped relay's database: a
    fresh export fails ``relay audit verify`` naming the check, and the next start finds it
    and refuses to sign a checkpoint over it."""
    from relay.audit.export import AuditCheckFailed, build_export, read_sqlite, verify_export
    from relay.audit.log import AuditIntegrityError, AuditLog
    from relay.cli import main
    from relay.store import SQLiteStore

    config = out / "run" / "relay" / "relay.yaml"
    db = out / "run" / "relay" / "relay.db"
    anchors = out / "anchors.yaml"
    signer = _relay_signer(out)
    session = [
        i for i, leaf in enumerate(read_sqlite(db)[0]) if CASE["case_number"].encode() in leaf.entry
    ]
    assert session
    row = session[len(session) // 2]

    def copy(name: str) -> Path:
        target = out / name
        with (
            contextlib.closing(sqlite3.connect(db)) as src,
            contextlib.closing(sqlite3.connect(target)) as dst,
        ):
            src.backup(dst)
        return target

    def execute(path: Path, sql: str, *args: Any) -> None:
        with contextlib.closing(sqlite3.connect(path)) as conn, conn:
            assert conn.execute(sql, args).rowcount == 1

    async def next_start(path: Path) -> None:
        store = await SQLiteStore.open(path)
        try:
            audit = await AuditLog.open(store=store, signer=signer)
            assert audit.integrity_error is not None
            before = await store.audit_checkpoints()
            with pytest.raises(AuditIntegrityError):
                await audit.checkpoint()
            assert await store.audit_checkpoints() == before
            await audit.close()
        finally:
            await store.close()

    edited, rehashed = copy("edited.db"), copy("rehashed.db")
    entry = read_sqlite(db)[0][row].entry
    forged = entry.replace(CASE["case_number"].encode(), "(2026)京0105执9999号".encode())
    execute(edited, "UPDATE audit_leaves SET entry = ? WHERE idx = ?", forged, row)
    from relay.audit.checkpoint import TREE_HASHER

    execute(
        rehashed,
        "UPDATE audit_leaves SET entry = ?, leaf_hash = ? WHERE idx = ?",
        forged,
        TREE_HASHER.hash_leaf(forged),
        row,
    )
    for path, check in ((edited, "leaf hash"), (rehashed, "checkpoint root")):
        leaves, checkpoints = read_sqlite(path)
        doc = build_export(relay_key=signer.relay_key(), leaves=leaves, checkpoints=checkpoints)
        with pytest.raises(AuditCheckFailed) as failed:
            verify_export(json.dumps(doc).encode(), relay_key=signer.relay_key())
        assert failed.value.check == check
        asyncio.run(next_start(path))
    # Deleted, in the relay's own database, through the commands an auditor runs.
    shutil.copy(out / "audit-export.jsonl", out / "audit-export.before.jsonl")
    execute(db, "DELETE FROM audit_leaves WHERE idx = ?", row)
    export = out / "audit-export.after.jsonl"
    assert main(["audit", "export", "--config", str(config), "--out", str(export)]) == 0
    verify = subprocess.run(
        [
            sys.executable,
            "-m",
            "relay.cli",
            "audit",
            "verify",
            "--export",
            str(export),
            "--anchors",
            str(anchors),
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert verify.returncode == 1, verify.stdout + verify.stderr
    assert f"leaf {row} is missing" in verify.stdout
    asyncio.run(next_start(db))


def test_equivocating_bank_is_frozen_while_others_answer(tmp_path: Path) -> None:
    with running(tmp_path, ("realestate", "bank")) as demo:
        picks = choose(demo.launch.DEPLOYMENTS)
        account = q.GetAccountRequest(account=picks.accounts[0], case_ref=CASE_REF)
        flat = q.GetOwnershipRequest(asset=picks.flat, case_ref=CASE_REF)
        channel, relay = stub(demo)
        with channel:
            assert reason_of(lambda: relay.GetAccount(account, timeout=10)) == ""
            demo.partners["bank"].set_faults(equivocate=True)
            until(
                "bank frozen",
                lambda: reason_of(lambda: relay.GetAccount(account, timeout=10)) == "CHAIN_FROZEN",
            )
            own = relay.GetOwnership(flat, timeout=10)
            assert own.outcome == pb.OUTCOME_FOUND
            check(demo, own.evidence)
            bank = relay.GetChain(q.GetChainRequest(chain_id="cn-icbc-bj-accounts"), timeout=10)
            assert bank.chain.status == pb.CHAIN_STATUS_FROZEN
            assert bank.chain.status_reason == pb.MISBEHAVIOUR_DETECTED


def test_adapter_killed_mid_query_is_unavailable_then_recovers(tmp_path: Path) -> None:
    with running(tmp_path, ("realestate",)) as demo:
        picks = choose(demo.launch.DEPLOYMENTS)
        flat = q.GetOwnershipRequest(asset=picks.flat, case_ref=CASE_REF)
        channel, relay = stub(demo)
        reasons: list[str] = []
        stop = threading.Event()

        def ask() -> None:
            while not stop.is_set():
                reasons.append(reason_of(lambda: relay.GetOwnership(flat, timeout=15)))
                time.sleep(0.05)  # a court's pace, within the relay's rate limit

        with channel:
            worker = threading.Thread(target=ask)
            worker.start()
            try:
                until("queries answered", lambda: reasons.count("") >= 3)
                partner = demo.partners["realestate"]
                before = node_height(partner.node_url)
                partner.adapter.kill()  # SIGKILL while queries are in flight
                until("ADAPTER_UNAVAILABLE", lambda: "ADAPTER_UNAVAILABLE" in reasons)
                # The partner's node is another process: it goes on making blocks.
                until("node producing", lambda: node_height(partner.node_url) > before + 1)
                assert partner.node.running
                partner.restart_adapter()
                answered = len(reasons)
                until("recovered", lambda: "" in reasons[answered:])
            finally:
                stop.set()
                worker.join(30)
            assert set(reasons) <= {"", "ADAPTER_UNAVAILABLE"}, set(reasons)
            own = relay.GetOwnership(flat, timeout=10)
            assert own.outcome == pb.OUTCOME_FOUND
            check(demo, own.evidence)


def test_registry_without_witness_cosignatures_has_weaker_assurance(tmp_path: Path) -> None:
    with running(tmp_path, ("ip",)) as demo:
        picks = choose(demo.launch.DEPLOYMENTS)
        history = q.GetHistoryRequest(asset=picks.patent, case_ref=CASE_REF)
        chain = q.GetChainRequest(chain_id="cn-cnipa-patents")
        channel, relay = stub(demo)
        with channel:
            before = relay.GetHistory(history, timeout=10)
            assert before.evidence.assurance == pb.ASSURANCE_FULL
            assert relay.GetChain(chain, timeout=10).chain.assurance == pb.ASSURANCE_FULL
            for witness in demo.partners["ip"].witnesses:
                witness.kill()  # witnesses gone: checkpoints go on, uncosigned
            until(
                "weaker chain assurance",
                lambda: (
                    relay.GetChain(chain, timeout=10).chain.assurance
                    == pb.ASSURANCE_WITNESS_QUORUM_UNMET
                ),
            )
            after = relay.GetHistory(history, timeout=10)
            assert after.outcome == pb.OUTCOME_FOUND
            assert after.evidence.assurance == pb.ASSURANCE_WITNESS_QUORUM_UNMET
            check(demo, after.evidence)
            check(demo, before.evidence)
            # The registry restarts from its journal and serves the checkpoints it published
            # (cosigned or not) byte for byte: the relay sees no split view.
            partner = demo.partners["ip"]
            partner.node.kill()
            partner.restart_node()  # the adapter stays up and reads the restarted node
            again = until(
                "answers after the registry restarted",
                lambda: reason_of(lambda: relay.GetHistory(history, timeout=10)) == "",
            )
            assert again
            info = relay.GetChain(chain, timeout=10).chain
            assert info.status == pb.CHAIN_STATUS_ACTIVE, info.status_message


def test_relay_sigkilled_resumes_without_lost_or_duplicated_state(tmp_path: Path) -> None:
    with running(tmp_path, ("realestate", "ip")) as demo:
        picks = choose(demo.launch.DEPLOYMENTS)
        flat = q.GetOwnershipRequest(asset=picks.flat, case_ref=CASE_REF)
        channel, relay = stub(demo)
        with channel:
            before = {c.chain_id: c for c in relay.ListChains(q.ListChainsRequest()).chains}
            old = relay.GetOwnership(flat, timeout=10)
            check(demo, old.evidence)
        demo.relay.kill()
        demo.start_relay()
        demo.wait_synced(timeout_s=30)
        channel, relay = stub(demo)
        with channel:
            after = [c for c in relay.ListChains(q.ListChainsRequest()).chains]
            assert sorted(c.chain_id for c in after) == sorted(before)  # none lost or doubled
            for info in after:
                assert info.status == pb.CHAIN_STATUS_ACTIVE
                assert info.anchor_height == before[info.chain_id].anchor_height
                assert info.trusted_height >= before[info.chain_id].trusted_height
            new = relay.GetOwnership(flat, timeout=10)
            assert new.outcome == pb.OUTCOME_FOUND
            assert new.record == old.record
            check(demo, new.evidence)
            check(demo, old.evidence)  # evidence from before the crash still verifies
            # The raw query kind too: GetState of the flat's schema-1 key.
            from relay.verify import records

            state = relay.GetState(
                q.GetStateRequest(
                    chain_id="cn-bj-chaoyang-realestate",
                    key=records.ownership_key(picks.flat),
                    case_ref=CASE_REF,
                ),
                timeout=10,
            )
            assert state.outcome == pb.OUTCOME_FOUND
            check(demo, state.evidence)
