"""Issue 4, "what it must show" 3: ``relay serve`` as a real process following two
``partner_server`` processes (a CometBFT chain and a transparency log, both producing blocks
with fresh writes all the time) is killed with SIGKILL at random points of start-up and sync,
again and again. After every kill the database must still pass the store's own checks, every
state verified before must still be there unchanged, nothing may be half-written (every
client state's height is stored, every trust path reaches the anchor), and after restarting
the relay sync must carry on. A database damaged on disk is refused at start with the
store's clear message, and the relay serves nothing from it."""

from __future__ import annotations

import asyncio
import hashlib
import random
import shutil
import signal
import sqlite3
import time
from pathlib import Path

import pytest

from relay.service.devconfig import (
    health_status,
    start_partner,
    start_relay_process,
    stop,
    wait_for_file,
    wait_serving,
    write_dev_setup,
)
from relay.store import SQLiteStore

KILLS = 22

Snapshot = dict[tuple[str, int], tuple[bytes, bytes, bytes, int | None]]


def snapshot(db: Path) -> tuple[Snapshot, dict[str, tuple[int, int]]]:
    """Every consensus state (chain, height) -> (header hash, root, light block digest,
    trusted_from) and every client state chain -> (latest height, revision), after the
    store's own open-time checks (header, integrity_check, migrations) have passed."""

    async def check() -> None:
        store = await SQLiteStore.open(db, create=False, full_check=True)
        await store.close()

    asyncio.run(check())
    conn = sqlite3.connect(db)
    try:
        states: Snapshot = {
            (chain, height): (header_hash, root, hashlib.sha256(block).digest(), parent)
            for chain, height, header_hash, root, block, parent in conn.execute(
                "SELECT chain_id, height, header_hash, root, light_block, trusted_from "
                "FROM consensus_states"
            )
        }
        clients = {
            chain: (latest, revision)
            for chain, latest, revision in conn.execute(
                "SELECT chain_id, latest_height, revision FROM client_states"
            )
        }
    finally:
        conn.close()
    return states, clients


def check_whole(states: Snapshot, clients: dict[str, tuple[int, int]]) -> None:
    """No half-written state: each client's latest height is stored, every state's parent
    is stored, and each chain has exactly one anchor."""
    for chain, (latest, _) in clients.items():
        assert (chain, latest) in states, f"{chain}: latest height {latest} has no state"
        anchors = [h for (c, h), v in states.items() if c == chain and v[3] is None]
        assert len(anchors) == 1, f"{chain}: anchors {anchors}"
    for (chain, height), (*_, parent) in states.items():
        if parent is not None:
            assert (chain, parent) in states, f"{chain}@{height}: parent {parent} missing"
    assert {c for c, _ in states} <= set(clients) | set()


