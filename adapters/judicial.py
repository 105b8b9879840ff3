"""The reference judicial chain, the fifth reference system (issue 7): ``python -m
adapters.judicial --state DIR --listen HOST:PORT --tls-cert PEM --tls-key PEM --tls-client-ca
PEM --relay-vkey VKEY``.

A small BFT chain (:class:`relay.testing.partners.BftPartnerChain`, persisted with the
journal of :mod:`relay.testing.partner_server`, so a restart replays the same blocks) that
stands for the courts' judicial blockchain. It serves two gRPC services on one mutual-TLS
port:

- ``relay.sink.v1.SinkService`` (proto/relay/sink/v1/sink.proto): the relay publishes each
  signed audit checkpoint (a C2SP signed note, https://c2sp.org/signed-note and
  https://c2sp.org/tlog-checkpoint). The chain checks the note's signature against the one
  relay audit key it was started with (``--relay-vkey``, a C2SP verifier key), refuses a
  tree size smaller than the newest it holds and requires an RFC 6962 consistency proof
  (RFC 9162 section 2.1.4) from that newest checkpoint, then writes the note under
  ``audit-checkpoint/<size>`` and commits the block that proves it. So the relay cannot
  rewrite its log's history without the judicial chain refusing it or forking.
- ``relay.adapter.v1.AdapterService``: the standard partner adapter
  (:class:`relay.testing.partners.PartnerAdapter`), from which anyone following the chain
  reads a checkpoint back with its ICS-23 proof under a validator-signed header
  (relay/audit/sink.py: :func:`relay.audit.sink.read_published_checkpoint`).

``--block-interval`` also commits an empty block every interval, as a live chain does. The
chain descriptor (proto JSON) goes to ``--descriptor-out`` once the port is open. The
descriptor's domain is DOMAIN_JUDICIAL: the chain holds the relay's checkpoints and no
records a court query asks for. Development keys, derived from the chain id: never production.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
from google.protobuf import json_format

from relay.audit.checkpoint import TREE_HASHER
from relay.audit.sink import KEY_PREFIX, checkpoint_key
from relay.interceptors import GenericHandlersOnly
from relay.pb.relay.adapter.v1 import adapter_pb2_grpc
from relay.pb.relay.sink.v1 import sink_pb2, sink_pb2_grpc
from relay.pb.relay.v1 import types_pb2 as pb
from relay.process import stop_on_signals, write_atomically
from relay.testing.partner_server import FORMAT, Journal, StartupError
from relay.testing.partners import PROFILES, BftPartnerChain, PartnerAdapter
from relay.verify import note as note_mod
from relay.verify.errors import SignatureError, VerificationError
from relay.verify.lightclient.tlog import Checkpoint, parse_checkpoint
from relay.verify.merkle.rfc6962 import verify_consistency

log = logging.getLogger("adapters.judicial")

CHAIN_ID = "cn-spc-judicial-chain"
MAX_NOTE_BYTES = 16 * 1024
MAX_PROOF_HASHES = 64
MAX_MESSAGE_BYTES = 1 << 20
GENESIS_KEY = b"relay.testing/genesis"

PROFILE = PROFILES[pb.DOMAIN_JUDICIAL]


class Refused(Exception):
    """A publication the chain refuses; ``code`` is the gRPC status it answers with."""

    def __init__(self, code: grpc.StatusCode, message: str) -> None:
        self.code = code
        super().__init__(message)


@dataclass
class Held:
    """The newest checkpoint the chain holds."""

    size: int = 0
    note: bytes = b""
    root: bytes = b""


def _size_of(key: bytes) -> int | None:
    digits = key[len(KEY_PREFIX) :]
    if not key.startswith(KEY_PREFIX) or not digits.isdigit():
        return None
    return int(digits)


class JudicialLedger:
    """The checkpoint rules of the judicial chain over a BftPartnerChain (no I/O here)."""

    def __init__(self, chain: BftPartnerChain, relay_vkey: str) -> None:
        verifier = note_mod.parse_verifier_key(relay_vkey)
        if not isinstance(verifier, note_mod.SignatureVerifier):
            raise StartupError("--relay-vkey must be a note signing key, not a witness key")
        self.chain = chain
        self.verifier = verifier
        self.held = Held()
        # The newest checkpoint held, from the replayed state (a restart keeps refusing
        # older sizes).
        for key, value in chain.working_state.items():
            size = _size_of(key)
            if size is not None and size > self.held.size:
                self.held = Held(size, value, self._open(value).root_hash)

    def _open(self, note: bytes) -> Checkpoint:
        if len(note) > MAX_NOTE_BYTES:
            raise Refused(grpc.StatusCode.INVALID_ARGUMENT, f"note over {MAX_NOTE_BYTES} bytes")
        try:
            opened = note_mod.open_note(note, verifiers=[self.verifier])
        except SignatureError as e:
            raise Refused(
                grpc.StatusCode.PERMISSION_DENIED,
                f"not signed by the relay audit key {self.verifier.name}: {e.message}",
            ) from None
        except VerificationError as e:
            raise Refused(
                grpc.StatusCode.INVALID_ARGUMENT, f"not a signed note: {e.message}"
            ) from None
        try:
            checkpoint = parse_checkpoint(opened.text, hasher=TREE_HASHER)
        except VerificationError as e:
            raise Refused(
                grpc.StatusCode.INVALID_ARGUMENT, f"not a checkpoint: {e.message}"
            ) from None
        if checkpoint.origin != self.verifier.name:
            raise Refused(
                grpc.StatusCode.PERMISSION_DENIED,
                f"checkpoint of log {checkpoint.origin!r}, this chain takes "
                f"{self.verifier.name!r} only",
            )
        return checkpoint

    def publish(self, note: bytes, consistency_proof: Sequence[bytes]) -> tuple[int, bytes, int]:
        """Check and write ``note``; (height proving it, key, size). Raises Refused."""
        checkpoint = self._open(note)
        size, held = checkpoint.size, self.held
        key = checkpoint_key(size)
        if size == held.size:
            if note != held.note:
                raise Refused(
                    grpc.StatusCode.FAILED_PRECONDITION,
                    f"the chain holds another checkpoint of size {size}: a split view",
                )
            return self.chain.height, key, size  # a retry of what is already written
        if size < held.size:
            raise Refused(
                grpc.StatusCode.FAILED_PRECONDITION,
                f"checkpoint {size} is older than checkpoint {held.size} the chain holds",
            )
        if len(consistency_proof) > MAX_PROOF_HASHES:
            raise Refused(grpc.StatusCode.INVALID_ARGUMENT, "consistency proof too long")
        if held.size > 0:
            try:
                verify_consistency(
                    hasher=TREE_HASHER,
                    size1=held.size,
                    size2=size,
                    proof=list(consistency_proof),
                    root1=held.root,
                    root2=checkpoint.root_hash,
                )
            except VerificationError as e:
                raise Refused(
                    grpc.StatusCode.FAILED_PRECONDITION,
                    f"checkpoint {size} is not proven consistent with checkpoint {held.size} "
                    f"the chain holds ({e.message})",
                ) from None
        self.chain.put_raw(key, note)
        # The block after the write commits to it (app hash of H+1 is the state after H).
        self.chain.commit()
        height = self.chain.commit()
        self.held = Held(size, note, checkpoint.root_hash)
        log.info("audit checkpoint %d written, provable at height %d", size, height)
        return height, key, size


class SinkServicer(sink_pb2_grpc.SinkServiceServicer):
    """relay.sink.v1.SinkService over a JudicialLedger."""

    def __init__(self, ledger: JudicialLedger) -> None:
        self.ledger = ledger

    async def Publish(
        self, request: sink_pb2.PublishRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> sink_pb2.PublishResponse:
        try:
            height, key, size = self.ledger.publish(request.note, list(request.consistency_proof))
            return sink_pb2.PublishResponse(height=height, key=key, size=size)
        except Refused as e:
            log.warning("refused a publication: %s", e)
            await context.abort(e.code, str(e))
            raise  # abort raises; this line is never reached

    async def GetPublished(
        self, request: sink_pb2.GetPublishedRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> sink_pb2.GetPublishedResponse:
        held = self.ledger.held
        return sink_pb2.GetPublishedResponse(
            size=held.size,
            note=held.note,
            key=checkpoint_key(held.size) if held.size else b"",
            height=self.ledger.chain.height,
        )


def chain_config(chain_id: str, validators: int, relay_vkey: str) -> dict[str, Any]:
    """The journal's first line: the partner-server parameters of a BFT chain, and the relay
    key, so a state directory is never reused for another relay's log."""
    return {
        "format": FORMAT,
        "kind": "bft",
        "chain_id": chain_id,
        "domain": "credit",
        "hash": "sha256",
        "sig": "ed25519",
        "validators": validators,
        "origin": "",
        "witnesses": 0,
        "quorum": 0,
        "judicial_relay_vkey": relay_vkey,
    }


