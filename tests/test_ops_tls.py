"""Issue 5, "every listening port except the health port speaks TLS": on a real relay with a
``tls:`` section, the ops port and the public verification page serve HTTPS with the relay's
own server certificate (the gRPC API's), TLS 1.2 or later, and refuse plain HTTP; the
health port stays plaintext gRPC for the kubelet. Without ``tls:`` they speak plain HTTP
only under --insecure-dev, which logs a warning naming each such port."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import ssl
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import grpc
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from grpc_health.v1 import health_pb2, health_pb2_grpc

from relay.config import ConfigError, TlsMaterial, load_config
from relay.service.app import Running, start_relay
from relay.service.devconfig import DevSetup, write_dev_setup
from relay.service.https import server_ssl_context
from relay.testing.pki import TestCA

HTTP_PORTS = {"ops": "127.0.0.1:0", "web": "127.0.0.1:0"}


@contextlib.asynccontextmanager
async def http_relay(
    tmp: Path, *, tls: bool = True
) -> AsyncIterator[tuple[DevSetup, Running, dict[str, int]]]:
    overrides: dict[str, Any] = {"listen": HTTP_PORTS}
    if not tls:
        overrides["tls"] = None
    setup = write_dev_setup(tmp, grpc_port=0, health_port=0, overrides=overrides)
    running = await start_relay(load_config(setup.config), insecure_dev=True)
    try:
        assert running.ops is not None and running.web is not None
        yield setup, running, {"ops": running.ops.port, "web": running.web.port}
    finally:
        await running.stop()


async def raw_exchange(port: int, data: bytes) -> bytes:
    """Send ``data`` over plain TCP and read whatever comes back until the server closes."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(data)
        await writer.drain()
        async with asyncio.timeout(10):
            return await reader.read(1 << 16)
    finally:
        writer.close()
        with contextlib.suppress(OSError):
            await writer.wait_closed()


# The legacy client below asks for TLS 1.1 on purpose, to see the server refuse it.
@pytest.mark.filterwarnings("ignore:ssl.TLSVersion.TLSv1_1 is deprecated:DeprecationWarning")
def test_ops_and_web_ports_speak_https_only(tmp_path: Path) -> None:
    async def main() -> None:
        async with http_relay(tmp_path) as (setup, running, ports):
            trust = ssl.create_default_context(cafile=str(setup.pki.ca_cert))
            relay_cert = x509.load_pem_x509_certificate(setup.pki.server_cert.read_bytes())
            connector = aiohttp.TCPConnector(ssl=trust)
            async with aiohttp.ClientSession(connector=connector) as http:
                for name, path in (("ops", "/healthz"), ("web", "/")):
                    async with http.get(f"https://localhost:{ports[name]}{path}") as r:
                        assert r.status == 200, name
                    # The gRPC API's certificate, at TLS 1.2 or later.
                    _, writer = await asyncio.open_connection(
                        "127.0.0.1", ports[name], ssl=trust, server_hostname="localhost"
                    )
                    sslobj = writer.get_extra_info("ssl_object")
                    der = relay_cert.public_bytes(serialization.Encoding.DER)
                    assert sslobj.getpeercert(binary_form=True) == der, name
                    assert sslobj.version() in {"TLSv1.2", "TLSv1.3"}, name
                    writer.close()
                    with contextlib.suppress(OSError, ssl.SSLError):
                        await writer.wait_closed()

            for name, port in ports.items():
                # A plain HTTP request gets no HTTP answer: the handshake fails and the
                # connection closes (at most a TLS alert comes back).
                reply = await raw_exchange(port, b"GET / HTTP/1.1\r\nHost: localhost\r\n\r\n")
                assert not reply.startswith(b"HTTP/"), (name, reply[:40])
                async with aiohttp.ClientSession() as plain:
                    with pytest.raises(aiohttp.ClientError):
                        async with plain.get(f"http://127.0.0.1:{port}/") as r:
                            await r.read()
                # A client that does not trust the relay's CA refuses the certificate.
                async with aiohttp.ClientSession() as stranger:
                    with pytest.raises(aiohttp.ClientConnectorCertificateError):
                        async with stranger.get(f"https://localhost:{port}/") as r:
                            await r.read()
                # TLS 1.1 and older are refused by the server.
                old = ssl.create_default_context(cafile=str(setup.pki.ca_cert))
                old.minimum_version = ssl.TLSVersion.MINIMUM_SUPPORTED
                old.maximum_version = ssl.TLSVersion.TLSv1_1
                with contextlib.suppress(ssl.SSLError):  # this OpenSSL may not offer 1.1
                    old.set_ciphers("ALL:@SECLEVEL=0")
                async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=old)) as legacy:
                    with pytest.raises(aiohttp.ClientError):
                        async with legacy.get(f"https://localhost:{port}/") as r:
                            await r.read()

            # The health port stays plaintext gRPC (kubelet probes speak no TLS).
            address = f"127.0.0.1:{running.server.health_port}"
            async with grpc.aio.insecure_channel(address) as channel:
                reply = await health_pb2_grpc.HealthStub(channel).Check(
                    health_pb2.HealthCheckRequest(), timeout=5
                )
                assert reply.status == health_pb2.HealthCheckResponse.SERVING

    asyncio.run(main())


