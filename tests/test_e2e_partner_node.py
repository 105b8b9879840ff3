"""Issue 6: the reference partner node's native API (adapters.node) and the adapters that read
it (adapters.adapter). The node runs in this process on a real loopback socket (a thread with
its own event loop), the adapter talks to it over HTTP: its answers must be byte for byte
what the chain itself would answer (so the relay verifies them exactly as before), its
descriptor the one the chain would propose; the node refuses malformed and oversized
requests with 400 and never crashes; an unreachable node makes the adapter UNAVAILABLE."""

from __future__ import annotations

import asyncio
import http.client
import json
import subprocess
import sys
import threading
import time
import urllib.parse
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from aiohttp import web
from google.protobuf import json_format
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from adapters import DEPLOYMENTS
from adapters.adapter import (
    CometNodeAdapter,
    LogNodeAdapter,
    NodeClient,
    adapter_for,
    advertised_address,
)
from adapters.bank import MAPPING as BANK
from adapters.conformance import local_chain
from adapters.ip import MAPPING as IP
from adapters.node import MAX_URL_BYTES, make_app
from relay.pb.relay.adapter.v1 import adapter_pb2 as apb
from relay.pb.relay.v1 import types_pb2 as pb
from relay.sdk.errors import InvalidArgument, NotFound, Unavailable
from relay.testing.partners import BftPartnerChain, TlogPartnerRegistry
from relay.testing.pki import write_dev_pki
from relay.verify import records

ENDPOINT = pb.AdapterEndpoint(grpc_address="127.0.0.1:1", tls_server_name="localhost")


@dataclass
class Node:
    chain: BftPartnerChain | TlogPartnerRegistry
    data: object
    url: str

    def get(self, target: str) -> tuple[int, bytes]:
        parts = urllib.parse.urlsplit(self.url)
        conn = http.client.HTTPConnection(parts.hostname or "", parts.port, timeout=5)
        try:
            conn.request("GET", target)
            answer = conn.getresponse()
            return answer.status, answer.read()
        finally:
            conn.close()


def _serve(chain: BftPartnerChain | TlogPartnerRegistry) -> Iterator[str]:
    loop = asyncio.new_event_loop()
    runner = web.AppRunner(make_app(chain), access_log=None, handle_signals=False)
    loop.run_until_complete(runner.setup())
    site = web.TCPSite(runner, "127.0.0.1", 0)
    loop.run_until_complete(site.start())
    port = runner.addresses[0][1]
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        loop.call_soon_threadsafe(loop.stop)
        thread.join(5)
        loop.run_until_complete(runner.cleanup())
        loop.close()


@pytest.fixture(scope="module")
def bank() -> Iterator[Node]:
    chain, data = local_chain("bank")
    sample = chain  # sample data is loaded but not committed yet
    sample.commit()
    sample.commit()
    yield from (Node(chain, data, url) for url in _serve(chain))


@pytest.fixture(scope="module")
def ip() -> Iterator[Node]:
    chain, data = local_chain("ip")
    chain.commit()
    yield from (Node(chain, data, url) for url in _serve(chain))


def _adapter(name: str, node: Node) -> CometNodeAdapter | LogNodeAdapter:
    adapter = adapter_for(name, BANK if name == "bank" else IP, node.url)
    assert isinstance(adapter, CometNodeAdapter | LogNodeAdapter)
    return adapter


# --- the adapter answers what the chain answers ---------------------------------------------


@pytest.mark.parametrize("name", ["bank", "ip"])
def test_adapter_answers_are_the_chains_own(name: str, request: pytest.FixtureRequest) -> None:
    node: Node = request.getfixturevalue(name)
    chain = node.chain
    adapter = _adapter(name, node)
    assert adapter.descriptor(ENDPOINT) == chain.descriptor(ENDPOINT)
    assert adapter.describe().capabilities == chain.capabilities()
    head = chain.height
    assert adapter.latest_height().height == head
    asked = 0
    for key, _ in node.data.records[:12]:  # type: ignore[attr-defined]
        which = key.WhichOneof("record")
        query = apb.DomainQuery(**{which: getattr(key, which)})
        for height in (None, head):
            request_ = apb.QueryRequest(query=query)
            if height is not None:
                request_.height = height
            got = adapter.query(request_)
            assert got == chain.query(records.encode_key(key), height)
            asked += 1
    assert asked >= 12
    # a record the chain does not hold: the same proof of absence
    missing = apb.DomainQuery(credit_party_key=b"\x05" * 32)
    got = adapter.query(apb.QueryRequest(query=missing))
    assert not got.HasField("value")
    assert got == chain.query(records.credit_key(b"\x05" * 32))
    # ListByParty: the index and every listed asset, at one height
    holders = [
        o.party.party_key
        for _, r in node.data.records  # type: ignore[attr-defined]
        if isinstance(r, pb.OwnershipRecord)
        for o in r.owners
    ] + [
        r.holder.party_key
        for _, r in node.data.records  # type: ignore[attr-defined]
        if isinstance(r, pb.AccountRecord)
    ]
    party = holders[0]
    listed = adapter.list_by_party(apb.ListByPartyRequest(party_key=party))
    assert listed == chain.list_by_party(party)
    assert len(listed) >= 2 and listed[0].HasField("value")


