"""The relay process: configuration -> store -> engine -> servers, and back down again.

Start-up order (each step refuses loudly, naming what failed, before anything is served):
read secrets and TLS material; open the store (a database failing its corruption checks
stops here, before any port is bound); open the engine and register the bootstrap chains
from their descriptor files; bind the health port (NOT_SERVING) and the API port; start
sync; report SERVING. Shutdown on SIGTERM/SIGINT: health NOT_SERVING, stop accepting calls,
drain in-flight calls for ``shutdown_grace``, stop sync, close the store.
"""

from __future__ import annotations

import gc
import logging
import os
import ssl
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import grpc
from grpc_health.v1 import health_pb2

from relay.config import (
    ConfigError,
    RelayConfig,
    SigningKey,
    TlsMaterial,
    load_descriptors,
    load_server_tls,
    load_signing_key,
    parse_address,
    serve_problems,
)
from relay.pb.relay.v1 import admin_pb2
from relay.process import stop_on_signals
from relay.service.server import RelayServer, ServerOptions
from relay.service.servicers import CallGuard, default_guard

log = logging.getLogger("relay.service")

HEALTH_DESCRIPTOR = health_pb2.DESCRIPTOR.services_by_name["Health"]

# The service's backstop deadline sits a little above the engine's own query deadline, so
# that the engine's more precise timeout error (naming the chain) wins the race.
DEADLINE_MARGIN_S = 1.0


class StartupError(Exception):
    """The relay cannot start; the message says what failed and what to do."""


def make_signer(key: SigningKey) -> Any:
    """The engine's RelaySigner for the configured key."""
    from relay.engine.evidence import RelaySigner

    signer_id = key.sm2_signer_id.encode("utf-8")
    if key.algorithm == "ed25519":
        return RelaySigner.ed25519(key_id=key.key_id, seed=key.private_key)
    return RelaySigner.sm2(
        key_id=key.key_id,
        private_key=int.from_bytes(key.private_key, "big"),
        signer_id=signer_id,
    )


async def open_store(config: RelayConfig) -> Any:
    """Open the configured store; StoreError (corrupt, locked, migrations) propagates."""
    if config.store.backend == "sqlite" and config.store.path is not None:
        from relay.store import SQLiteStore

        return await SQLiteStore.open(
            config.store.path,
            full_check=config.store.full_check,
            readers=config.store.readers,
        )
    if config.store.backend == "postgres":
        from relay.config import ConfigError, store_dsn
        from relay.store.postgres import PostgresStore

        try:
            dsn = store_dsn()
        except ConfigError as e:
            raise StartupError("; ".join(e.problems)) from None
        return await PostgresStore.open(dsn, pool_size=config.store.pool_size)
    raise StartupError(f"store.backend {config.store.backend!r} is not supported")


async def register_bootstrap_chains(engine: Any, config: RelayConfig) -> None:
    """Register every descriptor of ``chains`` not registered yet. A chain already
    registered is left as it is: its trust state is the store's, not the file's."""
    from relay.engine.errors import RelayError

    for descriptor in load_descriptors(config):
        chain_id = descriptor.chain_id
        # Asked of the registry, not through get_chain: a start-up check is no court query
        # (relay_query_* metrics count only those).
        if chain_id in engine.registry:
            log.info("chain %s is already registered", chain_id)
            continue
        try:
            await engine.register_chain(admin_pb2.RegisterChainRequest(descriptor=descriptor))
        except RelayError as e:
            # Replicas starting together race to register the same list: the loser finds the
            # winner's registration in the store and follows it (issue 9).
            await engine.refresh_catalogue()
            if chain_id in engine.registry:
                log.info("chain %s was registered by another replica meanwhile", chain_id)
                continue
            raise StartupError(
                f"chain {chain_id!r} from the config's chains list cannot be registered: "
                f"{e.reason}: {e.message}"
            ) from e
        log.info("registered chain %s from its descriptor file", chain_id)


@dataclass
class Running:
    """A started relay: its servers, engine and store (for tests and the CLI), the metrics
    it records into and its ops server (None when ``listen.ops`` is unset)."""

    server: RelayServer
    engine: Any
    store: Any
    grace_s: float
    metrics: Any = None
    ops: Any = None
    web: Any = None  # the public verification page (listen.web), relay/web/verify.py
    audit: Any = None  # the audit log (relay/audit/setup.py AuditRuntime), None if disabled

    async def stop(self) -> None:
        """The shutdown sequence; idempotent. The ops port stays up (answering /readyz
        with 503) until the in-flight calls are drained, so probes see the drain."""
        if self.web is not None:  # it reads the store: stop it first
            web, self.web = self.web, None
            await web.stop()
        try:
            await self.server.stop(self.grace_s)
            if self.audit is not None:  # after the drain: every answered call is recorded
                audit, self.audit = self.audit, None
                await audit.stop()
        finally:
            try:
                await self.engine.close()
            finally:
                try:
                    await self.store.close()
                finally:
                    if self.ops is not None:
                        ops, self.ops = self.ops, None
                        await ops.stop()
        log.info("relay stopped")


