"""The ``eth-getproof`` and ``eth-receipts`` vector runners and the CLI over the mainnet block,
case files with ``want_err``, JSON-RPC envelopes, and badly shaped vector files."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from conftest import vectors_path

from relay.cli import main
from relay.vectors import VectorFileError, load_runner

BLOCK = ("ethereum", "mainnet-block-21925176")


def block_dir() -> Path:
    return vectors_path(*BLOCK)


def read(name: str) -> Any:
    return json.loads((block_dir() / name).read_text())


def write(path: Path, doc: Any) -> Path:
    path.write_text(json.dumps(doc))
    return path


def test_getproof_block_folder() -> None:
    results = list(load_runner("eth-getproof")(block_dir()))
    assert len(results) == 2
    assert sorted(Path(r.file).name for r in results) == ["block_miner_proof.json", "proof.json"]
    assert all(r.ok and r.expected and r.matched for r in results), results


def test_receipts_block_folder() -> None:
    results = list(load_runner("eth-receipts")(block_dir()))
    assert len(results) == 1 + 202  # the root, then one per receipt
    assert results[0].case.startswith("receiptsRoot")
    assert all(r.ok and r.matched for r in results), [r for r in results if not r.ok][:3]


@pytest.mark.parametrize("kind", ["eth-getproof", "eth-receipts"])
def test_cli(kind: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["vectors", "check", "--table", "--kind", kind, str(block_dir())]) == 0
    out = capsys.readouterr().out
    assert "PASS" in out and kind in out


def _case(tmp_path: Path, name: str, proof: Any, want_err: bool | None) -> Path:
    doc: dict[str, Any] = {"stateRoot": read("block.json")["stateRoot"], "proof": proof}
    if want_err is not None:
        doc["want_err"] = want_err
    return write(tmp_path / name, doc)


def test_getproof_case_files(tmp_path: Path) -> None:
    good = read("proof.json")
    _case(tmp_path, "good.json", good, None)
    _case(tmp_path, "rpc.json", {"jsonrpc": "2.0", "id": 1, "result": good}, False)
    rich = dict(good, balance=hex(int(good["balance"], 16) + 1))
    _case(tmp_path, "richer.json", rich, True)
    slot = dict(good["storageProof"][0], key="0x1")  # clients echo short keys as requested
    _case(tmp_path, "short-key.json", dict(good, storageProof=[slot]), False)
    wrong_slot = dict(slot, value="0x1")
    _case(tmp_path, "wrong-slot.json", dict(good, storageProof=[wrong_slot]), True)
    short = dict(good, accountProof=good["accountProof"][:-1])
    _case(tmp_path, "truncated.json", short, True)
    # Tells the runner "this should verify" while it does not: the case must mismatch.
    _case(tmp_path, "lying.json", rich, False)
    results = {Path(r.file).name: r for r in load_runner("eth-getproof")(tmp_path)}
    assert set(results) == {
        "good.json",
        "rpc.json",
        "richer.json",
        "short-key.json",
        "wrong-slot.json",
        "truncated.json",
        "lying.json",
    }
    for name in ("good.json", "rpc.json", "short-key.json"):
        assert results[name].ok and results[name].matched
    for name in ("richer.json", "wrong-slot.json", "truncated.json"):
        assert not results[name].ok and results[name].matched, results[name]
    assert "VALUE_MISMATCH" in (results["richer.json"].error or "")
    assert not results["lying.json"].matched
    assert main(["vectors", "check", "--kind", "eth-getproof", str(tmp_path)]) == 1


def test_receipts_case_files(tmp_path: Path) -> None:
    receipts = read("receipts.json")
    root = read("block.json")["receiptsRoot"]
    write(tmp_path / "good.json", {"receiptsRoot": root, "receipts": receipts})
    changed = [dict(r) for r in receipts]
    changed[7]["cumulativeGasUsed"] = hex(int(changed[7]["cumulativeGasUsed"], 16) + 1)
    write(tmp_path / "bad.json", {"receiptsRoot": root, "receipts": changed, "want_err": True})
    bad_status = [dict(r) for r in receipts]
    bad_status[0]["status"] = "0x2"  # the encoder refuses it: only the root verdict is given
    write(tmp_path / "enc.json", {"receiptsRoot": root, "receipts": bad_status, "want_err": True})
    results = list(load_runner("eth-receipts")(tmp_path))
    by_file: dict[str, list[Any]] = {}
    for r in results:
        by_file.setdefault(Path(r.file).name, []).append(r)
    assert len(by_file["good.json"]) == 203 and all(r.ok for r in by_file["good.json"])
    assert len(by_file["bad.json"]) == 203
    assert all(not r.ok and r.matched for r in by_file["bad.json"])
    assert len(by_file["enc.json"]) == 1 and not by_file["enc.json"][0].ok
    assert "MALFORMED_INPUT" in (by_file["enc.json"][0].error or "")


@pytest.mark.parametrize(
    ("name", "doc"),
    [
        ("x_proof.json", {"hello": 1}),  # a *proof* file that is no eth_getProof answer
        ("case.json", {"stateRoot": "0x12", "proof": {"address": "0x00"}}),  # missing fields
        ("case.json", {"stateRoot": "zz", "proof": {}}),
        ("case.json", {"stateRoot": "0x123", "proof": {}}),  # odd hex
        ("case.json", {"stateRoot": "0x12", "proof": {}, "want_err": "yes"}),
        ("rpc_proof.json", {"jsonrpc": "2.0", "id": 1, "error": {"code": -32000}}),
        ("rpc_proof.json", {"jsonrpc": "2.0", "id": 1}),
    ],
)
def test_badly_shaped_getproof_files(tmp_path: Path, name: str, doc: Any) -> None:
    if name.endswith("proof.json"):
        write(tmp_path / "block.json", read("block.json"))
    with pytest.raises(VectorFileError):
        list(load_runner("eth-getproof")(write(tmp_path / name, doc)))
    assert main(["vectors", "check", "--kind", "eth-getproof", str(tmp_path / name)]) == 2


def test_proof_file_without_block(tmp_path: Path) -> None:
    write(tmp_path / "proof.json", read("proof.json"))
    with pytest.raises(VectorFileError, match=r"block\.json"):
        list(load_runner("eth-getproof")(tmp_path))


def test_badly_shaped_receipts(tmp_path: Path) -> None:
    block = read("block.json")
    write(tmp_path / "block.json", block)
    receipts = read("receipts.json")
    for broken in (
        receipts[1:],  # out of transaction order
        [dict(receipts[0], blockHash="0x" + "00" * 32)],  # from another block
        [dict(receipts[0], logs="none")],
        ["not an object"],
        {"not": "a list"},
    ):
        write(tmp_path / "receipts.json", broken)
        with pytest.raises(VectorFileError):
            list(load_runner("eth-receipts")(tmp_path))
