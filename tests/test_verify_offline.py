"""Issue 7, "what it must show" 1: evidence the relay issues (a real relay over test partner
chains, as tests/test_e2e_queries.py runs it) verifies with `relay verify` and only the
anchors file `relay anchors export` writes; the command opens no socket; exit codes 0/1/2;
and changing any single byte of an evidence file makes it fail, naming the check."""

from __future__ import annotations

import asyncio
import json
import socket
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from google.protobuf import json_format
from test_e2e_queries import CASE, make_partners, relay

from relay import cli
from relay.pb.relay.v1 import query_pb2
from relay.pb.relay.v1 import types_pb2 as pb
from relay.verify import parse_anchors, verify_evidence_bytes
from relay.verify.anchors import AnchorsFileError, dump_anchors
from relay.verify.errors import LimitExceededError
from relay.verify.evidence import STEP_NAMES


def _json(message: Any) -> bytes:
    # Exactly what `relay query --evidence-out` writes (relay/cli.py _write_json).
    return (json_format.MessageToJson(message, indent=2) + "\n").encode("utf-8")


def make_evidence_files(directory: Path) -> tuple[dict[str, Path], Path, Path]:
    """Run a relay over a BFT chain and a log registry, ask it questions, write the evidence
    files; stop it and export its anchors. Returns (files by kind, anchors file, config)."""
    all_partners = make_partners()
    partners = {k: all_partners[k] for k in ("cn-bj-chaoyang-realestate", "cn-cnipa-patents")}
    bft, log = partners["cn-bj-chaoyang-realestate"], partners["cn-cnipa-patents"]
    files: dict[str, Path] = {}

    async def main() -> Path:
        async with relay(directory / "relay", partners) as r:
            q = r.query
            answer = await q.GetOwnership(
                query_pb2.GetOwnershipRequest(asset=bft.data.assets[0], case_ref=CASE), timeout=10
            )
            files["bft_record"] = directory / "bft-record.json"
            files["bft_record"].write_bytes(_json(answer.evidence))
            ghost = pb.AssetRef(kind=pb.ASSET_KIND_REAL_ESTATE, registry="110105", id="NO-SUCH")
            answer = await q.GetOwnership(
                query_pb2.GetOwnershipRequest(asset=ghost, case_ref=CASE), timeout=10
            )
            assert answer.outcome == pb.OUTCOME_NONE_PROVEN
            files["bft_absence"] = directory / "bft-absence.json"
            files["bft_absence"].write_bytes(_json(answer.evidence))
            answer = await q.GetOwnership(
                query_pb2.GetOwnershipRequest(asset=log.data.assets[0], case_ref=CASE), timeout=10
            )
            files["tlog_record"] = directory / "tlog-record.json"
            files["tlog_record"].write_bytes(_json(answer.evidence))
            return r.setup.config

    config = asyncio.run(main())
    anchors = directory / "anchors.yaml"
    assert cli.main(["anchors", "export", "--config", str(config), "--out", str(anchors)]) == 0
    return files, anchors, config


@pytest.fixture(scope="module")
def issued(tmp_path_factory: pytest.TempPathFactory) -> tuple[dict[str, Path], Path, Path]:
    return make_evidence_files(tmp_path_factory.mktemp("evidence"))


class _NoSockets:
    """Fails any attempt to create a socket while active (the offline guarantee)."""

    def __enter__(self) -> None:
        self._saved = socket.socket

        def refuse(*args: Any, **kwargs: Any) -> Any:
            raise AssertionError("relay verify tried to open a socket")

        socket.socket = refuse  # type: ignore[assignment,misc]

    def __exit__(self, *exc: object) -> None:
        socket.socket = self._saved  # type: ignore[misc]