async def start_relay(
    config: RelayConfig,
    *,
    insecure_dev: bool = False,
    env: Mapping[str, str] | None = None,
    adapters: Any = None,
    clock: Callable[[], int] | None = None,
    guard: CallGuard = default_guard,
    interceptors: Sequence[grpc.aio.ServerInterceptor] = (),
    metrics: Any = None,
) -> Running:
    """Start everything and return once health says SERVING. ``adapters`` replaces the
    engine's default adapter factory (tests, benchmarks); ``metrics`` (a
    relay.metrics.RelayMetrics) the process-wide one /metrics serves. Raises ConfigError,
    StartupError, StoreError, OSError (a port in use)."""
    from relay.engine.adapters import DefaultAdapterFactory
    from relay.engine.engine import Engine
    from relay.metrics import ADMIN_SERVICE, QUERY_SERVICE, GrpcServerMetrics, default_metrics
    from relay.service.pipeline import RequestPipeline

    env = os.environ if env is None else env
    # Every refusal at once, each naming its field (the same list `relay config validate`
    # prints), before anything is opened.
    problems = serve_problems(config, insecure_dev=insecure_dev, env=env)
    if problems:
        raise ConfigError(problems)
    tls = load_server_tls(config, env) if config.tls is not None else None
    # The ops port and the verification page serve the gRPC API's certificate (issue 5);
    # built before the store opens, so a key that does not fit stops start-up early.
    https = http_ports_ssl_context(config, tls)
    ops_https = https
    if https is not None and tls is not None and tls.root_certificates and config.listen.ops:
        from relay.service.https import server_ssl_context

        # The ops port also asks for (without requiring) a client certificate: a change of
        # process state there needs an operator's (relay/web/ops.py).
        ops_https = server_ssl_context(tls, client_ca=tls.root_certificates)
    settings = config.engine_settings(env)
    signing_key = load_signing_key(config, env)
    signer = make_signer(signing_key)

    metrics = default_metrics() if metrics is None else metrics
    grpc_metrics = GrpcServerMetrics(metrics)
    grpc_metrics.initialize((QUERY_SERVICE, ADMIN_SERVICE, HEALTH_DESCRIPTOR))
    store = await open_store(config)
    engine = None
    server = None
    ops = None
    web = None
    audit: Any = None
    try:
        kwargs: dict[str, Any] = {"metrics": metrics}
        if clock is not None:
            kwargs["clock"] = clock
        try:
            engine = await Engine.open(
                settings=settings,
                store=store,
                signer=signer,
                adapters=adapters if adapters is not None else DefaultAdapterFactory(settings),
                **kwargs,
            )
        except RuntimeError as e:  # a stored descriptor the engine cannot use
            raise StartupError(str(e)) from e
        await register_bootstrap_chains(engine, config)
        if config.audit.enabled:  # issue 7: every query and admin call, recorded first
            from relay.audit.setup import start_audit

            audit = await start_audit(
                config,
                store=store,
                signer=signer,
                private_key=signing_key.private_key,
                metrics=metrics,
            )
        onboarding = None
        access_step = None
        if config.access is not None:  # issue 5: identities, grants, limits, proposals
            from relay.access.setup import setup_access

            access = setup_access(config, engine=engine, store=store, insecure_dev=insecure_dev)
            guard, onboarding = access.guard, access.onboarding
            access_step = access.interceptor
        else:
            log.warning(
                "--insecure-dev without an access: section: callers are not identified and "
                "court grants are not enforced (development only; add access: for production)"
            )
        options = ServerOptions(
            grpc_address=config.listen.grpc,
            health_address=config.listen.health,
            tls=tls,
            require_client_cert=(
                (config.tls.require_client_cert or config.access is not None)
                if config.tls
                else False
            ),
            max_request_bytes=config.limits.max_request_bytes,
            max_response_bytes=config.limits.max_response_bytes,
            query_deadline_s=settings.query_deadline_s + DEADLINE_MARGIN_S,
            max_concurrent_rpcs=config.limits.max_concurrent_rpcs,
        )
        # One interceptor for the per-call work (relay/service/pipeline.py): request
        # context, metrics, access, then audit (it sees the identity and records before
        # answering), in a single wrapper per method.
        pipeline = RequestPipeline(
            metrics=metrics,
            access=access_step,
            audit=audit.interceptor if audit is not None else None,
        )
        chain = (pipeline, *interceptors)
        server = RelayServer(
            engine,
            options,
            guard=guard,
            interceptors=chain,
            onboarding=onboarding,
            extra_services=audit.services if audit is not None else (),
        )
        await server.start()
        if config.listen.ops is not None:
            # Imported here: aiohttp takes a noticeable part of start-up without an ops port.
            from relay.web.ops import ops_app, start_ops_server

            host, port = parse_address(config.listen.ops)
            started = server

            async def ready() -> tuple[bool, str]:
                # The same condition as gRPC health SERVING.
                return started.serving, "" if started.serving else "gRPC health is NOT_SERVING"

            ops = await start_ops_server(
                ops_app(
                    metrics=metrics, readiness=ready, operator_changes=config.access is not None
                ),
                host=host.strip("[]"),
                port=port,
                ssl_context=ops_https,
            )
        if config.listen.web is not None:
            web = await start_verify_page(
                config.listen.web, store=store, signer=signer, ssl_context=https
            )
        await engine.start_sync()
        # Everything loaded so far (modules, descriptors, protobuf classes) lives as long as
        # the process: moving it out of the collector's generations shortens every GC pass
        # on the query path.
        gc.freeze()
        await server.set_serving(True)
    except BaseException:
        if web is not None:
            await web.stop()
        if server is not None:
            await server.stop(0)
        if audit is not None:
            await audit.stop(final_checkpoint=False)
        if engine is not None:
            await engine.close()
        await store.close()
        if ops is not None:
            await ops.stop()
        raise
    return Running(server, engine, store, config.shutdown_grace, metrics, ops, web, audit)


