"""Publication of audit checkpoints to the judicial chain (issue 7).

:class:`ChainSink` writes each signed checkpoint note into a CometBFT chain's state under
``audit-checkpoint/<size>`` and commits a block, so the checkpoint is then provable (ICS-23
membership under a validator-signed app hash) by anyone following that chain. The reference
judicial chain is a :class:`relay.testing.partners.BftPartnerChain` held in the relay's
process (:func:`start_judicial_chain`); it can be served with the standard partner
AdapterService on an address of its own, which is how a court, a test or the demo reads the
checkpoints back with proofs. A production deployment would implement :class:`AuditSink`
with the court system's own chain client.

:class:`RemoteChainSink` publishes to a judicial chain in its own process (the reference one
is ``python -m adapters.judicial``) over ``relay.sink.v1.SinkService`` with mutual TLS
(config ``audit.sink.endpoint``). Publication runs in a background task: ``publish`` only
queues, so neither queries nor checkpoints ever wait for the judicial chain. Each queued
checkpoint is sent in order with the RFC 6962 consistency proof from the newest one the
chain holds; a failure is retried with exponential backoff, not dropped (only past
``max_queue`` waiting checkpoints is the oldest left to the newer ones, which cover it), and
at start-up the stored checkpoints the chain lacks are queued again
(:meth:`RemoteChainSink.attach`).

:func:`read_published_checkpoint` reads a checkpoint back from the judicial chain's
AdapterService and verifies it as a light client does, from the chain descriptor's trust
anchor: the validator-signed header, the ICS-23 proof under its app hash, the relay's
signature on the note (:func:`verify_published_checkpoint`, pure).
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from relay.store.base import AuditCheckpointRecord
from relay.verify.errors import InvalidProofError, MismatchError, UnsupportedError

log = logging.getLogger("relay.audit")

KEY_PREFIX = b"audit-checkpoint/"


def checkpoint_key(size: int) -> bytes:
    """The state key a checkpoint of ``size`` is written under."""
    return KEY_PREFIX + str(size).encode()


def relay_vkey(relay_key: Any) -> str:
    """The C2SP verifier key of ``relay_key``'s audit checkpoints (a RelayKey), which is what
    a judicial chain is configured with (``python -m adapters.judicial --relay-vkey``)."""
    from relay.audit.checkpoint import verifier_for
    from relay.verify.note import SignatureVerifier

    verifier = verifier_for(relay_key)
    assert isinstance(verifier, SignatureVerifier)  # an Ed25519 note key, never a cosigner
    return verifier.vkey


class ChainSink:
    """An AuditSink writing to a BftPartnerChain held in this process."""

    def __init__(self, chain: Any) -> None:
        self.chain = chain
        self.published: list[int] = []

    async def publish(self, checkpoint: AuditCheckpointRecord) -> None:
        self.chain.put_raw(checkpoint_key(checkpoint.size), checkpoint.note)
        # The block after the writes commits to them (app hash of H+1 is the state after H).
        self.chain.commit()
        self.chain.commit()
        self.published.append(checkpoint.size)
        log.info(
            "published audit checkpoint %d to %s at height %d",
            checkpoint.size,
            self.chain.chain_id,
            self.chain.height,
        )


@dataclass
class JudicialChain:
    """The in-process reference judicial chain, its sink and (optionally) its adapter
    server."""

    chain: Any
    sink: ChainSink
    server: Any = None

    async def stop(self) -> None:
        if self.server is not None:
            server, self.server = self.server, None
            await server.stop(0)


async def start_judicial_chain(
    *,
    chain_id: str,
    listen: str | None = None,
    tls_cert: bytes | None = None,
    tls_key: bytes | None = None,
    tls_ca: bytes | None = None,
    client_ca: bytes | None = None,
    descriptor_out: Path | None = None,
) -> JudicialChain:
    """Create the reference judicial chain (one genesis block) and, with ``listen``, serve
    its AdapterService there (TLS with ``tls_cert``/``tls_key``; readers trust ``tls_ca``,
    default the certificate itself; with ``client_ca`` readers must present a certificate
    issued by it: mutual TLS, as on every port of the relay but the health port); with
    ``descriptor_out`` write its ChainDescriptor (JSON) for relays and anchors files."""
    from google.protobuf import json_format

    from relay.pb.relay.v1 import types_pb2 as pb
    from relay.testing.partners import BftPartnerChain, PartnerAdapter

    chain = BftPartnerChain(chain_id, domain=pb.DOMAIN_JUDICIAL)
    chain.put_raw(b"relay.testing/genesis", chain_id.encode())
    chain.commit()
    chain.commit()
    running = JudicialChain(chain, ChainSink(chain))
    endpoint = None
    if listen is not None:
        from relay.sdk.server import start_adapter_server

        if tls_cert is None or tls_key is None:
            raise ValueError("serving the judicial chain needs tls_cert and tls_key")
        running.server = await start_adapter_server(
            PartnerAdapter(chain),
            listen=listen,
            tls_cert=tls_cert,
            tls_key=tls_key,
            client_ca=client_ca,
        )
        host = listen.rpartition(":")[0].strip("[]")
        endpoint = pb.AdapterEndpoint(
            grpc_address=running.server.address,
            tls_server_name=host,
            ca_certificates_pem=(tls_ca or tls_cert).decode(),
        )
        log.info("judicial chain %s served on %s", chain_id, running.server.address)
    if descriptor_out is not None:
        descriptor_out.write_text(
            json_format.MessageToJson(chain.descriptor(endpoint), indent=2, ensure_ascii=False)
            + "\n",
            encoding="utf-8",
        )
    return running


# ----------------------------------------------------------------------------- remote sink


class RemoteChainSink:
    """An AuditSink publishing to a judicial chain process (relay.sink.v1.SinkService).

    ``tls`` is a relay.service.client.ClientTls (the judicial chain's CA, the relay's client
    certificate). Publication never blocks the caller (module docstring); ``deadline_s``
    bounds each call, retries wait ``retry_initial_s`` doubling up to ``retry_max_s``. At
    most ``max_queue`` checkpoints wait: past that the oldest waiting one is dropped, since
    the newer ones cover it (each is proven consistent with what the chain holds)."""

    def __init__(
        self,
        endpoint: str,
        *,
        tls: Any,
        deadline_s: float = 10.0,
        retry_initial_s: float = 0.5,
        retry_max_s: float = 30.0,
        max_queue: int = 10_000,
    ) -> None:
        self.endpoint = endpoint
        self._tls = tls
        self._deadline_s = deadline_s
        self._retry_initial_s = retry_initial_s
        self._retry_max_s = retry_max_s
        self._max_queue = max_queue
        self._queue: collections.deque[AuditCheckpointRecord] = collections.deque()
        self._task: asyncio.Task[None] | None = None
        self._channel: Any = None
        self._stub: Any = None
        self._held: tuple[int, bytes] | None = None  # (size, note) the chain holds, if known
        self._log: Any = None
        self.published: list[int] = []
        self.heights: dict[int, int] = {}  # size -> height of the block proving it
        self.failures = 0
        self.last_error = ""
        self._failing = False  # the last attempt failed: the worker is backing off

    @property
    def pending(self) -> int:
        """Checkpoints waiting to be published."""
        return len(self._queue)

    @property
    def held_size(self) -> int:
        """The newest checkpoint size the chain is known to hold (0: none or unknown)."""
        return self._held[0] if self._held is not None else 0

    def attach(self, audit_log: Any) -> None:
        """Take consistency proofs from ``audit_log`` (relay.audit.log.AuditLog) and queue
        its stored checkpoints: those the chain already holds are skipped, the others (whose
        publication failed before a restart) are published now."""
        self._log = audit_log
        for checkpoint in audit_log.checkpoints:
            self._enqueue(checkpoint)
        self._kick()

    async def publish(self, checkpoint: AuditCheckpointRecord) -> None:
        """Queue ``checkpoint``; returns at once."""
        self._enqueue(checkpoint)
        self._kick()

    def _enqueue(self, checkpoint: AuditCheckpointRecord) -> None:
        if self._queue and self._queue[-1].size >= checkpoint.size:
            return  # already queued (attach and the first checkpoint may overlap)
        self._queue.append(checkpoint)
        while len(self._queue) > self._max_queue:
            dropped = self._queue.popleft()
            log.warning(
                "audit sink queue full: checkpoint %d is not published on its own (the newer "
                "ones cover it)",
                dropped.size,
            )

    def _kick(self) -> None:
        if self._queue and (self._task is None or self._task.done()):
            self._task = asyncio.create_task(self._run())

    def _connect(self) -> Any:
        if self._stub is None:
            from relay.pb.relay.sink.v1 import sink_pb2_grpc
            from relay.service.client import aio_channel

            self._channel = aio_channel(self.endpoint, self._tls)
            self._stub = sink_pb2_grpc.SinkServiceStub(self._channel)  # type: ignore[no-untyped-call]
        return self._stub

    def _proof(self, held: int, size: int) -> list[bytes]:
        if held == 0 or self._log is None:
            return []
        return list(self._log.consistency_proof(held, size))

    async def _run(self) -> None:
        import grpc

        from relay.pb.relay.sink.v1 import sink_pb2

        backoff = self._retry_initial_s
        while self._queue:
            checkpoint = self._queue[0]
            try:
                stub = self._connect()
                if self._held is None:
                    got = await stub.GetPublished(
                        sink_pb2.GetPublishedRequest(), timeout=self._deadline_s
                    )
                    self._held = (got.size, got.note)
                held_size, held_note = self._held
                if checkpoint.size <= held_size:
                    if checkpoint.size == held_size and checkpoint.note != held_note:
                        log.error(
                            "the judicial chain holds another audit checkpoint of size %d "
                            "than this relay signed",
                            held_size,
                        )
                    self._queue.popleft()
                    continue
                reply = await stub.Publish(
                    sink_pb2.PublishRequest(
                        note=checkpoint.note,
                        consistency_proof=self._proof(held_size, checkpoint.size),
                    ),
                    timeout=self._deadline_s,
                )
            except asyncio.CancelledError:
                raise
            except Exception as e:
                self._held = None  # ask the chain what it holds before the next try
                self.failures += 1
                self._failing = True
                detail = e.details() if isinstance(e, grpc.RpcError) else str(e)
                self.last_error = f"{type(e).__name__}: {detail}"
                log.warning(
                    "could not publish audit checkpoint %d to %s (retry in %.1f s): %s",
                    checkpoint.size,
                    self.endpoint,
                    backoff,
                    self.last_error,
                )
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, self._retry_max_s)
                continue
            backoff = self._retry_initial_s
            self._failing = False
            self._held = (reply.size, checkpoint.note)
            self.published.append(checkpoint.size)
            self.heights[checkpoint.size] = reply.height
            if self._queue and self._queue[0] is checkpoint:
                self._queue.popleft()
            log.info(
                "published audit checkpoint %d to the judicial chain at %s (height %d)",
                checkpoint.size,
                self.endpoint,
                reply.height,
            )

    async def wait_published(self, size: int, *, timeout_s: float) -> bool:
        """Wait until the chain holds a checkpoint of at least ``size``; whether it does."""
        end = time.monotonic() + timeout_s
        while self.held_size < size:
            if time.monotonic() > end:
                return False
            await asyncio.sleep(0.05)
        return True

    async def close(self, *, timeout_s: float = 5.0) -> None:
        """Give queued publications ``timeout_s`` to finish (none when the judicial chain is
        failing already), then stop; what is left is queued again from the store at the
        next start."""
        if self._task is not None and not self._task.done() and not self._failing:
            with contextlib.suppress(asyncio.TimeoutError, Exception):
                await asyncio.wait_for(asyncio.shield(self._task), timeout_s)
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._task
            self._task = None
        if self._channel is not None:
            channel, self._channel, self._stub = self._channel, None, None
            await channel.close()


# ------------------------------------------------------------------------- reading back


class NotPublishedError(InvalidProofError):
    """The judicial chain answered that it holds no checkpoint of that size (yet)."""


@dataclass(frozen=True)
class PublishedCheckpoint:
    """An audit checkpoint read back from the judicial chain and verified."""

    size: int
    root: bytes
    note: bytes
    key: bytes
    height: int
    header_time_ns: int


def verify_published_checkpoint(
    *,
    descriptor: Any,
    relay_key: Any,
    key: bytes,
    result: Any,
    light_block: bytes,
    now: int,
) -> PublishedCheckpoint:
    """Verify a checkpoint read from the judicial chain: ``light_block`` (CometBFT protobuf)
    verified from the trust anchor of ``descriptor`` (a relay.v1 ChainDescriptor, its
    validators signing), ``result`` (an adapter QueryResult for ``key``) proven under that
    header's app hash, and the note in it signed by ``relay_key`` with the size ``key``
    names. Raises the VerificationError of the first failed check."""
    from relay.audit.checkpoint import open_checkpoint
    from relay.verify import evidence as ev
    from relay.verify.lightclient import tendermint as tm
    from relay.verify.lightclient.cometbft_proto import decode_light_block_proto

    anchor = ev.ChainAnchor.from_descriptor(descriptor)
    if anchor.tendermint is None:
        raise UnsupportedError("the judicial chain must be a CometBFT chain")
    options, _ = ev.tendermint_options(anchor.tendermint, chain_id=anchor.chain_id)
    anchor_block = ev.decode_anchor_block(anchor.tendermint.anchor, options=options)
    block = decode_light_block_proto(light_block, params=options.params)
    if block.height != result.height:
        raise MismatchError(
            "light block is not at the height of the query result",
            expected=result.height,
            calculated=block.height,
        )
    if block.height > anchor_block.height:
        tm.verify_light_block(
            trusted=ev.trusted_block_of(anchor_block), untrusted=block, options=options, now=now
        )
    elif block.header.hash != anchor_block.header.hash:
        raise MismatchError(
            "header at or below the anchor height is not the anchor",
            expected=anchor_block.header.hash,
            calculated=block.header.hash,
        )
    if result.key != key:
        raise MismatchError("query result for another key", expected=key, calculated=result.key)
    if not result.HasField("value"):
        raise NotPublishedError("the judicial chain does not hold that checkpoint", key=key)
    ev.verify_state_proof(
        spec=descriptor.proof_spec,
        proof_format=result.proof_format,
        root=block.header.app_hash,
        key=key,
        value=result.value,
        proof=result.proof,
    )
    checkpoint = open_checkpoint(result.value, relay_key=relay_key)
    if checkpoint_key(checkpoint.size) != key:
        raise MismatchError(
            "checkpoint stored under another size's key",
            expected=key,
            calculated=checkpoint_key(checkpoint.size),
        )
    return PublishedCheckpoint(
        size=checkpoint.size,
        root=checkpoint.root_hash,
        note=bytes(result.value),
        key=key,
        height=block.height,
        header_time_ns=block.header.time_ns,
    )


async def read_published_checkpoint(
    *, descriptor: Any, size: int, relay_key: Any, tls: Any, now: int | None = None
) -> PublishedCheckpoint:
    """Read the checkpoint of ``size`` from the judicial chain's AdapterService (address and
    CA from ``descriptor``; ``tls`` a ClientTls holding the caller's certificate) and verify
    it (:func:`verify_published_checkpoint`). Raises grpc errors (unreachable, NOT_FOUND)
    and VerificationError."""
    from dataclasses import replace

    from relay.pb.relay.adapter.v1 import adapter_pb2, adapter_pb2_grpc
    from relay.service.client import aio_channel

    endpoint = descriptor.adapter
    tls = replace(
        tls,
        ca_pem=endpoint.ca_certificates_pem.encode(),
        server_name=endpoint.tls_server_name or tls.server_name,
    )
    key = checkpoint_key(size)
    async with aio_channel(endpoint.grpc_address, tls) as channel:
        stub = adapter_pb2_grpc.AdapterServiceStub(channel)  # type: ignore[no-untyped-call]
        result = await stub.Query(
            adapter_pb2.QueryRequest(query=adapter_pb2.DomainQuery(raw_key=key)), timeout=10
        )
        blocks = [
            b
            async for b in stub.GetLightBlocks(
                adapter_pb2.GetLightBlocksRequest(
                    from_height=result.height,
                    to_height=result.height,
                    encoding=adapter_pb2.LIGHT_BLOCK_ENCODING_COMETBFT_PROTO,
                ),
                timeout=10,
            )
        ]
    if len(blocks) != 1:
        raise MismatchError(
            "the judicial chain sent another number of light blocks",
            expected=1,
            calculated=len(blocks),
        )
    return verify_published_checkpoint(
        descriptor=descriptor,
        relay_key=relay_key,
        key=key,
        result=result,
        light_block=blocks[0].light_block,
        now=time.time_ns() if now is None else now,
    )