@pytest.mark.slow
def test_sigkill_at_random_points_loses_nothing(tmp_path: Path) -> None:
    rng = random.Random()
    setup = write_dev_setup(tmp_path / "relay")
    partners = []
    try:
        descriptors = []
        for kind in ("bft", "tlog"):
            process, descriptor = start_partner(
                kind, tmp_path / kind, setup.pki, block_interval=0.1
            )
            partners.append(process)
            descriptors.append(descriptor)
        for process, descriptor in zip(partners, descriptors, strict=True):
            wait_for_file(descriptor, timeout_s=20, process=process)
        setup = write_dev_setup(
            tmp_path / "relay",
            pki=setup.pki,
            chains=descriptors,
            overrides={
                "sync": {"interval": "30ms", "max_light_blocks_per_fetch": 2},
                "adapters": {"deadline": "2s", "retries": 1},
            },
        )
        db = tmp_path / "relay" / "relay.db"
        log = tmp_path / "relay.log"

        previous: Snapshot = {}
        previous_clients: dict[str, tuple[int, int]] = {}
        first_heights: dict[str, int] = {}
        killed_while_serving = 0
        startup_s = 0.5  # refined from the first start that reaches SERVING
        for i in range(KILLS):
            relay = start_relay_process(setup.config, log=log, extra=["--insecure-dev"])
            started = time.monotonic()
            serving = False
            if i % 2:
                # Odd kills land in start-up (store creation, migrations, registration) at a
                # random point of a start-up as long as the last one measured.
                deadline = started + rng.uniform(0.0, startup_s)
                while time.monotonic() < deadline:
                    time.sleep(0.01)
            else:
                # Even kills wait until the relay serves (however loaded the machine is),
                # then land at a random moment of sync commits.
                wait_serving(setup.health_address, timeout_s=30, process=relay)
                startup_s = time.monotonic() - started
                serving = True
                time.sleep(rng.uniform(0.0, 0.8))
            assert relay.poll() is None, log.read_text()[-3000:]
            relay.send_signal(signal.SIGKILL)
            relay.wait(10)
            killed_while_serving += serving
            if not db.exists():
                continue  # killed before the database was created
            states, clients = snapshot(db)
            check_whole(states, clients)
            for key, value in previous.items():
                assert states.get(key) == value, f"kill {i}: verified state {key} changed"
            for chain, (latest, revision) in previous_clients.items():
                assert chain in clients, f"kill {i}: chain {chain} lost"
                assert clients[chain][1] >= revision and clients[chain][0] >= latest
            for chain, (latest, _) in clients.items():
                first_heights.setdefault(chain, latest)
            previous, previous_clients = states, clients

        # Sync carries on after the last kill: both chains move past where they stood.
        relay = start_relay_process(setup.config, log=log, extra=["--insecure-dev"])
        try:
            wait_serving(setup.health_address, timeout_s=15, process=relay)
            time.sleep(1.0)
        finally:
            assert stop(relay) == 0, log.read_text()[-3000:]
        states, clients = snapshot(db)
        check_whole(states, clients)
        for key, value in previous.items():
            assert states.get(key) == value
        assert set(clients) == {"cn-bj-chaoyang-realestate", "cn-cnipa-patents"}
        for chain, (latest, _) in clients.items():
            assert latest > first_heights[chain], (chain, latest, first_heights[chain])
            assert latest > previous_clients[chain][0], chain
        assert killed_while_serving >= KILLS // 2, killed_while_serving
    finally:
        for process in partners:
            stop(process)

    # A database damaged on disk is refused at start, with the store's message.
    corrupt = tmp_path / "corrupt" / "relay.db"
    corrupt.parent.mkdir()
    shutil.copyfile(db, corrupt)
    data = bytearray(corrupt.read_bytes())
    page = 4096
    assert len(data) > 4 * page
    start = (len(data) // page // 2) * page
    data[start : start + page] = random.Random(7).randbytes(page)
    corrupt.write_bytes(bytes(data))
    bad = write_dev_setup(
        tmp_path / "corrupt-relay",
        pki=setup.pki,
        overrides={"store": {"path": str(corrupt), "full_check": True}},
    )
    bad_log = tmp_path / "corrupt.log"
    relay = start_relay_process(bad.config, log=bad_log, extra=["--insecure-dev"])
    try:
        code = relay.wait(20)
    finally:
        stop(relay)
    text = bad_log.read_text()
    assert code == 1, text
    assert f"relay database {corrupt} cannot be trusted" in text
    assert "Traceback" not in text
    assert "listening" not in text  # no port was ever bound
    assert health_status(bad.health_address) == "UNREACHABLE"


def test_foreign_file_is_refused_at_start(tmp_path: Path) -> None:
    not_ours = tmp_path / "data" / "relay.db"
    not_ours.parent.mkdir()
    conn = sqlite3.connect(not_ours)
    conn.execute("CREATE TABLE t (x)")
    conn.commit()
    conn.close()
    setup = write_dev_setup(tmp_path / "relay", overrides={"store": {"path": str(not_ours)}})
    log = tmp_path / "relay.log"
    relay = start_relay_process(setup.config, log=log, extra=["--insecure-dev"])
    try:
        code = relay.wait(20)
    finally:
        stop(relay)
    text = log.read_text()
    assert code == 1, text
    assert "cannot be trusted" in text and str(not_ours) in text
    assert "Traceback" not in text and "listening" not in text