def http_ports_ssl_context(config: RelayConfig, tls: TlsMaterial | None) -> ssl.SSLContext | None:
    """The HTTPS context of the ops port and the verification page: the relay's server
    certificate whenever ``tls`` is configured; None (plain HTTP, only reachable with
    --insecure-dev since ``tls`` is otherwise required) with a warning per HTTP port."""
    ports = [n for n, a in (("ops", config.listen.ops), ("web", config.listen.web)) if a]
    if not ports:
        return None
    if tls is None:
        for name in ports:
            log.warning(
                "--insecure-dev: listen.%s is served as plain HTTP WITHOUT TLS; add a tls: "
                "section to serve it over HTTPS. Never use this outside development.",
                name,
            )
        return None
    from relay.service.https import server_ssl_context

    return server_ssl_context(tls)


async def start_verify_page(
    address: str, *, store: Any, signer: Any, ssl_context: ssl.SSLContext | None = None
) -> Any:
    """Serve the public evidence-verification page (relay/web/verify.py) on ``address``
    (HTTPS with ``ssl_context``), checking uploads against the chains registered in
    ``store`` and ``signer``'s key."""
    from relay.offline import relay_anchor_set
    from relay.web.verify import start_verify_server, verify_app

    relay_key = signer.relay_key()

    async def anchors() -> Any:
        return await relay_anchor_set(store, relay_keys=[relay_key])

    host, port = parse_address(address)
    return await start_verify_server(
        verify_app(anchors=anchors), host=host.strip("[]"), port=port, ssl_context=ssl_context
    )


async def serve(config: RelayConfig, *, insecure_dev: bool = False) -> None:
    """Run the relay until SIGTERM or SIGINT, then shut down gracefully. Logs go to
    stderr as configured by ``logging`` (JSON lines by default, relay/logs.py)."""
    from relay.logs import configure_logging

    configure_logging(level=config.effective_log_level, fmt=config.logging.format)
    if insecure_dev and config.tls is None:
        log.warning(
            "--insecure-dev: the API is served WITHOUT TLS; anyone on the network can read "
            "and alter queries and answers. Never use this outside development."
        )
    elif insecure_dev:
        log.warning(
            "--insecure-dev: development mode; client certificates and access control are "
            "enforced only where the config asks for them. Never use this outside development."
        )
    running = await start_relay(config, insecure_dev=insecure_dev)
    log.info("relay serving (pid %d)", os.getpid())
    try:
        with stop_on_signals() as stop:
            await stop.wait()
        log.info("shutdown requested")
    finally:
        await running.stop()
