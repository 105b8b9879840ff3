"""Adapter base classes: what a partner institution subclasses to serve its chain to the relay
as a ``relay.adapter.v1.AdapterService`` (proto/relay/adapter/v1/adapter.proto).

The gRPC plumbing lives in :class:`AdapterBase`: every RPC calls a plain method that returns
the answer (or raises a :mod:`relay.sdk.errors` refusal, turned into the contract's status
code). A partner writes only those plain methods, grouped by capability:

* :class:`HeaderSource` - a CometBFT chain: :meth:`~HeaderSource.head` and
  :meth:`~HeaderSource.light_block` (range checks and streaming are done here);
* :class:`CheckpointSource` - a transparency log: :meth:`~CheckpointSource.checkpoint` and
  :meth:`~CheckpointSource.consistency`;
* :class:`StateSource` - record queries over record schema 1 (:mod:`relay.verify.records`):
  :meth:`~StateSource.query` (with :func:`schema1_key` naming the state key of a uniform
  question) and :meth:`~StateSource.list_by_party`.

An adapter combines one header kind with :class:`StateSource`, e.g.
``class MyAdapter(HeaderSource, StateSource)``, and implements :meth:`AdapterBase.describe`
and :meth:`AdapterBase.latest_height`. An adapter never says "verified": the relay checks
every byte it sends against its own light client, so an adapter only has to be faithful.
"""

from __future__ import annotations

import asyncio
import functools
import threading
from collections.abc import AsyncIterator, Callable, Iterable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

from google.protobuf.message import Message
from google.protobuf.timestamp_pb2 import Timestamp

from relay.pb.relay.adapter.v1 import adapter_pb2 as apb
from relay.pb.relay.adapter.v1 import adapter_pb2_grpc
from relay.sdk.errors import InvalidArgument, NotFound, PartnerError, Unimplemented
from relay.verify import records

SECOND_NS = 1_000_000_000
_T = TypeVar("_T")
MAX_LIGHT_BLOCKS = 10_000
"""The most light blocks one GetLightBlocks call may ask for (larger ranges: INVALID_ARGUMENT)."""


async def abort(context: Any, error: PartnerError) -> None:
    """End the call with ``error``'s status code and message."""
    await context.abort(error.code, error.message)
    raise error  # a context whose abort returns still must not go on


def optional_field(message: Message, field: str) -> int | None:
    """The value of a proto3 ``optional`` integer field, ``None`` when not set."""
    value: int | None = getattr(message, field) if message.HasField(field) else None
    return value


