"""The relay process: configuration -> store -> engine -> servers, and back down again.

Start-up order (each step refuses loudly, naming what failed, before anything is served):
read secrets and TLS material; open the store (a database failing its corruption checks
stops here, before any port is bound); open the engine and register the bootstrap chains
from their descriptor files; bind the health port (NOT_SERVING) and the API port; start
sync; report SERVING. Shutdown on SIGTERM/SIGINT: health NOT_SERVING, stop accepting calls,
drain in-flight calls for ``shutdown_grace``, stop sync, close the store.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import grpc

from relay.config import (
    ConfigError,
    RelayConfig,
    SigningKey,
    load_descriptors,
    load_server_tls,
    load_signing_key,
)
from relay.pb.relay.v1 import admin_pb2
from relay.service.server import RelayServer, ServerOptions
from relay.service.servicers import CallGuard, default_guard

log = logging.getLogger("relay.service")

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
    if config.store.backend == "sqlite":
        from relay.store import SQLiteStore

        return await SQLiteStore.open(
            config.store.path,
            full_check=config.store.full_check,
            readers=config.store.readers,
        )
    raise StartupError(f"store.backend {config.store.backend!r} is not supported")


async def register_bootstrap_chains(engine: Any, config: RelayConfig) -> None:
    """Register every descriptor of ``chains`` not registered yet. A chain already
    registered is left as it is: its trust state is the store's, not the file's."""
    from relay.engine.errors import RelayError
    from relay.pb.relay.v1 import query_pb2

    for descriptor in load_descriptors(config):
        chain_id = descriptor.chain_id
        try:
            await engine.get_chain(query_pb2.GetChainRequest(chain_id=chain_id))
        except RelayError as e:
            if e.reason != "NOT_FOUND":
                raise
        else:
            log.info("chain %s is already registered", chain_id)
            continue
        try:
            await engine.register_chain(admin_pb2.RegisterChainRequest(descriptor=descriptor))
        except RelayError as e:
            raise StartupError(
                f"chain {chain_id!r} from the config's chains list cannot be registered: "
                f"{e.reason}: {e.message}"
            ) from e
        log.info("registered chain %s from its descriptor file", chain_id)


@dataclass
class Running:
    """A started relay: its servers, engine and store (for tests and the CLI)."""

    server: RelayServer
    engine: Any
    store: Any
    grace_s: float

    async def stop(self) -> None:
        """The shutdown sequence; idempotent."""
        try:
            await self.server.stop(self.grace_s)
        finally:
            try:
                await self.engine.close()
            finally:
                await self.store.close()
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
) -> Running:
    """Start everything and return once health says SERVING. ``adapters`` replaces the
    engine's default adapter factory (tests, benchmarks). Raises ConfigError,
    StartupError, StoreError, OSError (a port in use)."""
    from relay.engine.adapters import DefaultAdapterFactory
    from relay.engine.engine import Engine

    env = os.environ if env is None else env
    if config.tls is None:
        if not insecure_dev:
            raise ConfigError(
                ["tls: required; the relay serves plaintext only with --insecure-dev"]
            )
        tls = None
    else:
        tls = load_server_tls(config, env)
    settings = config.engine_settings(env)
    signer = make_signer(load_signing_key(config, env))

    store = await open_store(config)
    engine = None
    server = None
    try:
        kwargs: dict[str, Any] = {}
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
        options = ServerOptions(
            grpc_address=config.listen.grpc,
            health_address=config.listen.health,
            tls=tls,
            require_client_cert=config.tls.require_client_cert if config.tls else False,
            max_request_bytes=config.limits.max_request_bytes,
            max_response_bytes=config.limits.max_response_bytes,
            query_deadline_s=settings.query_deadline_s + DEADLINE_MARGIN_S,
            max_concurrent_rpcs=config.limits.max_concurrent_rpcs,
        )
        server = RelayServer(engine, options, guard=guard, interceptors=interceptors)
        await server.start()
        await engine.start_sync()
        await server.set_serving(True)
    except BaseException:
        if server is not None:
            await server.stop(0)
        if engine is not None:
            await engine.close()
        await store.close()
        raise
    return Running(server, engine, store, config.shutdown_grace)


async def serve(config: RelayConfig, *, insecure_dev: bool = False) -> None:
    """Run the relay until SIGTERM or SIGINT, then shut down gracefully."""
    if insecure_dev:
        log.warning(
            "--insecure-dev: the API is served WITHOUT TLS; anyone on the network can read "
            "and alter queries and answers. Never use this outside development."
        )
    running = await start_relay(config, insecure_dev=insecure_dev)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    log.info("relay serving (pid %d)", os.getpid())
    try:
        await stop.wait()
        log.info("shutdown requested")
    finally:
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.remove_signal_handler(sig)
        await running.stop()
