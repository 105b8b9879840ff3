"""One relay replica following many chains (issue 9, "what it must show" 3).

Three processes: this one (orchestration and the table), a simulator
(bench/simchains.py: N CometBFT chains, one block per second each, ``--validators``
Ed25519 validators, real signed light blocks, one gRPC adapter endpoint over TLS routing by
the ``relay-chain-id`` call metadata) and the relay: ``relay serve``'s start-up
(relay.service.app.start_relay: real engine, gRPC adapter clients, the SQLite store, or with
``--backend postgres`` a throwaway PostgreSQL cluster from relay/testing/pgcluster.py). The
relay registers every chain through the engine's RegisterChain path, waits until all are
ACTIVE, warms up for ``--warmup`` seconds, then measures for ``--duration`` seconds.

Measured inside the relay process over the window:

* CPU seconds (user + system, every thread, from ``resource.getrusage``) per chain-block
  (every block the relay's trusted heights moved over) and per verified header committed
  (sync skips to the partner's head, so one verified header covers the blocks since the last
  round); cores used = CPU seconds / wall seconds;
* RSS (``/proc/self/status``: current and peak);
* sync lag: for every block created in the window (but the last ``--settle`` seconds), the
  time from its creation (its header time: the simulator makes block h at exactly that
  instant) to the relay having committed that height or a later one (store commits timed in
  the relay process, after ``Store.commit_verified`` returns). A block still uncommitted at
  the end counts with the time it had waited (a lower bound), so a chain that falls behind
  shows;
* the floor: the signature checks of one block (``--validators`` Ed25519 verifications with
  the relay's own scheme, relay.verify.signatures.ED25519, timed in the same process after
  the window), as a ratio to the CPU per verified header and per chain-block.

The simulator's CPU (and PostgreSQL's) is reported beside, not counted as the relay's.
Targets (issue 9): lag p99 under 5 s, under one core, RSS under 1 GB.

Run: ``.venv/bin/python bench/bench_scale.py [--chains 1000] [--duration 120]``;
``--chains 50 --duration 20`` is a quick check. This machine's cores are shared with the
simulator (and PostgreSQL): report ``uptime`` with the figures.
"""

from __future__ import annotations

import argparse
import asyncio
import bisect
import contextlib
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

SECOND = 1_000_000_000
ROWS = (
    "chains followed (ACTIVE at start / end)",
    "chain-blocks verified and committed",
    "verified headers committed",
    "relay CPU seconds (user+sys)",
    "CPU per chain-block",
    "CPU per verified header",
    "cores used",
    "RSS (end / peak)",
    "sync lag p50 (block made -> committed)",
    "sync lag p99 (block made -> committed)",
    "sync lag max",
    "blocks not committed by the end",
    "sync round failures",
    "floor: signature checks of one block",
    "CPU per verified header / floor",
    "CPU per chain-block / floor",
    "simulator CPU (not counted)",
    "PostgreSQL server CPU (not counted)",
)
"""Every row the table prints, in order (the smoke test checks each is printed)."""


