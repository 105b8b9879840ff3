"""A throwaway PostgreSQL cluster on loopback for tests and benchmarks (issue 9).

Starts Debian's PostgreSQL binaries (``initdb``/``pg_ctl``) in a temporary directory on a
free 127.0.0.1 port with trust authentication for one superuser, and removes everything on
:meth:`PgCluster.stop`. PostgreSQL refuses to run as root, so when the caller is root the
server runs as the unprivileged ``postgres`` user (created by Debian's package) through
``runuser``. ``fsync`` is off: the cluster is disposable, and the tests that check relay
durability kill relay processes, never the database server.

``scripts/ensure-system-deps.sh`` installs the ``postgresql`` package when it is missing.
"""

from __future__ import annotations

import contextlib
import glob
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

SUPERUSER = "relay"


class PgUnavailableError(RuntimeError):
    """PostgreSQL's server binaries (or a user to run them as) are not installed here."""


def find_bindir() -> Path:
    """The directory of ``initdb``/``pg_ctl``: on PATH, else the newest
    ``/usr/lib/postgresql/<version>/bin`` (Debian keeps them off PATH)."""
    found = shutil.which("initdb")
    if found is not None and shutil.which("pg_ctl") is not None:
        return Path(found).resolve().parent
    candidates = sorted(
        glob.glob("/usr/lib/postgresql/*/bin/initdb"),
        key=lambda p: (
            int(Path(p).parent.parent.name) if Path(p).parent.parent.name.isdigit() else 0
        ),
    )
    if not candidates:
        raise PgUnavailableError(
            "PostgreSQL server binaries (initdb, pg_ctl) are not installed; run "
            "scripts/ensure-system-deps.sh (Debian package postgresql)"
        )
    return Path(candidates[-1]).parent


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class PgCluster:
    """A running cluster. ``dsn(database)`` names a database on it."""

    root: Path
    port: int
    bindir: Path
    run_as: str | None
    _stopped: bool = field(default=False, repr=False)

    @property
    def datadir(self) -> Path:
        return self.root / "data"

    def dsn(self, database: str = "postgres") -> str:
        return f"postgresql://{SUPERUSER}@127.0.0.1:{self.port}/{database}"

    def create_database(self, prefix: str = "t") -> str:
        """Create a fresh empty database and return its DSN."""
        name = f"{prefix}_{uuid.uuid4().hex[:16]}"
        self._psql(f'CREATE DATABASE "{name}"')
        return self.dsn(name)

    def _psql(self, sql: str) -> None:
        subprocess.run(
            [str(self.bindir / "psql"), "-q", "-v", "ON_ERROR_STOP=1", self.dsn(), "-c", sql],
            check=True,
            capture_output=True,
            timeout=60,
        )

    def stop(self) -> None:
        if self._stopped:
            return
        self._stopped = True
        with contextlib.suppress(subprocess.SubprocessError, OSError):
            _run(
                [str(self.bindir / "pg_ctl"), "stop", "-D", str(self.datadir), "-m", "immediate"],
                run_as=self.run_as,
                timeout=60,
            )
        shutil.rmtree(self.root, ignore_errors=True)


def _run(cmd: list[str], *, run_as: str | None, timeout: float) -> None:
    if run_as is not None:
        cmd = ["runuser", "-u", run_as, "--", *cmd]
    result = subprocess.run(cmd, capture_output=True, timeout=timeout, text=True)
    if result.returncode != 0:
        raise PgUnavailableError(
            f"{' '.join(cmd)} failed ({result.returncode}): {result.stderr.strip()[-2000:]}"
        )


def start(*, attempts: int = 3) -> PgCluster:
    """initdb a new cluster in a temp directory and start it on a free loopback port.
    Raises PgUnavailableError when PostgreSQL is not installed or will not start."""
    bindir = find_bindir()
    run_as: str | None = None
    if os.geteuid() == 0:
        try:
            pwd.getpwnam("postgres")
        except KeyError:
            raise PgUnavailableError(
                "running as root and there is no 'postgres' user to run PostgreSQL as"
            ) from None
        if shutil.which("runuser") is None:
            raise PgUnavailableError("running as root and runuser is not available")
        run_as = "postgres"
    root = Path(tempfile.mkdtemp(prefix="relay-pg-"))
    try:
        if run_as is not None:
            entry = pwd.getpwnam(run_as)
            os.chown(root, entry.pw_uid, entry.pw_gid)
        os.chmod(root, 0o700)
        _run(
            [
                str(bindir / "initdb"),
                "-D",
                str(root / "data"),
                "-U",
                SUPERUSER,
                "--auth=trust",
                "--encoding=UTF8",
                "--locale=C",
                "--no-sync",
            ],
            run_as=run_as,
            timeout=120,
        )
        last: Exception | None = None
        for _ in range(attempts):
            port = _free_port()
            options = (
                f"-c listen_addresses=127.0.0.1 -p {port} -k {root} -c fsync=off "
                "-c synchronous_commit=off -c full_page_writes=off -c max_connections=200"
            )
            try:
                _run(
                    [
                        str(bindir / "pg_ctl"),
                        "start",
                        "-D",
                        str(root / "data"),
                        "-w",
                        "-t",
                        "60",
                        "-l",
                        str(root / "server.log"),
                        "-o",
                        options,
                    ],
                    run_as=run_as,
                    timeout=90,
                )
            except PgUnavailableError as exc:  # most likely the port was taken meanwhile
                last = exc
                time.sleep(0.2)
                continue
            return PgCluster(root=root, port=port, bindir=bindir, run_as=run_as)
        log = root / "server.log"
        tail = log.read_text(errors="replace")[-2000:] if log.exists() else ""
        raise PgUnavailableError(f"PostgreSQL did not start: {last}\n{tail}")
    except BaseException:
        shutil.rmtree(root, ignore_errors=True)
        raise
