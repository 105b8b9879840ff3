"""relay.interceptors.GenericHandlersOnly: the relay's servers take each service as one
generic handler and no per-method registered handlers (a grpc.aio server waits on one
pending task per registered method for every call it accepts). Shown twice: on a recording
stand-in for the server (what reaches it), and on the relay's real server over TLS, whose
accept loop is watched: each accepted call waits on one request task, not one per method."""

from __future__ import annotations

import asyncio
import asyncio.tasks
from pathlib import Path
from typing import Any

import pytest

from relay.interceptors import GenericHandlersOnly
from relay.pb.relay.v1 import query_pb2, query_pb2_grpc
from relay.service.client import aio_channel
from relay.service.devconfig import write_dev_setup


class Recorder:
    def __init__(self) -> None:
        self.generic: list[Any] = []
        self.registered: list[str] = []

    def add_generic_rpc_handlers(self, handlers: Any) -> None:
        self.generic.extend(handlers)

    def add_registered_method_handlers(self, service: str, handlers: Any) -> None:
        self.registered.append(service)


def test_generated_registration_reaches_the_server_as_one_generic_handler() -> None:
    server = Recorder()
    query_pb2_grpc.add_QueryServiceServicer_to_server(  # type: ignore[no-untyped-call]
        query_pb2_grpc.QueryServiceServicer(), GenericHandlersOnly(server)
    )
    assert server.registered == []
    assert len(server.generic) == 1
    details = type("D", (), {"method": "/relay.v1.QueryService/GetOwnership"})()
    assert server.generic[0].service(details) is not None  # it serves every method
    # Without the wrapper the generated code also registers the service per method.
    plain = Recorder()
    query_pb2_grpc.add_QueryServiceServicer_to_server(  # type: ignore[no-untyped-call]
        query_pb2_grpc.QueryServiceServicer(), plain
    )
    assert plain.registered == ["relay.v1.QueryService"]


def test_the_relay_server_waits_on_one_request_task_per_accepted_call(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from relay.config import load_config
    from relay.service.app import start_relay

    sizes: list[int] = []
    real_wait = asyncio.tasks.wait

    async def watched(fs: Any, *args: Any, **kwargs: Any) -> Any:
        fs = list(fs)
        names = {getattr(f, "get_coro", lambda: None)() for f in fs}
        if any("request" in getattr(c, "__qualname__", "") for c in names if c):
            sizes.append(len(fs))  # the server's accept loop
        return await real_wait(fs, *args, **kwargs)

    monkeypatch.setattr(asyncio, "wait", watched)
    setup = write_dev_setup(tmp_path / "relay", grpc_port=0, health_port=0)
    config = load_config(setup.config)

    async def main() -> None:
        running = await start_relay(config, insecure_dev=True)
        try:
            tls = setup.client_tls()
            async with aio_channel(f"localhost:{running.server.grpc_port}", tls) as ch:
                stub = query_pb2_grpc.QueryServiceStub(ch)  # type: ignore[no-untyped-call]
                for _ in range(5):
                    listed = await stub.ListChains(query_pb2.ListChainsRequest())
                    assert list(listed.chains) == []
        finally:
            await running.stop()

    asyncio.run(main())
    assert sizes, "the server's accept loop was not seen (grpc changed how it accepts calls)"
    assert max(sizes) == 1, sizes
