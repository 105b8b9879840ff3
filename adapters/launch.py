"""Starting and stopping the reference deployments as child processes (for ``relay demo`` and
the end-to-end tests): per deployment a node (``python -m adapters.node``: the partner's
system), an adapter (``python -m adapters.<name> --node URL``) and, for a log, witnesses.

Every child gets its own process group (``start_new_session``), so :func:`terminate` can
stop it with everything it started: SIGTERM to the group, then SIGKILL to whatever is left
after the grace period. Children find the ``adapters`` package through ``PYTHONPATH`` (the
project root), so they work from a source checkout without installing it.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from adapters import DEPLOYMENTS, Deployment
from relay.testing.partner_server import write_faults
from relay.testing.pki import DevPki

ROOT = Path(__file__).resolve().parent.parent


def child_env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(ROOT), env.get("PYTHONPATH")) if p)
    env.setdefault("GRPC_VERBOSITY", "ERROR")
    return env


def free_port() -> int:
    import socket

    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def _die_with_parent() -> None:
    # In the child before exec: if the process that started us dies (even by SIGKILL, when
    # it cannot clean up), the kernel sends us SIGTERM (Linux PR_SET_PDEATHSIG).
    import ctypes

    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)


@dataclass
class Child:
    """A child process and where its output goes."""

    name: str
    args: list[str]
    log: Path
    process: subprocess.Popen[bytes] | None = None

    def start(self) -> Child:
        out = self.log.open("ab")
        try:
            self.process = subprocess.Popen(
                [sys.executable, *self.args],
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                env=child_env(),
                start_new_session=True,
                preexec_fn=_die_with_parent if sys.platform == "linux" else None,
            )
        finally:
            out.close()
        return self

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def kill(self) -> None:
        """SIGKILL the child's process group at once (a crash)."""
        if self.process is not None and self.process.poll() is None:
            _signal_group(self.process, signal.SIGKILL)
            self.process.wait()

    def tail(self, n: int = 2000) -> str:
        try:
            return self.log.read_text(errors="replace")[-n:]
        except OSError:
            return ""


