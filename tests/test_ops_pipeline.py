"""relay/service/pipeline.py: the one interceptor doing request context, metrics, access and
audit keeps each step's behaviour (issue 4 point 5, issue 7 point 4), and the audit entry's
fast encoder writes exactly the canonical bytes of relay/audit/entry.py."""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import grpc
import grpc.aio
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from prometheus_client.parser import text_string_to_metric_families

from relay.access import control
from relay.access.control import AccessInterceptor, RateLimiter, current_identity
from relay.access.identity import parse_dev_identity
from relay.audit.entry import MAX_DIGESTS, MAX_FIELD_CHARS, decode_entry, make_entry
from relay.audit.log import AuditLog
from relay.audit.recorder import AuditInterceptor
from relay.engine.evidence import RelaySigner
from relay.logs import REQUEST_ID_KEY, method_var, request_id_var
from relay.metrics import RelayMetrics
from relay.pb.relay.v1 import query_pb2
from relay.pb.relay.v1 import types_pb2 as pb
from relay.service.pipeline import RequestPipeline
from relay.store import SQLiteStore

QUERY = "relay.v1.QueryService"
OWNERSHIP = f"/{QUERY}/GetOwnership"
HOLDINGS = f"/{QUERY}/ListHoldings"
HEX32 = re.compile(r"[0-9a-f]{32}")
# gRPC metadata values are ASCII: a court code without its province character.
DEV_IDENTITY = (("x-relay-dev-identity", "court:J0105:clerk"),)
CASE = pb.CaseRef(court="京0105", case_number="(2026)京0105执1234号", purpose=1)

# ------------------------------------------------------------------ the entry encoder

_text = st.text(
    alphabet=st.characters(blacklist_categories=("Cs",)),  # no lone surrogates (not UTF-8)
    max_size=600,
)


@settings(max_examples=300, deadline=None)
@given(
    strings=st.lists(_text, min_size=13, max_size=13),
    numbers=st.tuples(st.integers(0, 2**63), st.integers(-5, 2**31)),
    digests=st.lists(st.text(max_size=70), max_size=MAX_DIGESTS + 20),
)
def test_any_field_content_makes_an_entry_the_log_reader_accepts(
    strings: list[str], numbers: tuple[int, int], digests: list[str]
) -> None:
    (kind, method, actor, role, code, fingerprint, court, case_court, case_number, target,
     outcome, reason, request_digest) = strings  # fmt: skip
    fields: dict[str, Any] = {
        "time_ns": numbers[0],
        "kind": kind,
        "method": method,
        "actor": actor,
        "role": role,
        "actor_code": code,
        "actor_fingerprint": fingerprint,
        "court": court,
        "case_court": case_court,
        "case_number": case_number,
        "case_purpose": numbers[1],
        "target": target,
        "request_digest": request_digest,
        "outcome": outcome,
        "reason": reason,
        "result_digest": request_digest[::-1],
        "evidence_digests": digests,
    }
    entry = make_entry(**fields)
    assert entry == make_entry(**fields)  # deterministic
    if len(entry) <= 16 * 1024:
        decoded = decode_entry(entry)  # canonical, so the log's own reader accepts it
        assert decoded["kind"] == kind[:MAX_FIELD_CHARS]


# ------------------------------------------------------------------ over a real socket


def _family(metrics: RelayMetrics, name: str, method: str) -> dict[str, float]:
    out: dict[str, float] = {}
    for family in text_string_to_metric_families(metrics.exposition()[0].decode()):
        for s in family.samples:
            if s.name == name and s.labels.get("grpc_method") == method:
                out[s.labels.get("grpc_code", "")] = float(s.value)
    return out


async def _handled(metrics: RelayMetrics, method: str, *, timeout_s: float = 10.0) -> None:
    """Wait until the server has counted the call: the client sees a refusal's status as
    soon as it is sent, a moment before the server's handler finishes counting it."""
    end = asyncio.get_running_loop().time() + timeout_s
    while not _family(metrics, "grpc_server_handled_total", method):
        assert asyncio.get_running_loop().time() < end, "the call was never counted"
        await asyncio.sleep(0.01)


@pytest.fixture(autouse=True)
def _dev_identities(monkeypatch: pytest.MonkeyPatch) -> None:
    """Callers are whoever DEV_IDENTITY names (certificates are test_access_*'s subject)."""

    def identity(context: Any, *, insecure_dev: bool = False) -> Any:
        return parse_dev_identity(dict(context.invocation_metadata())[DEV_IDENTITY[0][0]])

    monkeypatch.setattr(control, "identity_from_context", identity)


