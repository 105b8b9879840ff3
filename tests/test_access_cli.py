"""The onboarding flow with the real CLI against a live relay process (issue 5): ``relay pki
init`` makes the certificates, a partner proposes its chain with ``relay admin propose``, two
operators approve it (2 of 2) with ``relay admin approve``, the relay starts following it, a
court queries it; and the refusals a user meets name what is missing (the client
certificate, the role, the grant)."""

from __future__ import annotations

import json
import re
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from conftest import relay_cli as cli

from relay.service.devconfig import (
    start_partner,
    start_relay_process,
    stop,
    wait_for_file,
    wait_serving,
    write_dev_setup,
)
from relay.testing.pki import DevPki

PARTNER_CODE = "11110105MB0000001X"  # partner-realestate in relay.testing.pki
COURT = ("--case-court", "京0105", "--case-number", "(2026)京0105执1234号")


@dataclass
class Live:
    pki: Path
    server: str
    descriptor: Path

    def as_(self, name: str | None) -> list[str]:
        """Connection flags for the identity ``name`` (None: no client certificate)."""
        flags = ["--server", self.server, "--ca", str(self.pki / "ca.pem")]
        if name is not None:
            flags += [
                "--cert",
                str(self.pki / f"{name}.pem"),
                "--key",
                str(self.pki / f"{name}.key"),
            ]
        return flags


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Live]:
    root = tmp_path_factory.mktemp("access-cli")
    pki_dir = root / "pki"
    init = cli("pki", "init", str(pki_dir))
    assert init.returncode == 0, init.stderr
    keys = json.loads(init.stdout.split("# access.institution_keys for the relay config:")[1])
    assert {k["institution"] for k in keys} >= {PARTNER_CODE}
    dev = DevPki(
        pki_dir,
        pki_dir / "ca.pem",
        pki_dir / "relay.pem",
        pki_dir / "relay.key",
        pki_dir / "court-bj-chaoyang.pem",
        pki_dir / "court-bj-chaoyang.key",
    )
    partner, descriptor_out = start_partner("bft", root / "partner", dev, block_interval=0.3)
    processes = [partner]
    try:
        wait_for_file(descriptor_out, timeout_s=60, process=partner)
        descriptor = json.loads(descriptor_out.read_text())
        descriptor["institution"] = PARTNER_CODE
        (root / "descriptor.json").write_text(json.dumps(descriptor))
        access = {
            "grants": {"京0105": {"domains": ["real-estate"], "queries": ["ownership", "state"]}},
            "operators": ["operator-1", "operator-2"],
            "approvals_required": 2,
            "institution_keys": keys,
        }
        setup = write_dev_setup(root / "relay", pki=dev, overrides={"access": access})
        log = root / "relay.log"
        relay = start_relay_process(setup.config, log=log)
        processes.append(relay)
        wait_serving(setup.health_address, timeout_s=60, process=relay)
        yield Live(
            pki_dir, f"localhost:{setup.grpc_address.rpartition(':')[2]}", root / "descriptor.json"
        )
    finally:
        for process in reversed(processes):
            stop(process)


def propose(live: Live) -> str:
    out = cli(
        "admin", "propose", "--institution", PARTNER_CODE,
        "--signing-key", str(live.pki / f"{PARTNER_CODE}.signing"),
        "--key-id", f"{PARTNER_CODE}-k1", "--descriptor", str(live.descriptor),
        *live.as_("partner-realestate"),
    )  # fmt: skip
    assert out.returncode == 0, out.stderr
    match = re.fullmatch(r"proposal ([0-9a-f]+) PENDING \((\S+)\)\n", out.stdout)
    assert match, out.stdout
    return match.group(1)


def test_reject_closes_a_proposal(live: Live) -> None:
    """Runs first: the rejected registration leaves the chain free to propose again."""
    pid = propose(live)
    out = cli("admin", "reject", pid, "--comment", "wrong endpoint", *live.as_("operator-2"))
    assert out.returncode == 0, out.stderr
    assert "REJECTED" in out.stdout
    late = cli("admin", "approve", pid, *live.as_("operator-1"))
    assert late.returncode == 1 and "PROPOSAL_CLOSED" in late.stderr


def test_propose_two_approvals_then_the_court_queries(live: Live) -> None:
    chain_id = json.loads(live.descriptor.read_text())["chainId"]
    pid = propose(live)

    # A partner cannot decide, and a court cannot see proposals: each says why.
    refused = cli("admin", "approve", pid, *live.as_("partner-realestate"))
    assert refused.returncode == 1
    assert "ROLE_FORBIDDEN" in refused.stderr and "allowed: operator" in refused.stderr
    assert "Traceback" not in refused.stderr
    listing = cli("admin", "proposals", *live.as_("court-bj-chaoyang"))
    assert listing.returncode == 1 and "ROLE_FORBIDDEN" in listing.stderr

    first = cli("admin", "approve", pid, "--comment", "checked", *live.as_("operator-1"))
    assert first.returncode == 0, first.stderr
    assert "PENDING" in first.stdout  # 1 of 2
    again = cli("admin", "approve", pid, *live.as_("operator-1"))
    assert again.returncode == 1, again.stdout  # the same operator votes once
    second = cli("admin", "approve", pid, *live.as_("operator-2"))
    assert second.returncode == 0, second.stderr
    assert "APPLIED" in second.stdout

    pending = cli("admin", "proposals", "--state", "applied", *live.as_("operator-2"))
    assert pending.returncode == 0 and pid in pending.stdout

    # The relay follows the chain now; the court lists it.
    end = time.monotonic() + 60
    while True:
        chains = cli("chains", "list", "--json", *live.as_("court-bj-chaoyang"))
        if chains.returncode == 0 and chain_id in chains.stdout and "ACTIVE" in chains.stdout:
            break
        assert time.monotonic() < end, (chains.stdout, chains.stderr)
        time.sleep(0.5)


def test_a_missing_client_certificate_is_named(live: Live) -> None:
    out = cli("chains", "list", *live.as_(None))
    assert out.returncode == 1
    assert "client certificate" in out.stderr and "--cert" in out.stderr, out.stderr
    assert "Traceback" not in out.stderr


def test_a_query_outside_the_courts_grants_names_the_grant(live: Live) -> None:
    out = cli(
        "query", "holdings", "--id-type", "resident-id", "--id", "110105199001011234", *COURT,
        "--case-purpose", "enforcement", *live.as_("court-bj-chaoyang"),
    )  # fmt: skip
    assert out.returncode == 1
    assert "GRANT_MISSING" in out.stderr and "not granted holdings" in out.stderr, out.stderr
