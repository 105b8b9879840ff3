"""Clients of partner adapters (proto/relay/adapter/v1/adapter.proto): the
:class:`AdapterClient` protocol the engine uses, an in-process client that calls an
``AdapterServiceServicer`` directly, a gRPC client over TLS, and the default factory that
picks one from a chain descriptor's ``AdapterEndpoint``.

Adapters are untrusted (DESIGN.md principle 1, THREATS.md "a lying or broken adapter"): this
module only bounds what they can do to the relay. Every call has a deadline; every message,
byte field and stream is size-limited; idempotent calls (all of them: they are reads) are
retried a bounded number of times with full-jitter exponential backoff on UNAVAILABLE and
DEADLINE_EXCEEDED; a per-chain circuit breaker fails fast after repeated failures. Failures
are :class:`~relay.engine.errors.RelayError` (ADAPTER_UNAVAILABLE, STREAM_TRUNCATED,
MALFORMED_INPUT, LIMIT_EXCEEDED, HEIGHT_OUT_OF_RANGE, UNSUPPORTED). What the bytes mean is
checked elsewhere (relay/engine/clients.py, queries.py).

In-process adapters are found by name in the entry-point group ``relay.adapters``
(:func:`load_entry_point`): the entry point names a callable that takes the chain's
``ChainDescriptor`` as keyword ``descriptor`` and returns a servicer implementing every
AdapterService method. A missing, duplicated, unloadable or non-conforming entry point raises
:class:`AdapterLoadError` naming it, which stops start-up.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import importlib.metadata
import inspect
import random
import time
from collections.abc import AsyncIterator, Callable, Coroutine, Iterable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final, ParamSpec, Protocol, TypeVar

import grpc
import grpc.aio
from google.protobuf.message import Message

from relay.engine.errors import RelayError
from relay.engine.settings import EngineSettings
from relay.pb.relay.adapter.v1 import adapter_pb2 as apb
from relay.pb.relay.adapter.v1 import adapter_pb2_grpc as apb_grpc
from relay.pb.relay.v1 import types_pb2

if TYPE_CHECKING:
    from relay.metrics import RelayMetrics

ENTRY_POINT_GROUP: Final = "relay.adapters"
MAX_CONSISTENCY_HASHES: Final = 64
"""RFC 9162 consistency proofs of trees below 2**64 leaves hold at most 64 hashes."""

SERVICE_METHODS: Final = (
    "Describe",
    "GetLatestHeight",
    "GetLightBlocks",
    "GetCheckpoint",
    "GetConsistencyProof",
    "Query",
    "ListByParty",
)
_SERVICE: Final = "/relay.adapter.v1.AdapterService/"
CHAIN_ID_METADATA: Final = "relay-chain-id"
"""Metadata key naming, on every call of the gRPC client, the chain the relay asks about: an
adapter process serving several chains on one endpoint picks the chain by it (requests carry
no chain id). It is a routing hint only: the relay checks ``Describe`` and every answer."""


class AdapterClient(Protocol):
    """What the engine asks of one chain's adapter. Every method is bounded by the
    adapter deadline and the size limits, and raises RelayError."""

    chain_id: str

    async def describe(self) -> apb.DescribeResponse: ...

    async def latest_height(self) -> int: ...

    async def light_blocks(self, from_height: int, to_height: int) -> list[bytes]:
        """Protobuf light blocks of ``from_height..to_height`` inclusive, in order."""
        ...

    async def checkpoint(self, size: int | None) -> bytes:
        """The signed checkpoint note of tree size ``size`` (None: the newest)."""
        ...

    async def consistency_proof(self, size1: int, size2: int) -> list[bytes]: ...

    async def query(self, query: apb.DomainQuery, height: int | None) -> apb.QueryResult: ...

    async def list_by_party(
        self, party_key: bytes, kinds: Sequence[int], height: int | None
    ) -> list[apb.QueryResult]: ...

    async def close(self) -> None: ...


AdapterFactory = Callable[[types_pb2.ChainDescriptor], AdapterClient]
"""Builds the client of a chain's adapter from its descriptor."""


