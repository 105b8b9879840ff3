"""The partner chain process (``python -m relay.testing.partner_server``): it starts fast with
TLS, serves Describe / GetLatestHeight / GetLightBlocks / Query / GetCheckpoint to a grpc.aio
client over a real socket, advances its chain, stops gracefully on SIGTERM, keeps its chain
across restarts, and refuses a state directory of another chain."""

from __future__ import annotations

import asyncio
import datetime
import json
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import grpc
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from google.protobuf import json_format

from relay.pb.relay.adapter.v1 import adapter_pb2 as apb
from relay.pb.relay.adapter.v1 import adapter_pb2_grpc
from relay.pb.relay.v1 import types_pb2 as pb
from relay.testing import samples
from relay.testing.partner_server import Journal, _config, parse_args
from relay.verify import records
from relay.verify.hashing import SHA256
from relay.verify.lightclient import cometbft_proto as cp
from relay.verify.lightclient import cometbft_types as ct
from relay.verify.lightclient import tendermint as tm
from relay.verify.lightclient import tlog
from relay.verify.merkle import ics23
from relay.verify.merkle.rfc6962 import RFC6962_SHA256
from relay.verify.note import parse_verifier_key

STARTUP_LIMIT_S = 2.0


# --- a throwaway PKI ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Pki:
    ca: Path
    cert: Path
    key: Path