def timestamp(time_ns: int) -> Timestamp:
    """A protobuf Timestamp from nanoseconds since the epoch."""
    return Timestamp(seconds=time_ns // SECOND_NS, nanos=time_ns % SECOND_NS)


def describe_response(
    *, chain_id: str, client_type: int, capabilities: Sequence[int], adapter_version: str
) -> apb.DescribeResponse:
    """A Describe answer for a record-schema-1 adapter."""
    return apb.DescribeResponse(
        chain_id=chain_id,
        client_type=client_type,  # type: ignore[arg-type]
        capabilities=capabilities,  # type: ignore[arg-type]
        adapter_version=adapter_version,
        record_schema_version=records.SCHEMA_VERSION,
    )


def schema1_key(query: apb.DomainQuery) -> bytes:
    """The state key record schema 1 assigns to a uniform question (INVALID_ARGUMENT when the
    question is empty). Partners store each record under exactly this key."""
    which = query.WhichOneof("query")
    if which == "ownership":
        return records.ownership_key(query.ownership)
    if which == "account":
        return records.account_key(query.account)
    if which == "history":
        return records.history_key(query.history)
    if which == "credit_party_key":
        if not query.credit_party_key:
            raise InvalidArgument("credit_party_key is empty")
        return records.credit_key(query.credit_party_key)
    if which == "raw_key":
        if not query.raw_key:
            raise InvalidArgument("raw_key is empty")
        return bytes(query.raw_key)
    raise InvalidArgument("query names no question")


class AdapterBase(adapter_pb2_grpc.AdapterServiceServicer):
    """The RPCs of ``AdapterService``, each delegating to a plain answer method.

    Subclasses implement :meth:`describe` and :meth:`latest_height`; the capability classes
    below add the rest. A call of a capability the adapter lacks answers UNIMPLEMENTED.
    :meth:`before_call` runs before every RPC (logging, rate limits, fault injection).
    """

    blocking_io = False
    """Set True when the answer methods block on I/O (they call the chain's node over the
    network, a database...): the RPCs then run each in a worker thread of the adapter's own
    pool (:attr:`blocking_workers` threads), so one slow answer never stalls the adapter's
    other calls. The methods must then be thread-safe. Leave False when they only read
    memory shared with code on the event loop."""

    blocking_workers = 8
    _pool: ThreadPoolExecutor | None = None

    def _executor(self) -> ThreadPoolExecutor:
        if self._pool is None:
            self._pool = ThreadPoolExecutor(self.blocking_workers, thread_name_prefix="adapter")
        return self._pool

    def close_blocking(self) -> None:
        """Stop the worker pool (queued answers are dropped; running ones finish their
        current step). The server harness calls it when the server stops."""
        if self._pool is not None:
            self._pool.shutdown(wait=False, cancel_futures=True)
            self._pool = None

    async def answer(self, method: Callable[..., _T], *args: Any) -> _T:
        """``method(*args)``, in a worker thread when :attr:`blocking_io`."""
        if not self.blocking_io:
            return method(*args)
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor(), functools.partial(method, *args))

    async def answer_items(self, items: Callable[[], Iterable[_T]]) -> list[_T]:
        """Every item of ``items()``, collected in a worker thread when :attr:`blocking_io`;
        a cancelled call (deadline, client gone) stops the collection at the next item, so
        a long range against a stalled node does not hold a worker for hours."""
        if not self.blocking_io:
            return list(items())
        cancelled = threading.Event()

        def collect() -> list[_T]:
            out: list[_T] = []
            for item in items():
                if cancelled.is_set():
                    break
                out.append(item)
            return out

        try:
            return await asyncio.get_running_loop().run_in_executor(self._executor(), collect)
        finally:
            cancelled.set()

    # --- answers (override) ---

    def describe(self) -> apb.DescribeResponse:
        raise NotImplementedError

    def latest_height(self) -> apb.GetLatestHeightResponse:
        raise NotImplementedError

    def stream_light_blocks(self, request: apb.GetLightBlocksRequest) -> Iterator[apb.LightBlock]:
        raise Unimplemented("this adapter serves no light blocks")

    def checkpoint(self, size: int | None) -> apb.GetCheckpointResponse:
        raise Unimplemented("this adapter serves no checkpoints")

    def consistency(self, size1: int, size2: int) -> apb.GetConsistencyProofResponse:
        raise Unimplemented("this adapter serves no consistency proofs")

    def query(self, request: apb.QueryRequest) -> apb.QueryResult:
        raise Unimplemented("this adapter answers no queries")

    def stream_by_party(self, request: apb.ListByPartyRequest) -> list[apb.QueryResult]:
        raise Unimplemented("this adapter does not list by party")

    async def before_call(self, method: str) -> None:
        """Hook run before every RPC; ``method`` is the RPC name."""

    # --- RPCs (what grpc.aio, or an in-process relay, calls) ---

    async def Describe(self, request: apb.DescribeRequest, context: Any) -> apb.DescribeResponse:
        await self.before_call("Describe")
        try:
            return await self.answer(self.describe)
        except PartnerError as e:
            await abort(context, e)
            raise

    async def GetLatestHeight(
        self, request: apb.GetLatestHeightRequest, context: Any
    ) -> apb.GetLatestHeightResponse:
        await self.before_call("GetLatestHeight")
        try:
            return await self.answer(self.latest_height)
        except PartnerError as e:
            await abort(context, e)
            raise

    async def GetLightBlocks(
        self, request: apb.GetLightBlocksRequest, context: Any
    ) -> AsyncIterator[apb.LightBlock]:
        await self.before_call("GetLightBlocks")
        try:
            items = await self.answer_items(lambda: self.stream_light_blocks(request))
        except PartnerError as e:
            await abort(context, e)
            return
        for item in items:
            yield item
            await asyncio.sleep(0)  # let other calls run between big messages

    async def GetCheckpoint(
        self, request: apb.GetCheckpointRequest, context: Any
    ) -> apb.GetCheckpointResponse:
        await self.before_call("GetCheckpoint")
        try:
            return await self.answer(self.checkpoint, optional_field(request, "size"))
        except PartnerError as e:
            await abort(context, e)
            raise

    async def GetConsistencyProof(
        self, request: apb.GetConsistencyProofRequest, context: Any
    ) -> apb.GetConsistencyProofResponse:
        await self.before_call("GetConsistencyProof")
        try:
            return await self.answer(self.consistency, request.size1, request.size2)
        except PartnerError as e:
            await abort(context, e)
            raise

    async def Query(self, request: apb.QueryRequest, context: Any) -> apb.QueryResult:
        await self.before_call("Query")
        try:
            return await self.answer(self.query, request)
        except PartnerError as e:
            await abort(context, e)
            raise

    async def ListByParty(
        self, request: apb.ListByPartyRequest, context: Any
    ) -> AsyncIterator[apb.QueryResult]:
        await self.before_call("ListByParty")
        try:
            items = await self.answer_items(lambda: self.stream_by_party(request))
        except PartnerError as e:
            await abort(context, e)
            return
        for item in items:
            yield item