class AdapterLoadError(Exception):
    """An in-process adapter could not be loaded: the message names the entry point and why.
    Raised at start-up (and on registration), never swallowed."""


# --------------------------------------------------------------------------------- breaker


class CircuitBreaker:
    """Per-chain circuit breaker: closed until ``threshold`` consecutive failures, then open
    (calls fail fast) for ``reset_s`` seconds, then half open: one trial call decides
    whether it closes again or re-opens. ``monotonic`` is injectable for tests."""

    def __init__(
        self, *, threshold: int, reset_s: float, monotonic: Callable[[], float] = time.monotonic
    ) -> None:
        self.threshold = threshold
        self.reset_s = reset_s
        self._monotonic = monotonic
        self.failures = 0
        self.opened_at: float | None = None
        self._trial_in_flight = False
        self.opened_count = 0

    @property
    def state(self) -> str:
        if self.opened_at is None:
            return "closed"
        if self._monotonic() - self.opened_at >= self.reset_s:
            return "half-open"
        return "open"

    def before_call(self, chain_id: str) -> bool:
        """Raise ADAPTER_UNAVAILABLE while open; return True when this call is the trial of
        a half-open breaker."""
        state = self.state
        if state == "closed":
            return False
        if state == "open" or self._trial_in_flight:
            assert self.opened_at is not None
            remaining = max(0.0, self.reset_s - (self._monotonic() - self.opened_at))
            raise RelayError(
                "ADAPTER_UNAVAILABLE",
                f"the adapter of chain {chain_id!r} failed {self.failures} times in a row; "
                f"calls are suspended (circuit breaker open) for {remaining:.1f} s more",
                chain_id=chain_id,
                retry_after_s=max(remaining, 0.1),
                check="CIRCUIT_OPEN",
            )
        self._trial_in_flight = True
        return True

    def record(self, *, ok: bool, trial: bool) -> None:
        if trial:
            self._trial_in_flight = False
        if ok:
            self.failures = 0
            self.opened_at = None
            return
        self.failures += 1
        if trial or (self.opened_at is None and self.failures >= self.threshold):
            self.opened_at = self._monotonic()
            self.opened_count += 1


# ------------------------------------------------------------------------------ transports


class CallError(Exception):
    """A call that ended with a gRPC status (from the wire or an in-process abort)."""

    def __init__(self, code: grpc.StatusCode, details: str) -> None:
        self.code = code
        self.details = details
        super().__init__(f"{code.name}: {details}")


class _Transport(Protocol):
    async def unary(self, method: str, request: Message, timeout: float) -> Message: ...

    def stream(self, method: str, request: Message, timeout: float) -> AsyncIterator[Message]: ...

    async def close(self) -> None: ...


_RETRYABLE: Final = frozenset({grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED})


@dataclass
class AdapterCallStats:
    """Counters for metrics (a later issue exports them)."""

    calls: int = 0
    failures: int = 0
    retries: int = 0
    timeouts: int = 0
    breaker_rejections: int = 0


_P = ParamSpec("_P")
_R = TypeVar("_R")


def _metered(
    method: str,
) -> Callable[[Callable[_P, Coroutine[Any, Any, _R]]], Callable[_P, Coroutine[Any, Any, _R]]]:
    """Time one AdapterService call of a _ResilientClient (retries and the checks of what
    came back included) into its ``metrics``, with the RelayError reason when it fails."""

    def decorate(
        fn: Callable[_P, Coroutine[Any, Any, _R]],
    ) -> Callable[_P, Coroutine[Any, Any, _R]]:
        async def call(*args: _P.args, **kwargs: _P.kwargs) -> _R:
            client = args[0]
            assert isinstance(client, _ResilientClient)
            metrics = client.metrics
            if metrics is None:
                return await fn(*args, **kwargs)
            t0 = time.perf_counter()
            try:
                result = await fn(*args, **kwargs)
            except RelayError as e:
                seconds = time.perf_counter() - t0
                metrics.record_adapter_request(
                    client.chain_id, method=method, seconds=seconds, reason=e.reason
                )
                raise
            seconds = time.perf_counter() - t0
            metrics.record_adapter_request(client.chain_id, method=method, seconds=seconds)
            return result

        call.__name__ = getattr(fn, "__name__", method)
        call.__doc__ = fn.__doc__
        return call

    return decorate


