"""The relay as an operator runs it: ``relay serve`` as a real process following two
``partner_server`` processes over TLS (issue 4, "what it must show" 4, and the CLI). A
reflection client (grpcio-reflection's ProtoReflectionDescriptorDatabase, standing in for
grpcurl) lists and describes the services; ``relay health-check`` exits 0 against the
running relay and non-zero once it stopped; ``relay chains list`` and ``relay query ...``
print tables, proto JSON and evidence files that the offline checker accepts; failures are
one line with the reason and exit 1; SIGTERM drains and exits 0."""

from __future__ import annotations

import json
import signal
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest
from conftest import relay_cli as cli
from google.protobuf import json_format
from grpc_reflection.v1alpha.proto_reflection_descriptor_database import (
    ProtoReflectionDescriptorDatabase,
)

from relay.engine.evidence import RelaySigner
from relay.pb.relay.v1 import types_pb2 as pb
from relay.service.devconfig import (
    DevSetup,
    health_status,
    start_partner,
    start_relay_process,
    stop,
    wait_for_file,
    wait_serving,
    write_dev_setup,
)
from relay.testing.partners import BftPartnerChain, TlogPartnerRegistry, sample_data
from relay.verify.evidence import ChainAnchor, verify_evidence

RE_CHAIN = "cn-bj-chaoyang-realestate"
IP_CHAIN = "cn-cnipa-patents"
CASE_FLAGS = [
    "--case-court",
    "京0105",
    "--case-number",
    "(2026)京0105执1234号",
    "--case-purpose",
    "enforcement",
]


class Stack:
    def __init__(self, setup: DevSetup, descriptors: dict[str, Path], log: Path) -> None:
        self.setup = setup
        self.descriptors = descriptors
        self.log = log
        # The partners seed the same deterministic sample data as these local copies.
        self.re_data = sample_data(BftPartnerChain(RE_CHAIN, domain=pb.DOMAIN_REAL_ESTATE))
        self.ip_data = sample_data(TlogPartnerRegistry(chain_id=IP_CHAIN))

    @property
    def config(self) -> str:
        return str(self.setup.config)

    def anchors(self) -> dict[str, ChainAnchor]:
        out = {}
        for path in self.descriptors.values():
            d = json_format.Parse(path.read_text(), pb.ChainDescriptor())
            out[d.chain_id] = ChainAnchor.from_descriptor(d)
        return out

    def verify_file(self, path: Path) -> pb.Evidence:
        evidence = json_format.Parse(path.read_text(), pb.Evidence())
        signer = RelaySigner.ed25519(key_id=self.setup.key_id, seed=self.setup.signing_seed)
        report = verify_evidence(
            evidence, anchors=self.anchors(), relay_keys={self.setup.key_id: signer.relay_key()}
        )
        assert report.ok, [c for c in report.checks if not c.passed]
        return evidence


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    root = tmp_path_factory.mktemp("stack")
    setup = write_dev_setup(root / "relay")
    processes = []
    try:
        descriptors = {}
        for kind, chain in (("bft", RE_CHAIN), ("tlog", IP_CHAIN)):
            process, descriptor = start_partner(
                kind, root / kind, setup.pki, block_interval=0.5, activity=False
            )
            processes.append(process)
            descriptors[chain] = descriptor
        for process, descriptor in zip(processes, descriptors.values(), strict=True):
            wait_for_file(descriptor, timeout_s=20, process=process)
        setup = write_dev_setup(
            root / "relay",
            pki=setup.pki,
            chains=list(descriptors.values()),
            overrides={"sync": {"interval": "100ms"}},
        )
        log = root / "relay.log"
        relay = start_relay_process(setup.config, log=log, extra=["--insecure-dev"])
        processes.append(relay)
        wait_serving(setup.health_address, timeout_s=20, process=relay)
        stack = Stack(setup, descriptors, log)
        # Wait for both chains' first verified sync.
        end = time.monotonic() + 20
        while True:
            out = cli("chains", "list", "--config", stack.config, "--json")
            chains = json.loads(out.stdout).get("chains", []) if out.returncode == 0 else []
            if len(chains) == 2 and all(c["status"] == "CHAIN_STATUS_ACTIVE" for c in chains):
                break
            assert time.monotonic() < end, (out.stdout, out.stderr, log.read_text()[-2000:])
            time.sleep(0.2)
        yield stack
    finally:
        for process in reversed(processes):
            stop(process)


