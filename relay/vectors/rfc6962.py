"""Runners for the transparency-dev/merkle RFC 6962 JSON vectors (inclusion, consistency)."""

from __future__ import annotations

import base64
import binascii
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from relay.vectors import CaseResult, VectorFileError, read_json, verdict, walk
from relay.verify.merkle import rfc6962


def _b64(value: Any, file: Path, field: str) -> bytes:
    if value is None:
        return b""
    if not isinstance(value, str):
        raise VectorFileError(f"{file}: field {field!r} must be a base64 string")
    try:
        return base64.b64decode(value, validate=True)
    except binascii.Error as e:
        raise VectorFileError(f"{file}: field {field!r} is not base64: {e}") from e


def _int(case: dict[str, Any], file: Path, field: str) -> int:
    value = case.get(field)
    if not isinstance(value, int) or isinstance(value, bool):
        raise VectorFileError(f"{file}: field {field!r} must be an integer")
    return value


def _proof(case: dict[str, Any], file: Path) -> list[bytes]:
    raw = case.get("proof") or []
    if not isinstance(raw, list):
        raise VectorFileError(f"{file}: field 'proof' must be a list")
    return [_b64(p, file, "proof") for p in raw]


def _cases(path: Path) -> Iterator[tuple[Path, dict[str, Any]]]:
    for file in walk(path, lambda p: p.suffix == ".json"):
        case = read_json(file)
        if not isinstance(case, dict) or "wantErr" not in case:
            raise VectorFileError(f"{file}: not a transparency-dev proof vector")
        yield file, case


def run_inclusion(path: Path) -> Iterator[CaseResult]:
    for file, case in _cases(path):
        index = _int(case, file, "leafIdx")
        size = _int(case, file, "treeSize")
        leaf_hash = _b64(case.get("leafHash"), file, "leafHash")
        root = _b64(case.get("root"), file, "root")
        proof = _proof(case, file)
        yield verdict(
            file,
            str(case.get("desc", file.stem)),
            not case["wantErr"],
            rfc6962.verify_inclusion,
            hasher=rfc6962.RFC6962_SHA256,
            index=index,
            size=size,
            leaf_hash=leaf_hash,
            proof=proof,
            root=root,
        )


def run_consistency(path: Path) -> Iterator[CaseResult]:
    for file, case in _cases(path):
        size1 = _int(case, file, "size1")
        size2 = _int(case, file, "size2")
        root1 = _b64(case.get("root1"), file, "root1")
        root2 = _b64(case.get("root2"), file, "root2")
        proof = _proof(case, file)
        yield verdict(
            file,
            str(case.get("desc", file.stem)),
            not case["wantErr"],
            rfc6962.verify_consistency,
            hasher=rfc6962.RFC6962_SHA256,
            size1=size1,
            size2=size2,
            proof=proof,
            root1=root1,
            root2=root2,
        )
