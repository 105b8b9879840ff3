"""The operations port over a real socket: /metrics, /healthz, /readyz, /loglevel, and HTTPS
when given an SSLContext."""

from __future__ import annotations

import asyncio
import logging
import ssl
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from prometheus_client.parser import text_string_to_metric_families

from relay.metrics import RelayMetrics
from relay.testing.pki import TestCA
from relay.web.ops import LEVELS, ops_app, start_ops_server


@pytest.fixture(autouse=True)
def _restore_root_level() -> Iterator[None]:
    root = logging.getLogger()
    level = root.level
    yield
    root.setLevel(level)


def serve(
    check: Callable[[aiohttp.ClientSession, str], Awaitable[Any]],
    *,
    metrics: RelayMetrics | None = None,
    readiness: Any = None,
    ssl_context: ssl.SSLContext | None = None,
    client_ssl: ssl.SSLContext | None = None,
    **app_kwargs: Any,
) -> Any:
    async def main() -> Any:
        app = ops_app(
            metrics=metrics or RelayMetrics(process_collectors=False),
            readiness=readiness,
            **app_kwargs,
        )
        server = await start_ops_server(app, host="127.0.0.1", port=0, ssl_context=ssl_context)
        assert server.port > 0
        scheme = "https" if ssl_context else "http"
        connector = aiohttp.TCPConnector(ssl=client_ssl) if client_ssl else None
        try:
            async with aiohttp.ClientSession(connector=connector) as session:
                return await check(session, f"{scheme}://127.0.0.1:{server.port}")
        finally:
            await server.stop()

    return asyncio.run(main())


def test_metrics_serves_the_registry() -> None:
    metrics = RelayMetrics(process_collectors=False)
    metrics.register_chain("bj-ip-1", "ip")
    metrics.record_proof_verification("bj-ip-1", ok=False, reason="PROOF_INVALID")

    async def check(session: aiohttp.ClientSession, base: str) -> tuple[str, str, str, str]:
        async with session.get(base + "/metrics") as r:
            assert r.status == 200
            text = await r.text()
            ctype = r.headers["Content-Type"]
        headers = {"Accept": "application/openmetrics-text; version=1.0.0"}
        async with session.get(base + "/metrics", headers=headers) as r:
            assert r.status == 200
            return text, ctype, await r.text(), r.headers["Content-Type"]

    text, ctype, om_text, om_ctype = serve(check, metrics=metrics)
    assert ctype.startswith("text/plain")
    assert "version=" in ctype
    families = {f.name: f for f in text_string_to_metric_families(text)}
    failures = families["relay_proof_verification_failures"]
    hits = [
        s.value
        for s in failures.samples
        if s.labels == {"chain": "bj-ip-1", "domain": "ip", "reason": "PROOF_INVALID"}
    ]
    assert hits == [1.0]
    assert om_ctype.startswith("application/openmetrics-text")
    assert om_text.rstrip().endswith("# EOF")


def test_healthz_is_live() -> None:
    async def check(session: aiohttp.ClientSession, base: str) -> tuple[int, str]:
        async with session.get(base + "/healthz") as r:
            return r.status, await r.text()

    assert serve(check) == (200, "ok\n")


@pytest.mark.parametrize(
    ("answer", "status", "body"),
    [
        (True, 200, "ready"),
        (False, 503, "not ready"),
        ((False, "store closed"), 503, "not ready: store closed"),
        ((True, ""), 200, "ready"),
    ],
)
def test_readyz_asks_the_callable(answer: object, status: int, body: str) -> None:
    calls: list[int] = []

    async def readiness() -> object:
        calls.append(1)
        return answer

    async def check(session: aiohttp.ClientSession, base: str) -> tuple[int, str]:
        async with session.get(base + "/readyz") as r:
            return r.status, (await r.text()).strip()

    assert serve(check, readiness=readiness) == (status, body)
    assert calls == [1]


def test_readyz_without_a_callable_is_ready() -> None:
    async def check(session: aiohttp.ClientSession, base: str) -> int:
        async with session.get(base + "/readyz") as r:
            return r.status

    assert serve(check) == 200