async def _serve(tmp: Path, *, fail_audit: bool = False, refuse: bool = False) -> Any:
    store = await SQLiteStore.open(tmp / "relay.db")
    signer = RelaySigner.ed25519(key_id="k", seed=b"\x07" * 32)
    audit_log = await AuditLog.open(store=store, signer=signer)
    if fail_audit:

        async def broken(entry: bytes, *, court: str = "") -> int:
            raise RuntimeError("disk full")

        audit_log.append = broken  # type: ignore[method-assign]
    metrics = RelayMetrics(process_collectors=False)
    # With ``refuse`` the in-flight cap is 0: the access step turns every call away.
    access = AccessInterceptor(limiter=RateLimiter(1000.0, 1000, 0 if refuse else 100))
    audit = AuditInterceptor(audit_log, salt=b"s" * 32, identity=current_identity)
    pipeline = RequestPipeline(metrics=metrics, access=access, audit=audit)
    seen: list[tuple[str | None, str | None, str | None]] = []

    async def ownership(request: query_pb2.GetOwnershipRequest, context: Any) -> Any:
        await asyncio.sleep(0.01 * (len(request.asset.id) % 3))  # interleave the calls
        who = current_identity()
        seen.append((request_id_var.get(), method_var.get(), who.code if who else None))
        return query_pb2.OwnershipAnswer(chain_id=request.asset.id)

    async def holdings(request: Any, context: Any) -> AsyncIterator[Any]:
        for i in range(2):
            yield query_pb2.HoldingsAnswer(chain_id=f"c{i}")

    server = grpc.aio.server(interceptors=[pipeline])
    server.add_generic_rpc_handlers(
        [
            grpc.method_handlers_generic_handler(
                QUERY,
                {
                    "GetOwnership": grpc.unary_unary_rpc_method_handler(
                        ownership,
                        request_deserializer=query_pb2.GetOwnershipRequest.FromString,
                        response_serializer=query_pb2.OwnershipAnswer.SerializeToString,
                    ),
                    "ListHoldings": grpc.unary_stream_rpc_method_handler(
                        holdings,
                        request_deserializer=query_pb2.ListHoldingsRequest.FromString,
                        response_serializer=query_pb2.HoldingsAnswer.SerializeToString,
                    ),
                },
            )
        ]
    )
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    return server, port, store, audit_log, metrics, seen


def test_unary_calls_get_request_ids_metrics_identity_and_audit_entries(tmp_path: Path) -> None:
    async def go() -> None:
        server, port, store, audit_log, metrics, seen = await _serve(tmp_path)
        try:
            async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
                call = channel.unary_unary(
                    OWNERSHIP,
                    request_serializer=query_pb2.GetOwnershipRequest.SerializeToString,
                    response_deserializer=query_pb2.OwnershipAnswer.FromString,
                )

                async def one(i: int) -> tuple[str | None, str, str]:
                    rid = f"req-{i}" if i % 2 else None
                    request = query_pb2.GetOwnershipRequest(
                        asset=pb.AssetRef(registry="110105", id="A" * (i + 1)), case_ref=CASE
                    )
                    extra = ((REQUEST_ID_KEY, rid),) if rid else ()
                    c = call(request, metadata=DEV_IDENTITY + extra)
                    answer = await c
                    trailers = dict(tuple(await c.trailing_metadata()))
                    return rid, str(trailers[REQUEST_ID_KEY]), answer.chain_id

                results = await asyncio.gather(*(one(i) for i in range(8)))
        finally:
            await server.stop(0)
        for sent, trailer, _ in results:
            assert trailer == sent if sent else HEX32.fullmatch(trailer)
        # The servicer saw each call's own id, the log method and the identity.
        assert sorted(r for r, _, _ in seen) == sorted(t for _, t, _ in results)  # type: ignore[type-var]
        assert {(m, c) for _, m, c in seen} == {("QueryService/GetOwnership", "J0105")}
        assert _family(metrics, "grpc_server_handled_total", "GetOwnership")["OK"] == 8
        assert _family(metrics, "grpc_server_started_total", "GetOwnership")[""] == 8
        assert _family(metrics, "grpc_server_msg_sent_total", "GetOwnership")[""] == 8
        rows = await audit_log.leaves()
        entries = [decode_entry(r.entry) for r in rows]
        assert len(entries) == 8 and {e["outcome"] for e in entries} == {"OK"}
        assert {e["court"] for e in entries} == {"J0105"} and {r.court for r in rows} == {"J0105"}
        assert all(e["case_number"] == CASE.case_number for e in entries)
        await audit_log.close()
        await store.close()

    asyncio.run(go())


