"""Issue 8, "what it must show" 2: a running relay (start_relay in-process, real TLS on the
gRPC port, a real SQLite store, the ops HTTP port) following test partner chains of both
client types is scraped over HTTP at /metrics. Every metric of the catalogue exists with its
type and labels; values move when they should (queries counted by method, a forged proof
counted as a proof failure with its reason, a forged header as a header failure, trusted
height growing with sync); no label value carries a height, hash, party or case. The same
run checks the JSON log lines carry the request id sent in gRPC metadata (echoed back in the
response metadata), that /loglevel changes the level at run time, and that /readyz follows
gRPC health.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import json
import logging
import re
import ssl
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import grpc
import pytest
from google.protobuf import json_format
from prometheus_client.parser import text_string_to_metric_families

from relay.config import load_config
from relay.engine.adapters import InProcessAdapterClient
from relay.logs import REQUEST_ID_KEY, configure_logging
from relay.metrics import RelayMetrics
from relay.pb.relay.v1 import query_pb2, query_pb2_grpc
from relay.pb.relay.v1 import types_pb2 as pb
from relay.service.app import Running, start_relay
from relay.service.client import aio_channel
from relay.service.devconfig import write_dev_setup
from relay.service.errors import describe_rpc_error
from relay.testing import samples
from relay.testing.partners import (
    BftPartnerChain,
    Fault,
    LyingAdapter,
    PartnerAdapter,
    TlogPartnerRegistry,
    sample_data,
)

CASE = pb.CaseRef(
    court="京0105",
    case_number="(2026)京0105执4321号",
    purpose=pb.CASE_PURPOSE_INVESTIGATION,
    officer="officer-9",
)
BFT, LOG = "cn-bj-haidian-realestate", "cn-icbc-sh"
PER_CHAIN = {"chain", "domain"}

#: The catalogue, written out independently of relay/metrics.py so that a metric renamed,
#: retyped, relabelled, added or dropped there fails here (and the README table follows).
CATALOGUE: dict[str, tuple[str, set[str]]] = {
    "relay_build_info": ("gauge", {"version"}),
    "relay_metrics_dropped_samples_total": ("counter", set()),
    "relay_chain_info": ("gauge", {"chain", "domain", "client_type", "adapter"}),
    "relay_chain_status": ("gauge", PER_CHAIN | {"status"}),
    "relay_chain_trusted_height": ("gauge", PER_CHAIN),
    "relay_chain_trusted_time_seconds": ("gauge", PER_CHAIN),
    "relay_chain_trusting_period_remaining_seconds": ("gauge", PER_CHAIN),
    "relay_chain_partner_head_height": ("gauge", PER_CHAIN),
    "relay_chain_lag_blocks": ("gauge", PER_CHAIN),
    "relay_chain_lag_seconds": ("gauge", PER_CHAIN),
    "relay_header_verifications_total": ("counter", PER_CHAIN),
    "relay_header_verification_failures_total": ("counter", PER_CHAIN | {"reason"}),
    "relay_proof_verifications_total": ("counter", PER_CHAIN),
    "relay_proof_verification_failures_total": ("counter", PER_CHAIN | {"reason"}),
    "relay_misbehaviour_detected_total": ("counter", PER_CHAIN),
    "relay_sync_lease_held": ("gauge", PER_CHAIN),
    "relay_sync_leases_lost_total": ("counter", PER_CHAIN),
    "relay_adapter_up": ("gauge", PER_CHAIN),
    "relay_adapter_request_duration_seconds": ("histogram", PER_CHAIN | {"method"}),
    "relay_adapter_request_errors_total": ("counter", PER_CHAIN | {"method", "reason"}),
    "relay_query_duration_seconds": ("histogram", {"method"}),
    "relay_query_errors_total": ("counter", {"method", "reason"}),
    "relay_audit_log_entries": ("gauge", set()),
    "relay_audit_log_size_bytes": ("gauge", set()),
    "relay_audit_last_checkpoint_time_seconds": ("gauge", set()),
    "relay_audit_checkpoint_age_seconds": ("gauge", set()),
    "grpc_server_started_total": ("counter", {"grpc_type", "grpc_service", "grpc_method"}),
    "grpc_server_handled_total": (
        "counter",
        {"grpc_type", "grpc_service", "grpc_method", "grpc_code"},
    ),
    "grpc_server_msg_received_total": ("counter", {"grpc_type", "grpc_service", "grpc_method"}),
    "grpc_server_msg_sent_total": ("counter", {"grpc_type", "grpc_service", "grpc_method"}),
    "grpc_server_handling_seconds": ("histogram", {"grpc_type", "grpc_service", "grpc_method"}),
}
# Series that exist only once something happened (the first failed query).
ON_FIRST_USE = {"relay_query_errors_total"}


@dataclass
class Scrape:
    types: dict[str, str]
    samples: list[tuple[str, dict[str, str], float]]

    def value(self, name: str, **labels: str) -> float:
        """Sum of the samples of ``name`` whose labels include ``labels``."""
        return sum(
            v
            for n, got, v in self.samples
            if n == name and all(got.get(k) == x for k, x in labels.items())
        )

    def has(self, name: str, **labels: str) -> bool:
        return any(
            n == name and all(got.get(k) == x for k, x in labels.items())
            for n, got, _ in self.samples
        )


def parse(text: str) -> Scrape:
    types: dict[str, str] = {}
    out: list[tuple[str, dict[str, str], float]] = []
    for family in text_string_to_metric_families(text):
        # The text parser drops a counter's _total from the family name.
        name = family.name + "_total" if family.type == "counter" else family.name
        types[name] = family.type
        out.extend((s.name, dict(s.labels), s.value) for s in family.samples)
    return Scrape(types, out)


def make_partners() -> tuple[dict[str, LyingAdapter], dict[str, samples.SampleSet]]:
    people = samples.population()
    chains: list[BftPartnerChain | TlogPartnerRegistry] = [
        BftPartnerChain(BFT, domain=pb.DOMAIN_REAL_ESTATE),
        TlogPartnerRegistry("icbc.example.cn/sh", chain_id=LOG, domain=pb.DOMAIN_BANK),
    ]
    adapters, data = {}, {}
    for chain in chains:
        data[chain.chain_id] = sample_data(chain, people=people)
        adapters[chain.chain_id] = LyingAdapter(PartnerAdapter(chain), None)
    return adapters, data


@dataclass
class Ops:
    running: Running
    metrics: RelayMetrics
    query: query_pb2_grpc.QueryServiceStub
    http: aiohttp.ClientSession
    base: str
    partners: dict[str, LyingAdapter]
    data: dict[str, samples.SampleSet]
    logs: io.StringIO

    async def scrape(self) -> Scrape:
        async with self.http.get(f"{self.base}/metrics") as response:
            assert response.status == 200
            assert response.headers["Content-Type"].startswith("text/plain")
            return parse(await response.text())

    async def wait_for(self, check: Any, timeout_s: float = 8.0) -> Scrape:
        loop = asyncio.get_running_loop()
        end = loop.time() + timeout_s
        while True:
            scrape = await self.scrape()
            if check(scrape):
                return scrape
            if loop.time() > end:
                raise AssertionError("the scrape never satisfied the check")
            await asyncio.sleep(0.05)

    def log_lines(self) -> list[dict[str, Any]]:
        return [json.loads(line) for line in self.logs.getvalue().splitlines() if line]


@contextlib.asynccontextmanager
async def ops_relay(tmp: Path) -> AsyncIterator[Ops]:
    partners, data = make_partners()
    descriptors = []
    for chain_id, adapter in partners.items():
        d = adapter.chain.descriptor(pb.AdapterEndpoint(entry_point="relay-testing"))
        path = tmp / f"{chain_id}.json"
        path.write_text(json_format.MessageToJson(d))
        descriptors.append(path)
    setup = write_dev_setup(
        tmp / "relay",
        grpc_port=0,
        health_port=0,
        chains=descriptors,
        overrides={
            "listen": {"ops": "127.0.0.1:0"},
            "sync": {"interval": "100ms"},
            "adapters": {"deadline": 1, "retries": 0},
            "limits": {"query_deadline": "3s"},
        },
    )
    config = load_config(setup.config)
    settings = config.engine_settings()

    def adapters(descriptor: pb.ChainDescriptor) -> InProcessAdapterClient:
        servicer = partners[descriptor.chain_id]
        return InProcessAdapterClient(servicer, chain_id=descriptor.chain_id, settings=settings)

    root = logging.getLogger()
    saved = (list(root.handlers), root.level)
    logs = io.StringIO()
    configure_logging(level="INFO", fmt="json", stream=logs)
    metrics = RelayMetrics()
    running = await start_relay(config, adapters=adapters, metrics=metrics, insecure_dev=True)
    channel = aio_channel(f"localhost:{running.server.grpc_port}", setup.client_tls())
    try:
        assert running.ops is not None
        # The ops port serves the relay's certificate (issue 5): trust only the test CA.
        trust = ssl.create_default_context(cafile=str(setup.pki.ca_cert))
        async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=trust)) as http:
            yield Ops(
                running,
                metrics,
                query_pb2_grpc.QueryServiceStub(channel),
                http,
                f"https://localhost:{running.ops.port}",
                partners,
                data,
                logs,
            )
    finally:
        await channel.close()
        await running.stop()
        for handler in list(root.handlers):
            root.removeHandler(handler)
        for handler in saved[0]:
            root.addHandler(handler)
        root.setLevel(saved[1])


def active(chain: str) -> Any:
    return lambda s: s.value("relay_chain_status", chain=chain, status="active") == 1


HEX = re.compile(r"[0-9a-fA-F]{16,}")
NUMBER = re.compile(r"-?\d+(\.\d+)?")


def check_labels(scrape: Scrape, *, forbidden: set[str]) -> None:
    """No label value is a number (a height), a long hex string (a hash or key), or one
    of the ``forbidden`` strings (party ids, case numbers, asset ids); chain, reason and
    method labels come from their closed sets."""
    reasons = set(pb.ErrorReason.keys()) | {"OTHER"}
    chains = {BFT, LOG}
    for name, labels, _ in scrape.samples:
        if name == "python_info":  # the interpreter's version (major="3"...), by design
            continue
        for key, value in labels.items():
            if key == "le":  # histogram bucket bounds are numbers by design
                continue
            where = f"{name}{{{key}={value!r}}}"
            assert NUMBER.fullmatch(value) is None or key == "version", where
            assert HEX.search(value) is None, where
            assert not any(f in value for f in forbidden), where
            if key == "chain":
                assert value in chains, where
            if key == "reason":
                assert value in reasons, where


def test_scrape_shows_the_catalogue_moving_and_bounded(tmp_path: Path) -> None:
    async def main() -> None:
        async with ops_relay(tmp_path) as ops:
            http = ops.http
            # /readyz follows gRPC health: the relay reports SERVING once started.
            async with http.get(f"{ops.base}/readyz") as r:
                assert (r.status, (await r.text()).strip()) == (200, "ready")
            async with http.get(f"{ops.base}/healthz") as r:
                assert r.status == 200

            first = await ops.wait_for(lambda s: active(BFT)(s) and active(LOG)(s))

            # -- the catalogue: every metric, its type and its label names
            for name, (kind, labels) in CATALOGUE.items():
                if name in ON_FIRST_USE:
                    continue
                assert first.types.get(name) == kind, (name, first.types.get(name))
                series = [lab for n, lab, _ in first.samples if n.startswith(name)]
                assert series, name
                for lab in series:
                    assert set(lab) - {"le"} == labels, (name, lab)
            ours = {n for n in first.types if n.startswith(("relay_", "grpc_server_"))}
            assert ours <= set(CATALOGUE), ours - set(CATALOGUE)

            # Pre-initialised at zero for every chain: failures by each reason, both kinds.
            for chain in (BFT, LOG):
                assert first.has(
                    "relay_proof_verification_failures_total", chain=chain, reason="ROOT_MISMATCH"
                )
                assert first.value("relay_misbehaviour_detected_total", chain=chain) == 0
                assert first.value("relay_chain_trusted_height", chain=chain) > 0
                assert first.value("relay_chain_partner_head_height", chain=chain) > 0
                assert first.value("relay_adapter_up", chain=chain) == 1
                remaining = first.value(
                    "relay_chain_trusting_period_remaining_seconds", chain=chain
                )
                assert remaining > 3600
            assert first.has("relay_chain_info", chain=BFT, client_type="tendermint")
            assert first.has("relay_chain_info", chain=LOG, client_type="tlog")
            assert (
                first.value(
                    "relay_adapter_request_duration_seconds_count",
                    chain=BFT,
                    method="GetLightBlocks",
                )
                > 0
            )
            assert (
                first.value(
                    "relay_adapter_request_duration_seconds_count",
                    chain=LOG,
                    method="GetCheckpoint",
                )
                > 0
            )
            assert (
                first.value("grpc_server_handled_total", grpc_method="GetOwnership", grpc_code="OK")
                == 0
            )

            # -- queries, counted by method; the request id travels in metadata and logs
            bft = ops.partners[BFT].chain
            asset = next(a for a in ops.data[BFT].assets if a.kind == pb.ASSET_KIND_REAL_ESTATE)
            request = query_pb2.GetOwnershipRequest(asset=asset, case_ref=CASE)
            async with http.put(f"{ops.base}/loglevel", json={"level": "DEBUG"}) as r:
                assert r.status == 200 and (await r.json())["level"] == "DEBUG"
            async with http.get(f"{ops.base}/loglevel") as r:
                assert (await r.json()) == {"level": "DEBUG"}
            call = ops.query.GetOwnership(
                request, metadata=((REQUEST_ID_KEY, "court-req-0001"),), timeout=10
            )
            answer = await call
            assert answer.outcome == pb.OUTCOME_FOUND
            assert (REQUEST_ID_KEY, "court-req-0001") in tuple(await call.trailing_metadata())
            await ops.query.GetOwnership(request, timeout=10)
            await ops.query.GetChain(query_pb2.GetChainRequest(chain_id=LOG), timeout=10)
            holder = ops.data[BFT].parties[0]
            party = holder.ref()
            holdings = ops.query.ListHoldings(
                query_pb2.ListHoldingsRequest(party=party, case_ref=CASE),
                metadata=((REQUEST_ID_KEY, "court-req-0002"),),
                timeout=10,
            )
            assert [h.chain_id async for h in holdings]

            second = await ops.scrape()
            count = "relay_query_duration_seconds_count"

            def queries(method: str) -> float:
                return second.value(count, method=method) - first.value(count, method=method)

            assert queries("GetOwnership") == 2
            assert queries("GetChain") == 1
            assert queries("ListHoldings") == 1
            assert queries("GetAccount") == 0
            assert first.value(count, method="GetChain") == 0  # start-up asks no queries
            assert (
                second.value(
                    "grpc_server_handled_total", grpc_method="GetOwnership", grpc_code="OK"
                )
                == 2
            )
            assert second.value("relay_proof_verifications_total", chain=BFT) >= 2

            # -- a forged proof: counted as a proof failure with the reason the court got
            ops.partners[BFT].fault = Fault.WRONG_VALUE
            with pytest.raises(grpc.aio.AioRpcError) as info:
                await ops.query.GetOwnership(
                    request, metadata=((REQUEST_ID_KEY, "court-req-0003"),), timeout=10
                )
            ops.partners[BFT].fault = None
            reason = describe_rpc_error(info.value).reason
            assert reason == "VALUE_MISMATCH"
            # the request id comes back with the error too
            assert (REQUEST_ID_KEY, "court-req-0003") in tuple(info.value.trailing_metadata())
            third = await ops.scrape()
            failures = "relay_proof_verification_failures_total"
            assert third.value(failures, chain=BFT, reason=reason) == 1
            assert third.value(failures, chain=BFT) == 1
            assert third.value(failures, chain=LOG) == 0
            assert third.value("relay_query_errors_total", method="GetOwnership", reason=reason)
            assert third.types["relay_query_errors_total"] == "counter"
            for lab in (lab for n, lab, _ in third.samples if n == "relay_query_errors_total"):
                assert set(lab) == CATALOGUE["relay_query_errors_total"][1]

            # -- a forged header: counted as a header failure, with an ErrorReason
            ops.partners[BFT].fault = Fault.UNVERIFIED_HEIGHT
            bad = "relay_header_verification_failures_total"
            fourth = await ops.wait_for(lambda s: s.value(bad, chain=BFT) >= 1)
            ops.partners[BFT].fault = None
            assert fourth.value(bad, chain=LOG) == 0

            # -- trusted height grows with sync; the partner head and lag follow
            before = fourth.value("relay_chain_trusted_height", chain=BFT)
            target = bft.advance(3)
            fifth = await ops.wait_for(
                lambda s: s.value("relay_chain_trusted_height", chain=BFT) >= target
            )
            assert fifth.value("relay_chain_trusted_height", chain=BFT) > before
            assert fifth.value("relay_chain_partner_head_height", chain=BFT) >= target
            assert fifth.value("relay_chain_lag_blocks", chain=BFT) >= 0
            verified = "relay_header_verifications_total"
            assert fifth.value(verified, chain=BFT) > fourth.value(verified, chain=BFT)

            # -- no label carries a height, hash, party or case
            forbidden = {CASE.case_number, CASE.court, holder.id, asset.id}
            forbidden |= {p.id for d in ops.data.values() for p in d.parties}
            check_labels(fifth, forbidden=forbidden)

            # -- JSON log lines carry the request id sent in metadata
            lines = ops.log_lines()
            assert lines and all(
                {"time", "level", "logger", "message", "request_id", "chain", "method"} <= set(x)
                for x in lines
            )
            mine = [x for x in lines if x["request_id"] == "court-req-0001"]
            assert any(
                x["method"] == "QueryService/GetOwnership"
                and x["chain"] == BFT
                and x["case"] == CASE.case_number
                and x["logger"] == "relay.engine"
                for x in mine
            ), mine
            forged = [x for x in lines if x["request_id"] == "court-req-0003"]
            assert any(x["reason"] == "VALUE_MISMATCH" for x in forged), forged
            assert any(x["request_id"] == "court-req-0002" for x in lines)
            # Every call has an id, generated when the caller sent none.
            generated = [x for x in lines if x["method"] == "QueryService/GetChain"]
            assert generated
            assert all(re.fullmatch(r"[0-9a-f]{32}", x["request_id"]) for x in generated)
            # No raw party identifier is ever logged (ListHoldings named one).
            text = ops.logs.getvalue()
            assert not any(p.id in text for d in ops.data.values() for p in d.parties)

            # /readyz turns 503 once shutdown begins (the ops port outlives the drain).
            await ops.running.server.stop(0)
            async with http.get(f"{ops.base}/readyz") as r:
                assert r.status == 503

    asyncio.run(main())