def test_reflection_lists_and_describes_the_api(stack: Stack) -> None:
    creds = stack.setup.client_tls().credentials()
    port = stack.setup.grpc_address.rpartition(":")[2]
    with grpc.secure_channel(f"localhost:{port}", creds) as channel:
        db = ProtoReflectionDescriptorDatabase(channel)
        services = set(db.get_services())
        assert {"relay.v1.QueryService", "relay.v1.AdminService", "grpc.health.v1.Health"} <= (
            services
        )
        file = db.FindFileContainingSymbol("relay.v1.AdminService")
        service = next(s for s in file.service if s.name == "AdminService")
        methods = {m.name: m for m in service.method}
        assert set(methods) == {
            "RegisterChain",
            "FreezeChain",
            "RecoverChain",
            "UpdateAdapterEndpoint",
            "ListChains",
            "ProposeChain",
            "ProposeEndpointUpdate",
            "ProposeRecovery",
            "ApproveProposal",
            "RejectProposal",
            "ListProposals",
        }
        assert methods["RegisterChain"].input_type == ".relay.v1.RegisterChainRequest"
        query = db.FindFileContainingSymbol("relay.v1.QueryService")
        holdings = next(
            m for s in query.service if s.name == "QueryService" for m in s.method
            if m.name == "ListHoldings"
        )  # fmt: skip
        assert holdings.server_streaming and not holdings.client_streaming
        # The message types the methods use resolve too (types.proto is a dependency).
        types = db.FindFileContainingSymbol("relay.v1.Evidence")
        evidence = next(m for m in types.message_type if m.name == "Evidence")
        assert "relay_attestation" in {f.name for f in evidence.field}


def test_health_check_exits_zero_while_serving(stack: Stack) -> None:
    out = cli("health-check", "--config", stack.config)
    assert out.returncode == 0, out.stdout + out.stderr
    assert "SERVING" in out.stdout


def test_chains_list_table_and_json(stack: Stack) -> None:
    out = cli("chains", "list", "--config", stack.config)
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    assert lines[0].split()[:4] == ["chain", "domain", "client", "status"]
    assert any(line.startswith(RE_CHAIN) and "TENDERMINT" in line for line in lines)
    assert any(line.startswith(IP_CHAIN) and "TLOG" in line for line in lines)
    out = cli("chains", "list", "--config", stack.config, "--json", "--domain", "ip")
    assert out.returncode == 0, out.stderr
    assert [c["chainId"] for c in json.loads(out.stdout)["chains"]] == [IP_CHAIN]


def test_query_ownership_table_json_and_evidence(stack: Stack, tmp_path: Path) -> None:
    asset = stack.re_data.assets[0]
    args = ["query", "ownership", "--config", stack.config, *CASE_FLAGS]
    args += ["--asset-kind", "real-estate", "--registry", asset.registry, "--id", asset.id]
    out = cli(*args, "--evidence-out", str(tmp_path / "ev.json"))
    assert out.returncode == 0, out.stderr
    assert f"chain    {RE_CHAIN}" in out.stdout
    assert "outcome  FOUND" in out.stdout
    assert f"REAL_ESTATE {asset.registry}/{asset.id}" in out.stdout
    assert "signed by relay-dev-1 (ED25519)" in out.stdout
    evidence = stack.verify_file(tmp_path / "ev.json")
    assert evidence.ownership.asset == asset

    out = cli(*args, "--json")
    assert out.returncode == 0, out.stderr
    answer: dict[str, Any] = json.loads(out.stdout)
    assert answer["outcome"] == "OUTCOME_FOUND" and answer["chainId"] == RE_CHAIN
    assert answer["record"]["asset"]["id"] == asset.id


