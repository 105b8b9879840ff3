"""Conformance runner: applies the pure verifiers to public test-vector files.

Each kind is a function ``run(path) -> Iterator[CaseResult]`` that accepts a file or a
directory (walked recursively) and yields one verdict per case. Kinds are registered here
by import path so that loading one kind never imports the others.
"""

from __future__ import annotations

import importlib
import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

MAX_VECTOR_FILE_BYTES = 64 * 1024 * 1024


@dataclass(frozen=True, slots=True)
class CaseResult:
    """One case's verdict. ``ok`` is whether the verifier accepted; ``expected`` whether the
    vector file says it should. The case matches when the two agree."""

    file: str
    case: str
    ok: bool
    expected: bool
    error: str | None = None

    @property
    def matched(self) -> bool:
        return self.ok == self.expected

    def to_json(self) -> str:
        return json.dumps(
            {
                "file": self.file,
                "case": self.case,
                "ok": self.ok,
                "expected": self.expected,
                "error": self.error,
            },
            ensure_ascii=False,
        )


Runner = Callable[[Path], Iterator[CaseResult]]

KINDS: dict[str, str] = {
    "rfc6962-inclusion": "relay.vectors.rfc6962:run_inclusion",
    "rfc6962-consistency": "relay.vectors.rfc6962:run_consistency",
    "ics23": "relay.vectors.ics23:run_proofs",
    "ics23-unit": "relay.vectors.ics23:run_unit",
    "eth-getproof": "relay.vectors.ethereum:run_getproof",
    "eth-receipts": "relay.vectors.ethereum:run_receipts",
    "tendermint-single-step": "relay.vectors.tendermint:run_single_step",
    "tendermint-commit": "relay.vectors.tendermint:run_commit",
    "signed-note": "relay.vectors.signed_note:run_known_answers",
}

# Where each kind's vectors live inside ../shared/vectors/, for ``--all``.
LAYOUT: dict[str, str] = {
    "rfc6962-inclusion": "rfc6962/testdata/inclusion",
    "rfc6962-consistency": "rfc6962/testdata/consistency",
    "ics23": "ics23/testdata",
    "ics23-unit": "ics23/testdata",
    "eth-getproof": "ethereum/mainnet-block-21925176",
    "eth-receipts": "ethereum/mainnet-block-21925176",
    "tendermint-single-step": "tendermint/model_based/single_step",
    "tendermint-commit": "tendermint/rpc_captures",
    "signed-note": "signed-note/note_known_answers.json",
}


class VectorFileError(Exception):
    """A vector file cannot be read or does not have the expected layout (a usage error)."""


def load_runner(kind: str) -> Runner:
    target = KINDS[kind]
    module_name, _, attr = target.partition(":")
    module = importlib.import_module(module_name)
    runner: Runner = getattr(module, attr)
    return runner


def read_json(path: Path) -> Any:
    """Read a vector file as JSON, bounded in size; raise :class:`VectorFileError` if not."""
    try:
        size = path.stat().st_size
        if size > MAX_VECTOR_FILE_BYTES:
            raise VectorFileError(f"{path}: {size} bytes exceeds {MAX_VECTOR_FILE_BYTES}")
        with path.open("rb") as f:
            return json.loads(f.read())
    except OSError as e:
        raise VectorFileError(f"{path}: cannot read: {e.strerror or e}") from e
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise VectorFileError(f"{path}: not valid JSON: {e}") from e


def walk(path: Path, accept: Callable[[Path], bool]) -> Iterator[Path]:
    """Yield ``path`` if it is an accepted file, or every accepted file beneath it, sorted."""
    if path.is_file():
        if accept(path):
            yield path
        return
    if not path.is_dir():
        raise VectorFileError(f"{path}: no such file or directory")
    for p in sorted(path.rglob("*")):
        if p.is_file() and accept(p):
            yield p


def verdict(
    file: Path, case: str, expected: bool, check: Callable[..., object], /, **kwargs: Any
) -> CaseResult:
    """Run ``check(**kwargs)``; a :class:`~relay.verify.errors.VerificationError` means
    "rejected". Any other exception is a bug in the verifier and propagates.
    """
    from relay.verify.errors import VerificationError

    try:
        check(**kwargs)
    except VerificationError as e:
        return CaseResult(str(file), case, False, expected, f"{e.reason}: {e}")
    return CaseResult(str(file), case, True, expected, None)