@dataclass
class RunningJudicial:
    """A started judicial chain: its ledger, server, journal and address."""

    ledger: JudicialLedger
    server: grpc.aio.Server
    journal: Journal
    address: str
    descriptor: pb.ChainDescriptor
    producer: asyncio.Task[None] | None = None

    @property
    def chain(self) -> BftPartnerChain:
        return self.ledger.chain

    async def stop(self, grace_s: float = 2.0) -> None:
        if self.producer is not None:
            self.producer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self.producer
            self.producer = None
        await self.server.stop(grace_s)
        self.journal.close()


async def start_judicial(
    *,
    state: Path,
    listen: str,
    tls_cert: bytes,
    tls_key: bytes,
    client_ca: bytes,
    relay_vkey: str,
    chain_id: str = CHAIN_ID,
    validators: int = 4,
    tls_ca: bytes | None = None,
    server_name: str | None = None,
    block_interval: float = 0.0,
    descriptor_out: Path | None = None,
) -> RunningJudicial:
    """Replay (or create) the chain in ``state`` and serve SinkService and AdapterService on
    ``listen`` with mutual TLS (callers need a certificate issued by ``client_ca``)."""
    state.mkdir(parents=True, exist_ok=True)
    journal = Journal(state)
    chain = journal.load(chain_config(chain_id, validators, relay_vkey))
    try:
        assert isinstance(chain, BftPartnerChain)
        chain.profile = PROFILE
        if chain.height == 0:
            chain.put_raw(GENESIS_KEY, chain_id.encode())  # ICS-23 needs a non-empty state
            chain.commit()
        ledger = JudicialLedger(chain, relay_vkey)
        server = grpc.aio.server(
            options=[
                ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
                ("grpc.max_send_message_length", 16 << 20),
            ]
        )
        handlers = GenericHandlersOnly(server)  # no per-method registered handlers
        sink_pb2_grpc.add_SinkServiceServicer_to_server(SinkServicer(ledger), handlers)  # type: ignore[no-untyped-call]
        adapter_pb2_grpc.add_AdapterServiceServicer_to_server(PartnerAdapter(chain), handlers)  # type: ignore[no-untyped-call]
        credentials = grpc.ssl_server_credentials(
            [(tls_key, tls_cert)], root_certificates=client_ca, require_client_auth=True
        )
        try:
            port = server.add_secure_port(listen, credentials)
        except RuntimeError as e:
            raise StartupError(f"cannot listen on {listen}: {e}") from e
        if not port:
            raise StartupError(f"cannot listen on {listen}")
        await server.start()
    except BaseException:
        journal.close()
        raise
    host = listen.rpartition(":")[0]
    address = f"{host}:{port}"
    endpoint = pb.AdapterEndpoint(
        grpc_address=address,
        tls_server_name=server_name or host.strip("[]"),
        ca_certificates_pem=(tls_ca or tls_cert).decode(),
    )
    descriptor = chain.descriptor(endpoint)
    if descriptor_out is not None:
        write_atomically(
            descriptor_out,
            json_format.MessageToJson(descriptor, indent=2, ensure_ascii=False) + "\n",
        )
    running = RunningJudicial(ledger, server, journal, address, descriptor)
    if block_interval > 0:

        async def produce() -> None:
            while True:
                await asyncio.sleep(block_interval)
                chain.commit()

        running.producer = asyncio.create_task(produce())
    log.info(
        "judicial chain %s on %s holds audit checkpoint %d", chain_id, address, ledger.held.size
    )
    return running


