"""Typed verification errors: every failure says what was checked and, where a value was
computed, both the expected and the calculated value (never a bare ``False``)."""

from __future__ import annotations

from typing import ClassVar


def _show(value: object) -> str:
    if isinstance(value, bytes | bytearray):
        return value.hex() if len(value) <= 64 else value[:64].hex() + f"...({len(value)} bytes)"
    return repr(value)


class VerificationError(Exception):
    """Base of every error raised by :mod:`relay.verify`.

    ``reason`` is a stable, machine-readable code (it becomes ``ErrorInfo.reason`` at the
    API); ``context`` holds the named values that explain the failure.
    """

    reason: ClassVar[str] = "VERIFICATION_FAILED"

    def __init__(self, message: str, **context: object) -> None:
        self.message = message
        self.context = context
        super().__init__(message)

    def __str__(self) -> str:
        if not self.context:
            return self.message
        details = ", ".join(f"{k}={_show(v)}" for k, v in self.context.items())
        return f"{self.message} ({details})"


class MalformedInputError(VerificationError):
    """Input bytes do not decode as the format they claim to be."""

    reason = "MALFORMED_INPUT"


class LimitExceededError(MalformedInputError):
    """Input is larger or deeper than the limit the format allows."""

    reason = "LIMIT_EXCEEDED"


class UnsupportedError(VerificationError):
    """An algorithm, key type or option this build does not support."""

    reason = "UNSUPPORTED"


class ProofShapeError(VerificationError):
    """The proof does not fit the pinned spec (prefixes, lengths, depth, op types)."""

    reason = "PROOF_SPEC_MISMATCH"


class InvalidProofError(VerificationError):
    """The proof is well-formed but does not prove the claim (wrong length, index, key...)."""

    reason = "PROOF_INVALID"


class MismatchError(InvalidProofError):
    """A computed value differs from the one it must equal."""

    reason = "VALUE_MISMATCH"

    def __init__(self, message: str, *, expected: object, calculated: object, **context: object):
        self.expected = expected
        self.calculated = calculated
        super().__init__(message, expected=expected, calculated=calculated, **context)


class KeyMismatchError(MismatchError):
    """A proof is about another key than the one asked for (a valid proof of the wrong
    record is a refused proof)."""

    reason = "KEY_MISMATCH"


class RootMismatchError(MismatchError):
    """The root calculated from a proof differs from the trusted root."""

    reason = "ROOT_MISMATCH"


class SignatureError(VerificationError):
    """A signature does not verify under the given key, or the key/signature is malformed."""

    reason = "SIGNATURE_INVALID"
