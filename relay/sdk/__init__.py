"""What a partner institution's engineer imports to connect a chain to the relay.

* Adapter base classes by capability (:mod:`relay.sdk.adapter`): :class:`HeaderSource`
  (CometBFT light blocks), :class:`CheckpointSource` (transparency-log checkpoints and
  consistency proofs), :class:`StateSource` (record queries with ICS-23 proofs and
  ListByParty); refusals (:mod:`relay.sdk.errors`) become the contract's gRPC codes.
* The server harness (:mod:`relay.sdk.server`): :func:`serve_adapter` with TLS (mutual with
  ``client_ca``) and a graceful stop on SIGTERM.
* Record schema 1 (:mod:`relay.verify.records`, re-exported as :data:`records`): the state
  keys and canonical record encodings the relay derives and checks; :func:`schema1_key`.
* Witness client for log registries (:mod:`relay.sdk.witness`).
* The conformance suite, :mod:`relay.sdk.testing` (imported separately: it needs pytest).

The adapter contract itself is proto/relay/adapter/v1/adapter.proto; the reference
deployments in ``adapters/`` are worked examples.
"""

from relay.sdk.adapter import (
    AdapterBase,
    CheckpointSource,
    HeaderSource,
    StateSource,
    describe_response,
    optional_field,
    schema1_key,
    timestamp,
)
from relay.sdk.errors import (
    FailedPrecondition,
    InvalidArgument,
    NotFound,
    PartnerError,
    Unavailable,
    Unimplemented,
)
from relay.sdk.server import (
    AdapterServer,
    AdapterStartError,
    run_adapter,
    serve_adapter,
    start_adapter_server,
)
from relay.sdk.witness import WitnessClient
from relay.verify import records

__all__ = [
    "AdapterBase",
    "AdapterServer",
    "AdapterStartError",
    "CheckpointSource",
    "FailedPrecondition",
    "HeaderSource",
    "InvalidArgument",
    "NotFound",
    "PartnerError",
    "StateSource",
    "Unavailable",
    "Unimplemented",
    "WitnessClient",
    "describe_response",
    "optional_field",
    "records",
    "run_adapter",
    "schema1_key",
    "serve_adapter",
    "start_adapter_server",
    "timestamp",
]