def test_readyz_fails_closed_on_errors_and_hangs() -> None:
    async def broken() -> bool:
        raise RuntimeError("store gone")

    async def hangs() -> bool:
        await asyncio.sleep(60)
        return True

    async def check(session: aiohttp.ClientSession, base: str) -> tuple[int, str]:
        async with session.get(base + "/readyz") as r:
            return r.status, await r.text()

    status, body = serve(check, readiness=broken)
    assert status == 503
    assert "store gone" not in body  # details go to the log, not to the caller
    status, body = serve(check, readiness=hangs, readiness_timeout_s=0.2)
    assert status == 503
    assert "took over" in body


def test_loglevel_reads_and_sets_the_root_level() -> None:
    logging.getLogger().setLevel(logging.INFO)

    async def check(session: aiohttp.ClientSession, base: str) -> list[Any]:
        out: list[Any] = []
        async with session.get(base + "/loglevel") as r:
            out.append((r.status, await r.json()))
        async with session.put(base + "/loglevel", json={"level": "debug"}) as r:
            out.append((r.status, await r.json(), logging.getLogger().level))
        async with session.post(base + "/loglevel", data="WARNING") as r:
            out.append((r.status, await r.json(), logging.getLogger().level))
        async with session.put(base + "/loglevel?level=ERROR") as r:
            out.append((r.status, await r.json(), logging.getLogger().level))
        async with session.get(base + "/loglevel") as r:
            out.append((r.status, await r.json()))
        return out

    got = serve(check)
    assert got[0] == (200, {"level": "INFO"})
    assert got[1] == (200, {"level": "DEBUG", "previous": "INFO"}, logging.DEBUG)
    assert got[2] == (200, {"level": "WARNING", "previous": "DEBUG"}, logging.WARNING)
    assert got[3] == (200, {"level": "ERROR", "previous": "WARNING"}, logging.ERROR)
    assert got[4] == (200, {"level": "ERROR"})


@pytest.mark.parametrize(
    "body",
    ["LOUD", '{"level": 10}', '{"lvl": "DEBUG"}', "{not json", "", "NOTSET", "x" * 5000],
)
def test_loglevel_refuses_bad_levels_and_keeps_the_old_one(body: str) -> None:
    logging.getLogger().setLevel(logging.INFO)

    async def check(session: aiohttp.ClientSession, base: str) -> int:
        async with session.put(base + "/loglevel", data=body) as r:
            return r.status

    status = serve(check)
    assert status == (413 if len(body) > 1024 else 400)
    assert logging.getLogger().level == logging.INFO
    assert "NOTSET" not in LEVELS


def test_unknown_paths_and_methods_are_refused() -> None:
    async def check(session: aiohttp.ClientSession, base: str) -> tuple[int, int, int]:
        statuses = []
        for method, path in (("GET", "/admin"), ("DELETE", "/loglevel"), ("POST", "/metrics")):
            async with session.request(method, base + path) as r:
                statuses.append(r.status)
        return statuses[0], statuses[1], statuses[2]

    assert serve(check) == (404, 405, 405)


def test_https_with_an_ssl_context(tmp_path: Path) -> None:
    ca = TestCA.create()
    server_cert = ca.issue_server()
    cert_path, key_path = server_cert.write(tmp_path, "ops")
    server_ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server_ctx.load_cert_chain(cert_path, key_path)
    client_ctx = ssl.create_default_context(cadata=ca.cert_pem.decode())

    async def check(session: aiohttp.ClientSession, base: str) -> tuple[int, str]:
        async with session.get(base + "/healthz") as r:
            return r.status, base

    status, base = serve(check, ssl_context=server_ctx, client_ssl=client_ctx)
    assert (status, base.split(":")[0]) == (200, "https")

    async def plaintext(session: aiohttp.ClientSession, base: str) -> None:
        with pytest.raises(aiohttp.ClientError):
            async with session.get(base.replace("https", "http") + "/healthz") as r:
                await r.text()

    serve(plaintext, ssl_context=server_ctx)


def test_a_taken_port_raises() -> None:
    async def main() -> None:
        app = ops_app(metrics=RelayMetrics(process_collectors=False))
        first = await start_ops_server(app, host="127.0.0.1", port=0)
        try:
            other = ops_app(metrics=RelayMetrics(process_collectors=False))
            with pytest.raises(OSError):
                await start_ops_server(other, host="127.0.0.1", port=first.port)
        finally:
            await first.stop()

    asyncio.run(main())