class _ResilientClient:
    """AdapterClient over a transport: deadlines, limits, retries, circuit breaker."""

    metrics: RelayMetrics | None = None
    """Where calls are timed and failures counted (see :meth:`bind_metrics`)."""

    def __init__(
        self,
        *,
        chain_id: str,
        transport: _Transport,
        settings: EngineSettings,
        rng: random.Random | None = None,
        monotonic: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Any] = asyncio.sleep,
    ) -> None:
        self.chain_id = chain_id
        self._transport = transport
        self._settings = settings
        self._rng = rng or random.Random()
        self._sleep = sleep
        self.breaker = CircuitBreaker(
            threshold=settings.breaker_failure_threshold,
            reset_s=settings.breaker_reset_s,
            monotonic=monotonic,
        )
        self.stats = AdapterCallStats()

    def bind_metrics(self, metrics: RelayMetrics | None) -> None:
        """Time every call into ``metrics`` (relay_adapter_request_duration_seconds ...)."""
        self.metrics = metrics

    # -- plumbing

    def _error(self, method: str, code: grpc.StatusCode, details: str) -> RelayError:
        chain = self.chain_id
        details = details[:300]
        if code == grpc.StatusCode.DEADLINE_EXCEEDED:
            return RelayError(
                "ADAPTER_UNAVAILABLE",
                f"the adapter of chain {chain!r} did not answer {method} within "
                f"{self._settings.adapter_deadline_s:g} s; check the partner's adapter",
                chain_id=chain,
                check="DEADLINE_EXCEEDED",
            )
        if code == grpc.StatusCode.RESOURCE_EXHAUSTED:
            return RelayError(
                "LIMIT_EXCEEDED",
                f"the adapter of chain {chain!r} answered {method} with more than the relay "
                f"accepts ({details})",
                chain_id=chain,
                check=code.name,
            )
        if code == grpc.StatusCode.NOT_FOUND:
            return RelayError(
                "HEIGHT_OUT_OF_RANGE",
                f"the adapter of chain {chain!r} has no data for {method} ({details})",
                chain_id=chain,
                check=code.name,
            )
        if code == grpc.StatusCode.UNIMPLEMENTED:
            return RelayError(
                "UNSUPPORTED",
                f"the adapter of chain {chain!r} does not offer {method}",
                chain_id=chain,
                check=code.name,
            )
        return RelayError(
            "ADAPTER_UNAVAILABLE",
            f"the adapter of chain {chain!r} failed {method}: {code.name} {details}",
            chain_id=chain,
            check=code.name,
        )

    async def _attempts(self, method: str, once: Callable[[], Any]) -> Any:
        s = self._settings
        attempt = 0
        while True:
            trial = self.breaker.before_call(self.chain_id)
            self.stats.calls += 1
            try:
                async with asyncio.timeout(s.adapter_deadline_s):
                    result = await once()
            except TimeoutError:
                code, details = grpc.StatusCode.DEADLINE_EXCEEDED, "deadline exceeded"
                self.stats.timeouts += 1
            except CallError as e:
                code, details = e.code, e.details
            except RelayError:
                # A limit or shape violation found while reading: the adapter answered.
                self.breaker.record(ok=True, trial=trial)
                self.stats.failures += 1
                raise
            else:
                self.breaker.record(ok=True, trial=trial)
                return result
            retryable = code in _RETRYABLE
            # Only transport-level failures count against the breaker: an adapter that
            # answers NOT_FOUND is up.
            self.breaker.record(ok=not retryable, trial=trial)
            self.stats.failures += 1
            if not retryable or attempt >= s.adapter_retries:
                raise self._error(method, code, details)
            cap = min(s.retry_max_delay_s, s.retry_base_delay_s * (2**attempt))
            attempt += 1
            self.stats.retries += 1
            await self._sleep(self._rng.uniform(0, cap))

    def _check_size(self, method: str, message: Message) -> int:
        size = message.ByteSize()
        if size > self._settings.max_message_bytes:
            raise RelayError(
                "LIMIT_EXCEEDED",
                f"the adapter of chain {self.chain_id!r} sent a {size}-byte {method} message; "
                f"the limit is {self._settings.max_message_bytes}",
                chain_id=self.chain_id,
            )
        return size

    async def _unary(self, method: str, request: Message) -> Any:
        async def once() -> Message:
            response = await self._transport.unary(
                method, request, self._settings.adapter_deadline_s
            )
            self._check_size(method, response)
            return response

        return await self._attempts(method, once)

    async def _stream(self, method: str, request: Message, *, max_items: int) -> list[Any]:
        async def once() -> list[Message]:
            items: list[Message] = []
            total = 0
            budget = self._settings.max_stream_bytes
            stream = self._transport.stream(method, request, self._settings.adapter_deadline_s)
            try:
                async for item in stream:
                    total += self._check_size(method, item)
                    if len(items) >= max_items:
                        raise RelayError(
                            "LIMIT_EXCEEDED",
                            f"the adapter of chain {self.chain_id!r} streamed more than "
                            f"{max_items} {method} items; the stream was cut off",
                            chain_id=self.chain_id,
                        )
                    if total > budget:
                        # Items are kept until the whole stream is checked: without a total
                        # a lying adapter could make the relay hold items x message limit.
                        raise RelayError(
                            "LIMIT_EXCEEDED",
                            f"the adapter of chain {self.chain_id!r} streamed more than "
                            f"{budget} bytes of {method} items; the stream was cut off",
                            chain_id=self.chain_id,
                        )
                    items.append(item)
            finally:
                closer = getattr(stream, "aclose", None)
                if closer is not None:
                    await closer()
            return items

        result: list[Any] = await self._attempts(method, once)
        return result

    # -- AdapterClient

    @_metered("Describe")
    async def describe(self) -> apb.DescribeResponse:
        response: apb.DescribeResponse = await self._unary("Describe", apb.DescribeRequest())
        return response

    @_metered("GetLatestHeight")
    async def latest_height(self) -> int:
        response: apb.GetLatestHeightResponse = await self._unary(
            "GetLatestHeight", apb.GetLatestHeightRequest()
        )
        return int(response.height)

    @_metered("GetLightBlocks")
    async def light_blocks(self, from_height: int, to_height: int) -> list[bytes]:
        count = to_height - from_height + 1
        if from_height < 1 or count < 1:
            raise ValueError("light block range must be non-empty and start at 1 or above")
        if count > self._settings.max_light_blocks_per_fetch:
            raise ValueError("light block range is larger than max_light_blocks_per_fetch")
        request = apb.GetLightBlocksRequest(
            from_height=from_height,
            to_height=to_height,
            encoding=apb.LIGHT_BLOCK_ENCODING_COMETBFT_PROTO,
        )
        items: list[apb.LightBlock] = await self._stream("GetLightBlocks", request, max_items=count)
        if len(items) < count:
            raise RelayError(
                "STREAM_TRUNCATED",
                f"the adapter of chain {self.chain_id!r} sent {len(items)} of the {count} "
                f"light blocks {from_height}..{to_height}",
                chain_id=self.chain_id,
                height=from_height + len(items),
                expected=str(count),
                calculated=str(len(items)),
            )
        out: list[bytes] = []
        for i, item in enumerate(items):
            height = from_height + i
            if item.height != height:
                raise RelayError(
                    "MALFORMED_INPUT",
                    f"the adapter of chain {self.chain_id!r} sent light block {i + 1} of "
                    f"{from_height}..{to_height} labelled height {item.height}",
                    chain_id=self.chain_id,
                    height=height,
                    expected=str(height),
                    calculated=str(item.height),
                )
            if item.encoding != apb.LIGHT_BLOCK_ENCODING_COMETBFT_PROTO or not item.light_block:
                raise RelayError(
                    "MALFORMED_INPUT",
                    f"the adapter of chain {self.chain_id!r} sent light block {height} empty "
                    "or in an encoding the relay did not ask for",
                    chain_id=self.chain_id,
                    height=height,
                )
            out.append(bytes(item.light_block))
        return out

    @_metered("GetCheckpoint")
    async def checkpoint(self, size: int | None) -> bytes:
        request = (
            apb.GetCheckpointRequest() if size is None else apb.GetCheckpointRequest(size=size)
        )
        response: apb.GetCheckpointResponse = await self._unary("GetCheckpoint", request)
        if not response.signed_note:
            raise RelayError(
                "MALFORMED_INPUT",
                f"the adapter of chain {self.chain_id!r} sent an empty checkpoint",
                chain_id=self.chain_id,
                height=size,
            )
        return bytes(response.signed_note)

    @_metered("GetConsistencyProof")
    async def consistency_proof(self, size1: int, size2: int) -> list[bytes]:
        response: apb.GetConsistencyProofResponse = await self._unary(
            "GetConsistencyProof", apb.GetConsistencyProofRequest(size1=size1, size2=size2)
        )
        if len(response.hashes) > MAX_CONSISTENCY_HASHES:
            raise RelayError(
                "LIMIT_EXCEEDED",
                f"the adapter of chain {self.chain_id!r} sent a consistency proof of "
                f"{len(response.hashes)} hashes (at most {MAX_CONSISTENCY_HASHES})",
                chain_id=self.chain_id,
                height=size2,
            )
        return [bytes(h) for h in response.hashes]

    @_metered("Query")
    async def query(self, query: apb.DomainQuery, height: int | None) -> apb.QueryResult:
        request = apb.QueryRequest(query=query)
        if height is not None:
            request.height = height
        response: apb.QueryResult = await self._unary("Query", request)
        return response

    @_metered("ListByParty")
    async def list_by_party(
        self, party_key: bytes, kinds: Sequence[int], height: int | None
    ) -> list[apb.QueryResult]:
        request = apb.ListByPartyRequest(party_key=party_key)
        request.kinds.extend(types_pb2.AssetKind.ValueType(k) for k in kinds)
        if height is not None:
            request.height = height
        items: list[apb.QueryResult] = await self._stream(
            "ListByParty", request, max_items=self._settings.max_stream_items
        )
        return items

    async def close(self) -> None:
        await self._transport.close()


