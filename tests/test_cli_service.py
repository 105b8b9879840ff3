"""The service commands of the ``relay`` CLI as real processes: ``config validate`` (OK / each
problem, exit 0 / 2), usage mistakes (one line, exit 2, never a traceback), ``health-check``
against nothing (exit 1), ``serve`` refusing plaintext without ``--insecure-dev`` and
warning with it, and start-up failures (a port in use) as one clear line and exit 1."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest
import yaml
from conftest import relay_cli as cli

from relay.pb.relay.v1 import types_pb2 as pb
from relay.service.devconfig import (
    free_port,
    start_relay_process,
    stop,
    wait_serving,
    write_dev_setup,
)
from relay.service.render import enum_name, money, table

CASE = [
    "--case-court",
    "京0105",
    "--case-number",
    "(2026)京0105执1号",
    "--case-purpose",
    "enforcement",
]


# An access: section makes the development setup one `relay serve` accepts without
# --insecure-dev (tests/test_config_serve.py covers what validate refuses for production).
ACCESS = {"grants": {"京0105": {"domains": ["real-estate"], "queries": ["ownership"]}}}


def test_config_validate_ok(tmp_path: Path) -> None:
    setup = write_dev_setup(tmp_path, overrides={"access": ACCESS})
    out = cli("config", "validate", str(setup.config))
    assert (out.returncode, out.stdout) == (0, "OK\n"), out.stderr


def test_config_validate_lists_every_problem(tmp_path: Path) -> None:
    setup = write_dev_setup(tmp_path, overrides={"access": ACCESS})
    data = yaml.safe_load(setup.config.read_text())
    data["listen"]["grpc"] = "nowhere"
    data["sync"] = {"interval": "often"}
    data["signing"]["key_file"] = str(tmp_path / "missing.key")
    setup.config.write_text(yaml.safe_dump(data))
    out = cli("config", "validate", str(setup.config))
    assert out.returncode == 2
    lines = out.stdout.splitlines()
    assert lines[0] == "listen.grpc: expected host:port, got 'nowhere'"
    assert lines[1].startswith("sync.interval: expected a duration")
    assert len(lines) == 2  # file checks run only once the fields are valid
    data["listen"]["grpc"] = "127.0.0.1:1"
    data["sync"] = {}
    setup.config.write_text(yaml.safe_dump(data))
    out = cli("config", "validate", str(setup.config))
    assert out.returncode == 2
    assert out.stdout.startswith("signing.key_file: cannot read ") and "missing.key" in out.stdout


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["query", "ownership", "--registry", "r", "--id", "i", "--insecure", "--server", "h:1"],
         "every query cites its case"),
        (["query", "ownership", *CASE, "--asset-kind", "castle", "--registry", "r", "--id", "i"],
         "--asset-kind: unknown value 'castle'; one of: real-estate"),
        (["query", "state", *CASE, "--chain", "c", "--state-key", "xyz", "--server", "h:1",
          "--insecure"], "--state-key must be hex"),
        (["query", "holdings", *CASE, "--id", "1", "--id-type", "library-card"],
         "--id-type: unknown value 'library-card'"),
        (["chains", "list"], "no server: pass --server HOST:PORT or --config FILE"),
        (["chains", "list", "--server", "h:1"], "no CA certificate: pass --ca FILE"),
        (["chains", "list", "--server", "h:1", "--ca", "/nonexistent/ca.pem"],
         "cannot read /nonexistent/ca.pem"),
        (["chains", "list", "--server", "h:1", "--ca", "x", "--key", "k"], "--key needs --cert"),
        (["serve", "--config", "/nonexistent/relay.yaml"], "cannot read"),
        (["health-check", "--config", "/nonexistent/relay.yaml"], "cannot read"),
    ],
)  # fmt: skip
def test_usage_mistakes_are_one_line_and_exit_2(args: list[str], message: str) -> None:
    out = cli(*args, timeout=10)
    assert out.returncode == 2, out.stdout + out.stderr
    assert "Traceback" not in out.stderr
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("relay: error: "), out.stderr
    assert message in lines[0]


def test_health_check_against_nothing_fails() -> None:
    out = cli("health-check", "--address", f"127.0.0.1:{free_port()}", "--timeout", "1")
    assert out.returncode == 1
    assert "not reachable" in out.stdout


def test_serve_refuses_to_run_without_mutual_tls_or_access_control(tmp_path: Path) -> None:
    """Issue 5: client certificates and an access: section are required; only --insecure-dev
    runs without them, and the refusal names both fields before anything is opened."""
    setup = write_dev_setup(tmp_path)
    data = yaml.safe_load(setup.config.read_text())
    data["tls"]["require_client_cert"] = False
    setup.config.write_text(yaml.safe_dump(data, allow_unicode=True))
    out = cli("serve", "--config", str(setup.config), timeout=20)
    assert out.returncode == 2, out.stderr
    assert "tls.require_client_cert: false is allowed only with --insecure-dev" in out.stderr
    assert "access: required" in out.stderr
    assert "Traceback" not in out.stderr
    assert not (tmp_path / "relay.db").exists()
    del data["tls"]["client_ca"], data["tls"]["require_client_cert"]
    setup.config.write_text(yaml.safe_dump(data, allow_unicode=True))
    out = cli("config", "validate", str(setup.config), timeout=20)
    assert out.returncode == 2
    assert "tls: client_ca required" in out.stdout


def test_serve_refuses_plaintext_without_the_dev_flag(tmp_path: Path) -> None:
    setup = write_dev_setup(tmp_path)
    data = yaml.safe_load(setup.config.read_text())
    del data["tls"]
    setup.config.write_text(yaml.safe_dump(data))
    out = cli("serve", "--config", str(setup.config), timeout=20)
    assert out.returncode == 2
    assert "tls: required; the relay serves plaintext only with --insecure-dev" in out.stderr
    assert not (tmp_path / "relay.db").exists()  # refused before opening anything

    log = tmp_path / "relay.log"
    relay = start_relay_process(setup.config, log=log, extra=["--insecure-dev"])
    try:
        wait_serving(setup.health_address, timeout_s=20, process=relay)
        port = setup.grpc_address.rpartition(":")[2]
        out = cli("chains", "list", "--server", f"127.0.0.1:{port}", "--insecure")
        assert out.returncode == 0 and "no chains registered" in out.stdout, out.stderr
    finally:
        assert stop(relay) == 0
    text = log.read_text()
    assert "WARNING" in text and "WITHOUT TLS" in text and "--insecure-dev" in text
    assert "PLAINTEXT" in text


def test_serve_with_a_port_in_use_fails_clearly(tmp_path: Path) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        setup = write_dev_setup(tmp_path, grpc_port=port)
        out = cli("serve", "--config", str(setup.config), "--insecure-dev", timeout=20)
    assert out.returncode == 1, out.stderr
    assert "Traceback" not in out.stderr
    assert out.stderr.strip().splitlines()[-1].startswith("relay: error: cannot listen")


def test_render_helpers() -> None:
    assert enum_name(pb.AssetKind, pb.ASSET_KIND_REAL_ESTATE) == "REAL_ESTATE"
    assert enum_name(pb.CoOwnership, pb.CO_OWNERSHIP_BY_SHARES) == "BY_SHARES"
    assert enum_name(pb.ErrorReason, pb.PROOF_INVALID) == "PROOF_INVALID"
    assert enum_name(pb.Outcome, 99) == "99"
    assert money(pb.Money(minor_units=530000012, currency="CNY")) == "5,300,000.12 CNY"
    assert money(pb.Money(minor_units=-5, currency="CNY")) == "-0.05 CNY"
    text = table(["a", "b"], [["张三", "x"], ["abcd", "y"]])
    rows = text.splitlines()
    # Wide characters take two columns: the second column lines up.
    assert rows[2].index("x") == rows[3].index("y") - (len("abcd") - len("张三"))