def _read(path: str, what: str) -> bytes:
    try:
        return Path(path).read_bytes()
    except OSError as e:
        raise StartupError(f"cannot read {what} {path}: {e.strerror}") from e


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="python -m adapters.judicial",
        description="The reference judicial chain: takes the relay's signed audit checkpoints "
        "(relay.sink.v1.SinkService) and serves them back with proofs (AdapterService).",
    )
    p.add_argument("--state", required=True, help="directory of the chain's journal")
    p.add_argument("--listen", required=True, help="HOST:PORT (port 0 picks a free port)")
    p.add_argument("--tls-cert", required=True, help="server certificate chain (PEM)")
    p.add_argument("--tls-key", required=True, help="server private key (PEM)")
    p.add_argument("--tls-client-ca", required=True, help="CA of the callers' certificates")
    p.add_argument("--tls-ca", help="CA (PEM) put in the descriptor; default: the certificate")
    p.add_argument("--server-name", help="TLS server name in the descriptor; default: host")
    p.add_argument("--relay-vkey", required=True, help="the relay's audit key (C2SP verifier key)")
    p.add_argument("--chain-id", default=CHAIN_ID)
    p.add_argument("--validators", type=int, default=4)
    p.add_argument("--block-interval", type=float, default=1.0, help="seconds; 0 = only on use")
    p.add_argument("--descriptor-out", help="write the chain descriptor (proto JSON) here")
    p.add_argument("--grace", type=float, default=2.0, help="seconds to drain calls on stop")
    return p.parse_args(argv)


async def serve(args: argparse.Namespace) -> int:
    running = await start_judicial(
        state=Path(args.state),
        listen=args.listen,
        tls_cert=_read(args.tls_cert, "TLS certificate"),
        tls_key=_read(args.tls_key, "TLS key"),
        client_ca=_read(args.tls_client_ca, "client CA"),
        tls_ca=_read(args.tls_ca, "CA certificate") if args.tls_ca else None,
        relay_vkey=args.relay_vkey,
        chain_id=args.chain_id,
        validators=args.validators,
        server_name=args.server_name,
        block_interval=args.block_interval,
        descriptor_out=Path(args.descriptor_out) if args.descriptor_out else None,
    )
    print(
        f"judicial chain {args.chain_id} listening on {running.address} "
        f"(holds audit checkpoint {running.ledger.held.size})",
        flush=True,
    )
    with stop_on_signals() as stop:
        await stop.wait()
    await running.stop(args.grace)
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    args = parse_args(argv)
    try:
        return asyncio.run(serve(args))
    except (StartupError, VerificationError) as e:
        message = e.message if isinstance(e, VerificationError) else str(e)
        print(f"adapters.judicial: {message}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