def _signal_group(process: subprocess.Popen[bytes], sig: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(process.pid, sig)


def terminate(children: Iterable[Child], *, grace_s: float = 5.0) -> None:
    """SIGTERM every child's process group, wait up to ``grace_s``, SIGKILL the rest."""
    started = [c for c in children if c.process is not None]
    for child in started:
        assert child.process is not None
        if child.process.poll() is None:
            _signal_group(child.process, signal.SIGTERM)
    end = time.monotonic() + grace_s
    for child in started:
        assert child.process is not None
        with contextlib.suppress(subprocess.TimeoutExpired):
            child.process.wait(max(0.0, end - time.monotonic()))
    for child in started:
        assert child.process is not None
        if child.process.poll() is None:
            _signal_group(child.process, signal.SIGKILL)
            child.process.wait()
        _signal_group(child.process, signal.SIGKILL)  # grandchildren, if any are left


def wait_for_file(path: Path, child: Child, *, timeout_s: float) -> None:
    end = time.monotonic() + timeout_s
    while not path.exists():
        if not child.running:
            raise RuntimeError(f"{child.name} exited before writing {path.name}:\n{child.tail()}")
        if time.monotonic() > end:
            raise TimeoutError(f"{child.name}: {path} did not appear within {timeout_s} s")
        time.sleep(0.02)


@dataclass
class Partner:
    """One running deployment: its node process (the partner's system, producing blocks),
    its adapter process (reading the node), its witnesses and files."""

    deployment: Deployment
    directory: Path
    node: Child
    adapter: Child
    descriptor: Path
    witnesses: list[Child] = field(default_factory=list)

    @property
    def chain_id(self) -> str:
        return self.deployment.chain_id

    @property
    def state(self) -> Path:
        return self.directory / "state"

    @property
    def node_info(self) -> Path:
        return self.directory / "node.json"

    @property
    def node_url(self) -> str:
        url: str = json.loads(self.node_info.read_text())["url"]
        return url

    def children(self) -> list[Child]:
        return [self.adapter, self.node, *self.witnesses]

    def restart_adapter(self, *, timeout_s: float = 20.0) -> None:
        """Start the adapter process again (same address, same node) and wait for it. The
        node is not touched: it went on producing blocks meanwhile."""
        if self.adapter.running:
            terminate([self.adapter])
        ready = self.directory / "descriptor.restart.json"
        ready.unlink(missing_ok=True)
        args = list(self.adapter.args)
        args[args.index("--descriptor-out") + 1] = str(ready)
        self.adapter = Child(self.adapter.name, args, self.adapter.log).start()
        wait_for_file(ready, self.adapter, timeout_s=timeout_s)

    def restart_node(self, *, timeout_s: float = 20.0) -> None:
        """Start the node again (same address, same journal, which it replays) and wait
        until it serves; the adapter reconnects by itself."""
        if self.node.running:
            terminate([self.node])
        self.node_info.unlink(missing_ok=True)
        self.node = Child(self.node.name, list(self.node.args), self.node.log).start()
        wait_for_file(self.node_info, self.node, timeout_s=timeout_s)

    def set_faults(self, **switches: bool) -> None:
        """Switch the running node's faults (see partner_server.write_faults): all of them
        (stall, equivocate, bad_proofs) live in the node; the adapter passes on what the
        node serves."""
        write_faults(self.state, **switches)


def _witness_child(name: str, dep: Deployment, i: int, wdir: Path, info: Path) -> Child:
    wname = f"witness-{i}.{dep.name}.example.cn"
    return Child(
        f"{name}-witness-{i}",
        [
            "-m",
            "adapters.witness",
            "--name",
            wname,
            "--seed",
            f"{wname}/dev-witness-key",
            "--sig",
            dep.sig,
            "--hash",
            dep.hash,
            "--origin",
            dep.origin,
            "--log-vkey",
            dep.log_vkey(),
            "--listen",
            f"127.0.0.1:{free_port()}",
            "--state",
            str(wdir),
            "--info-out",
            str(info),
        ],
        wdir / "witness.log",
    )


def start_partners(
    directory: Path,
    pki: DevPki,
    *,
    names: Sequence[str] = tuple(DEPLOYMENTS),
    block_interval: float = 1.0,
    activity: bool = True,
    mutual_tls: bool = True,
    timeout_s: float = 60.0,
) -> dict[str, Partner]:
    """Start the witnesses, then every deployment's node, then its adapter, and wait until
    each adapter wrote its chain descriptor. On failure, everything started is stopped."""
    partners: dict[str, Partner] = {}
    started: list[Child] = []
    try:
        witnesses: dict[str, list[tuple[Child, Path]]] = {}
        for name in names:
            dep = DEPLOYMENTS[name]
            witnesses[name] = []
            for i in range(1, dep.witnesses + 1):
                wdir = directory / name / f"witness-{i}"
                wdir.mkdir(parents=True, exist_ok=True)
                info = wdir / "info.json"
                info.unlink(missing_ok=True)
                child = _witness_child(name, dep, i, wdir, info).start()
                started.append(child)
                witnesses[name].append((child, info))
        nodes: dict[str, Child] = {}
        for name in names:
            pdir = directory / name
            pdir.mkdir(parents=True, exist_ok=True)
            specs = []
            for child, info in witnesses[name]:
                wait_for_file(info, child, timeout_s=timeout_s)
                data = json.loads(info.read_text())
                specs += ["--witness", f"{data['vkey']}@{data['url']}"]
            (pdir / "node.json").unlink(missing_ok=True)
            node = Child(
                f"{name}-node",
                [
                    "-m",
                    "adapters.node",
                    "--deployment",
                    name,
                    "--listen",
                    f"127.0.0.1:{free_port()}",  # fixed: a restarted node keeps its URL
                    "--state",
                    str(pdir / "state"),
                    "--info-out",
                    str(pdir / "node.json"),
                    "--block-interval",
                    str(block_interval),
                    "--seed-data",
                    *(["--activity"] if activity else []),
                    *specs,
                ],
                pdir / "node.log",
            ).start()
            started.append(node)
            nodes[name] = node
        for name in names:
            dep = DEPLOYMENTS[name]
            pdir = directory / name
            wait_for_file(pdir / "node.json", nodes[name], timeout_s=timeout_s)
            url = json.loads((pdir / "node.json").read_text())["url"]
            descriptor = pdir / "descriptor.json"
            descriptor.unlink(missing_ok=True)
            args = [
                "-m",
                f"adapters.{name}",
                "--node",
                url,
                "--listen",
                f"127.0.0.1:{free_port()}",
                "--tls-cert",
                str(pki.server_cert),
                "--tls-key",
                str(pki.server_key),
                "--tls-ca",
                str(pki.ca_cert),
                "--server-name",
                "localhost",
                "--descriptor-out",
                str(descriptor),
                *(["--tls-client-ca", str(pki.ca_cert)] if mutual_tls else []),
            ]
            adapter = Child(name, args, pdir / "adapter.log").start()
            started.append(adapter)
            partners[name] = Partner(
                dep, pdir, nodes[name], adapter, descriptor, [c for c, _ in witnesses[name]]
            )
        for partner in partners.values():
            wait_for_file(partner.descriptor, partner.adapter, timeout_s=timeout_s)
    except BaseException:
        terminate(started)
        raise
    return partners