# ------------------------------------------------------------------------ in-process


class _AbortError(Exception):
    pass


class InProcessContext:
    """The part of ``grpc.aio.ServicerContext`` an adapter servicer may use in-process."""

    def __init__(self, deadline_s: float) -> None:
        self._deadline = time.monotonic() + deadline_s
        self.code: grpc.StatusCode | None = None
        self.details = ""

    async def abort(
        self, code: grpc.StatusCode, details: str = "", trailing_metadata: object = ()
    ) -> None:
        self.code, self.details = code, details
        raise _AbortError(details)

    def set_code(self, code: grpc.StatusCode) -> None:
        self.code = code

    def set_details(self, details: str) -> None:
        self.details = details

    def time_remaining(self) -> float:
        return max(0.0, self._deadline - time.monotonic())

    def invocation_metadata(self) -> tuple[()]:
        return ()

    def peer(self) -> str:
        return "in-process"

    def cancelled(self) -> bool:
        return False

    def done(self) -> bool:
        return False

    def auth_context(self) -> dict[str, list[bytes]]:
        return {}


def _call_error(context: InProcessContext, e: BaseException) -> CallError:
    if isinstance(e, _AbortError) and context.code is not None:
        return CallError(context.code, context.details)
    if isinstance(e, NotImplementedError):
        return CallError(grpc.StatusCode.UNIMPLEMENTED, str(e))
    # An adapter's own bug: to the relay it is an unavailable adapter.
    return CallError(grpc.StatusCode.UNKNOWN, f"{type(e).__name__}: {e}")