def test_query_patent_history_and_holdings(stack: Stack, tmp_path: Path) -> None:
    patent = stack.ip_data.assets[0]
    out = cli(
        "query", "history", "--config", stack.config, *CASE_FLAGS, "--asset-kind", "patent",
        "--registry", patent.registry, "--id", patent.id, "--evidence-out",
        str(tmp_path / "history.json"),
    )  # fmt: skip
    assert out.returncode == 0, out.stderr
    assert "outcome  FOUND" in out.stdout and "REGISTRATION" in out.stdout
    stack.verify_file(tmp_path / "history.json")

    owner = next(
        p
        for p in stack.re_data.parties
        if p.kind == pb.PARTY_KIND_PERSON and p.id_type == pb.ID_TYPE_RESIDENT_ID
    )
    out = cli(
        "query", "holdings", "--config", stack.config, *CASE_FLAGS, "--party-kind", "person",
        "--id-type", "resident-id", "--id", owner.id, "--evidence-out", str(tmp_path / "h"),
    )  # fmt: skip
    assert out.returncode == 0, out.stderr
    assert f"chain    {RE_CHAIN}" in out.stdout and f"chain    {IP_CHAIN}" in out.stdout
    files = sorted((tmp_path / "h").iterdir())
    assert {f.name for f in files} >= {f"{RE_CHAIN}-index.json", f"{IP_CHAIN}-index.json"}
    for f in files:
        stack.verify_file(f)


def test_rpc_failure_is_one_line_with_reason_and_exit_1(stack: Stack) -> None:
    out = cli(
        "query", "ownership", "--config", stack.config, *CASE_FLAGS, "--asset-kind", "patent",
        "--registry", "NO-SUCH-REGISTRY", "--id", "x",
    )  # fmt: skip
    assert out.returncode == 1
    assert out.stdout == ""
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1, out.stderr
    assert lines[0].startswith("relay: NOT_FOUND [field asset.registry]: ")
    assert "NO-SUCH-REGISTRY" in lines[0]

    out = cli(
        "query", "state", "--config", stack.config, *CASE_FLAGS, "--chain", "nope",
        "--state-key", "00",
    )  # fmt: skip
    assert out.returncode == 1
    assert out.stderr.startswith("relay: NOT_FOUND [chain nope, field chain_id]: ")


def test_client_refuses_the_wrong_ca(stack: Stack, tmp_path: Path) -> None:
    from relay.testing.pki import TestCA

    rogue = tmp_path / "rogue.pem"
    rogue.write_bytes(TestCA.create("rogue").cert_pem)
    out = cli("chains", "list", "--config", stack.config, "--ca", str(rogue), "--timeout", "5")
    assert out.returncode == 1
    assert out.stderr.startswith("relay: UNAVAILABLE")
    assert "Traceback" not in out.stderr


def test_sigterm_drains_and_health_check_fails_after(tmp_path: Path) -> None:
    setup = write_dev_setup(tmp_path / "relay")
    log = tmp_path / "relay.log"
    relay = start_relay_process(setup.config, log=log, extra=["--insecure-dev"])
    try:
        wait_serving(setup.health_address, timeout_s=20, process=relay)
        out = cli("health-check", "--config", str(setup.config))
        assert out.returncode == 0, out.stdout
        relay.send_signal(signal.SIGTERM)
        assert relay.wait(15) == 0, log.read_text()
    finally:
        stop(relay)
    text = log.read_text()
    assert "shutdown requested" in text and "relay stopped" in text
    assert health_status(setup.health_address) == "UNREACHABLE"
    out = cli("health-check", "--config", str(setup.config))
    assert out.returncode == 1
    assert "not reachable" in out.stdout
