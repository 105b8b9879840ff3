"""A complete development setup in one directory: throwaway PKI (relay/testing/pki.py), a
relay signing key and a YAML config that uses them, for tests, benchmarks and the demo.
Never for production: keys are unencrypted and deterministic seeds are allowed."""

from __future__ import annotations

import hashlib
import socket
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from relay.service.client import ClientTls
from relay.testing.pki import DevPki, write_dev_pki


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago (for processes that must be told
    their port before they start)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


@dataclass(frozen=True, slots=True)
class DevSetup:
    """What :func:`write_dev_setup` wrote."""

    directory: Path
    config: Path
    pki: DevPki
    signing_key: Path
    signing_seed: bytes
    key_id: str
    grpc_address: str
    health_address: str

    def client_tls(self) -> ClientTls:
        """The dev client's TLS material: the CA and the client certificate the API asks
        for (mutual TLS)."""
        return ClientTls.from_files(
            ca=self.pki.ca_cert, cert=self.pki.client_cert, key=self.pki.client_key
        )


def write_dev_setup(
    directory: Path,
    *,
    grpc_port: int | None = None,
    health_port: int | None = None,
    chains: Sequence[Path] = (),
    key_id: str = "relay-dev-1",
    seed: str = "relay-dev",
    overrides: Mapping[str, Any] | None = None,
    pki: DevPki | None = None,
) -> DevSetup:
    """Write ``pki/``, ``signing.key`` (Ed25519 seed derived from ``seed``, hex) and
    ``relay.yaml`` (TLS with the dev PKI, SQLite store ``relay.db``, client defaults) into
    ``directory``. ``overrides`` are merged into the top-level sections."""
    directory = directory.resolve()
    directory.mkdir(parents=True, exist_ok=True)
    pki = pki or write_dev_pki(directory / "pki")
    signing_seed = hashlib.sha256(f"relay dev signing key\n{seed}".encode()).digest()
    signing_key = directory / "signing.key"
    signing_key.touch(mode=0o600)
    signing_key.write_text(signing_seed.hex() + "\n")
    grpc_address = f"127.0.0.1:{grpc_port if grpc_port is not None else free_port()}"
    health_address = f"127.0.0.1:{health_port if health_port is not None else free_port()}"
    config: dict[str, Any] = {
        "version": 1,
        "listen": {"grpc": grpc_address, "health": health_address},
        "tls": {
            "cert": str(pki.server_cert),
            "key": str(pki.server_key),
            "client_ca": str(pki.ca_cert),
        },
        "store": {"backend": "sqlite", "path": str(directory / "relay.db")},
        "signing": {"algorithm": "ed25519", "key_id": key_id, "key_file": str(signing_key)},
        "chains": [str(p) for p in chains],
        "adapters": {"client_cert": str(pki.server_cert), "client_key": str(pki.server_key)},
        "log_level": "INFO",
        "client": {
            "server": f"localhost:{grpc_address.rpartition(':')[2]}",
            "ca": str(pki.ca_cert),
            "cert": str(pki.client_cert),
            "key": str(pki.client_key),
        },
    }
    for section, value in (overrides or {}).items():
        if isinstance(value, Mapping) and isinstance(config.get(section), dict):
            config[section] = {**config[section], **value}
        else:
            config[section] = value
    path = directory / "relay.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False, allow_unicode=True))
    return DevSetup(
        directory, path, pki, signing_key, signing_seed, key_id, grpc_address, health_address
    )


# ------------------------------------------------------------------ processes (tests, demo)


def start_partner(
    kind: str,
    directory: Path,
    pki: DevPki,
    *,
    block_interval: float = 0.2,
    activity: bool = True,
    extra: Sequence[str] = (),
    log: Path | None = None,
) -> tuple[subprocess.Popen[bytes], Path]:
    """Start ``python -m relay.testing.partner_server`` (``kind`` bft or tlog) with its
    state in ``directory``, TLS from ``pki``, seeded sample data; returns the process and
    the path its descriptor will be written to (see :func:`wait_for_file`)."""
    directory.mkdir(parents=True, exist_ok=True)
    descriptor = directory / "descriptor.json"
    args = [
        sys.executable,
        "-m",
        "relay.testing.partner_server",
        "--kind",
        kind,
        "--listen",
        "127.0.0.1:0",
        "--state",
        str(directory / "state"),
        "--tls-cert",
        str(pki.server_cert),
        "--tls-key",
        str(pki.server_key),
        "--tls-ca",
        str(pki.ca_cert),
        "--server-name",
        "localhost",
        "--block-interval",
        str(block_interval),
        "--seed-data",
        "--descriptor-out",
        str(descriptor),
        *(["--activity"] if activity else []),
        *extra,
    ]
    out = (log or directory / "partner.log").open("ab")
    try:
        process = subprocess.Popen(args, stdout=out, stderr=subprocess.STDOUT)
    finally:
        out.close()
    return process, descriptor


def start_relay_process(
    config: Path, *, log: Path, extra: Sequence[str] = ()
) -> subprocess.Popen[bytes]:
    """Start ``python -m relay.cli serve --config CONFIG`` with its output in ``log``."""
    out = log.open("ab")
    try:
        return subprocess.Popen(
            [sys.executable, "-m", "relay.cli", "serve", "--config", str(config), *extra],
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    finally:
        out.close()


def wait_for_file(path: Path, *, timeout_s: float, process: subprocess.Popen[bytes]) -> None:
    """Wait until ``path`` exists; fail early if ``process`` exits first."""
    end = time.monotonic() + timeout_s
    while not path.exists():
        if process.poll() is not None:
            raise RuntimeError(f"process {process.args!r} exited with {process.returncode}")
        if time.monotonic() > end:
            raise TimeoutError(f"{path} did not appear within {timeout_s} s")
        time.sleep(0.02)


def health_status(address: str, *, timeout_s: float = 1.0) -> str:
    """The health port's overall status name (SERVING, NOT_SERVING...), or UNREACHABLE."""
    import grpc
    from grpc_health.v1 import health_pb2, health_pb2_grpc

    with grpc.insecure_channel(address) as channel:
        try:
            reply = health_pb2_grpc.HealthStub(channel).Check(
                health_pb2.HealthCheckRequest(service=""), timeout=timeout_s
            )
        except grpc.RpcError:
            return "UNREACHABLE"
    name: str = health_pb2.HealthCheckResponse.ServingStatus.Name(reply.status)
    return name


def wait_serving(
    address: str, *, timeout_s: float, process: subprocess.Popen[bytes] | None = None
) -> None:
    """Wait until the health port at ``address`` says SERVING."""
    end = time.monotonic() + timeout_s
    while health_status(address, timeout_s=0.5) != "SERVING":
        if process is not None and process.poll() is not None:
            raise RuntimeError(f"relay exited with {process.returncode} before serving")
        if time.monotonic() > end:
            raise TimeoutError(f"relay at {address} not SERVING within {timeout_s} s")
        time.sleep(0.02)


def stop(process: subprocess.Popen[bytes], *, timeout_s: float = 10.0) -> int:
    """SIGTERM, wait, SIGKILL if it does not exit in time; returns the exit code."""
    if process.poll() is None:
        process.terminate()
        try:
            return process.wait(timeout_s)
        except subprocess.TimeoutExpired:
            process.kill()
    return process.wait()