class _InProcessTransport:
    """Calls a servicer's async (or sync) methods directly, with a minimal context."""

    def __init__(self, servicer: object) -> None:
        self.servicer = servicer

    async def unary(self, method: str, request: Message, timeout: float) -> Message:
        context = InProcessContext(timeout)
        try:
            result = getattr(self.servicer, method)(request, context)
            if inspect.isawaitable(result):
                result = await result
        except (TimeoutError, asyncio.CancelledError):
            raise
        except Exception as e:
            raise _call_error(context, e) from e
        if context.code not in (None, grpc.StatusCode.OK):
            raise CallError(context.code, context.details)
        if not isinstance(result, Message):
            raise CallError(grpc.StatusCode.INTERNAL, f"{method} returned no message")
        return result

    async def stream(self, method: str, request: Message, timeout: float) -> AsyncIterator[Message]:
        context = InProcessContext(timeout)
        try:
            result = getattr(self.servicer, method)(request, context)
            if inspect.isawaitable(result):
                result = await result
            if hasattr(result, "__aiter__"):
                async for item in result:
                    yield item
            elif isinstance(result, Iterable):
                for item in result:
                    yield item
                    await asyncio.sleep(0)
        except (TimeoutError, asyncio.CancelledError, GeneratorExit):
            raise
        except RelayError:
            raise
        except Exception as e:
            raise _call_error(context, e) from e
        if context.code not in (None, grpc.StatusCode.OK):
            raise CallError(context.code, context.details)

    async def close(self) -> None:
        closer = getattr(self.servicer, "close", None)
        if closer is not None:
            result = closer()
            if inspect.isawaitable(result):
                await result