def test_light_blocks_are_re_encoded_faithfully(bank: Node) -> None:
    chain = bank.chain
    assert isinstance(chain, BftPartnerChain)
    adapter = _adapter("bank", bank)
    assert isinstance(adapter, CometNodeAdapter)
    for h in (1, chain.height):
        proto = adapter.light_block(h, apb.LIGHT_BLOCK_ENCODING_COMETBFT_PROTO)
        assert proto.light_block == chain.light_block_bytes(h)
        as_json = adapter.light_block(h, apb.LIGHT_BLOCK_ENCODING_COMETBFT_JSON)
        assert json.loads(as_json.light_block) == json.loads(chain.light_block_json(h))
    with pytest.raises(NotFound):
        adapter.light_block(chain.height + 5, apb.LIGHT_BLOCK_ENCODING_COMETBFT_PROTO)
    with pytest.raises(NotFound):
        adapter.query(
            apb.QueryRequest(query=apb.DomainQuery(raw_key=b"k"), height=chain.height + 1)
        )


def test_log_checkpoints_and_proofs_are_the_registrys(ip: Node) -> None:
    chain = ip.chain
    assert isinstance(chain, TlogPartnerRegistry)
    adapter = _adapter("ip", ip)
    assert isinstance(adapter, LogNodeAdapter)
    sizes = list(chain.heights())
    assert adapter.checkpoint(None).signed_note == chain.checkpoint()
    assert adapter.checkpoint(sizes[0]).signed_note == chain.checkpoint(sizes[0])
    got = adapter.consistency(sizes[0], sizes[-1]).hashes
    assert list(got) == chain.consistency_proof(sizes[0], sizes[-1])
    with pytest.raises(NotFound):
        adapter.checkpoint(sizes[-1] + 1)
    with pytest.raises(InvalidArgument):
        adapter.consistency(sizes[-1], 1)


def test_an_unreachable_node_makes_the_adapter_unavailable() -> None:
    adapter = adapter_for("bank", BANK, "http://127.0.0.1:9")  # discard port: nobody
    with pytest.raises(Unavailable):
        adapter.latest_height()
    with pytest.raises(ValueError, match="http://HOST:PORT"):
        NodeClient("ftp://example")


def test_the_credit_platform_holds_no_assets_and_lists_none(tmp_path: object) -> None:
    """The credit platform keeps listings and restrictions, not assets: its descriptor
    lists no asset kinds and a listed debtor's holdings index is proven absent."""
    chain, data = local_chain("credit")
    chain.commit()
    chain.commit()
    from adapters.credit import MAPPING as CREDIT

    assert CREDIT.asset_kinds == () and CREDIT.registry_codes == ()
    assert apb.CAPABILITY_QUERY_CREDIT in CREDIT.capabilities()
    for url in _serve(chain):
        adapter = adapter_for("credit", CREDIT, url)
        assert list(adapter.descriptor(ENDPOINT).asset_kinds) == []
        debtor = chain.party_key_of(data.credit_parties[0])
        listing = adapter.query(apb.QueryRequest(query=apb.DomainQuery(credit_party_key=debtor)))
        assert listing.HasField("value")
        (index,) = adapter.list_by_party(apb.ListByPartyRequest(party_key=debtor))
        assert index.key == records.holdings_key(debtor)
        assert not index.HasField("value") and index.proof


# --- the node API: bounded, refusing bad input ----------------------------------------------


@pytest.mark.parametrize(
    ("target", "status", "text"),
    [
        ('/abci_query?path="/store"&data=0xzz', 400, "not hex"),
        ('/abci_query?path="/nowhere"&data=0x01', 400, "unknown query path"),
        ('/abci_query?path="/store"', 400, "data is missing"),
        ('/abci_query?path="/store"&data=0x01&height=-1', 400, "decimal"),
        ('/abci_query?path="/store"&data=0x01&height=99999999999999999999', 400, "decimal"),
        ('/abci_query?path="/store"&data=0x01&data=0x02', 400, "2 times"),
        ('/abci_query?path="/store"&data=0x' + "ab" * 1025, 400, "longer than"),
        ('/abci_query?path="/store"&data=0x01&height=999999', 500, "must be less than"),
        ("/light_block?height=999999", 500, "must be less than"),
        ("/light_block?height=abc", 400, "decimal"),
        ("/light_block?height=%C2%B2", 400, "decimal"),  # '²': isdigit() but not int()
        ("/status?x=" + "a" * (MAX_URL_BYTES + 10), 400, ""),
    ],
)
def test_bft_node_refuses_bad_requests(bank: Node, target: str, status: int, text: str) -> None:
    got, body = bank.get(target)
    assert got == status, body[:300]
    if text:
        assert text in json.loads(body)["error"]["data"]


