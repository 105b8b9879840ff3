"""Issue 7: the judicial chain as a system of its own (adapters/judicial.py) and the relay's
remote sink (relay/audit/sink.py RemoteChainSink), over real mutual-TLS sockets. The chain
takes only the relay's checkpoints, never an older size, only with a consistency proof; the
sink publishes in order without blocking, retries what failed (also after a restart, from
the store) and the checkpoints read back from the chain verify from its trust anchor."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import grpc
import pytest

from adapters.judicial import RunningJudicial, start_judicial
from relay.audit.checkpoint import TREE_HASHER, sign_checkpoint
from relay.audit.log import AuditLog
from relay.audit.sink import (
    RemoteChainSink,
    checkpoint_key,
    read_published_checkpoint,
    relay_vkey,
    verify_published_checkpoint,
)
from relay.engine.evidence import RelaySigner
from relay.pb.relay.adapter.v1 import adapter_pb2, adapter_pb2_grpc
from relay.pb.relay.sink.v1 import sink_pb2, sink_pb2_grpc
from relay.service.client import ClientTls, aio_channel
from relay.service.devconfig import free_port
from relay.store import SQLiteStore
from relay.testing.audit import sample_entry
from relay.testing.pki import TestCA
from relay.verify.errors import SignatureError, VerificationError
from relay.verify.merkle.rfc6962 import consistency_proof, root_hash

SIGNER = RelaySigner.ed25519(key_id="relay-test-1", seed=bytes(range(32)))
OTHER = RelaySigner.ed25519(key_id="relay-test-1", seed=bytes(32))
CA = TestCA.create("judicial chain test CA")
SERVER = CA.issue_server()
CLIENT = CA.issue_client("relay-test")
TLS = ClientTls(ca_pem=CA.cert_pem, cert_pem=CLIENT.cert_pem, key_pem=CLIENT.key_pem)


entry = sample_entry


LEAVES = [TREE_HASHER.hash_leaf(entry(i)) for i in range(16)]


def note(size: int, *, signer: RelaySigner = SIGNER, leaves: list[bytes] = LEAVES) -> bytes:
    return sign_checkpoint(
        signer, size=size, root=root_hash(hasher=TREE_HASHER, leaf_hashes=leaves[:size])
    )


async def judicial(state: Path, port: int = 0) -> RunningJudicial:
    return await start_judicial(
        state=state,
        listen=f"127.0.0.1:{port}",
        tls_cert=SERVER.cert_pem,
        tls_key=SERVER.key_pem,
        client_ca=CA.cert_pem,
        tls_ca=CA.cert_pem,
        server_name="localhost",
        relay_vkey=relay_vkey(SIGNER.relay_key()),
        chain_id="judicial-test",
    )


def sink_to(port: int) -> RemoteChainSink:
    return RemoteChainSink(
        f"localhost:{port}", tls=TLS, deadline_s=5, retry_initial_s=0.05, retry_max_s=0.2
    )


@asynccontextmanager
async def relay_log(path: Path, sink: RemoteChainSink) -> AsyncIterator[AuditLog]:
    store = await SQLiteStore.open(path / "relay.db")
    audit = await AuditLog.open(store=store, signer=SIGNER, sinks=[sink])
    sink.attach(audit)
    try:
        yield audit
    finally:
        await audit.close()
        await sink.close(timeout_s=0.5)
        await store.close()


async def fill(audit: AuditLog, n: int) -> Any:
    await asyncio.gather(*(audit.append(entry(audit.size + i)) for i in range(n)))
    return await audit.checkpoint()


def run(coro: Any) -> Any:
    return asyncio.run(coro)


def test_checkpoints_are_published_in_order_and_read_back_verified(tmp_path: Path) -> None:
    async def go() -> None:
        chain = await judicial(tmp_path / "judicial")
        sink = sink_to(int(chain.address.rpartition(":")[2]))
        try:
            async with relay_log(tmp_path, sink) as audit:
                first = await fill(audit, 3)
                second = await fill(audit, 5)
                assert await sink.wait_published(8, timeout_s=20), sink.last_error
            assert sink.published == [3, 8]
            relay_key = SIGNER.relay_key()
            for c in (first, second):
                got = await read_published_checkpoint(
                    descriptor=chain.descriptor, size=c.size, relay_key=relay_key, tls=TLS
                )
                assert (got.size, got.note, got.root) == (c.size, c.note, c.root)
            # The same reads, tampered, fail: another value, another relay key, another
            # header.
            async with aio_channel(chain.address.replace("127.0.0.1", "localhost"), TLS) as channel:
                stub = adapter_pb2_grpc.AdapterServiceStub(channel)  # type: ignore[no-untyped-call]
                key = checkpoint_key(3)
                result = await stub.Query(
                    adapter_pb2.QueryRequest(query=adapter_pb2.DomainQuery(raw_key=key)), timeout=5
                )
            block = chain.chain.light_block_bytes(result.height)
            good = dict(
                descriptor=chain.descriptor,
                key=key,
                result=result,
                light_block=block,
                now=time.time_ns(),
            )
            verify_published_checkpoint(relay_key=relay_key, **good)  # type: ignore[arg-type]
            with pytest.raises(SignatureError):
                verify_published_checkpoint(relay_key=OTHER.relay_key(), **good)  # type: ignore[arg-type]
            edited = adapter_pb2.QueryResult()
            edited.CopyFrom(result)
            edited.value = result.value.replace(b"\n3\n", b"\n4\n")
            with pytest.raises(VerificationError):
                verify_published_checkpoint(relay_key=relay_key, **{**good, "result": edited})  # type: ignore[arg-type]
            other_block = chain.chain.light_block_bytes(result.height - 1)
            with pytest.raises(VerificationError):
                verify_published_checkpoint(
                    relay_key=relay_key,
                    **{**good, "light_block": other_block},  # type: ignore[arg-type]
                )
        finally:
            await chain.stop()

    run(go())


def test_the_chain_takes_only_the_relays_newer_consistent_checkpoints(tmp_path: Path) -> None:
    async def go() -> None:
        chain = await judicial(tmp_path / "judicial")
        address = chain.address.replace("127.0.0.1", "localhost")
        try:
            async with aio_channel(address, TLS) as channel:
                stub = sink_pb2_grpc.SinkServiceStub(channel)  # type: ignore[no-untyped-call]

                async def code(n: bytes, proof: list[bytes] | None = None) -> grpc.StatusCode:
                    try:
                        await stub.Publish(
                            sink_pb2.PublishRequest(note=n, consistency_proof=proof or []),
                            timeout=5,
                        )
                    except grpc.aio.AioRpcError as e:
                        return e.code()
                    return grpc.StatusCode.OK

                assert (await stub.GetPublished(sink_pb2.GetPublishedRequest())).size == 0
                assert await code(note(3, signer=OTHER)) == grpc.StatusCode.PERMISSION_DENIED
                assert await code(b"relay.judicial/x\n3\n\n") == grpc.StatusCode.INVALID_ARGUMENT
                ok = await stub.Publish(sink_pb2.PublishRequest(note=note(3)), timeout=5)
                assert (ok.size, ok.key) == (3, b"audit-checkpoint/3")
                again = await stub.Publish(sink_pb2.PublishRequest(note=note(3)), timeout=5)
                assert again.size == 3  # a retry is accepted and writes nothing new
                forked = [TREE_HASHER.hash_leaf(b"x"), *LEAVES[1:]]
                split = note(3, leaves=forked)
                assert await code(split) == grpc.StatusCode.FAILED_PRECONDITION
                assert await code(note(2)) == grpc.StatusCode.FAILED_PRECONDITION
                proof = consistency_proof(hasher=TREE_HASHER, leaf_hashes=LEAVES[:8], size1=3)
                assert await code(note(8)) == grpc.StatusCode.FAILED_PRECONDITION  # no proof
                bad = [bytes(32), *proof[1:]]
                assert await code(note(8), bad) == grpc.StatusCode.FAILED_PRECONDITION
                rewritten = consistency_proof(hasher=TREE_HASHER, leaf_hashes=forked[:8], size1=3)
                assert await code(note(8, leaves=forked), rewritten) == (
                    grpc.StatusCode.FAILED_PRECONDITION
                )
                assert await code(note(8), proof) == grpc.StatusCode.OK
                held = await stub.GetPublished(sink_pb2.GetPublishedRequest(), timeout=5)
                assert (held.size, held.note) == (8, note(8))
        finally:
            await chain.stop()
        # A restart replays the journal: the chain still holds 8 and refuses older sizes.
        chain = await judicial(tmp_path / "judicial")
        try:
            assert chain.ledger.held.size == 8
            assert chain.chain.query(checkpoint_key(3)).value == note(3)
            from adapters.judicial import Refused

            with pytest.raises(Refused, match="older"):
                chain.ledger.publish(note(5), [])
        finally:
            await chain.stop()

    run(go())


def test_failed_publications_are_retried_never_lost(tmp_path: Path) -> None:
    port = free_port()

    async def go() -> None:
        sink = sink_to(port)
        async with relay_log(tmp_path, sink) as audit:
            # No judicial chain yet: checkpoints are signed at once, publication waits.
            first = await asyncio.wait_for(fill(audit, 4), 5)
            assert first.size == 4
            for _ in range(100):
                if sink.failures >= 2:
                    break
                await asyncio.sleep(0.05)
            assert sink.failures >= 2 and sink.published == [] and sink.pending == 1
            chain = await judicial(tmp_path / "judicial", port)
            try:
                assert await sink.wait_published(4, timeout_s=20), sink.last_error
            finally:
                await chain.stop()
            await fill(audit, 3)  # the chain is down again: checkpoint 7 stays queued
        assert sink.pending == 1 and sink.published == [4]
        # After a restart of both, the stored checkpoint the chain lacks is published.
        chain = await judicial(tmp_path / "judicial", port)
        try:
            assert chain.ledger.held.size == 4
            sink = sink_to(port)
            async with relay_log(tmp_path, sink):
                assert await sink.wait_published(7, timeout_s=20), sink.last_error
            assert sink.published == [7]
            assert chain.chain.query(checkpoint_key(7)).value == note(7)
        finally:
            await chain.stop()

    run(go())


def test_sink_config_names_the_remote_judicial_chain(tmp_path: Path) -> None:
    from relay.config import ConfigError, load_config
    from relay.service.devconfig import write_dev_setup

    def load(sink: dict[str, Any]) -> Any:
        setup = write_dev_setup(tmp_path / "relay", overrides={"audit": {"sink": sink}})
        return load_config(setup.config).audit.sink

    pki = tmp_path / "relay" / "pki"
    tls = {"tls_ca": "pki/ca.pem", "tls_cert": "pki/client.pem", "tls_key": "pki/client.key"}
    remote = load({"endpoint": "localhost:7443", **tls})
    assert (remote.in_process, remote.endpoint, remote.tls_ca) == (
        False,
        "localhost:7443",
        pki / "ca.pem",
    )
    assert load({}).in_process and load({}).endpoint is None
    with pytest.raises(ConfigError, match="endpoint needs tls_ca, tls_cert, tls_key"):
        load({"endpoint": "localhost:7443"})
    with pytest.raises(ConfigError, match="excludes in_process"):
        load({"endpoint": "localhost:7443", "in_process": True, **tls})
