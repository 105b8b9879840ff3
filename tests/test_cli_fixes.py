"""CLI defects found by a fresh-clone review, each checked with the real ``relay`` command:
a multi-chain answer with a FAILED chain exits 1 (UNPROVEN stays 0 and says what it means);
unusable input files of ``relay admin propose`` and ``--evidence-out`` are usage errors naming
the flag and the file; ``relay admin freeze`` / ``recover`` against a live relay; the CLI and
``relay verify`` count trust-path hops alike; TLS set-up mistakes name their cause; and an
anchors file without the export's relay key fails ``relay audit verify`` as a check (exit 1).
"""

from __future__ import annotations

import json
import re
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml
from conftest import relay_cli as cli
from google.protobuf import json_format

from relay import cli as relay_cli
from relay.engine.evidence import RelaySigner
from relay.pb.relay.v1 import query_pb2
from relay.pb.relay.v1 import types_pb2 as pb
from relay.service import render
from relay.service.devconfig import (
    DevSetup,
    free_port,
    start_partner,
    start_relay_process,
    stop,
    wait_for_file,
    wait_serving,
    write_dev_setup,
)
from relay.testing.partners import BftPartnerChain, sample_data
from relay.verify.anchors import anchor_set, dump_anchors

RE_CHAIN = "cn-bj-chaoyang-realestate"
IP_CHAIN = "cn-cnipa-patents"
CASE = [
    "--case-court",
    "京0105",
    "--case-number",
    "(2026)京0105执1234号",
    "--case-purpose",
    "enforcement",
]
PARTNER_CODE = "11110105MB0000001X"  # partner-realestate in relay.testing.pki


# ------------------------------------------------------------------------ a live relay


@dataclass
class Partner:
    kind: str
    directory: Path
    port: int
    process: subprocess.Popen[bytes]

    @property
    def descriptor(self) -> Path:
        return self.directory / "descriptor.json"


