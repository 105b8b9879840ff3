"""Shared fixtures. Public vectors are read in place from ``../shared/vectors/``; where the
folder is absent a test skips saying so, except under CI (``CI=true``), where it fails."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

# Tests start partner and relay processes from a process that uses gRPC; see the same
# setting in relay/cli.py (a child could abort between fork and exec).
os.environ.setdefault("GRPC_ENABLE_FORK_SUPPORT", "false")

ROOT = Path(__file__).resolve().parent.parent
VECTORS = Path(os.environ.get("RELAY_VECTORS", ROOT.parent / "shared" / "vectors"))


def relay_cli(*args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    """``relay ARGS...`` in a child process (this interpreter), output captured as text;
    the exit status is the caller's to check."""
    return subprocess.run(
        [sys.executable, "-m", "relay.cli", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def vectors_path(*parts: str) -> Path:
    """Return a path inside the shared vectors folder, or skip/fail if the folder is absent."""
    if not VECTORS.is_dir():
        message = f"public vectors folder {VECTORS} is absent"
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(message + " (required under CI=true)")
        pytest.skip(message)
    path = VECTORS.joinpath(*parts)
    if not path.exists():
        pytest.fail(f"expected vector path {path} is missing from {VECTORS}")
    return path


@pytest.fixture
def vectors() -> Path:
    return vectors_path()


@pytest.fixture(scope="session")
def pg_cluster() -> Iterator[Any]:
    """A throwaway PostgreSQL cluster on loopback (relay/testing/pgcluster.py) for the whole
    session; skipped with the reason when PostgreSQL is not installed, failed under CI=true."""
    from relay.testing import pgcluster

    try:
        cluster = pgcluster.start()
    except pgcluster.PgUnavailableError as exc:
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(f"PostgreSQL is required under CI=true: {exc}")
        pytest.skip(f"PostgreSQL unavailable: {exc}")
    try:
        yield cluster
    finally:
        cluster.stop()