def test_insecure_dev_without_tls_serves_plain_http_with_a_warning(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    async def main() -> None:
        with caplog.at_level(logging.WARNING, logger="relay.service"):
            async with (
                http_relay(tmp_path, tls=False) as (_, _, ports),
                aiohttp.ClientSession() as http,
            ):
                async with http.get(f"http://127.0.0.1:{ports['ops']}/healthz") as r:
                    assert r.status == 200
                async with http.get(f"http://127.0.0.1:{ports['web']}/") as r:
                    assert r.status == 200
                # The raw request the TLS test sends does get an HTTP answer here.
                reply = await raw_exchange(
                    ports["ops"], b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
                )
                assert reply.startswith(b"HTTP/1.1 200"), reply[:40]
        warned = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
        for name in ("ops", "web"):
            assert any(f"listen.{name} is served as plain HTTP" in m for m in warned), warned

    asyncio.run(main())


def test_without_tls_and_without_insecure_dev_nothing_starts(tmp_path: Path) -> None:
    setup = write_dev_setup(
        tmp_path, grpc_port=0, health_port=0, overrides={"listen": HTTP_PORTS, "tls": None}
    )
    with pytest.raises(ConfigError, match="--insecure-dev"):
        asyncio.run(start_relay(load_config(setup.config)))


def test_the_https_context_needs_a_key_that_fits_the_certificate() -> None:
    ca = TestCA.create()
    one, other = ca.issue_server(), ca.issue_server()
    context = server_ssl_context(TlsMaterial(one.cert_pem, one.key_pem))
    assert context.minimum_version == ssl.TLSVersion.TLSv1_2
    assert context.verify_mode == ssl.CERT_NONE  # no client certificate asked for
    with pytest.raises(ConfigError) as info:
        server_ssl_context(TlsMaterial(one.cert_pem, other.key_pem))
    (problem,) = info.value.problems
    assert problem.startswith("tls: the certificate and key cannot serve HTTPS"), problem


def test_the_ops_port_takes_changes_only_from_an_operator(tmp_path: Path) -> None:
    """With access control the ops port asks for a client certificate without requiring
    one: Prometheus and probes read without it, but PUT /loglevel needs an operator's
    certificate issued by the client CA (401 without one, 403 for a court's); a
    certificate from another CA fails the handshake."""
    from relay.metrics import RelayMetrics
    from relay.web.ops import ops_app, start_ops_server

    ca, stranger_ca = TestCA.create(), TestCA.create("another CA")
    server = ca.issue_server()
    people = {
        "operator": ca.issue_client("operator-1", organizational_unit="operator"),
        "court": ca.issue_client("clerk", organization="京0105", organizational_unit="court"),
        "stranger": stranger_ca.issue_client("operator-9", organizational_unit="operator"),
    }
    paths = {name: issued.write(tmp_path, name) for name, issued in people.items()}
    (tmp_path / "ca.pem").write_bytes(ca.cert_pem)

    def client_context(who: str | None) -> ssl.SSLContext:
        context = ssl.create_default_context(cafile=str(tmp_path / "ca.pem"))
        if who is not None:
            context.load_cert_chain(*map(str, paths[who]))
        return context

    async def main() -> None:
        context = server_ssl_context(
            TlsMaterial(server.cert_pem, server.key_pem), client_ca=ca.cert_pem
        )
        assert context.verify_mode == ssl.CERT_OPTIONAL
        app = ops_app(metrics=RelayMetrics(process_collectors=False), operator_changes=True)
        ops = await start_ops_server(app, host="127.0.0.1", port=0, ssl_context=context)
        root = logging.getLogger()
        before = root.level
        try:
            base = f"https://localhost:{ops.port}"

            async def call(who: str | None, method: str, path: str) -> tuple[int, str]:
                connector = aiohttp.TCPConnector(ssl=client_context(who))
                async with aiohttp.ClientSession(connector=connector) as http:
                    body = {"level": "ERROR"} if method == "PUT" else None
                    async with http.request(method, base + path, json=body) as resp:
                        return resp.status, await resp.text()

            assert (await call(None, "GET", "/metrics"))[0] == 200
            assert (await call(None, "GET", "/readyz"))[0] == 200
            status, text = await call(None, "PUT", "/loglevel")
            assert status == 401 and "operator" in text
            status, text = await call("court", "PUT", "/loglevel")
            assert status == 403 and "operator role" in text
            assert root.level == before  # nothing changed
            status, text = await call("operator", "PUT", "/loglevel")
            assert status == 200 and '"level": "ERROR"' in text
            with pytest.raises(aiohttp.ClientError):
                await call("stranger", "GET", "/metrics")
        finally:
            root.setLevel(before)
            await ops.stop()

    asyncio.run(main())