class Stack:
    """A relay (TLS, --insecure-dev: no access section) following a BFT and a log partner,
    each on a fixed port so it can be stopped and started again with the same endpoint."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.partners: dict[str, Partner] = {}
        self.relay: subprocess.Popen[bytes] | None = None
        self.setup: DevSetup = write_dev_setup(root / "relay")

    @property
    def config(self) -> str:
        return str(self.setup.config)

    def start_partner(self, kind: str) -> Partner:
        old = self.partners.get(kind)
        directory = self.root / kind
        port = old.port if old else free_port()
        (directory / "descriptor.json").unlink(missing_ok=True)
        process, descriptor = start_partner(
            kind,
            directory,
            self.setup.pki,
            block_interval=0.3,
            activity=False,
            extra=["--listen", f"127.0.0.1:{port}"],  # the last --listen wins
        )
        partner = Partner(kind, directory, port, process)
        self.partners[kind] = partner
        wait_for_file(descriptor, timeout_s=30, process=process)
        return partner

    def stop_partner(self, kind: str) -> None:
        stop(self.partners[kind].process)

    def status(self, chain_id: str) -> str:
        out = cli("chains", "list", "--config", self.config, "--json")
        assert out.returncode == 0, out.stderr
        for chain in json.loads(out.stdout).get("chains", []):
            if chain["chainId"] == chain_id:
                return str(chain["status"]).removeprefix("CHAIN_STATUS_")
        raise AssertionError(f"{chain_id} not listed: {out.stdout}")

    def wait_status(self, chain_id: str, status: str, *, timeout_s: float = 30) -> None:
        end = time.monotonic() + timeout_s
        while (now := self.status(chain_id)) != status:
            assert time.monotonic() < end, f"{chain_id} is {now}, not {status}"
            time.sleep(0.2)

    def anchors_file(self, path: Path, *, key_id: str | None = None) -> Path:
        """An anchors file of the partners' current descriptors and the relay's public key
        (or a different relay key ``key_id``)."""
        descriptors = [
            json_format.Parse(p.descriptor.read_text(), pb.ChainDescriptor())
            for p in self.partners.values()
        ]
        signer = RelaySigner.ed25519(
            key_id=key_id or self.setup.key_id,
            seed=self.setup.signing_seed if key_id is None else b"\x07" * 32,
        )
        path.write_text(dump_anchors(anchor_set(descriptors, relay_keys=[signer.relay_key()])))
        return path


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    stack = Stack(tmp_path_factory.mktemp("cli-fixes"))
    try:
        for kind in ("bft", "tlog"):
            stack.start_partner(kind)
        stack.setup = write_dev_setup(
            stack.root / "relay",
            pki=stack.setup.pki,
            chains=[p.descriptor for p in stack.partners.values()],
            overrides={"sync": {"interval": "100ms"}},
        )
        stack.relay = start_relay_process(
            stack.setup.config, log=stack.root / "relay.log", extra=["--insecure-dev"]
        )
        wait_serving(stack.setup.health_address, timeout_s=30, process=stack.relay)
        for chain in (RE_CHAIN, IP_CHAIN):
            stack.wait_status(chain, "ACTIVE")
        yield stack
    finally:
        if stack.relay is not None:
            stop(stack.relay)
        for partner in stack.partners.values():
            stop(partner.process)


def _owner_id() -> str:
    data = sample_data(BftPartnerChain(RE_CHAIN, domain=pb.DOMAIN_REAL_ESTATE))
    return next(
        p.id
        for p in data.parties
        if p.kind == pb.PARTY_KIND_PERSON and p.id_type == pb.ID_TYPE_RESIDENT_ID
    )


def _ownership_args(stack: Stack) -> list[str]:
    asset = sample_data(BftPartnerChain(RE_CHAIN, domain=pb.DOMAIN_REAL_ESTATE)).assets[0]
    return [
        "query", "ownership", "--config", stack.config, *CASE, "--asset-kind", "real-estate",
        "--registry", asset.registry, "--id", asset.id,
    ]  # fmt: skip


# ------------------------------------------------------------- 1. FAILED chains exit 1


def test_holdings_with_an_adapter_down_exits_1(stack: Stack) -> None:
    args = ["query", "holdings", "--config", stack.config, *CASE, "--id", _owner_id()]
    healthy = cli(*args)
    assert healthy.returncode == 0, healthy.stderr
    assert "FAILED" not in healthy.stdout
    stack.stop_partner("tlog")
    try:
        end = time.monotonic() + 30
        while True:  # the relay notices within its adapter deadline
            out = cli(*args)
            if "FAILED ADAPTER_UNAVAILABLE" in out.stdout:
                break
            assert time.monotonic() < end, (out.stdout, out.stderr)
            time.sleep(0.3)
        assert out.returncode == 1, out.stdout + out.stderr
        assert f"chain    {RE_CHAIN}" in out.stdout and "outcome  FOUND" in out.stdout
        assert f"1 of 2 chain(s) FAILED: {IP_CHAIN} (ADAPTER_UNAVAILABLE)" in out.stderr
        assert "Traceback" not in out.stderr
        as_json = cli(*args, "--json")
        assert as_json.returncode == 1, as_json.stderr
        outcomes = {a["chainId"]: a["outcome"] for a in json.loads(as_json.stdout)}
        assert outcomes == {RE_CHAIN: "OUTCOME_FOUND", IP_CHAIN: "OUTCOME_FAILED"}
    finally:
        stack.start_partner("tlog")


def test_failed_findings_fail_and_unproven_does_not(capsys: pytest.CaptureFixture[str]) -> None:
    """The same rule for credit findings (no credit partner runs here) and for UNPROVEN."""
    failed = pb.Failure(reason=pb.CHAIN_FROZEN, message="frozen", metadata={"chain_id": "c2"})
    findings = [
        query_pb2.CreditFinding(chain_id="c1", outcome=pb.OUTCOME_NONE_PROVEN),
        query_pb2.CreditFinding(chain_id="c2", outcome=pb.OUTCOME_FAILED, failure=failed),
    ]
    assert relay_cli._failed_chains(findings) == relay_cli.EXIT_FAILED
    assert "1 of 2 chain(s) FAILED: c2 (CHAIN_FROZEN)" in capsys.readouterr().err
    unproven = query_pb2.CreditFinding(chain_id="c3", outcome=pb.OUTCOME_UNPROVEN)
    assert relay_cli._failed_chains([findings[0], unproven]) == relay_cli.EXIT_OK
    assert capsys.readouterr().err == ""
    text = render.credit_answer(query_pb2.CreditAnswer(findings=[unproven]))
    assert "UNPROVEN (the chain cannot prove this either way" in text
    assert "(not a failure)" in text
    holdings = render.holdings_answer(
        query_pb2.HoldingsAnswer(chain_id="c4", outcome=pb.OUTCOME_UNPROVEN)
    )
    assert "outcome  UNPROVEN (" in holdings and "nothing may be concluded" in holdings


# ------------------------------------------------------ 2. unusable input files: exit 2


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("inputs")
    out = cli("pki", "init", str(root / "pki"))
    assert out.returncode == 0, out.stderr
    (root / "bad.json").write_text('{"chainId": 5}')
    (root / "badep.json").write_text('{"grpcAddress": 5}')
    (root / "binary.key").write_bytes(b"\xff\xfe\x00")
    (root / "a-file").write_text("x")
    descriptor = {"chainId": "c", "domain": "DOMAIN_REAL_ESTATE"}
    (root / "good.json").write_text(json.dumps(descriptor))
    return root


PROPOSE_CASES = [
    ("--descriptor", "nosuch.json", "cannot read the descriptor: No such file"),
    ("--descriptor", "bad.json", "not a valid ChainDescriptor: Failed to parse chainId"),
    ("--signing-key", "nosuch", "cannot read the institution key: No such file"),
    ("--signing-key", "pki/ca.pem", "not an institution key file (one line ed25519:HEX"),
    ("--signing-key", "binary.key", "not an institution key file"),
    ("--endpoint", "nosuch.json", "cannot read the endpoint: No such file"),
    ("--endpoint", "badep.json", "not an AdapterEndpoint in proto JSON: Failed to parse"),
]


@pytest.mark.parametrize(("flag", "name", "message"), PROPOSE_CASES)
def test_propose_input_files_are_usage_errors(
    files: Path, flag: str, name: str, message: str
) -> None:
    given = {
        "--signing-key": str(files / "pki" / f"{PARTNER_CODE}.signing"),
        "--descriptor": str(files / "good.json"),
    }
    if flag == "--endpoint":
        given = {"--signing-key": given["--signing-key"], "--chain": "c"}
    given[flag] = str(files / name)
    out = cli(
        "admin", "propose", "--institution", PARTNER_CODE, "--key-id", f"{PARTNER_CODE}-k1",
        *[x for pair in given.items() for x in pair],
        "--server", "127.0.0.1:1", "--ca", str(files / "pki" / "ca.pem"),
        "--cert", str(files / "pki" / "partner-realestate.pem"),
        "--key", str(files / "pki" / "partner-realestate.key"), timeout=20,
    )  # fmt: skip
    assert out.returncode == 2, out.stdout + out.stderr
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1, out.stderr
    assert lines[0].startswith(f"relay: error: {flag} {files / name}: "), lines[0]
    assert message in lines[0]
    assert "internal error" not in out.stderr and "Traceback" not in out.stderr


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--recover", "c"], "--recover needs --anchor FILE and --reason TEXT"),
        (["--recover", "c", "--anchor", "nosuch.json", "--reason", "r"],
         "--anchor nosuch.json: cannot read the anchor file: No such file"),
        (["--recover", "c", "--anchor", "bad.json", "--reason", "r"], "--anchor"),
        (["--recover", "c", "--descriptor", "good.json"], "pass --descriptor FILE, --chain ID"),
    ],
)  # fmt: skip
def test_propose_recovery_inputs_are_usage_errors(
    files: Path, extra: list[str], message: str
) -> None:
    """``relay admin propose --recover CHAIN --anchor FILE --reason TEXT`` (a partner's
    recovery proposal): what it needs is named before anything is signed or sent."""
    args = [files / x if x.endswith(".json") else x for x in extra]
    out = cli(
        "admin", "propose", "--institution", PARTNER_CODE, "--key-id", f"{PARTNER_CODE}-k1",
        "--signing-key", str(files / "pki" / f"{PARTNER_CODE}.signing"), *map(str, args),
        "--server", "127.0.0.1:1", "--ca", str(files / "pki" / "ca.pem"),
        "--cert", str(files / "pki" / "partner-realestate.pem"),
        "--key", str(files / "pki" / "partner-realestate.key"), timeout=20,
    )  # fmt: skip
    assert out.returncode == 2, out.stdout + out.stderr
    assert message.replace("nosuch.json", str(files / "nosuch.json")) in out.stderr, out.stderr
    assert "Traceback" not in out.stderr and "internal error" not in out.stderr


@pytest.mark.parametrize(
    ("query", "target", "message"),
    [
        ("ownership", "a-file/ev.json", "a-file is not a directory"),
        ("ownership", ".", "is a directory; give the evidence file's name"),
        ("holdings", "a-file", "not a directory (holdings and credit write one file each)"),
    ],
)
def test_unwritable_evidence_out_is_refused_before_the_query(
    files: Path, query: str, target: str, message: str
) -> None:
    what = ["--asset-kind", "real-estate", "--registry", "r"] if query == "ownership" else []
    out = cli(
        "query", query, *CASE, *what, "--id", "1", "--evidence-out", str(files / target),
        "--server", f"127.0.0.1:{free_port()}", "--insecure", "--timeout", "3",
    )  # fmt: skip
    assert out.returncode == 2, out.stdout + out.stderr
    assert out.stderr.startswith(f"relay: error: --evidence-out {files / target}: ")
    assert message in out.stderr


# ---------------------------------------------------------- 3. admin freeze / recover


def test_freeze_then_recover_with_a_fresh_anchor(stack: Stack, tmp_path: Path) -> None:
    ownership = _ownership_args(stack)
    connect = ["--config", stack.config]
    stale = stack.partners["bft"].descriptor  # the anchor the chain was registered with

    active = cli("admin", "recover", *connect, "--chain", RE_CHAIN, "--anchor", str(stale),
                 "--reason", "not frozen")  # fmt: skip
    assert active.returncode == 1
    assert active.stderr.startswith(
        f"relay: INVALID_ARGUMENT [chain {RE_CHAIN}, field chain_id]: "
    ), active.stderr

    frozen = cli("admin", "freeze", *connect, "--chain", RE_CHAIN, "--reason", "fork drill")
    assert frozen.returncode == 0, frozen.stderr
    assert frozen.stdout.startswith(f"chain {RE_CHAIN} FROZEN (CHAIN_FROZEN)")
    assert "fork drill" in frozen.stdout
    refused = cli(*ownership)
    assert refused.returncode == 1
    assert refused.stderr.startswith(f"relay: CHAIN_FROZEN [chain {RE_CHAIN}"), refused.stderr

    # The registered anchor is older than what the relay already trusts: refused, named.
    old = cli("admin", "recover", *connect, "--chain", RE_CHAIN, "--anchor", str(stale),
              "--reason", "old anchor")  # fmt: skip
    assert old.returncode == 1
    assert f"[chain {RE_CHAIN}, field new_anchor]" in old.stderr, old.stderr
    wrong = cli("admin", "recover", *connect, "--chain", RE_CHAIN, "--anchor",
                str(stack.partners["tlog"].descriptor), "--reason", "x")  # fmt: skip
    assert wrong.returncode == 2
    assert f"the descriptor of chain {IP_CHAIN!r}, not {RE_CHAIN!r}" in wrong.stderr

    # A fresh anchor from the partner: restarted on the same endpoint, it writes its
    # descriptor again with the anchor at its current head. Given here as a TrustAnchor.
    stack.stop_partner("bft")
    fresh = json_format.Parse(
        stack.start_partner("bft").descriptor.read_text(), pb.ChainDescriptor()
    )
    anchor_file = tmp_path / "anchor.json"
    anchor_file.write_text(
        json_format.MessageToJson(pb.TrustAnchor(tendermint=fresh.tendermint.anchor))
    )
    recovered = cli("admin", "recover", *connect, "--chain", RE_CHAIN, "--anchor",
                    str(anchor_file), "--reason", "anchor from the registry's letter")  # fmt: skip
    assert recovered.returncode == 0, recovered.stderr
    assert recovered.stdout.startswith(f"chain {RE_CHAIN} PENDING")
    assert f"anchor height {fresh.tendermint.anchor.height}" in recovered.stdout
    stack.wait_status(RE_CHAIN, "ACTIVE")
    answer = cli(*ownership)
    assert answer.returncode == 0, answer.stderr
    assert "outcome  FOUND" in answer.stdout


def test_recover_anchor_file_errors(tmp_path: Path) -> None:
    (tmp_path / "empty.json").write_text('{"tlog": {}}')
    (tmp_path / "list.json").write_text("[1, 2]")
    (tmp_path / "deep.json").write_text("[" * 100_000 + "]" * 100_000)
    (tmp_path / "not.yaml").write_text("chain_id: [unclosed")
    (tmp_path / "other.yaml").write_text("chainId: other\ntlog: {anchor: {checkpoint: eA==}}")
    for name, message in (
        ("nosuch.json", "cannot read the anchor file: No such file"),
        ("empty.json", "holds no anchor"),
        ("list.json", "expected a ChainDescriptor or TrustAnchor object"),
        ("deep.json", ""),
        ("not.yaml", ""),
        ("other.yaml", "the descriptor of chain 'other', not 'c'"),
    ):
        out = cli("admin", "recover", "--chain", "c", "--anchor", str(tmp_path / name),
                  "--reason", "r", "--server", "127.0.0.1:1", "--insecure")  # fmt: skip
        assert out.returncode == 2, out.stderr
        assert out.stderr.startswith(f"relay: error: --anchor {tmp_path / name}: ")
        assert message in out.stderr


# ------------------------------------------------------------ 4. one count of hops


def test_cli_and_verify_count_the_same_hops(stack: Stack, tmp_path: Path) -> None:
    stack.wait_status(RE_CHAIN, "ACTIVE")
    evidence = tmp_path / "ev.json"
    out = cli(*_ownership_args(stack), "--evidence-out", str(evidence))
    assert out.returncode == 0, out.stderr
    shown = re.search(r"trust path (\d+) hop\(s\) from the registered anchor", out.stdout)
    assert shown, out.stdout
    anchors = stack.anchors_file(tmp_path / "anchors.yaml")
    checked = cli("verify", str(evidence), "--anchors", str(anchors))
    assert checked.returncode == 0, checked.stdout + checked.stderr
    verified = re.search(r"(\d+) hop\(s\) from the registered anchor verified", checked.stdout)
    assert verified, checked.stdout
    parsed = json_format.Parse(evidence.read_text(), pb.Evidence())
    assert shown.group(1) == verified.group(1) == str(len(parsed.trust_path) + 1)


def test_trust_hops_counts_the_answering_header() -> None:
    at_anchor = pb.Evidence(height=5)
    assert render.trust_hops(at_anchor) == 1  # as verify_evidence reports it
    two = pb.Evidence(height=9, trust_path=[pb.TrustStep(height=7), pb.TrustStep(height=8)])
    assert render.trust_hops(two) == 3
    assert "trust path 3 hop(s) from the registered anchor" in render.evidence_line(two)


# ------------------------------------------------------------------ 5. TLS mistakes


def test_a_key_that_is_not_the_certificates_is_named(stack: Stack, files: Path) -> None:
    other = files / "pki" / "operator-1.key"
    out = cli("chains", "list", "--config", stack.config, "--key", str(other))
    assert out.returncode == 2, out.stderr
    assert out.stderr.startswith(f"relay: error: --key {other} does not match client.cert ")
    assert str(stack.setup.pki.client_cert) in out.stderr and stack.config in out.stderr
    out = cli("chains", "list", "--config", stack.config, "--cert",
              str(files / "pki" / "operator-2.pem"), "--key", str(other))  # fmt: skip
    assert out.returncode == 2
    assert f"--key {other} does not match --cert {files / 'pki' / 'operator-2.pem'}" in out.stderr
    out = cli("chains", "list", "--config", stack.config, "--cert", str(other), "--key",
              str(other))  # fmt: skip
    assert out.returncode == 2 and f"--cert {other}: not a PEM certificate" in out.stderr
    out = cli("chains", "list", "--config", stack.config, "--ca", str(other))
    assert out.returncode == 2 and f"--ca {other}: no PEM certificate" in out.stderr


def test_tls_against_a_plaintext_relay_says_so(tmp_path: Path) -> None:
    setup = write_dev_setup(tmp_path)
    data = yaml.safe_load(setup.config.read_text())
    del data["tls"]
    setup.config.write_text(yaml.safe_dump(data, allow_unicode=True))
    relay = start_relay_process(setup.config, log=tmp_path / "relay.log", extra=["--insecure-dev"])
    try:
        wait_serving(setup.health_address, timeout_s=30, process=relay)
        out = cli("chains", "list", "--config", str(setup.config), "--timeout", "5")
        assert out.returncode == 1
        assert "WRONG_VERSION_NUMBER" in out.stderr
        assert "does not speak TLS" in out.stderr and "pass --insecure" in out.stderr
        plain = cli("chains", "list", "--config", str(setup.config), "--insecure")
        assert plain.returncode == 0, plain.stderr
    finally:
        stop(relay)


# ---------------------------------------------- 6. audit verify: a missing relay key


def test_audit_verify_without_the_relay_key_is_a_failed_check(stack: Stack, tmp_path: Path) -> None:
    export = tmp_path / "audit.json"
    out = cli("audit", "export", "--config", stack.config, "--out", str(export))
    assert out.returncode == 0, out.stderr
    own = stack.anchors_file(tmp_path / "own.yaml")
    ok = cli("audit", "verify", "--export", str(export), "--anchors", str(own))
    assert ok.returncode == 0, ok.stdout + ok.stderr
    assert "relay key from the anchors file" in ok.stdout
    other = stack.anchors_file(tmp_path / "other.yaml", key_id="other-relay-1")
    failed = cli("audit", "verify", "--export", str(export), "--anchors", str(other))
    assert failed.returncode == 1, failed.stdout + failed.stderr
    assert failed.stdout.startswith("FAIL  relay key: ")
    assert f"no relay key {stack.setup.key_id!r}" in failed.stdout
    assert "'other-relay-1'" in failed.stdout
    assert failed.stderr == ""
    # Unreadable input is still a usage error.
    missing = cli("audit", "verify", "--export", str(tmp_path / "nosuch.json"), "--anchors",
                  str(other))  # fmt: skip
    assert missing.returncode == 2


def test_config_and_directory_problems_name_the_file_once(tmp_path: Path) -> None:
    missing = tmp_path / "nowhere.yaml"
    for command in (
        ("anchors", "export", "--config", str(missing), "--out", str(tmp_path / "a.yaml")),
        ("audit", "export", "--config", str(missing), "--out", str(tmp_path / "a.json")),
    ):
        out = cli(*command)
        assert out.returncode == 2, out.stderr
        assert out.stderr.count(str(missing)) == 1, out.stderr
        assert "cannot read" in out.stderr and "Traceback" not in out.stderr
    a_file = tmp_path / "pki"
    a_file.write_text("")
    out = cli("pki", "init", str(a_file))
    assert out.returncode == 2 and "is a file" in out.stderr and "Errno" not in out.stderr
