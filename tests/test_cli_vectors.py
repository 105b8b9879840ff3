"""`relay vectors check`: JSON lines, exit codes 0 / 1 / 2, run as a real process."""

from __future__ import annotations

import base64
import json
import subprocess
import sys
from pathlib import Path

from conftest import vectors_path

from relay.verify.merkle import rfc6962


def relay(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "relay.cli", *args], capture_output=True, text=True, timeout=120
    )


def _write_case(tmp_path: Path, name: str, *, want_err: bool, corrupt: bool) -> Path:
    leaves = [rfc6962.RFC6962_SHA256.hash_leaf(bytes([i])) for i in range(5)]
    proof = rfc6962.inclusion_proof(hasher=rfc6962.RFC6962_SHA256, leaf_hashes=leaves, index=2)
    root = rfc6962.root_hash(hasher=rfc6962.RFC6962_SHA256, leaf_hashes=leaves)
    if corrupt:
        root = bytes([root[0] ^ 1]) + root[1:]
    case = {
        "leafIdx": 2,
        "treeSize": 5,
        "root": base64.b64encode(root).decode(),
        "leafHash": base64.b64encode(leaves[2]).decode(),
        "proof": [base64.b64encode(p).decode() for p in proof],
        "desc": name,
        "wantErr": want_err,
    }
    path = tmp_path / f"{name}.json"
    path.write_text(json.dumps(case))
    return path


def test_json_lines_and_exit_zero_when_all_match(tmp_path: Path) -> None:
    _write_case(tmp_path, "good", want_err=False, corrupt=False)
    _write_case(tmp_path, "bad-root", want_err=True, corrupt=True)
    out = relay("vectors", "check", "--kind", "rfc6962-inclusion", str(tmp_path))
    assert out.returncode == 0, out.stderr
    lines = [json.loads(line) for line in out.stdout.splitlines()]
    assert [set(x) for x in lines] == [{"file", "case", "ok", "expected", "error"}] * 2
    by_case = {x["case"]: x for x in lines}
    assert by_case["good"]["ok"] is True and by_case["good"]["error"] is None
    assert by_case["bad-root"]["ok"] is False and "ROOT_MISMATCH" in by_case["bad-root"]["error"]


def test_exit_one_when_a_verdict_differs(tmp_path: Path) -> None:
    _write_case(tmp_path, "claims-valid-but-is-not", want_err=False, corrupt=True)
    out = relay("vectors", "check", "--kind", "rfc6962-inclusion", str(tmp_path))
    assert out.returncode == 1
    assert json.loads(out.stdout)["ok"] is False


def test_usage_errors_exit_two(tmp_path: Path) -> None:
    assert relay("vectors", "check", "--kind", "no-such-kind", str(tmp_path)).returncode == 2
    missing = relay("vectors", "check", "--kind", "rfc6962-inclusion", str(tmp_path / "nope"))
    assert missing.returncode == 2 and "no such file" in missing.stderr
    (tmp_path / "broken.json").write_text("{not json")
    broken = relay("vectors", "check", "--kind", "rfc6962-inclusion", str(tmp_path))
    assert broken.returncode == 2 and "not valid JSON" in broken.stderr
    assert "Traceback" not in broken.stderr
    assert relay("vectors", "check").returncode == 2
    assert relay("bogus").returncode == 2


def test_all_kinds_over_shared_vectors_table() -> None:
    root = vectors_path()
    out = relay("vectors", "check", "--all", "--table", str(root))
    assert out.returncode == 0, out.stdout + out.stderr
    assert "FAIL" not in out.stdout
    assert "rfc6962-inclusion" in out.stdout