def check_servicer(servicer: object, *, name: str) -> None:
    """Raise AdapterLoadError unless ``servicer`` has every AdapterService method."""
    missing = [m for m in SERVICE_METHODS if not callable(getattr(servicer, m, None))]
    if missing:
        raise AdapterLoadError(
            f"adapter {name!r} does not implement AdapterService: missing {', '.join(missing)}"
        )
    base = apb_grpc.AdapterServiceServicer
    stubs = [m for m in SERVICE_METHODS if getattr(type(servicer), m, None) is getattr(base, m)]
    if stubs:
        raise AdapterLoadError(
            f"adapter {name!r} leaves AdapterService methods unimplemented: {', '.join(stubs)}"
        )


class InProcessAdapterClient(_ResilientClient):
    """An adapter running inside the relay process: the servicer a partner would run behind
    gRPC, called directly. Deadlines, limits, retries and the breaker apply as for gRPC."""

    def __init__(
        self,
        servicer: object,
        *,
        chain_id: str,
        settings: EngineSettings,
        rng: random.Random | None = None,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        check_servicer(servicer, name=f"in-process adapter of {chain_id}")
        super().__init__(
            chain_id=chain_id,
            transport=_InProcessTransport(servicer),
            settings=settings,
            rng=rng,
            monotonic=monotonic,
        )
        self.servicer = servicer


# ------------------------------------------------------------------------------- gRPC


def _spki_sha256(der_certificate: bytes) -> bytes:
    from cryptography import x509
    from cryptography.hazmat.primitives import serialization

    cert = x509.load_der_x509_certificate(der_certificate)
    spki = cert.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return hashlib.sha256(spki).digest()


def _split_target(target: str) -> tuple[str, int]:
    host, sep, port = target.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(f"adapter address {target!r} is not host:port")
    return host.strip("[]"), int(port)


_RESPONSES: Final[dict[str, type[Message]]] = {
    "Describe": apb.DescribeResponse,
    "GetLatestHeight": apb.GetLatestHeightResponse,
    "GetLightBlocks": apb.LightBlock,
    "GetCheckpoint": apb.GetCheckpointResponse,
    "GetConsistencyProof": apb.GetConsistencyProofResponse,
    "Query": apb.QueryResult,
    "ListByParty": apb.QueryResult,
}


def _serialize(message: Message) -> bytes:
    return message.SerializeToString()


class _GrpcTransport:
    """grpc.aio secure channel to one adapter, created on first use (inside the loop)."""

    def __init__(
        self,
        *,
        endpoint: types_pb2.AdapterEndpoint,
        settings: EngineSettings,
        chain_id: str = "",
    ) -> None:
        self.metadata: tuple[tuple[str, str], ...] = (
            ((CHAIN_ID_METADATA, chain_id),) if chain_id else ()
        )
        self.target = endpoint.grpc_address
        self.host, self.port = _split_target(self.target)
        self.server_name = endpoint.tls_server_name or self.host
        self.ca_pem = endpoint.ca_certificates_pem.encode("utf-8")
        self.pins = {bytes(p) for p in endpoint.spki_sha256_pins}
        self.settings = settings
        self._channel: grpc.aio.Channel | None = None
        self._pins_checked = False
        self._lock = asyncio.Lock()

    async def _check_pins(self, timeout: float) -> None:
        """SPKI pinning: gRPC's Python API does not expose the server certificate, so the
        relay makes one TLS handshake itself (same CA, same server name) and compares the
        key before the channel is used. Checked once per channel."""
        import ssl

        context = ssl.create_default_context(cadata=self.ca_pem.decode("ascii"))
        context.set_alpn_protocols(["h2"])
        if self.settings.adapter_client_cert_pem is not None:
            import os
            import tempfile

            assert self.settings.adapter_client_key_pem is not None
            with tempfile.TemporaryDirectory() as d:
                cert, key = os.path.join(d, "c.pem"), os.path.join(d, "k.pem")
                with open(cert, "wb") as f:
                    f.write(self.settings.adapter_client_cert_pem)
                with open(key, "wb") as f:
                    f.write(self.settings.adapter_client_key_pem)
                context.load_cert_chain(cert, key)
        try:
            async with asyncio.timeout(timeout):
                _reader, writer = await asyncio.open_connection(
                    self.host, self.port, ssl=context, server_hostname=self.server_name
                )
        except (OSError, ssl.SSLError, TimeoutError) as e:
            raise CallError(grpc.StatusCode.UNAVAILABLE, f"TLS handshake failed: {e}") from e
        try:
            ssl_object = writer.get_extra_info("ssl_object")
            der = ssl_object.getpeercert(binary_form=True) if ssl_object else None
        finally:
            writer.close()
            with contextlib.suppress(OSError, ssl.SSLError):
                await writer.wait_closed()
        if not der or _spki_sha256(der) not in self.pins:
            raise CallError(
                grpc.StatusCode.UNAVAILABLE,
                "the adapter's certificate key matches none of the pinned SPKI digests",
            )
        self._pins_checked = True

    async def _get_channel(self, timeout: float) -> grpc.aio.Channel:
        async with self._lock:
            if self.pins and not self._pins_checked:
                await self._check_pins(timeout)
            if self._channel is None:
                s = self.settings
                credentials = grpc.ssl_channel_credentials(
                    root_certificates=self.ca_pem,
                    private_key=s.adapter_client_key_pem,
                    certificate_chain=s.adapter_client_cert_pem,
                )
                options: list[tuple[str, Any]] = [
                    ("grpc.max_receive_message_length", s.max_message_bytes),
                    ("grpc.max_send_message_length", s.max_message_bytes),
                    ("grpc.enable_retries", 0),  # retries are the engine's, bounded
                ]
                if self.server_name != self.host:
                    options.append(("grpc.ssl_target_name_override", self.server_name))
                self._channel = grpc.aio.secure_channel(self.target, credentials, options=options)
            return self._channel

    async def unary(self, method: str, request: Message, timeout: float) -> Message:
        channel = await self._get_channel(timeout)
        call = channel.unary_unary(
            _SERVICE + method,
            request_serializer=_serialize,
            response_deserializer=_RESPONSES[method].FromString,
        )
        try:
            response: Message = await call(request, timeout=timeout, metadata=self.metadata)
        except grpc.aio.AioRpcError as e:
            raise CallError(e.code(), e.details() or "") from e
        return response

    async def stream(self, method: str, request: Message, timeout: float) -> AsyncIterator[Message]:
        channel = await self._get_channel(timeout)
        call = channel.unary_stream(
            _SERVICE + method,
            request_serializer=_serialize,
            response_deserializer=_RESPONSES[method].FromString,
        )(request, timeout=timeout, metadata=self.metadata)
        try:
            async for item in call:
                yield item
        except grpc.aio.AioRpcError as e:
            raise CallError(e.code(), e.details() or "") from e
        finally:
            call.cancel()

    async def close(self) -> None:
        if self._channel is not None:
            await self._channel.close()
            self._channel = None


class GrpcAdapterClient(_ResilientClient):
    """A remote adapter over grpc.aio with TLS (the CA and server name from the descriptor's
    AdapterEndpoint, the relay's client certificate from the settings, optional SPKI pins)."""

    def __init__(
        self,
        endpoint: types_pb2.AdapterEndpoint,
        *,
        chain_id: str,
        settings: EngineSettings,
        rng: random.Random | None = None,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        if not endpoint.grpc_address:
            raise ValueError("endpoint has no grpc_address")
        if not endpoint.ca_certificates_pem:
            raise ValueError("a remote adapter needs ca_certificates_pem (TLS is mandatory)")
        super().__init__(
            chain_id=chain_id,
            transport=_GrpcTransport(endpoint=endpoint, settings=settings, chain_id=chain_id),
            settings=settings,
            rng=rng,
            monotonic=monotonic,
        )


# --------------------------------------------------------------------------- entry points

EntryPoints = Callable[..., Iterable[importlib.metadata.EntryPoint]]


def load_entry_point(
    name: str,
    *,
    group: str = ENTRY_POINT_GROUP,
    entry_points: EntryPoints = importlib.metadata.entry_points,
) -> Callable[..., object]:
    """The object the entry point ``name`` of ``group`` names. Raises AdapterLoadError when it
    is missing, registered twice with different targets, fails to import, or is not
    callable; the message names it."""
    found = [ep for ep in entry_points(group=group) if ep.name == name]
    if not found:
        known = sorted({ep.name for ep in entry_points(group=group)})
        raise AdapterLoadError(
            f"no adapter named {name!r} in entry-point group {group!r} "
            f"(installed: {', '.join(known) or 'none'}); install the adapter's package"
        )
    targets = sorted({ep.value for ep in found})
    if len(targets) > 1:
        raise AdapterLoadError(
            f"adapter {name!r} is registered more than once in entry-point group {group!r} "
            f"with different targets ({'; '.join(targets)}); uninstall all but one"
        )
    try:
        obj: Callable[..., object] = found[0].load()
    except Exception as e:
        raise AdapterLoadError(
            f"adapter {name!r} ({targets[0]}) in entry-point group {group!r} failed to load: "
            f"{type(e).__name__}: {e}"
        ) from e
    if not callable(obj):
        raise AdapterLoadError(f"adapter {name!r} ({targets[0]}) is not callable")
    return obj


class DefaultAdapterFactory:
    """Builds a GrpcAdapterClient for ``adapter.grpc_address`` or an InProcessAdapterClient
    for ``adapter.entry_point`` (loaded from the ``relay.adapters`` group)."""

    def __init__(
        self,
        settings: EngineSettings,
        *,
        entry_points: EntryPoints = importlib.metadata.entry_points,
    ) -> None:
        self.settings = settings
        self._entry_points = entry_points

    def __call__(self, descriptor: types_pb2.ChainDescriptor) -> AdapterClient:
        endpoint = descriptor.adapter
        target = endpoint.WhichOneof("target")
        chain_id = descriptor.chain_id
        if target == "grpc_address":
            try:
                return GrpcAdapterClient(endpoint, chain_id=chain_id, settings=self.settings)
            except ValueError as e:
                raise AdapterLoadError(f"adapter endpoint of chain {chain_id!r}: {e}") from e
        if target == "entry_point":
            name = endpoint.entry_point
            make = load_entry_point(name, entry_points=self._entry_points)
            try:
                servicer = make(descriptor=descriptor)
            except Exception as e:
                raise AdapterLoadError(
                    f"adapter {name!r} failed to start for chain {chain_id!r}: "
                    f"{type(e).__name__}: {e}"
                ) from e
            check_servicer(servicer, name=name)
            return InProcessAdapterClient(servicer, chain_id=chain_id, settings=self.settings)
        raise AdapterLoadError(f"chain {chain_id!r} has no adapter endpoint")
