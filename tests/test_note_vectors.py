"""golang.org/x/mod's signed-note known answers, read in place from ../shared/vectors/."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterable
from pathlib import Path

import pytest
from conftest import vectors_path

from relay.vectors import CaseResult, VectorFileError
from relay.vectors.signed_note import run_known_answers

KNOWN_ANSWERS = ("signed-note", "note_known_answers.json")


def test_every_known_answer_holds() -> None:
    path = vectors_path(*KNOWN_ANSWERS)
    data = json.loads(path.read_text())
    results = list(run_known_answers(path))
    expected_count = (
        len(data["cases"]) + len(data["verifier_keys"]) + len(data["bad_verifier_keys"])
    )
    assert len(results) == expected_count
    assert len({r.case for r in results}) == expected_count  # one result per case
    mismatched = [r for r in results if not r.matched]
    assert not mismatched, mismatched
    by_case = {r.case.split(" ", 1)[0]: r for r in results}
    # The accepting cases really accepted, the rejecting ones really rejected.
    assert by_case["cases[0]"].ok and by_case["cases[1]"].ok and by_case["cases[2]"].ok
    assert not by_case["cases[4]"].ok and "LIMIT_EXCEEDED" in (by_case["cases[4]"].error or "")
    assert "NOTE_UNVERIFIED" in (by_case["cases[3]"].error or "")
    assert "SIGNATURE_INVALID" in (by_case["cases[5]"].error or "")


def test_cli_runs_the_kind(tmp_path: Path) -> None:
    path = vectors_path(*KNOWN_ANSWERS)
    out = subprocess.run(
        [sys.executable, "-m", "relay.cli", "vectors", "check", "--kind", "signed-note", str(path)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 0, out.stderr
    lines = [json.loads(line) for line in out.stdout.splitlines()]
    assert len(lines) == 19
    assert all(line["ok"] == line["expected"] for line in lines)


def _only_cases(results: Iterable[CaseResult]) -> list[CaseResult]:
    return [r for r in results if r.case.startswith("cases[")]


def _case_file(tmp_path: Path, case: dict) -> Path:
    source = json.loads(vectors_path(*KNOWN_ANSWERS).read_text())
    data = {"verifier_keys": source["verifier_keys"], "cases": [case]}
    path = tmp_path / "case.json"
    path.write_text(json.dumps(data, ensure_ascii=False))
    return path


def test_a_rejection_of_the_wrong_kind_does_not_count(tmp_path: Path) -> None:
    source = json.loads(vectors_path(*KNOWN_ANSWERS).read_text())
    malformed = source["cases"][6]  # "no signature block": malformed
    case = dict(malformed, want_err="unverified")
    [result] = _only_cases(run_known_answers(_case_file(tmp_path, case)))
    assert not result.matched
    assert "wants UnverifiedNoteError" in (result.error or "")


def test_a_wrong_expectation_is_reported(tmp_path: Path) -> None:
    source = json.loads(vectors_path(*KNOWN_ANSWERS).read_text())
    case = dict(source["cases"][1], want_verified=["EnochRoot"])
    [result] = _only_cases(run_known_answers(_case_file(tmp_path, case)))
    assert not result.matched and "verified signers differ" in (result.error or "")


@pytest.mark.parametrize(
    "content",
    [
        "[]",
        '{"cases": {}}',
        '{"cases": [{"note": 5, "verifiers": []}]}',
        '{"cases": [{"note": "x", "verifiers": ["Nobody"], "want_err": "malformed"}]}',
        '{"cases": [{"note": "x", "verifiers": [], "want_err": "exploded"}]}',
    ],
)
def test_badly_shaped_files_are_usage_errors(tmp_path: Path, content: str) -> None:
    path = tmp_path / "bad.json"
    path.write_text(content)
    with pytest.raises(VectorFileError):
        list(run_known_answers(path))