def test_cli_verifies_every_issued_file_offline(
    issued: tuple[dict[str, Path], Path, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    files, anchors, _ = issued
    with _NoSockets():
        code = cli.main(["verify", *map(str, files.values()), "--anchors", str(anchors)])
    out = capsys.readouterr().out
    assert code == 0, out
    for path in files.values():
        assert f"{path}: VALID" in out
    for name in STEP_NAMES:
        assert f"PASS  {name}" in out
    with _NoSockets():
        code = cli.main(["verify", *map(str, files.values()), "--anchors", str(anchors), "--json"])
    reports = json.loads(capsys.readouterr().out)
    assert code == 0
    assert [r["ok"] for r in reports] == [True, True, True]
    assert reports[1]["record_kind"] is None and reports[0]["record_kind"] == "ownership"


def test_cli_names_the_first_failed_check_and_exit_codes(
    issued: tuple[dict[str, Path], Path, Path],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    files, anchors, _ = issued
    evidence = json_format.Parse(files["bft_record"].read_text(), pb.Evidence())
    evidence.ownership.description += " (forged)"
    forged = tmp_path / "forged.json"
    forged.write_bytes(_json(evidence))
    code = cli.main(["verify", str(files["tlog_record"]), str(forged), "--anchors", str(anchors)])
    out = capsys.readouterr().out
    assert code == 1
    assert f"{forged}: INVALID: first failed check: record" in out
    # A missing evidence file or a broken anchors file is unreadable input: exit 2.
    assert cli.main(["verify", str(tmp_path / "nope.json"), "--anchors", str(anchors)]) == 2
    bad = tmp_path / "bad.yaml"
    bad.write_text("format: relay-anchors/1\nchains: []\nrelay_keys: []\nextra: 1\n")
    assert cli.main(["verify", str(files["bft_record"]), "--anchors", str(bad)]) == 2
    assert "extra: unknown field" in capsys.readouterr().err
    assert cli.main(["verify", "--anchors", str(anchors)]) == 2


def test_anchors_file_round_trips_and_loads_strictly(
    issued: tuple[dict[str, Path], Path, Path],
) -> None:
    _, anchors_path, _ = issued
    data = anchors_path.read_bytes()
    anchors = parse_anchors(data)
    assert set(anchors.chains) == {"cn-bj-chaoyang-realestate", "cn-cnipa-patents"}
    body = b"\n".join(line for line in data.splitlines() if not line.startswith(b"#"))
    assert b"salt" not in body and b"adapter" not in body and b"entry_point" not in body
    assert parse_anchors(dump_anchors(anchors).encode()) == anchors
    text = data.decode()
    problems = {
        "format: relay-anchors/2": "format",
        "a: &x 1\nb: *x\n": "aliases",
        "format: relay-anchors/1\nformat: relay-anchors/1\n": "duplicate key",
        text.replace("client_type: CLIENT_TYPE_TLOG", "client_type: CLIENT_TYPE_NOPE"): (
            "client_type: unknown value"
        ),
        text.replace("proof_spec:", "proof_specs:", 1): "chains[0].proof_specs: unknown field",
        "format: relay-anchors/1\nn: " + "9" * 5000 + "\n": "cannot be read",
    }
    for bad, needle in problems.items():
        with pytest.raises(AnchorsFileError) as info:
            parse_anchors(bad.encode())
        assert needle in str(info.value), (needle, str(info.value))
    with pytest.raises(LimitExceededError):
        parse_anchors(b"[" * 100 + b"]" * 100)
    with pytest.raises(LimitExceededError):
        parse_anchors(b"#" * (17 << 20))
    # A registered anchor whose light block was altered is refused when loading, by chain.
    loaded = parse_anchors(data)
    bft = loaded.chains["cn-bj-chaoyang-realestate"].anchor
    assert bft.tendermint is not None
    block = bytearray(bft.tendermint.anchor.light_block)
    block[-5] ^= 1
    import base64

    broken = text.replace(
        base64.b64encode(bft.tendermint.anchor.light_block).decode(),
        base64.b64encode(bytes(block)).decode(),
    )
    assert broken != text
    with pytest.raises(AnchorsFileError) as info:
        parse_anchors(broken.encode())
    assert str(info.value).startswith("chains[0]")


def _mutations(data: bytes, positions: Iterator[int]) -> Iterator[tuple[int, bytes]]:
    for i in positions:
        changed = bytearray(data)
        changed[i] ^= 0x01  # always a different byte; for JSON whitespace, an invalid one
        yield i, bytes(changed)


@pytest.mark.parametrize("kind", ["bft_record", "bft_absence", "tlog_record"])
def test_every_single_byte_change_fails_naming_a_check(
    issued: tuple[dict[str, Path], Path, Path], kind: str
) -> None:
    """Every byte position of the JSON file (XOR 1: always a different byte, and for JSON
    whitespace an invalid one), and every byte of the binary encoding of the same evidence.
    (About 0.5 ms per mutation: most fail early, the rest cost one light-client walk.)"""
    files, anchors_path, _ = issued
    anchors = parse_anchors(anchors_path.read_bytes())
    data = files[kind].read_bytes()
    assert verify_evidence_bytes(data, anchors=anchors).report.ok
    binary = json_format.Parse(data, pb.Evidence()).SerializeToString(deterministic=True)
    assert verify_evidence_bytes(binary, anchors=anchors).report.ok
    failed_checks: dict[str, int] = {}
    t0 = time.monotonic()
    count = 0
    for source, positions in ((data, iter(range(len(data)))), (binary, iter(range(len(binary))))):
        for i, changed in _mutations(source, positions):
            report = verify_evidence_bytes(changed, anchors=anchors).report
            failed = report.first_failure
            assert not report.ok and failed is not None, (kind, i)
            assert failed.name in STEP_NAMES and failed.detail, (kind, i)
            failed_checks[failed.name] = failed_checks.get(failed.name, 0) + 1
            count += 1
    elapsed = time.monotonic() - t0
    print(
        f"{kind}: {len(data)} JSON + {len(binary)} binary bytes, {count} mutations in "
        f"{elapsed:.1f} s, first failed checks {failed_checks}"
    )
    # Changes reach the cryptographic checks, not only the parser.
    assert {"format", "attestation"} <= set(failed_checks)
    assert len(failed_checks) >= 3
