"""Runner for the C2SP signed-note known answers taken from golang.org/x/mod's note_test.go.

One :class:`~relay.vectors.CaseResult` per case: each entry of ``cases`` (sign and compare
byte for byte, or open with the listed verifier keys), each ``verifier_keys`` entry (must
parse under its name) and each ``bad_verifier_keys`` entry (must be refused).

A case with ``want_err`` expects a rejection of that kind: ``malformed`` is
:class:`~relay.verify.errors.MalformedInputError`, ``unverified`` is
:class:`~relay.verify.note.UnverifiedNoteError`, ``invalid signature`` is
:class:`~relay.verify.note.InvalidNoteSignatureError`. A rejection of another kind does not
meet the expectation: it is reported with ``ok=True`` (the wanted rejection did not happen)
and an ``error`` that names both kinds, so the case counts as mismatched.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from relay.vectors import CaseResult, VectorFileError, read_json, verdict, walk
from relay.verify import note
from relay.verify.errors import MalformedInputError, MismatchError, VerificationError

_WANT_ERR: dict[str, type[VerificationError]] = {
    "malformed": MalformedInputError,
    "unverified": note.UnverifiedNoteError,
    "invalid signature": note.InvalidNoteSignatureError,
}


def _str(value: Any, file: Path, what: str) -> str:
    if not isinstance(value, str):
        raise VectorFileError(f"{file}: {what} must be a string")
    return value


def _names(value: Any, file: Path, what: str) -> list[str]:
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise VectorFileError(f"{file}: {what} must be a list of strings")
    return value


def _expect_rejection(
    file: Path, case: str, want: type[VerificationError], check: Callable[[], object]
) -> CaseResult:
    try:
        check()
    except want as e:
        return CaseResult(str(file), case, False, False, f"{e.reason}: {e}")
    except VerificationError as e:
        return CaseResult(
            str(file),
            case,
            True,
            False,
            f"rejected as {type(e).__name__} ({e.reason}: {e}) but the vector wants "
            f"{want.__name__}",
        )
    return CaseResult(str(file), case, True, False, None)


def _check_signing(*, signer_key: str, text: str, want_note: str) -> None:
    from relay.testing.tlog import sign_note, signer_from_skey

    try:
        signer = signer_from_skey(signer_key)
    except ValueError as e:
        raise MalformedInputError(f"signer key: {e}") from e
    produced = sign_note(text.encode("utf-8"), [signer])
    wanted = want_note.encode("utf-8")
    if produced != wanted:
        raise MismatchError("signed note differs", expected=wanted, calculated=produced)
    # What we sign, we must also open.
    note.open_note(produced, verifiers=[note.parse_verifier_key(signer.vkey)])


def _open(msg: bytes, vkeys: list[str]) -> note.Note:
    return note.open_note(msg, verifiers=[note.parse_verifier_key(k) for k in vkeys])


def _check_open(
    *, msg: bytes, vkeys: list[str], want_verified: list[str], want_unv: list[str]
) -> None:
    opened = _open(msg, vkeys)
    verified = [s.name for s in opened.verified]
    unverified = [s.name for s in opened.unverified]
    if verified != want_verified:
        raise MismatchError("verified signers differ", expected=want_verified, calculated=verified)
    if unverified != want_unv:
        raise MismatchError("unverified signers differ", expected=want_unv, calculated=unverified)


def _run_file(file: Path) -> Iterator[CaseResult]:
    data = read_json(file)
    if not isinstance(data, dict) or not isinstance(data.get("cases"), list):
        raise VectorFileError(f"{file}: not a signed-note known-answer file (no 'cases' list)")
    keys = data.get("verifier_keys", {})
    if not isinstance(keys, dict):
        raise VectorFileError(f"{file}: 'verifier_keys' must be an object")

    for label, vkey in keys.items():
        vkey = _str(vkey, file, f"verifier_keys[{label!r}]")

        def parse_named(vkey: str = vkey, label: str = label) -> None:
            v = note.parse_verifier_key(vkey)
            if v.name != label:
                raise MismatchError("verifier key name", expected=label, calculated=v.name)

        yield verdict(file, f"verifier_keys[{label}] parses", True, parse_named)

    for i, case in enumerate(data["cases"]):
        if not isinstance(case, dict):
            raise VectorFileError(f"{file}: cases[{i}] must be an object")
        name = f"cases[{i}] {case.get('desc', '')}".strip()
        if "sign_with" in case:
            signer_key = _str(data.get(_str(case["sign_with"], file, "sign_with")), file, name)
            text = _str(case.get("text"), file, f"{name}: text")
            want_note = _str(case.get("want_note"), file, f"{name}: want_note")
            yield verdict(
                file,
                name,
                True,
                _check_signing,
                signer_key=signer_key,
                text=text,
                want_note=want_note,
            )
            continue
        msg = _str(case.get("note"), file, f"{name}: note").encode("utf-8")
        labels = _names(case.get("verifiers", []), file, f"{name}: verifiers")
        if not all(label in keys for label in labels):
            raise VectorFileError(f"{file}: {name}: names a verifier key that is not listed")
        vkeys = [_str(keys[label], file, label) for label in labels]
        if "want_err" in case:
            want = _WANT_ERR.get(_str(case["want_err"], file, f"{name}: want_err"))
            if want is None:
                raise VectorFileError(f"{file}: {name}: unknown want_err {case['want_err']!r}")
            yield _expect_rejection(file, name, want, functools.partial(_open, msg, vkeys))
            continue
        want_verified = _names(case.get("want_verified"), file, f"{name}: want_verified")
        want_unv = _names(case.get("want_unverified"), file, f"{name}: want_unverified")
        yield verdict(
            file,
            name,
            True,
            _check_open,
            msg=msg,
            vkeys=vkeys,
            want_verified=want_verified,
            want_unv=want_unv,
        )

    bad = data.get("bad_verifier_keys", [])
    if not isinstance(bad, list):
        raise VectorFileError(f"{file}: 'bad_verifier_keys' must be a list")
    for i, entry in enumerate(bad):
        if not isinstance(entry, dict):
            raise VectorFileError(f"{file}: bad_verifier_keys[{i}] must be an object")
        vkey = _str(entry.get("key"), file, f"bad_verifier_keys[{i}].key")
        name = f"bad_verifier_keys[{i}] {entry.get('desc', '')}".strip()
        yield verdict(file, name, False, note.parse_verifier_key, vkey=vkey)


def run_known_answers(path: Path) -> Iterator[CaseResult]:
    """Run every signed-note known-answer file under ``path`` (a file or a directory)."""
    for file in walk(path, lambda p: p.suffix == ".json"):
        yield from _run_file(file)
