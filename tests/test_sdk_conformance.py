"""Issue 6, "what it must show" 2: the SDK conformance suite (relay.sdk.testing) passes for
the four reference deployments, each a real process reached over mutual TLS, and fails for a
deliberately broken adapter (one that alters values, in process)."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest

from adapters.conformance import target_for
from adapters.launch import ROOT, Partner, start_partners, terminate
from relay.sdk.testing import AdapterConformance, ConformanceTarget
from relay.testing.pki import DevPki, write_dev_pki

NAMES = ("realestate", "ip", "credit", "bank")


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[DevPki, dict[str, Partner]]]:
    root = tmp_path_factory.mktemp("sdkconf")
    pki = write_dev_pki(root / "pki")
    partners = start_partners(root, pki, block_interval=0.5)
    try:
        yield pki, partners
    finally:
        terminate([c for p in partners.values() for c in p.children()])


@pytest.fixture(scope="module", params=NAMES)
def deployment_target(
    request: pytest.FixtureRequest, stack: tuple[DevPki, dict[str, Partner]]
) -> ConformanceTarget:
    pki, partners = stack
    name = request.param
    return target_for(name, partners[name].descriptor, pki)


class TestReferenceDeployments(AdapterConformance):
    @pytest.fixture
    def conformance_target(self, deployment_target: ConformanceTarget) -> ConformanceTarget:
        return deployment_target


BROKEN = textwrap.dedent(
    """
    import pytest
    from google.protobuf import json_format

    from adapters.conformance import questions
    from relay.pb.relay.v1 import types_pb2 as pb
    from relay.sdk.testing import AdapterConformance, ConformanceTarget
    from relay.testing.partners import (
        BftPartnerChain, Fault, LyingAdapter, PartnerAdapter, sample_data,
    )

    class TestBroken(AdapterConformance):
        @pytest.fixture
        def conformance_target(self):
            chain = BftPartnerChain("cn-bj-chaoyang-realestate", domain=pb.DOMAIN_REAL_ESTATE)
            sample_data(chain)
            present, absent, parties = questions("realestate")
            adapter = LyingAdapter(PartnerAdapter(chain), Fault.{fault})
            return ConformanceTarget(
                descriptor=chain.descriptor(pb.AdapterEndpoint(entry_point="in-process")),
                present=present, absent=absent, parties=parties, servicer=adapter,
                deadline_s=1.0,
            )
    """
)


@pytest.mark.parametrize(
    ("fault", "failing"),
    [
        ("WRONG_VALUE", {"test_present_records_are_proven", "test_list_by_party_is_complete"}),
        ("GARBAGE_BYTES", {"test_present_records_are_proven"}),
    ],
)
def test_suite_fails_for_a_broken_adapter(fault: str, failing: set[str], tmp_path: Path) -> None:
    (tmp_path / "test_broken_adapter.py").write_text(BROKEN.replace("{fault}", fault))
    out = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-rf", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=tmp_path,
        env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"},
    )
    assert out.returncode == 1, out.stdout[-3000:] + out.stderr[-2000:]
    failed = {
        line.split("::")[-1].split(" ")[0]
        for line in out.stdout.splitlines()
        if line.startswith("FAILED")
    }
    assert failing <= failed, out.stdout[-3000:]
    assert "test_describe_matches_the_descriptor" not in failed  # the lie is in the data