class HeaderSource(AdapterBase):
    """A CometBFT chain's light blocks. Implement :meth:`head` and :meth:`light_block`."""

    MAX_LIGHT_BLOCKS = MAX_LIGHT_BLOCKS

    def head(self) -> int:
        """The newest height whose light block (with its commit) can be served."""
        raise NotImplementedError

    def light_block(self, height: int, encoding: int) -> apb.LightBlock:
        """The light block at ``height`` in ``encoding`` (a LightBlockEncoding value)."""
        raise NotImplementedError

    def check_range(self, request: apb.GetLightBlocksRequest) -> tuple[int, int, int]:
        """(from, to, encoding) of a valid request within :meth:`head`."""
        return self.light_block_range(request, self.head())

    def light_block_range(
        self, request: apb.GetLightBlocksRequest, head: int
    ) -> tuple[int, int, int]:
        lo, hi, encoding = request.from_height, request.to_height, int(request.encoding)
        if encoding not in (
            apb.LIGHT_BLOCK_ENCODING_COMETBFT_PROTO,
            apb.LIGHT_BLOCK_ENCODING_COMETBFT_JSON,
        ):
            raise Unimplemented(f"light block encoding {encoding} is not offered")
        if lo < 1 or hi < lo:
            raise InvalidArgument(f"need 1 <= from_height <= to_height, got {lo}..{hi}")
        if hi - lo + 1 > self.MAX_LIGHT_BLOCKS:
            raise InvalidArgument(f"at most {self.MAX_LIGHT_BLOCKS} light blocks per call")
        if hi > head:
            raise NotFound(f"no height {hi} (head {head})")
        return lo, hi, encoding

    def light_blocks(self, request: apb.GetLightBlocksRequest) -> Iterator[apb.LightBlock]:
        """Validates the range first, then yields one light block per height."""
        lo, hi, encoding = self.check_range(request)
        return (self.light_block(h, encoding) for h in range(lo, hi + 1))

    def stream_light_blocks(self, request: apb.GetLightBlocksRequest) -> Iterator[apb.LightBlock]:
        return self.light_blocks(request)


class CheckpointSource(AdapterBase):
    """A transparency log's signed checkpoints and consistency proofs. Implement
    :meth:`checkpoint` (``size`` None: the newest) and :meth:`consistency`."""

    def checkpoint(self, size: int | None) -> apb.GetCheckpointResponse:
        raise NotImplementedError

    def consistency(self, size1: int, size2: int) -> apb.GetConsistencyProofResponse:
        raise NotImplementedError


class StateSource(AdapterBase):
    """Record queries with ICS-23 proofs. Implement :meth:`query` (one key; a missing record
    is a result without value carrying a non-membership proof, not an error) and
    :meth:`list_by_party` (the party's holdings index, then each listed asset's record of
    the requested kinds, all at one height)."""

    def query(self, request: apb.QueryRequest) -> apb.QueryResult:
        raise NotImplementedError

    def list_by_party(self, request: apb.ListByPartyRequest) -> list[apb.QueryResult]:
        raise NotImplementedError

    def stream_by_party(self, request: apb.ListByPartyRequest) -> list[apb.QueryResult]:
        return self.list_by_party(request)
