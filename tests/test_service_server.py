"""The gRPC servers (relay/service/server.py, servicers.py) over real TLS sockets, against a
small fake engine: answers pass through, errors arrive as documented statuses, case
references are required, deadlines and size limits hold, health follows the lifecycle,
shutdown drains in-flight calls, client certificates are enforced when configured, and
reflection describes the API. The real engine is exercised in tests/test_e2e_*.py."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import grpc
import pytest
from google.protobuf import descriptor_pb2
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha.proto_reflection_descriptor_database import (
    ProtoReflectionDescriptorDatabase,
)

from relay.config import TlsMaterial
from relay.engine.errors import RelayError
from relay.pb.relay.v1 import admin_pb2, admin_pb2_grpc, query_pb2, query_pb2_grpc, types_pb2
from relay.service.client import ClientTls, aio_channel
from relay.service.errors import describe_rpc_error
from relay.service.server import RelayServer, ServerOptions
from relay.testing.pki import TestCA

CASE = types_pb2.CaseRef(
    court="京0105",
    case_number="(2026)京0105执1234号",
    purpose=types_pb2.CASE_PURPOSE_INVESTIGATION,
)
ASSET = types_pb2.AssetRef(kind=types_pb2.ASSET_KIND_REAL_ESTATE, registry="110105", id="u-1")


class FakeEngine:
    """Answers from a script: ``behaviour[name]`` is an async callable of the request."""

    def __init__(self) -> None:
        self.behaviour: dict[str, Callable[[Any], Awaitable[Any]]] = {}
        self.calls: list[str] = []

    async def _run(self, name: str, req: Any, default: Any) -> Any:
        self.calls.append(name)
        fn = self.behaviour.get(name)
        return await fn(req) if fn else default

    async def get_ownership(self, req: Any) -> Any:
        return await self._run(
            "get_ownership",
            req,
            query_pb2.OwnershipAnswer(chain_id="re-1", outcome=types_pb2.OUTCOME_FOUND),
        )

    async def list_holdings(self, req: Any) -> AsyncIterator[Any]:
        self.calls.append("list_holdings")
        fn = self.behaviour.get("list_holdings")
        if fn is not None:
            async for item in await fn(req):
                yield item
            return
        for chain in ("a", "b"):
            yield query_pb2.HoldingsAnswer(chain_id=chain, outcome=types_pb2.OUTCOME_NONE_PROVEN)

    async def get_credit_status(self, req: Any) -> Any:
        return await self._run("get_credit_status", req, query_pb2.CreditAnswer())

    async def get_account(self, req: Any) -> Any:
        return await self._run("get_account", req, query_pb2.AccountAnswer(chain_id="bank"))

    async def get_history(self, req: Any) -> Any:
        return await self._run("get_history", req, query_pb2.HistoryAnswer(chain_id="ip"))

    async def get_state(self, req: Any) -> Any:
        return await self._run("get_state", req, query_pb2.StateAnswer(chain_id=req.chain_id))

    async def list_chains(self, req: Any) -> Any:
        return await self._run(
            "list_chains",
            req,
            query_pb2.ListChainsResponse(chains=[types_pb2.ChainInfo(chain_id="re-1")]),
        )

    async def get_chain(self, req: Any) -> Any:
        return await self._run("get_chain", req, query_pb2.GetChainResponse())

    async def register_chain(self, req: Any) -> Any:
        return await self._run("register_chain", req, admin_pb2.RegisterChainResponse())

    async def freeze_chain(self, req: Any) -> Any:
        return await self._run("freeze_chain", req, admin_pb2.FreezeChainResponse())

    async def recover_chain(self, req: Any) -> Any:
        return await self._run("recover_chain", req, admin_pb2.RecoverChainResponse())

    async def update_adapter_endpoint(self, req: Any) -> Any:
        return await self._run(
            "update_adapter_endpoint", req, admin_pb2.UpdateAdapterEndpointResponse()
        )

    async def admin_list_chains(self, req: Any) -> Any:
        return await self._run("admin_list_chains", req, admin_pb2.AdminListChainsResponse())


@pytest.fixture(scope="module")
def pki() -> dict[str, Any]:
    ca = TestCA.create()
    other = TestCA.create("another CA")
    return {
        "ca": ca,
        "server": ca.issue_server(),
        "client": ca.issue_client("court-1"),
        "stranger": other.issue_client("intruder"),
    }


def _options(pki: dict[str, Any], **overrides: Any) -> ServerOptions:
    server = pki["server"]
    base: dict[str, Any] = {
        "grpc_address": "127.0.0.1:0",
        "health_address": "127.0.0.1:0",
        "tls": TlsMaterial(server.cert_pem, server.key_pem, pki["ca"].cert_pem),
        "query_deadline_s": 5.0,
    }
    base.update(overrides)
    return ServerOptions(**base)


def _client_tls(pki: dict[str, Any], who: str | None = "client") -> ClientTls:
    issued = pki[who] if who else None
    return ClientTls(
        ca_pem=pki["ca"].cert_pem,
        cert_pem=issued.cert_pem if issued else None,
        key_pem=issued.key_pem if issued else None,
    )


def run(coro: Awaitable[Any]) -> Any:
    return asyncio.run(coro)  # type: ignore[arg-type]


class Harness:
    def __init__(self, pki: dict[str, Any], **overrides: Any) -> None:
        self.engine = FakeEngine()
        self.server = RelayServer(self.engine, _options(pki, **overrides))
        self.pki = pki

    async def __aenter__(self) -> Harness:
        await self.server.start()
        await self.server.set_serving(True)
        self.channel = aio_channel(f"localhost:{self.server.grpc_port}", _client_tls(self.pki))
        self.query = query_pb2_grpc.QueryServiceStub(self.channel)
        self.admin = admin_pb2_grpc.AdminServiceStub(self.channel)
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.channel.close()
        await self.server.stop(0)


async def _health(port: int, service: str = "") -> int:
    async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as ch:
        reply = await health_pb2_grpc.HealthStub(ch).Check(
            health_pb2.HealthCheckRequest(service=service), timeout=5
        )
        status: int = reply.status
        return status


def test_every_rpc_reaches_the_engine_over_tls(pki: dict[str, Any]) -> None:
    async def main() -> None:
        async with Harness(pki) as h:
            q, a = h.query, h.admin
            answer = await q.GetOwnership(
                query_pb2.GetOwnershipRequest(asset=ASSET, case_ref=CASE), timeout=5
            )
            assert answer.chain_id == "re-1" and answer.outcome == types_pb2.OUTCOME_FOUND
            party = types_pb2.PartyRef(
                kind=types_pb2.PARTY_KIND_PERSON, id_type=types_pb2.ID_TYPE_RESIDENT_ID, id="X"
            )
            stream = q.ListHoldings(
                query_pb2.ListHoldingsRequest(party=party, case_ref=CASE), timeout=5
            )
            assert [x.chain_id async for x in stream] == ["a", "b"]
            await q.GetCreditStatus(
                query_pb2.GetCreditStatusRequest(party=party, case_ref=CASE), timeout=5
            )
            await q.GetAccount(query_pb2.GetAccountRequest(account=ASSET, case_ref=CASE))
            await q.GetHistory(query_pb2.GetHistoryRequest(asset=ASSET, case_ref=CASE))
            state = await q.GetState(
                query_pb2.GetStateRequest(chain_id="c", key=b"k", case_ref=CASE)
            )
            assert state.chain_id == "c"
            chains = await q.ListChains(query_pb2.ListChainsRequest())
            assert [c.chain_id for c in chains.chains] == ["re-1"]
            await q.GetChain(query_pb2.GetChainRequest(chain_id="re-1"))
            await a.RegisterChain(admin_pb2.RegisterChainRequest())
            await a.FreezeChain(admin_pb2.FreezeChainRequest(chain_id="x"))
            await a.RecoverChain(admin_pb2.RecoverChainRequest(chain_id="x"))
            await a.UpdateAdapterEndpoint(admin_pb2.UpdateAdapterEndpointRequest(chain_id="x"))
            await a.ListChains(admin_pb2.AdminListChainsRequest())
            assert h.engine.calls == [
                "get_ownership",
                "list_holdings",
                "get_credit_status",
                "get_account",
                "get_history",
                "get_state",
                "list_chains",
                "get_chain",
                "register_chain",
                "freeze_chain",
                "recover_chain",
                "update_adapter_endpoint",
                "admin_list_chains",
            ]

    run(main())


def test_relay_error_arrives_with_error_info(pki: dict[str, Any]) -> None:
    async def frozen(req: Any) -> Any:
        raise RelayError(
            "CHAIN_FROZEN", "chain re-1 is frozen at height 9; recover it", chain_id="re-1",
            height=9,
        )  # fmt: skip

    async def main() -> None:
        async with Harness(pki) as h:
            h.engine.behaviour["get_ownership"] = frozen
            with pytest.raises(grpc.aio.AioRpcError) as info:
                await h.query.GetOwnership(
                    query_pb2.GetOwnershipRequest(asset=ASSET, case_ref=CASE), timeout=5
                )
            assert info.value.code() is grpc.StatusCode.FAILED_PRECONDITION
            failure = describe_rpc_error(info.value)
            assert failure.reason == "CHAIN_FROZEN" and failure.domain == "relay.judicial"
            assert failure.metadata == {"chain_id": "re-1", "height": "9"}
            assert failure.message == "chain re-1 is frozen at height 9; recover it"

    run(main())


def test_unexpected_exception_is_internal_without_traceback(pki: dict[str, Any]) -> None:
    async def broken(req: Any) -> Any:
        raise ZeroDivisionError("secret internals")

    async def main() -> None:
        async with Harness(pki) as h:
            h.engine.behaviour["get_chain"] = broken
            with pytest.raises(grpc.aio.AioRpcError) as info:
                await h.query.GetChain(query_pb2.GetChainRequest(chain_id="x"), timeout=5)
            assert info.value.code() is grpc.StatusCode.INTERNAL
            text = info.value.details() or ""
            assert "secret" not in text and "Traceback" not in text
            failure = describe_rpc_error(info.value)
            assert failure.reason == "INTERNAL" and failure.metadata["incident"] in text

    run(main())


@pytest.mark.parametrize(
    ("case", "reason", "field"),
    [
        (None, "CASE_REQUIRED", "case_ref"),
        (types_pb2.CaseRef(case_number="n", purpose=1), "CASE_INVALID", "case_ref.court"),
        (types_pb2.CaseRef(court="c", purpose=1), "CASE_INVALID", "case_ref.case_number"),
        (types_pb2.CaseRef(court="c", case_number="n"), "CASE_INVALID", "case_ref.purpose"),
        (types_pb2.CaseRef(court="c", case_number="n", purpose=99), "CASE_INVALID", None),
    ],
)
def test_queries_without_a_usable_case_are_refused(
    pki: dict[str, Any], case: types_pb2.CaseRef | None, reason: str, field: str | None
) -> None:
    async def main() -> None:
        async with Harness(pki) as h:
            req = query_pb2.GetOwnershipRequest(asset=ASSET)
            if case is not None:
                req.case_ref.CopyFrom(case)
            with pytest.raises(grpc.aio.AioRpcError) as info:
                await h.query.GetOwnership(req, timeout=5)
            assert info.value.code() is grpc.StatusCode.PERMISSION_DENIED
            failure = describe_rpc_error(info.value)
            assert failure.reason == reason
            if field:
                assert failure.metadata["field"] == field
            assert h.engine.calls == []  # refused before the engine saw it

    run(main())


def test_stream_failure_after_answers_reports_status(pki: dict[str, Any]) -> None:
    async def partial(req: Any) -> AsyncIterator[Any]:
        async def gen() -> AsyncIterator[Any]:
            yield query_pb2.HoldingsAnswer(chain_id="a")
            raise RelayError("STREAM_TRUNCATED", "cut", chain_id="a", height=3)

        return gen()

    async def main() -> None:
        async with Harness(pki) as h:
            h.engine.behaviour["list_holdings"] = partial
            got = []
            with pytest.raises(grpc.aio.AioRpcError) as info:
                async for item in h.query.ListHoldings(
                    query_pb2.ListHoldingsRequest(case_ref=CASE), timeout=5
                ):
                    got.append(item.chain_id)
            assert got == ["a"]
            assert describe_rpc_error(info.value).reason == "STREAM_TRUNCATED"

    run(main())


def test_service_deadline_bounds_a_hanging_engine(pki: dict[str, Any]) -> None:
    async def hang(req: Any) -> Any:
        await asyncio.sleep(60)

    async def main() -> None:
        async with Harness(pki, query_deadline_s=0.3) as h:
            h.engine.behaviour["get_account"] = hang
            loop = asyncio.get_running_loop()
            t0 = loop.time()
            with pytest.raises(grpc.aio.AioRpcError) as info:
                await h.query.GetAccount(
                    query_pb2.GetAccountRequest(account=ASSET, case_ref=CASE), timeout=10
                )
            assert loop.time() - t0 < 3
            assert info.value.code() is grpc.StatusCode.UNAVAILABLE
            assert describe_rpc_error(info.value).reason == "ADAPTER_UNAVAILABLE"

    run(main())


def test_request_size_limit(pki: dict[str, Any]) -> None:
    async def main() -> None:
        async with Harness(pki, max_request_bytes=4096) as h:
            big = query_pb2.GetStateRequest(chain_id="c", key=b"k" * 10_000, case_ref=CASE)
            with pytest.raises(grpc.aio.AioRpcError) as info:
                await h.query.GetState(big, timeout=5)
            assert info.value.code() is grpc.StatusCode.RESOURCE_EXHAUSTED
            assert "get_state" not in h.engine.calls
            small = query_pb2.GetStateRequest(chain_id="c", key=b"k" * 100, case_ref=CASE)
            assert (await h.query.GetState(small, timeout=5)).chain_id == "c"

    run(main())


def test_health_follows_lifecycle_and_shutdown_drains(pki: dict[str, Any]) -> None:
    async def main() -> None:
        engine = FakeEngine()
        entered = asyncio.Event()
        release = asyncio.Event()

        async def slow(req: Any) -> Any:
            entered.set()
            await release.wait()
            return query_pb2.HistoryAnswer(chain_id="slow")

        engine.behaviour["get_history"] = slow
        server = RelayServer(engine, _options(pki))
        await server.start()
        serving, not_serving = (
            health_pb2.HealthCheckResponse.SERVING,
            health_pb2.HealthCheckResponse.NOT_SERVING,
        )
        assert await _health(server.health_port) == not_serving
        await server.set_serving(True)
        assert await _health(server.health_port) == serving
        assert await _health(server.health_port, "relay.v1.QueryService") == serving

        channel = aio_channel(f"localhost:{server.grpc_port}", _client_tls(pki))
        stub = query_pb2_grpc.QueryServiceStub(channel)
        call = asyncio.ensure_future(
            stub.GetHistory(query_pb2.GetHistoryRequest(asset=ASSET, case_ref=CASE), timeout=10)
        )
        await entered.wait()
        stopping = asyncio.ensure_future(server.stop(5.0))
        await asyncio.sleep(0.2)
        # Draining: health already says NOT_SERVING, new calls are refused ...
        assert server.health._gracefully_shutting_down
        with pytest.raises(grpc.aio.AioRpcError):
            await stub.ListChains(query_pb2.ListChainsRequest(), timeout=2)
        # ... and the in-flight call still completes.
        release.set()
        answer = await call
        assert answer.chain_id == "slow"
        await stopping
        await channel.close()
        with pytest.raises(grpc.aio.AioRpcError):
            await _health(server.health_port)

    run(main())


def test_client_certificate_required_when_configured(pki: dict[str, Any]) -> None:
    async def attempt(tls: ClientTls, port: int) -> grpc.StatusCode:
        async with aio_channel(f"localhost:{port}", tls) as ch:
            try:
                await query_pb2_grpc.QueryServiceStub(ch).ListChains(
                    query_pb2.ListChainsRequest(), timeout=5
                )
            except grpc.aio.AioRpcError as e:
                return e.code()
            return grpc.StatusCode.OK

    async def main() -> None:
        server = RelayServer(FakeEngine(), _options(pki, require_client_cert=True))
        await server.start()
        try:
            port = server.grpc_port
            assert await attempt(_client_tls(pki), port) is grpc.StatusCode.OK
            assert await attempt(_client_tls(pki, None), port) is grpc.StatusCode.UNAVAILABLE
            stranger = await attempt(_client_tls(pki, "stranger"), port)
            assert stranger is grpc.StatusCode.UNAVAILABLE
        finally:
            await server.stop(0)

    run(main())


def test_client_refuses_a_server_from_another_ca(pki: dict[str, Any]) -> None:
    async def main() -> None:
        async with Harness(pki) as h:
            other = TestCA.create("rogue")
            tls = ClientTls(ca_pem=other.cert_pem)
            async with aio_channel(f"localhost:{h.server.grpc_port}", tls) as ch:
                with pytest.raises(grpc.aio.AioRpcError) as info:
                    await query_pb2_grpc.QueryServiceStub(ch).ListChains(
                        query_pb2.ListChainsRequest(), timeout=5
                    )
                assert info.value.code() is grpc.StatusCode.UNAVAILABLE
            assert h.engine.calls == []

    run(main())


def test_reflection_lists_and_describes(pki: dict[str, Any]) -> None:
    async def main() -> None:
        async with Harness(pki) as h:
            port = h.server.grpc_port

            def reflect() -> tuple[list[str], Any]:
                creds = _client_tls(pki).credentials()
                with grpc.secure_channel(f"localhost:{port}", creds) as ch:
                    db = ProtoReflectionDescriptorDatabase(ch)
                    services = list(db.get_services())
                    file = db.FindFileContainingSymbol("relay.v1.QueryService")
                    return services, file

            services, file = await asyncio.to_thread(reflect)
            assert {
                "relay.v1.QueryService",
                "relay.v1.AdminService",
                "grpc.health.v1.Health",
            } <= set(services)
            assert isinstance(file, descriptor_pb2.FileDescriptorProto)
            service = next(s for s in file.service if s.name == "QueryService")
            method = next(m for m in service.method if m.name == "GetOwnership")
            assert method.input_type == ".relay.v1.GetOwnershipRequest"
            assert method.output_type == ".relay.v1.OwnershipAnswer"

    run(main())


def test_a_second_server_on_a_taken_port_fails_to_start(pki: dict[str, Any]) -> None:
    async def main() -> None:
        async with Harness(pki) as h:
            clash = RelayServer(
                FakeEngine(), _options(pki, grpc_address=f"127.0.0.1:{h.server.grpc_port}")
            )
            with pytest.raises((OSError, RuntimeError)):
                await clash.start()
            await clash.stop(0)

    run(main())


def test_admin_service_maps_errors_too(pki: dict[str, Any]) -> None:
    async def exists(req: Any) -> Any:
        raise RelayError("ALREADY_EXISTS", "chain re-1 is already registered", chain_id="re-1")

    async def main() -> None:
        async with Harness(pki) as h:
            h.engine.behaviour["register_chain"] = exists
            with pytest.raises(grpc.aio.AioRpcError) as info:
                await h.admin.RegisterChain(admin_pb2.RegisterChainRequest(), timeout=5)
            assert info.value.code() is grpc.StatusCode.ALREADY_EXISTS
            assert describe_rpc_error(info.value).metadata == {"chain_id": "re-1"}

    run(main())
