"""The relay's gRPC service layer (DESIGN.md: relay/service/): the servicers of
``relay.v1.QueryService`` and ``relay.v1.AdminService`` over the engine, error mapping to
``google.rpc.Status`` with ``ErrorInfo``, ``grpc.health.v1`` on its own plaintext port,
server reflection, message size limits, and the process lifecycle with graceful shutdown.

Modules: :mod:`~relay.service.servicers` (RPC -> engine, the call guard issue 5 extends),
:mod:`~relay.service.errors` (statuses, both directions), :mod:`~relay.service.server`
(the two gRPC servers), :mod:`~relay.service.app` (config -> store -> engine -> servers and
back down), :mod:`~relay.service.client` (channels for the CLI, tests and benchmarks),
:mod:`~relay.service.render` (tables for people), :mod:`~relay.service.devconfig` (a
throwaway development setup and process helpers for tests and the demo).
"""
