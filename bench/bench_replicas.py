"""The query benchmark with three relay replicas sharing one PostgreSQL, beside one relay on
SQLite (issue 9, "what it must show" 3; the setup and the client of bench/bench_query.py).

Servers, each its own process, each ``relay serve``'s start-up (relay.service.app.start_relay:
real engine, TLS, audit log as configured) with the partner chain and its AdapterService in
process, as in bench_query.py's first case:

1. one relay on SQLite;
2. three replicas on one throwaway PostgreSQL cluster (relay/testing/pgcluster.py), started
   one after the other; the first registers the chain, the lease decides which one syncs it,
   all three answer queries.

Every replica builds the same partner chain: same keys and records (bench_query.bench_chain's
chain and sample data) and, here, the same block times (a clock the parent hands to every
server), so each in-process adapter serves exactly the headers the shared store verified.

The client is bench_query's: raw request bytes, ``--in-flight`` calls in flight, a distinct
present asset per call, and GetOwnership answered with a verified record and signed
evidence. For the replicas the calls in flight are spread round robin over the three (one
channel each). Printed: QPS, p50, p99 of each case and the ratios, best of ``--rounds``
interleaved runs.

Run: ``.venv/bin/python bench/bench_replicas.py [--requests 3000]``. On this 2-core machine
three replicas, PostgreSQL and the client share two cores: the ratio says what one machine
gives, not what three machines would.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import grpc
from bench_query import (
    CHAIN,
    GET_OWNERSHIP,
    Result,
    Server,
    check_answers,
    ownership_requests,
    pct,
    print_results,
    rss_mib,
    start_server,
)

from relay.pb.relay.v1 import query_pb2
from relay.pb.relay.v1 import types_pb2 as pb
from relay.service.client import ClientTls

SECOND = 1_000_000_000
ERRORS: dict[str, dict[str, int]] = {}
"""Failed calls per case, by status code and the start of the details (printed)."""


def replica_chain(scale: int, base_ns: int) -> tuple[Any, Any]:
    """bench_query.bench_chain's chain and data, its blocks timed by a clock that gives the
    same times in every process (``base_ns`` + 1 s per call)."""
    from relay.testing.partners import BftPartnerChain, sample_data

    ticks = iter(range(1_000_000))

    def clock() -> int:
        return base_ns + next(ticks) * SECOND

    chain = BftPartnerChain(CHAIN, domain=pb.DOMAIN_REAL_ESTATE, clock=clock)
    return chain, sample_data(chain, scale=scale)


async def serve_replica(args: argparse.Namespace) -> None:
    """One relay with the partner chain in process; the first registers the chain."""
    import logging

    from relay.config import load_config
    from relay.engine.adapters import InProcessAdapterClient
    from relay.pb.relay.v1 import admin_pb2
    from relay.service.app import start_relay
    from relay.testing.partners import PartnerAdapter

    logging.basicConfig(level=logging.WARNING)
    config = load_config(Path(args.setup) / "relay.yaml")
    chain, _ = replica_chain(args.scale, args.base_ns)
    servicer = PartnerAdapter(chain)
    settings = config.engine_settings()

    def factory(descriptor: pb.ChainDescriptor) -> Any:
        return InProcessAdapterClient(servicer, chain_id=descriptor.chain_id, settings=settings)

    running = await start_relay(config, adapters=factory, insecure_dev=True)
    if args.register:
        endpoint = pb.AdapterEndpoint(entry_point="bench-in-process")
        await running.engine.register_chain(
            admin_pb2.RegisterChainRequest(descriptor=chain.descriptor(endpoint))
        )
    # Replicas that did not register see the chain when their catalogue refresh reads it,
    # and its ACTIVE status once the lease owner's first sync is committed.
    deadline = time.monotonic() + 120
    while True:
        try:
            info = await running.engine.get_chain(query_pb2.GetChainRequest(chain_id=CHAIN))
            if info.chain.status == pb.CHAIN_STATUS_ACTIVE:
                break
        except Exception:  # not in this replica's catalogue yet
            pass
        if time.monotonic() > deadline:
            raise SystemExit(f"chain {CHAIN} did not become active")
        await asyncio.sleep(0.1)
    report = {"port": running.server.grpc_port, "pid": os.getpid()}
    print("READY " + json.dumps(report), flush=True)
    await asyncio.get_running_loop().run_in_executor(None, sys.stdin.readline)
    await running.stop()


async def measure_spread(
    name: str, ports: Sequence[int], requests: list[bytes], *, ca: ClientTls, in_flight: int
) -> Result:
    """bench_query.measure over several servers: worker i calls server i mod len(ports)."""
    creds = ca.credentials()
    options = [("grpc.max_receive_message_length", 64 << 20)]
    channels = [
        grpc.aio.secure_channel(f"localhost:{port}", creds, options=options) for port in ports
    ]
    try:
        calls = [c.unary_unary(GET_OWNERSHIP) for c in channels]
        for i, r in enumerate(requests[:in_flight]):  # warm up connections and server paths
            await calls[i % len(calls)](r, timeout=30)
        latencies: list[float] = []
        sizes: list[int] = []
        errors = 0
        queue = iter(requests)

        async def worker(call: Any) -> None:
            nonlocal errors
            for request in queue:
                t0 = time.perf_counter()
                try:
                    answer = await call(request, timeout=30)
                except grpc.aio.AioRpcError as e:
                    errors += 1
                    kind = f"{e.code().name}: {(e.details() or '')[:90]}"
                    seen = ERRORS.setdefault(name, {})
                    seen[kind] = seen.get(kind, 0) + 1
                    continue
                latencies.append(time.perf_counter() - t0)
                sizes.append(len(answer))

        t0 = time.perf_counter()
        await asyncio.gather(*(worker(calls[i % len(calls)]) for i in range(in_flight)))
        wall = time.perf_counter() - t0
    finally:
        for c in channels:
            await c.close()
    return Result(
        name,
        len(latencies) / wall,
        pct(latencies, 0.5),
        pct(latencies, 0.99),
        errors,
        statistics.mean(sizes) if sizes else 0.0,
    )


async def client(args: argparse.Namespace) -> None:
    from relay.config import ENV_STORE_DSN
    from relay.service.devconfig import write_dev_setup
    from relay.testing import pgcluster

    base_ns = (time.time_ns() // SECOND - 3600) * SECOND
    _, data = replica_chain(args.scale, base_ns)
    present = [a for a in data.assets if a.kind == pb.ASSET_KIND_REAL_ESTATE]
    requests = ownership_requests(
        [present[i % len(present)] for i in range(min(args.requests, len(present)))]
    )
    print(
        f"{os.cpu_count()} cores, load average {os.getloadavg()[0]:.2f}; {args.in_flight} "
        f"calls in flight; {len(requests):,} distinct present assets per run; best of "
        f"{args.rounds} interleaved runs per case; audit log {'on' if args.audit else 'off'}"
    )
    servers: list[Server] = []
    cluster = pgcluster.start()
    try:
        with tempfile.TemporaryDirectory(dir=args.dir) as tmp:
            root = Path(tmp)
            log = root / "servers.log"
            quiet: dict[str, Any] = {"log_level": "WARNING"}
            if not args.audit:
                quiet["audit"] = {"enabled": False}
            common = ["--scale", str(args.scale), "--base-ns", str(base_ns)]
            lite = write_dev_setup(root / "sqlite", grpc_port=0, health_port=0, overrides=quiet)
            ca = lite.client_tls()  # the API asks for a client certificate
            env = dict(os.environ)
            sqlite = start_server(
                *["--serve", "--register", "--setup", str(lite.directory), *common],
                log=log,
                script=__file__,
                env=env,
            )
            servers.append(sqlite)
            pg_env = {**env, ENV_STORE_DSN: cluster.create_database("replicas")}
            replicas: list[Server] = []
            for i in range(3):
                setup = write_dev_setup(
                    root / f"pg{i}", grpc_port=0, health_port=0, pki=lite.pki,
                    overrides={**quiet, "store": {"backend": "postgres", "path": None}},
                )  # fmt: skip
                flags = ["--register"] if i == 0 else []
                replicas.append(
                    start_server(
                        *["--serve", *flags, "--setup", str(setup.directory), *common],
                        log=log,
                        script=__file__,
                        env=pg_env,
                    )
                )
            servers.extend(replicas)
            ports = [r.info["port"] for r in replicas]
            outcomes = {
                "sqlite": await check_answers(sqlite.info["port"], ca, requests),
                **{
                    f"replica {i}": await check_answers(p, ca, requests[i * 20 :])
                    for i, p in enumerate(ports)
                },
            }
            one = "relay GetOwnership, SQLite, 1 relay"
            three = "relay GetOwnership, PostgreSQL, 3 replicas"
            single = "  one PostgreSQL replica alone"
            cases: list[tuple[str, Sequence[int]]] = [
                (one, [sqlite.info["port"]]),
                (three, ports),
                (single, ports[:1]),
            ]
            best: dict[str, Result] = {}
            for _ in range(args.rounds):
                for name, targets in cases:
                    r = await measure_spread(
                        name, targets, requests, ca=ca, in_flight=args.in_flight
                    )
                    if name not in best or r.qps > best[name].qps:
                        best[name] = r
            rss = {
                "sqlite": rss_mib(sqlite.info["pid"])[0],
                **{f"replica {i}": rss_mib(r.info["pid"])[0] for i, r in enumerate(replicas)},
            }
    finally:
        for server in servers:
            server.stop()
        cluster.stop()
    print(f"answers sampled: {outcomes}")
    print("RSS after the runs: " + ", ".join(f"{k} {v:.0f} MiB" for k, v in rss.items()))
    print_results(
        "GetOwnership, in-process adapter; ratio to the single SQLite relay",
        best[one],
        [best[three], best[single]],
    )
    for name, kinds in ERRORS.items():
        print(f"failed calls of {name.strip()}: {kinds}")
    print(f"load average at the end {os.getloadavg()[0]:.2f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--requests", type=int, default=3000, help="calls per measurement")
    parser.add_argument("--in-flight", type=int, default=64)
    parser.add_argument("--scale", type=int, default=100, help="sample data scale (30 x N)")
    parser.add_argument("--rounds", type=int, default=3, help="interleaved runs per case")
    parser.add_argument("--dir", default=None, help="where to put temporary files")
    parser.add_argument(
        "--no-audit",
        dest="audit",
        action="store_false",
        help="switch the audit log off in every relay (default: on, as configured)",
    )
    parser.add_argument("--serve", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--register", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--setup", help=argparse.SUPPRESS)
    parser.add_argument("--base-ns", type=int, default=0, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        asyncio.run(serve_replica(args))
    else:
        asyncio.run(client(args))


if __name__ == "__main__":
    main()
