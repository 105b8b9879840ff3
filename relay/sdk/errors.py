"""Refusals a partner adapter answers with, each mapped to the gRPC status code the adapter
contract names (the error rules at the top of proto/relay/adapter/v1/adapter.proto).

Raise one of these from an adapter's answer methods (:mod:`relay.sdk.adapter`); the harness
turns it into the status code and message. Anything else an adapter raises becomes
``INTERNAL``, which the relay counts as an adapter failure.
"""

from __future__ import annotations

from typing import ClassVar

import grpc


class PartnerError(Exception):
    """A request the partner refuses; ``code`` is the gRPC status it answers with."""

    code: ClassVar[grpc.StatusCode] = grpc.StatusCode.INTERNAL

    def __init__(self, message: str) -> None:
        self.message = message
        super().__init__(message)


class NotFound(PartnerError):
    """A height (or tree size) the partner does not have: pruned, or above its head."""

    code = grpc.StatusCode.NOT_FOUND


class InvalidArgument(PartnerError):
    """A request the partner cannot parse."""

    code = grpc.StatusCode.INVALID_ARGUMENT


class Unimplemented(PartnerError):
    """A capability this partner does not offer."""

    code = grpc.StatusCode.UNIMPLEMENTED


class FailedPrecondition(PartnerError):
    """A question the chain's state cannot answer yet (e.g. an empty state has no proofs)."""

    code = grpc.StatusCode.FAILED_PRECONDITION


class Unavailable(PartnerError):
    """The partner's chain node cannot be reached right now (the relay retries)."""

    code = grpc.StatusCode.UNAVAILABLE