def pct(samples: Sequence[float], q: float) -> float:
    if not samples:
        return float("nan")
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def proc_cpu_s(pid: int) -> float:
    """utime + stime of a process (all its threads), seconds, from /proc."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def children_of(pid: int) -> list[int]:
    out = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            with contextlib.suppress(OSError), open(f"/proc/{entry}/stat") as f:
                if int(f.read().rpartition(")")[2].split()[1]) == pid:
                    out.append(int(entry))
    return out


def tree_cpu_s(pid: int) -> float:
    """CPU seconds of a process and its direct children (PostgreSQL's postmaster and
    backends); processes that exited meanwhile are not counted."""
    total = 0.0
    for p in [pid, *children_of(pid)]:
        with contextlib.suppress(OSError):
            total += proc_cpu_s(p)
    return total


def rss_mib() -> tuple[float, float]:
    values = {}
    with open("/proc/self/status") as f:
        for line in f:
            key, _, rest = line.partition(":")
            if key in ("VmRSS", "VmHWM"):
                values[key] = int(rest.split()[0]) / 1024
    return values["VmRSS"], values["VmHWM"]


def write_descriptors(path: Path, descriptors: Sequence[Any]) -> None:
    with path.open("wb") as f:
        for d in descriptors:
            data = d.SerializeToString()
            f.write(len(data).to_bytes(4, "big") + data)


def read_descriptors(path: Path) -> list[Any]:
    from relay.pb.relay.v1 import types_pb2 as pb

    data = path.read_bytes()
    out, i = [], 0
    while i < len(data):
        n = int.from_bytes(data[i : i + 4], "big")
        out.append(pb.ChainDescriptor.FromString(data[i + 4 : i + 4 + n]))
        i += 4 + n
    return out


# ------------------------------------------------------------------------------ simulator


async def serve_sim(args: argparse.Namespace) -> None:
    from simchains import SimChains, start_server

    from relay.pb.relay.v1 import types_pb2 as pb

    pki = Path(args.setup) / "pki"
    t0 = time.perf_counter()
    sims = SimChains(args.chains, validators=args.validators)
    server, port = await start_server(
        sims,
        cert_pem=(pki / "relay.pem").read_bytes(),
        key_pem=(pki / "relay.key").read_bytes(),
    )
    endpoint = pb.AdapterEndpoint(
        grpc_address=f"127.0.0.1:{port}",
        tls_server_name="localhost",
        ca_certificates_pem=(pki / "ca.pem").read_text(),
    )
    write_descriptors(Path(args.descriptors), sims.descriptors(endpoint))
    ready = {"port": port, "pid": os.getpid(), "setup_s": time.perf_counter() - t0}
    print("READY " + json.dumps(ready), flush=True)
    await asyncio.get_running_loop().run_in_executor(None, sys.stdin.readline)
    print("CALLS " + json.dumps({"calls": sims.calls}), flush=True)
    await server.stop(0)


# ---------------------------------------------------------------------------------- relay


@dataclass
class Commit:
    at_ns: int
    top: int
    top_time_ns: int


def hook_commits(store: Any, commits: dict[str, list[Commit]]) -> None:
    """Record, for every Store.commit_verified that stored new states, when it returned and
    the highest height and its header time (on this store instance only)."""
    inner = store.commit_verified

    async def commit_verified(*args: Any, **kwargs: Any) -> Any:
        result = await inner(*args, **kwargs)
        states = kwargs.get("consensus_states") or ()
        if states:
            top = max(states, key=lambda s: s.height)
            commits.setdefault(kwargs["chain_id"], []).append(
                Commit(time.time_ns(), top.height, top.time_ns)
            )
        return result

    store.commit_verified = commit_verified


def block_lags(
    commits: dict[str, list[Commit]], *, start_ns: int, end_ns: int, settle_ns: int
) -> tuple[list[float], int, int]:
    """(lag seconds of every block made in [start, end - settle], blocks counted, blocks
    not committed by ``end``). Block h of a chain was made at top_time - (top - h) s of any
    of its commits (one block per second, exactly)."""
    lags: list[float] = []
    missing = 0
    for records in commits.values():
        first = records[0]
        chain_start = first.top_time_ns - (first.top - 1) * SECOND
        tops = [c.top for c in records]
        h = max(1, -(-(start_ns - chain_start) // SECOND) + 1)
        while chain_start + (h - 1) * SECOND <= end_ns - settle_ns:
            made = chain_start + (h - 1) * SECOND
            i = bisect.bisect_left(tops, h)
            if i < len(records) and records[i].at_ns <= end_ns:
                lags.append((records[i].at_ns - made) / SECOND)
            else:
                lags.append((end_ns - made) / SECOND)
                missing += 1
            h += 1
    return lags, len(lags), missing


def signature_floor_s(validators: int, *, rounds: int = 3000) -> float:
    """Seconds of ``validators`` Ed25519 verifications with the relay's scheme (the best of
    three timings of ``rounds`` verifications)."""
    from nacl.signing import SigningKey

    from relay.verify.signatures import ED25519

    key = SigningKey(bytes(range(32)))
    message = bytes(range(110))  # about a CometBFT precommit's sign bytes
    signature = bytes(key.sign(message).signature)
    public = bytes(key.verify_key)
    best = float("inf")
    for _ in range(3):
        t0 = time.perf_counter()
        for _ in range(rounds):
            ED25519.verify(public_key=public, message=message, signature=signature)
        best = min(best, (time.perf_counter() - t0) / rounds)
    return best * validators


async def serve_relay(args: argparse.Namespace) -> None:
    import logging

    from relay.config import load_config
    from relay.pb.relay.v1 import admin_pb2
    from relay.service.app import start_relay
    from relay.store import ChainStatus

    logging.basicConfig(level=logging.WARNING)
    config = load_config(Path(args.setup) / "relay.yaml")
    running = await start_relay(config, insecure_dev=True)  # dev setup: no access: section
    engine = running.engine
    commits: dict[str, list[Commit]] = {}
    hook_commits(running.store, commits)
    descriptors = read_descriptors(Path(args.descriptors))
    t0 = time.perf_counter()
    gate = asyncio.Semaphore(16)  # registrations in flight (each verifies its anchor)

    async def register(d: Any) -> None:
        async with gate:
            await engine.register_chain(admin_pb2.RegisterChainRequest(descriptor=d))

    await asyncio.gather(*(register(d) for d in descriptors))
    registered_s = time.perf_counter() - t0
    ids = [d.chain_id for d in descriptors]

    def active() -> int:
        return sum(engine.registry.get(c).status == ChainStatus.ACTIVE for c in ids)

    deadline = time.monotonic() + max(120.0, len(ids) * 0.2)
    while active() < len(ids) and time.monotonic() < deadline:
        await asyncio.sleep(0.2)
    active_s = time.perf_counter() - t0
    active_start = active()
    print(
        f"registered {len(ids)} chains in {registered_s:.1f} s; {active_start} ACTIVE after "
        f"{active_s:.1f} s; warming up {args.warmup:g} s",
        file=sys.stderr,
        flush=True,
    )
    await asyncio.sleep(args.warmup)

    def heights() -> dict[str, int]:
        return {c: (commits[c][-1].top if c in commits else 0) for c in ids}

    def failures() -> int:
        return sum(engine.registry.get(c).stats.failures for c in ids)

    print("WINDOW start", flush=True)
    profiler = None
    if args.profile:
        import cProfile

        profiler = cProfile.Profile()
        profiler.enable()
    h0, f0 = heights(), failures()
    ru0 = resource.getrusage(resource.RUSAGE_SELF)
    start_ns, w0 = time.time_ns(), time.perf_counter()
    n0 = sum(len(v) for v in commits.values())
    peak = 0.0
    while time.perf_counter() - w0 < args.duration:
        await asyncio.sleep(min(1.0, max(0.0, args.duration - (time.perf_counter() - w0))))
        peak = max(peak, rss_mib()[0])
    ru1 = resource.getrusage(resource.RUSAGE_SELF)
    end_ns, wall = time.time_ns(), time.perf_counter() - w0
    if profiler is not None:
        profiler.disable()
        profiler.dump_stats(args.profile)
    n1 = sum(len(v) for v in commits.values())
    h1, f1 = heights(), failures()
    print("WINDOW end", flush=True)
    rss_now, rss_peak = rss_mib()
    cpu = (ru1.ru_utime - ru0.ru_utime) + (ru1.ru_stime - ru0.ru_stime)
    settle_ns = int(min(args.settle, args.duration / 2) * SECOND)
    window = {c: v for c, v in commits.items() if c in h1}
    lags, counted, missing = block_lags(
        window, start_ns=start_ns, end_ns=end_ns, settle_ns=settle_ns
    )
    floor = signature_floor_s(args.validators)
    result = {
        "chains": len(ids),
        "active_start": active_start,
        "active_end": active(),
        "wall_s": wall,
        "cpu_s": cpu,
        "user_s": ru1.ru_utime - ru0.ru_utime,
        "sys_s": ru1.ru_stime - ru0.ru_stime,
        "blocks": sum(h1[c] - h0[c] for c in ids),
        "headers": n1 - n0,
        "rss_mib": rss_now,
        "rss_peak_mib": max(rss_peak, peak),
        "lag_p50_s": pct(lags, 0.5),
        "lag_p99_s": pct(lags, 0.99),
        "lag_max_s": max(lags, default=float("nan")),
        "lag_blocks": counted,
        "missing": missing,
        "failures": f1 - f0,
        "floor_s": floor,
        "registered_s": registered_s,
        "active_s": active_s,
    }
    print("RESULT " + json.dumps(result), flush=True)
    await running.stop()


# --------------------------------------------------------------------------- orchestration


@dataclass
class Child:
    process: subprocess.Popen[str]

    def line(self, what: str, log: Path) -> str:
        assert self.process.stdout is not None
        line = self.process.stdout.readline()
        if not line:
            self.process.wait(10)
            raise SystemExit(f"{what} ended early; see {log}:\n{log.read_text()[-4000:]}")
        return line.rstrip("\n")

    def stop(self) -> None:
        if self.process.poll() is None:
            with contextlib.suppress(BrokenPipeError, OSError, subprocess.TimeoutExpired):
                assert self.process.stdin is not None
                self.process.stdin.write("\n")
                self.process.stdin.flush()
                self.process.wait(30)
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait()


def start_child(args: Sequence[str], *, log: Path, env: dict[str, str] | None = None) -> Child:
    process = subprocess.Popen(
        [sys.executable, __file__, *args],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=log.open("a"),
        text=True,
        env=env,
    )
    return Child(process)


def print_table(args: argparse.Namespace, r: dict[str, Any], extra: dict[str, Any]) -> None:
    blocks, headers, cpu = max(r["blocks"], 1), max(r["headers"], 1), r["cpu_s"]
    floor = r["floor_s"]
    cores = cpu / r["wall_s"]
    lag_ok = r["lag_p99_s"] < 5.0 and r["missing"] == 0
    pg = extra.get("pg_cpu_s")
    rows: list[tuple[str, str, str]] = [
        (ROWS[0], f"{r['active_start']:,} / {r['active_end']:,} of {r['chains']:,}", ""),
        (ROWS[1], f"{r['blocks']:,} ({r['blocks'] / r['wall_s']:,.0f}/s)", ""),
        (ROWS[2], f"{r['headers']:,} ({r['headers'] / r['wall_s']:,.0f}/s)", ""),
        (ROWS[3], f"{cpu:.1f} (user {r['user_s']:.1f}, sys {r['sys_s']:.1f})", ""),
        (ROWS[4], f"{cpu / blocks * 1e3:.3f} ms", ""),
        (ROWS[5], f"{cpu / headers * 1e3:.3f} ms", ""),
        (ROWS[6], f"{cores:.2f}", "< 1 core" + (" ok" if cores < 1 else " MISSED")),
        (
            ROWS[7],
            f"{r['rss_mib']:,.0f} / {r['rss_peak_mib']:,.0f} MiB",
            "< 1 GB" + (" ok" if r["rss_peak_mib"] * 2**20 < 1e9 else " MISSED"),
        ),
        (ROWS[8], f"{r['lag_p50_s']:.2f} s", ""),
        (ROWS[9], f"{r['lag_p99_s']:.2f} s", "< 5 s" + (" ok" if lag_ok else " MISSED")),
        (ROWS[10], f"{r['lag_max_s']:.2f} s", ""),
        (ROWS[11], f"{r['missing']:,} of {r['lag_blocks']:,}", "0"),
        (ROWS[12], f"{r['failures']:,}", "0"),
        (ROWS[13], f"{floor * 1e6:.0f} µs ({args.validators} Ed25519 verifications)", ""),
        (ROWS[14], f"{cpu / headers / floor:.1f} x", ""),
        (ROWS[15], f"{cpu / blocks / floor:.2f} x", ""),
        (
            ROWS[16],
            f"{extra['sim_cpu_s']:.1f} s ({extra['sim_cpu_s'] / r['wall_s']:.2f} cores)",
            "",
        ),
        (
            ROWS[17],
            "n/a (SQLite runs in the relay process)"
            if pg is None
            else f"{pg:.1f} s ({pg / r['wall_s']:.2f} cores)",
            "",
        ),
    ]
    width = max(len(name) for name, _, _ in rows)
    print(f"\n{'':<{width}}  {'measured':<44} target")
    for name, value, target in rows:
        print(f"{name:<{width}}  {value:<44} {target}")


def run(args: argparse.Namespace) -> None:
    from relay.service.devconfig import write_dev_setup

    load0 = os.getloadavg()
    print(
        f"{os.cpu_count()} cores, load average {load0[0]:.2f} {load0[1]:.2f} {load0[2]:.2f}; "
        f"{args.chains} chains x {args.validators} Ed25519 validators, one block per second "
        f"each; backend {args.backend}; sync interval {args.sync_interval:g} s; warm-up "
        f"{args.warmup:g} s, window {args.duration:g} s",
        flush=True,
    )
    cluster = None
    env = dict(os.environ)
    with tempfile.TemporaryDirectory(dir=args.dir) as tmp:
        root = Path(tmp)
        log = root / "children.log"
        store: dict[str, Any] = {"backend": "sqlite", "path": str(root / "relay" / "relay.db")}
        try:
            if args.backend == "postgres":
                from relay.config import ENV_STORE_DSN
                from relay.testing import pgcluster

                cluster = pgcluster.start()
                env[ENV_STORE_DSN] = cluster.create_database("scale")
                store = {"backend": "postgres", "path": None}
            overrides = {
                "log_level": "WARNING",
                "store": store,
                "sync": {"interval": f"{args.sync_interval}s"},
            }
            setup = write_dev_setup(root / "relay", grpc_port=0, health_port=0, overrides=overrides)
            descriptors = root / "descriptors.bin"
            common = ["--setup", str(setup.directory), "--descriptors", str(descriptors)]
            sizes = ["--chains", str(args.chains), "--validators", str(args.validators)]
            sim = start_child(["--serve", "sim", *common, *sizes], log=log)
            relay = None
            try:
                line = sim.line("simulator", log)
                if not line.startswith("READY "):
                    raise SystemExit(f"simulator: {line}")
                sim_info = json.loads(line[6:])
                print(f"simulator ready in {sim_info['setup_s']:.1f} s", flush=True)
                relay = start_child(
                    [
                        "--serve", "relay", *common, *sizes,
                        "--warmup", str(args.warmup), "--duration", str(args.duration),
                        "--settle", str(args.settle),
                        *(["--profile", str(Path(args.profile).resolve())] if args.profile else []),
                    ],
                    log=log,
                    env=env,
                )  # fmt: skip
                pg_pid = None
                if cluster is not None:
                    pid_file = cluster.datadir / "postmaster.pid"
                    pg_pid = int(pid_file.read_text().split()[0])
                marks: dict[str, tuple[float, float | None]] = {}
                result: dict[str, Any] | None = None
                while result is None:
                    line = relay.line("relay", log)
                    if line.startswith("WINDOW "):
                        pg_cpu = tree_cpu_s(pg_pid) if pg_pid is not None else None
                        marks[line[7:]] = (proc_cpu_s(sim_info["pid"]), pg_cpu)
                    elif line.startswith("RESULT "):
                        result = json.loads(line[7:])
                relay.stop()
            finally:
                if relay is not None:
                    relay.stop()
                sim.stop()
        finally:
            if cluster is not None:
                cluster.stop()
        (s0, p0), (s1, p1) = marks["start"], marks["end"]
        extra = {
            "sim_cpu_s": s1 - s0,
            "pg_cpu_s": None if p0 is None or p1 is None else p1 - p0,
        }
        print(
            f"relay: {result['chains']} chains registered in {result['registered_s']:.1f} s, "
            f"all ACTIVE after {result['active_s']:.1f} s"
        )
        print_table(args, result, extra)
        load1 = os.getloadavg()
        print(f"\nload average at the end {load1[0]:.2f} {load1[1]:.2f} {load1[2]:.2f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--chains", type=int, default=1000)
    parser.add_argument("--duration", type=float, default=120.0, help="measured seconds")
    parser.add_argument("--warmup", type=float, default=None, help="default: min(30, duration)")
    parser.add_argument("--validators", type=int, default=4)
    parser.add_argument("--backend", choices=("sqlite", "postgres"), default="sqlite")
    parser.add_argument(
        "--sync-interval", type=float, default=2.0, help="seconds between a chain's rounds"
    )
    parser.add_argument(
        "--settle", type=float, default=10.0, help="blocks of the window's last seconds skipped"
    )
    parser.add_argument("--dir", default=None, help="where to put temporary files")
    parser.add_argument(
        "--profile", default=None, help="cProfile the relay's event loop thread over the window"
    )
    parser.add_argument("--serve", choices=("sim", "relay"), help=argparse.SUPPRESS)
    parser.add_argument("--setup", help=argparse.SUPPRESS)
    parser.add_argument("--descriptors", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.warmup is None:
        args.warmup = min(30.0, args.duration)
    if args.serve == "sim":
        asyncio.run(serve_sim(args))
    elif args.serve == "relay":
        asyncio.run(serve_relay(args))
    else:
        run(args)


if __name__ == "__main__":
    main()