def _name(cn: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    folder = tmp_path_factory.mktemp("pki")
    now = datetime.datetime.now(datetime.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca = (
        x509.CertificateBuilder()
        .subject_name(_name("partner test CA"))
        .issuer_name(_name("partner test CA"))
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(hours=2))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .sign(ca_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (
        x509.CertificateBuilder()
        .subject_name(_name("localhost"))
        .issuer_name(ca.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(hours=2))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName("localhost")]), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    paths = Pki(folder / "ca.pem", folder / "server.pem", folder / "server.key")
    paths.ca.write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    paths.cert.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    paths.key.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return paths


# --- the process -------------------------------------------------------------------------------


@dataclass
class Partner:
    process: subprocess.Popen[bytes]
    descriptor: pb.ChainDescriptor
    started_in: float

    @property
    def address(self) -> str:
        return self.descriptor.adapter.grpc_address

    def stop(self) -> int:
        self.process.send_signal(signal.SIGTERM)
        return self.process.wait(timeout=10)


def start(pki: Pki, state: Path, *extra: str) -> Partner:
    out = state.parent / f"{state.name}-descriptor.json"
    out.unlink(missing_ok=True)
    began = time.monotonic()
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "relay.testing.partner_server",
            "--listen",
            "localhost:0",
            "--state",
            str(state),
            "--tls-cert",
            str(pki.cert),
            "--tls-key",
            str(pki.key),
            "--tls-ca",
            str(pki.ca),
            "--descriptor-out",
            str(out),
            "--grace",
            "0.5",
            *extra,
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    while not out.exists():
        if process.poll() is not None:
            raise AssertionError(process.stderr.read().decode() if process.stderr else "exited")
        if time.monotonic() - began > 15:
            process.kill()
            raise AssertionError("partner server did not start")
        time.sleep(0.01)
    started = time.monotonic() - began
    descriptor = json_format.Parse(out.read_text(), pb.ChainDescriptor())
    return Partner(process, descriptor, started)


@pytest.fixture
def partners() -> Iterator[list[Partner]]:
    running: list[Partner] = []
    yield running
    for p in running:
        if p.process.poll() is None:
            p.process.kill()
            p.process.wait()


async def call(partner: Partner, pki: Pki, fn: object) -> object:
    credentials = grpc.ssl_channel_credentials(root_certificates=pki.ca.read_bytes())
    async with grpc.aio.secure_channel(partner.address, credentials) as channel:
        stub = adapter_pb2_grpc.AdapterServiceStub(channel)  # type: ignore[no-untyped-call]
        return await fn(stub)  # type: ignore[operator]


def params_of(descriptor: pb.ChainDescriptor) -> ct.ChainParams:
    assert descriptor.tendermint.hash_algorithm == pb.HASH_ALGORITHM_SHA256
    return ct.DEFAULT_PARAMS


# --- tests -------------------------------------------------------------------------------------


def test_bft_partner_serves_verifiable_blocks_and_answers_over_tls(
    pki: Pki, tmp_path: Path, partners: list[Partner]
) -> None:
    partner = start(
        pki,
        tmp_path / "bft",
        "--kind",
        "bft",
        "--seed-data",
        "--block-interval",
        "0.2",
        "--activity",
    )
    partners.append(partner)
    assert partner.started_in < STARTUP_LIMIT_S, f"start-up took {partner.started_in:.2f} s"
    d = partner.descriptor
    assert d.adapter.ca_certificates_pem == pki.ca.read_text()
    assert d.adapter.tls_server_name == "localhost"
    params = params_of(d)
    anchor = cp.decode_light_block_proto(d.tendermint.anchor.light_block, params=params)
    debtor = samples.population().debtor
    party_key = records.party_key(
        hasher=SHA256, salt=d.party_key.salt, id_type=debtor.id_type, party_id=debtor.id
    )

    async def session(stub: adapter_pb2_grpc.AdapterServiceStub) -> None:
        described = await stub.Describe(apb.DescribeRequest(), timeout=5)
        assert described.chain_id == d.chain_id
        assert described.client_type == pb.CLIENT_TYPE_TENDERMINT
        await asyncio.sleep(0.5)  # the chain advances by itself
        head = (await stub.GetLatestHeight(apb.GetLatestHeightRequest(), timeout=5)).height
        assert head > anchor.height
        request = apb.GetLightBlocksRequest(
            from_height=anchor.height + 1,
            to_height=head,
            encoding=apb.LIGHT_BLOCK_ENCODING_COMETBFT_PROTO,
        )
        blocks = [item async for item in stub.GetLightBlocks(request, timeout=5)]
        assert [b.height for b in blocks] == list(range(anchor.height + 1, head + 1))
        trusted = tm.TrustedBlock.from_light_block(anchor)
        opts = tm.TrustOptions(
            chain_id=d.chain_id,
            trusting_period_ns=d.tendermint.trusting_period.seconds * 10**9,
            max_clock_drift_ns=d.tendermint.max_clock_drift.seconds * 10**9,
        )
        now = time.time_ns()
        for item in blocks:
            block = cp.decode_light_block_proto(item.light_block, params=params)
            tm.verify_light_block(trusted=trusted, untrusted=block, options=opts, now=now)
            trusted = tm.TrustedBlock.from_light_block(block)
        # a query at the verified head: proof against that head's app hash, a decodable record
        query = apb.QueryRequest(
            query=apb.DomainQuery(ownership=pb.AssetRef(kind=1, registry="110105")), height=head
        )
        holdings = [
            r
            async for r in stub.ListByParty(
                apb.ListByPartyRequest(party_key=party_key, height=head), timeout=5
            )
        ]
        index = records.decode_for_key(holdings[0].key, holdings[0].value)[1]
        assert isinstance(index, pb.PartyHoldings) and index.assets
        query.query.ownership.CopyFrom(index.assets[0])
        result = await stub.Query(query, timeout=5)
        assert result.height == head
        ics23.verify_membership(
            spec=ics23.SMT_SPEC,
            root=trusted.app_hash,
            proof=ics23.decode_commitment_proof(result.proof),
            key=result.key,
            value=result.value,
        )
        record = records.decode_for_key(result.key, result.value)[1]
        assert isinstance(record, pb.OwnershipRecord) and record.asset == index.assets[0]
        with pytest.raises(grpc.aio.AioRpcError) as info:
            await stub.Query(apb.QueryRequest(query=query.query, height=head + 10_000), timeout=5)
        assert info.value.code() == grpc.StatusCode.NOT_FOUND

    asyncio.run(call(partner, pki, session))  # type: ignore[arg-type]
    assert partner.stop() == 0


def test_state_survives_a_restart(pki: Pki, tmp_path: Path, partners: list[Partner]) -> None:
    state = tmp_path / "bft"
    first = start(
        pki, state, "--kind", "bft", "--seed-data", "--block-interval", "0.05", "--activity"
    )
    partners.append(first)
    time.sleep(0.4)
    assert first.stop() == 0
    journal = (state / "chain.jsonl").read_text().splitlines()
    stored_head = json.loads(journal[-1])["height"]
    assert stored_head >= 4
    # the restarted chain is the same chain: same blocks (Ed25519 signatures are
    # deterministic, so the very same bytes), and it goes on from its head
    args = ["--kind", "bft", "--listen", "x:0", "--state", "s", "--tls-cert", "c", "--tls-key", "k"]
    journal_copy = tmp_path / "copy"
    journal_copy.mkdir()
    (journal_copy / "chain.jsonl").write_text((state / "chain.jsonl").read_text())
    loader = Journal(journal_copy)
    replayed = loader.load(_config(parse_args(args)))
    loader.close()
    assert replayed.height == stored_head
    # a line cut short by a crash is dropped, not fatal
    with (state / "chain.jsonl").open("a") as f:
        f.write('{"height": 99')

    async def blocks(stub: adapter_pb2_grpc.AdapterServiceStub) -> list[bytes]:
        head = (await stub.GetLatestHeight(apb.GetLatestHeightRequest(), timeout=5)).height
        assert head >= stored_head
        request = apb.GetLightBlocksRequest(from_height=1, to_height=stored_head, encoding=1)  # type: ignore[arg-type]
        return [item.light_block async for item in stub.GetLightBlocks(request, timeout=5)]

    second = start(pki, state, "--kind", "bft", "--block-interval", "0")
    partners.append(second)
    served = asyncio.run(call(second, pki, blocks))  # type: ignore[arg-type]
    assert served == [replayed.light_block_bytes(h) for h in range(1, stored_head + 1)]
    assert second.descriptor.tendermint.anchor.height == stored_head
    assert second.stop() == 0
    # another chain's parameters on the same state are refused with a clear message
    refused = subprocess.run(
        [
            sys.executable,
            "-m",
            "relay.testing.partner_server",
            "--kind",
            "bft",
            "--chain-id",
            "another-chain",
            "--listen",
            "localhost:0",
            "--state",
            str(state),
            "--tls-cert",
            str(pki.cert),
            "--tls-key",
            str(pki.key),
        ],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert refused.returncode == 2
    assert "belongs to another chain" in refused.stderr and "Traceback" not in refused.stderr


def test_log_partner_serves_checkpoints_with_map_roots(
    pki: Pki, tmp_path: Path, partners: list[Partner]
) -> None:
    partner = start(
        pki,
        tmp_path / "log",
        "--kind",
        "tlog",
        "--seed-data",
        "--block-interval",
        "0.1",
        "--activity",
    )
    partners.append(partner)
    d = partner.descriptor.tlog
    config = tlog.TlogTrustConfig(
        origin=d.origin,
        log_key=parse_verifier_key(d.log_verifier_key),
        hasher=RFC6962_SHA256,
        witnesses=tuple(parse_verifier_key(k) for k in d.witness_verifier_keys),
        quorum=d.witness_threshold,
    )
    now = int(time.time())
    state = tlog.initialize(config=config, anchor_note=d.anchor.checkpoint, now=now)
    asset = pb.AssetRef(kind=pb.ASSET_KIND_PATENT, registry="CNIPA")

    async def session(stub: adapter_pb2_grpc.AdapterServiceStub) -> tlog.TlogClientState:
        await asyncio.sleep(0.4)  # activity makes new writes, hence new checkpoints
        note = (await stub.GetCheckpoint(apb.GetCheckpointRequest(), timeout=5)).signed_note
        size = tlog.parse_checkpoint(note.split(b"\n\n")[0] + b"\n", hasher=RFC6962_SHA256).size
        assert size > state.trusted.size
        proof = await stub.GetConsistencyProof(
            apb.GetConsistencyProofRequest(size1=state.trusted.size, size2=size), timeout=5
        )
        new = tlog.update(state, note, proof.hashes, now=int(time.time()))
        asset.id = "ZL000000000000.0"  # absent: a non-membership proof against the map root
        result = await stub.Query(
            apb.QueryRequest(query=apb.DomainQuery(ownership=asset), height=size), timeout=5
        )
        assert not result.HasField("value") and result.height == size
        assert new.checkpoint.map_root is not None
        ics23.verify_non_membership(
            spec=ics23.SMT_SPEC,
            root=new.checkpoint.map_root,
            proof=ics23.decode_commitment_proof(result.proof),
            key=result.key,
        )
        return new

    updated = asyncio.run(call(partner, pki, session))
    assert isinstance(updated, tlog.TlogClientState) and updated.trusted.size > state.trusted.size
    assert partner.stop() == 0


def test_a_fault_switch_serves_the_lie(pki: Pki, tmp_path: Path, partners: list[Partner]) -> None:
    partner = start(
        pki,
        tmp_path / "liar",
        "--kind",
        "bft",
        "--seed-data",
        "--block-interval",
        "0",
        "--fault",
        "GARBAGE_BYTES",
    )
    partners.append(partner)

    async def session(stub: adapter_pb2_grpc.AdapterServiceStub) -> bytes:
        request = apb.GetLightBlocksRequest(from_height=1, to_height=1, encoding=1)  # type: ignore[arg-type]
        [item] = [item async for item in stub.GetLightBlocks(request, timeout=5)]
        return item.light_block

    data = asyncio.run(call(partner, pki, session))
    assert isinstance(data, bytes)
    with pytest.raises(Exception) as info:
        cp.decode_light_block_proto(data, params=ct.DEFAULT_PARAMS)
    assert getattr(info.value, "reason", None) == "MALFORMED_INPUT"
    assert partner.stop() == 0
