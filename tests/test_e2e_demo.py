"""Issue 6, "what it must show" 1 and 2, with real processes and real (mutual) TLS: the
reference deployments (adapters/) and the relay as child processes, as ``relay demo`` runs
them. ``relay demo --once`` exits 0 with evidence that verifies offline and leaves no
process; a bank chain switched to equivocate is frozen (CHAIN_FROZEN) while the others
answer; an adapter killed while queries run gives ADAPTER_UNAVAILABLE and recovers when
restarted; a registry whose witnesses stop cosigning is answered with the weaker
assurance (and restarts from its journal without a split view); a relay killed with
SIGKILL resumes with its chains and trust, nothing lost or doubled."""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import grpc

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
                partner.adapter.kill()  # SIGKILL while queries are in flight
                until("ADAPTER_UNAVAILABLE", lambda: "ADAPTER_UNAVAILABLE" in reasons)
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
            partner.adapter.kill()
            partner.restart_adapter()
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
