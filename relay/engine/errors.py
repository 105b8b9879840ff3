"""The engine's one error type: :class:`RelayError`, a failure with an ``ErrorReason`` code
from ``proto/relay/v1/types.proto`` naming the chain, the height and what failed.

The service layer turns it into a ``google.rpc.Status`` (the code comes from the enum value's
``grpc_status`` option); inside multi-chain answers it becomes a ``relay.v1.Failure``.
:func:`from_verification` maps a :class:`~relay.verify.errors.VerificationError` from the pure
verifiers onto a reason: where the verifier's reason is an ``ErrorReason`` name it passes
through unchanged; light-client failures become ``HEADER_UNVERIFIED`` and every other
verifier reason ``VERIFICATION_FAILED``, each with the verifier's own reason in metadata
``check`` (types.proto, ``ErrorReason``).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Final

from relay.pb.relay.v1 import types_pb2
from relay.verify.errors import VerificationError

REASONS: Final[frozenset[str]] = frozenset(
    name
    for name in types_pb2.ErrorReason.DESCRIPTOR.values_by_name
    if name != "ERROR_REASON_UNSPECIFIED"
)
"""Every ErrorReason value name a RelayError may carry."""

MAX_METADATA_CHARS: Final = 256
"""Metadata values are labels, not payloads: longer ones are cut (hex of big values too)."""

# Verifier reasons that keep their name: they are ErrorReason values with the same meaning.
_PASS_THROUGH: Final = frozenset(
    {
        "MALFORMED_INPUT",
        "LIMIT_EXCEEDED",
        "UNSUPPORTED",
        "PROOF_SPEC_MISMATCH",
        "PROOF_INVALID",
        "VALUE_MISMATCH",
        "ROOT_MISMATCH",
        "SIGNATURE_INVALID",
        "VERIFICATION_FAILED",
        "KEY_ABSENT",
        "KEY_PRESENT",
        "RECORD_INVALID",
    }
)
# While verifying a header, only "the bytes do not even decode" keeps its own reason; every
# other failure means the header could not be verified.
_HEADER_PASS_THROUGH: Final = frozenset({"MALFORMED_INPUT", "LIMIT_EXCEEDED"})


def _label(value: object) -> str:
    text = bytes(value).hex() if isinstance(value, bytes | bytearray) else str(value)
    if len(text) > MAX_METADATA_CHARS:
        return text[: MAX_METADATA_CHARS - 3] + "..."
    return text


class RelayError(Exception):
    """A failed engine operation.

    ``reason`` is an ``ErrorReason`` value name (checked). ``message`` says what happened,
    naming the chain and height, and what to do. ``chain_id``, ``height`` and ``field`` are
    the standard ErrorInfo metadata; ``metadata`` holds any others (e.g. ``check``,
    ``expected``, ``calculated``), all strings. ``retry_after_s`` is set when retrying later
    can help (an open circuit breaker).
    """

    def __init__(
        self,
        reason: str,
        message: str,
        *,
        chain_id: str | None = None,
        height: int | None = None,
        field: str | None = None,
        retry_after_s: float | None = None,
        **metadata: str,
    ) -> None:
        if reason not in REASONS:
            raise ValueError(f"{reason!r} is not an ErrorReason value name")
        self.reason = reason
        self.message = message
        self.chain_id = chain_id
        self.height = height
        self.field = field
        self.retry_after_s = retry_after_s
        self.metadata: dict[str, str] = {k: _label(v) for k, v in metadata.items()}
        super().__init__(message)

    def all_metadata(self) -> dict[str, str]:
        """Every metadata key, the standard ones included (what ErrorInfo carries)."""
        out = dict(self.metadata)
        if self.chain_id:
            out["chain_id"] = self.chain_id
        if self.height is not None:
            out["height"] = str(self.height)
        if self.field:
            out["field"] = self.field
        return out

    def to_failure(self) -> types_pb2.Failure:
        """This error as the Failure of one chain inside a multi-chain answer."""
        return types_pb2.Failure(
            reason=types_pb2.ErrorReason.Value(self.reason),
            message=self.message,
            metadata=self.all_metadata(),
        )

    def __str__(self) -> str:
        where = ", ".join(f"{k}={v}" for k, v in sorted(self.all_metadata().items()))
        return f"{self.reason}: {self.message}" + (f" ({where})" if where else "")

    def __repr__(self) -> str:
        return f"RelayError({self.reason!r}, {self.message!r}, {self.all_metadata()!r})"


def reason_of(e: VerificationError, *, header: bool = False) -> str:
    """The ErrorReason for a verifier failure (see the module docstring)."""
    if header:
        return e.reason if e.reason in _HEADER_PASS_THROUGH else "HEADER_UNVERIFIED"
    if e.reason in _PASS_THROUGH:
        return e.reason
    return "VERIFICATION_FAILED"


def from_verification(
    e: VerificationError,
    *,
    chain_id: str | None,
    height: int | None,
    header: bool = False,
    what: str = "",
    extra: Mapping[str, str] | None = None,
) -> RelayError:
    """Map a verifier failure to a RelayError.

    ``header`` says the failure happened while verifying a header or checkpoint (so it
    becomes HEADER_UNVERIFIED unless the bytes did not decode). ``what`` prefixes the
    message ("proof of ownership record", ...). The verifier's own reason always lands in
    metadata ``check``; its expected/calculated values, where it has them, too.
    """
    reason = reason_of(e, header=header)
    metadata: dict[str, str] = {"check": e.reason}
    for key in ("expected", "calculated"):
        if key in e.context:
            metadata[key] = _label(e.context[key])
    if extra:
        metadata.update(extra)
    where = f"chain {chain_id!r}" if chain_id else "the chain"
    at = f" at height {height}" if height is not None else ""
    prefix = f"{what}: " if what else ""
    message = f"{prefix}{e} ({where}{at})"
    error = RelayError(reason, message, chain_id=chain_id, height=height)
    error.metadata.update(metadata)
    return error