def test_a_call_whose_audit_entry_cannot_be_committed_is_not_answered(tmp_path: Path) -> None:
    async def go() -> None:
        server, port, store, _, metrics, _ = await _serve(tmp_path, fail_audit=True)
        try:
            async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
                call = channel.unary_unary(OWNERSHIP)
                request = query_pb2.GetOwnershipRequest(case_ref=CASE).SerializeToString()
                with pytest.raises(grpc.aio.AioRpcError) as info:
                    await call(request, metadata=DEV_IDENTITY)
            await _handled(metrics, "GetOwnership")
        finally:
            await server.stop(0)
        assert info.value.code() == grpc.StatusCode.INTERNAL
        assert "audit log could not record" in (info.value.details() or "")
        assert _family(metrics, "grpc_server_handled_total", "GetOwnership")["Internal"] == 1
        await store.close()

    asyncio.run(go())


def test_a_refused_caller_is_counted_and_not_audited(tmp_path: Path) -> None:
    async def go() -> None:
        server, port, store, audit_log, metrics, seen = await _serve(tmp_path, refuse=True)
        try:
            async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
                call = channel.unary_unary(OWNERSHIP)
                request = query_pb2.GetOwnershipRequest(case_ref=CASE).SerializeToString()
                with pytest.raises(grpc.aio.AioRpcError) as info:
                    await call(request, metadata=DEV_IDENTITY)
            await _handled(metrics, "GetOwnership")
        finally:
            await server.stop(0)
        assert info.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        assert seen == []  # the servicer never ran
        handled = _family(metrics, "grpc_server_handled_total", "GetOwnership")
        assert handled == {"ResourceExhausted": 1}  # series exist only once used here
        assert await audit_log.leaves() == []  # turned away before the service: no entry
        await audit_log.close()
        await store.close()

    asyncio.run(go())


def test_streaming_calls_run_every_step(tmp_path: Path) -> None:
    async def go() -> None:
        server, port, store, audit_log, metrics, _ = await _serve(tmp_path)
        try:
            async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
                call = channel.unary_stream(HOLDINGS)
                request = query_pb2.ListHoldingsRequest(case_ref=CASE).SerializeToString()
                stream = call(request, metadata=((REQUEST_ID_KEY, "stream-1"), *DEV_IDENTITY))
                items = [query_pb2.HoldingsAnswer.FromString(b) async for b in stream]
                trailers = dict(tuple(await stream.trailing_metadata()))
        finally:
            await server.stop(0)
        assert [i.chain_id for i in items] == ["c0", "c1"]
        assert trailers[REQUEST_ID_KEY] == "stream-1"
        assert _family(metrics, "grpc_server_msg_sent_total", "ListHoldings")[""] == 2
        assert _family(metrics, "grpc_server_handled_total", "ListHoldings")["OK"] == 1
        (row,) = await audit_log.leaves()
        entry = decode_entry(row.entry)
        assert entry["method"] == HOLDINGS and entry["court"] == "J0105"
        await audit_log.close()
        await store.close()

    asyncio.run(go())


# ------------------------------------------------------------------ wrapper reuse


class _Details:
    def __init__(self, method: str) -> None:
        self.method = method
        self.invocation_metadata = ()


def test_one_wrapper_per_method_rebuilt_for_a_new_handler() -> None:
    async def behaviour(request: Any, context: Any) -> Any:
        return request

    first = grpc.unary_unary_rpc_method_handler(behaviour)
    second = grpc.unary_unary_rpc_method_handler(behaviour)
    pipeline = RequestPipeline(metrics=RelayMetrics(process_collectors=False))

    async def run() -> None:
        handlers: Iterator[Any] = iter((first, first, second))

        async def continuation(_: Any) -> Any:
            return next(handlers)

        a = await pipeline.intercept_service(continuation, _Details(OWNERSHIP))
        b = await pipeline.intercept_service(continuation, _Details(OWNERSHIP))
        c = await pipeline.intercept_service(continuation, _Details(OWNERSHIP))
        assert a is b and a is not first
        assert c is not a and c is not second

        async def nothing(_: Any) -> Any:
            return None

        assert await pipeline.intercept_service(nothing, _Details("/x.Y/Z")) is None

    asyncio.run(run())
