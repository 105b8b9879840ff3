"""Durability under SIGKILL (issue 4, "what it must show" 3): a child process syncs a chain
through SQLiteStore, printing each height only after ``commit_verified`` returned; the
parent kills it with SIGKILL at random moments (during start-up, creation, migrations,
commits, checkpoints, pruning) and after every kill reopens the database and checks that
every reported state is intact, nothing is half-written, and the next child continues."""

from __future__ import annotations

import asyncio
import itertools
import os
import random
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from relay.store import SQLiteStore

ROOT = Path(__file__).resolve().parent.parent
KILLS = 24

# The child derives every byte it writes from the height, so the parent can recompute what
# each stored row must contain. Batches: states top+1..top+k all verified from top (skipping
# verification); the new top is the batch's last. Side states are pruned now and then.
CHILD = r"""
import asyncio, hashlib, random, sys
from relay.store import ChainRecord, ChainStatus, ClientType, ConsensusStateRecord, SQLiteStore

def digest(*parts):
    return hashlib.sha256(repr(parts).encode()).digest()

def record(h, parent):
    size = 500 + (h * 7919) % 12000  # some commits span many pages
    block = (digest("lb", h) * (size // 32 + 1))[:size]
    return ConsensusStateRecord(height=h, time_ns=h, root=digest("root", h),
        header_hash=digest("hdr", h), light_block=block, trusted_from=parent)

async def main(path):
    store = await SQLiteStore.open(path)
    if await store.get_chain("c") is None:
        await store.upsert_chain(ChainRecord(chain_id="c", domain="d",
            client_type=ClientType.TENDERMINT, descriptor=b"desc", status=ChainStatus.ACTIVE,
            anchor_height=1))
    client = await store.get_client_state("c")
    if client is None:
        top, rev = 1, await store.commit_verified(chain_id="c", client_state=b"client@1",
            latest_height=1, expected_revision=None, consensus_states=[record(1, None)])
        print(1, rev, flush=True)
    else:
        top, rev = client.latest_height, client.revision
    rng = random.Random()
    while True:
        k = rng.randint(1, 6)
        batch = [record(top + i, top) for i in range(1, k + 1)]
        rev = await store.commit_verified(chain_id="c", client_state=b"client@%d" % (top + k),
            latest_height=top + k, expected_revision=rev, consensus_states=batch)
        top += k
        print(top, rev, flush=True)
        if rng.random() < 0.05:
            await store.prune_consensus_states("c", older_than_ns=top - 30, keep_heights=())

asyncio.run(main(sys.argv[1]))
"""


def expected_row(h: int, parent: int | None) -> tuple[object, ...]:
    """What the child writes for height ``h`` (mirrors CHILD's record())."""
    import hashlib

    def digest(*parts: object) -> bytes:
        return hashlib.sha256(repr(parts).encode()).digest()

    size = 500 + (h * 7919) % 12000
    block = (digest("lb", h) * (size // 32 + 1))[:size]
    return (h, h, digest("root", h), digest("hdr", h), block, parent)


class Child:
    """The writer process; a thread collects the lines it printed (complete lines only)."""

    def __init__(self, script: Path, db: Path) -> None:
        env = dict(os.environ, PYTHONPATH=str(ROOT))
        self.proc = subprocess.Popen(
            [sys.executable, str(script), str(db)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=env,
        )
        self.lines: list[tuple[int, int]] = []
        self.first = threading.Event()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for raw in self.proc.stdout:
            if raw.endswith(b"\n"):
                top, rev = map(int, raw.split())
                self.lines.append((top, rev))
                self.first.set()

    def kill(self) -> str:
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(timeout=10)
        self._reader.join(timeout=10)
        assert self.proc.stderr is not None
        return self.proc.stderr.read().decode(errors="replace")


def check_database(db: Path) -> tuple[int, int, set[int]]:
    """Reopen through the store (header, integrity, migrations), then read every row
    directly. Returns (latest height, revision, spine heights)."""

    async def through_store() -> tuple[int, int, list[int]]:
        store = await SQLiteStore.open(db, full_check=True)
        try:
            client = await store.get_client_state("c")
            if client is None:
                return 0, 0, []
            assert client.state == b"client@%d" % client.latest_height
            latest = await store.latest_consensus_state("c")
            assert latest is not None and latest.height == client.latest_height, (
                "a consensus state above the client state's latest height: half-written batch"
            )
            path = await store.trust_path("c", client.latest_height, max_length=10**7)
            assert path[0].height == 1
            return client.latest_height, client.revision, [s.height for s in path]
        finally:
            await store.close()

    latest, revision, spine = asyncio.run(through_store())
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    try:
        rows = conn.execute(
            "SELECT height, time_ns, root, header_hash, light_block, trusted_from "
            "FROM consensus_states WHERE chain_id = 'c' ORDER BY height"
        ).fetchall()
    finally:
        conn.close()
    heights = {r[0] for r in rows}
    for row in rows:
        assert row == expected_row(row[0], row[5]), f"row at height {row[0]} is damaged"
        assert row[5] is None or row[5] in heights, f"parent of {row[0]} is missing"
    by_height = {r[0]: r for r in rows}
    for prev, nxt in itertools.pairwise(spine):
        assert by_height[nxt] == expected_row(nxt, prev)
    return latest, revision, set(spine)


@pytest.mark.slow
def test_sigkill_at_random_moments_loses_nothing(tmp_path: Path) -> None:
    seed = random.randrange(2**32)
    rng = random.Random(seed)
    script = tmp_path / "child.py"
    script.write_text(CHILD)
    db = tmp_path / "relay.db"
    reported: dict[int, int] = {}  # top height -> revision, across all children
    latest, revision = 0, 0
    killed_after_commits = 0
    for cycle in range(KILLS):
        child = Child(script, db)
        if cycle % 2 and child.first.wait(timeout=20):
            time.sleep(rng.uniform(0, 0.15))  # in the middle of syncing
        else:
            time.sleep(rng.uniform(0, 0.6))  # anywhere, including start-up and creation
        stderr = child.kill()
        lines = child.lines
        context = f"seed={seed} cycle={cycle} lines={lines[-3:]} stderr={stderr[-2000:]}"
        assert "Traceback" not in stderr, context
        if lines:
            killed_after_commits += 1
            assert lines[0][0] > latest or (latest == 0 and lines[0] == (1, 1)), context
            reported.update(lines)
        new_latest, new_revision, spine = check_database(db)
        # Everything reported is there; at most the one commit in flight may have landed
        # unreported, and nothing is ever lost.
        last_top, last_rev = lines[-1] if lines else (latest, revision)
        assert new_revision in (last_rev, last_rev + 1), context
        assert (new_latest == last_top) == (new_revision == last_rev), context
        assert new_latest >= last_top, context
        assert set(reported) <= spine, f"reported heights missing: {context}"
        assert all(reported[t] <= new_revision for t in reported), context
        latest, revision = new_latest, new_revision
    assert killed_after_commits >= KILLS // 2, f"seed={seed}: too few kills mid-sync"
    assert latest > 50, f"seed={seed}: the children hardly progressed ({latest})"