@pytest.mark.parametrize(
    ("target", "status"),
    [
        ("/checkpoint/abc", 400),
        ("/checkpoint/%C2%B2", 400),
        ("/entries?start=%C2%B2&end=3", 400),
        ("/checkpoint/999999", 404),
        ("/proof/consistency?old=5&new=2", 400),
        ("/proof/consistency?old=1&new=99999999", 404),
        ("/proof/inclusion?index=3&size=3", 400),
        ("/entries?start=0&end=100000", 400),
        ("/entries?start=0", 400),
        ("/map/lookup?key=0x", 400),
        ("/map/lookup?key=01&size=3", 404),
        ("/map/holdings?party=zz", 400),
    ],
)
def test_log_node_refuses_bad_requests(ip: Node, target: str, status: int) -> None:
    got, body = ip.get(target)
    assert got == status, body[:300]


def test_log_node_serves_entries_and_inclusion_proofs(ip: Node) -> None:
    chain = ip.chain
    assert isinstance(chain, TlogPartnerRegistry)
    status, body = ip.get("/entries?start=0&end=3")
    assert status == 200
    assert len(body.split()) == 3
    size = chain.height
    status, body = ip.get(f"/proof/inclusion?index=1&size={size}")
    assert status == 200 and len(body.split()) == len(chain.inclusion_proof(1, size))


@pytest.mark.fuzz
@settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    path=st.sampled_from(["/abci_query", "/light_block", "/status", "/abci_info"]),
    params=st.dictionaries(
        st.sampled_from(["path", "data", "height", "prove", "x"]),
        st.text(max_size=40),
        max_size=4,
    ),
)
def test_bft_node_answers_any_query_string_without_crashing(
    bank: Node, path: str, params: dict[str, str]
) -> None:
    status, body = bank.get(path + "?" + urllib.parse.urlencode(params))
    assert status in (200, 400, 500)
    answer = json.loads(body)
    assert ("result" in answer) == (status == 200)


def test_deployments_name_their_mappings() -> None:
    import importlib

    for name in DEPLOYMENTS:
        mapping = importlib.import_module(f"adapters.{name}").MAPPING
        assert "raw_key" in mapping.questions


# --- the adapter process: the address its descriptor names -----------------------------------


def test_adapter_process_advertises_a_dialable_address(bank: Node, tmp_path: Path) -> None:
    """A wildcard --listen names no address a relay can dial: refused without --advertise;
    with it the descriptor names the advertised host (and the bound port), and
    --institution names the proposing institution."""
    pki = write_dev_pki(tmp_path / "pki")
    base = [
        sys.executable, "-m", "adapters.bank", "--node", bank.url,
        "--tls-cert", str(pki.server_cert), "--tls-key", str(pki.server_key),
        "--tls-ca", str(pki.ca_cert),
    ]  # fmt: skip
    refused = subprocess.run(
        [*base, "--listen", "0.0.0.0:0"], capture_output=True, text=True, timeout=60
    )
    assert refused.returncode == 2, refused.stderr
    assert "--advertise" in refused.stderr and "Traceback" not in refused.stderr
    out = tmp_path / "descriptor.json"
    process = subprocess.Popen(
        [
            *base, "--listen", "0.0.0.0:0", "--advertise", "localhost",
            "--institution", "91110000100000000A", "--descriptor-out", str(out),
        ],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 60
        while not out.exists():
            assert process.poll() is None, process.communicate()
            assert time.monotonic() < deadline, "no descriptor written"
            time.sleep(0.05)
        descriptor = json_format.Parse(out.read_text(), pb.ChainDescriptor())
        host, _, port = descriptor.adapter.grpc_address.rpartition(":")
        assert host == "localhost" and int(port) > 0
        assert descriptor.adapter.tls_server_name == "localhost"
        assert descriptor.institution == "91110000100000000A"
    finally:
        process.terminate()
        process.communicate(timeout=30)


@pytest.mark.parametrize(
    ("advertise", "bound", "expected"),
    [
        (None, "127.0.0.1:9443", "127.0.0.1:9443"),
        ("adapter.bank.example", "0.0.0.0:9443", "adapter.bank.example:9443"),
        ("adapter.bank.example:443", "0.0.0.0:9443", "adapter.bank.example:443"),
        ("[2001:db8::1]", "[::]:9443", "[2001:db8::1]:9443"),
        ("[2001:db8::1]:443", "[::]:9443", "[2001:db8::1]:443"),
    ],
)
def test_advertised_address(advertise: str | None, bound: str, expected: str) -> None:
    assert advertised_address(advertise, bound) == expected
