"""SQLite-specific behaviour of relay.store.sqlite: the file format checks that keep a damaged
or foreign database from being served, the one-writer lock, crash-safe creation, and the
shipped migration files. (Backend-independent behaviour is in test_store_contract.py.)"""

from __future__ import annotations

import asyncio
import hashlib
import os
import shutil
import sqlite3
from collections.abc import Callable
from importlib import resources
from pathlib import Path

import pytest

from relay.store import (
    APPLICATION_ID,
    ChainRecord,
    ChainStatus,
    ClientType,
    ConsensusStateRecord,
    SQLiteStore,
    StoreCorruptError,
    StoreError,
    StoreLockedError,
)
from relay.store import migrations as shipped_migrations
from relay.store.migrations import Migration

PAGE = 4096


def state(h: int) -> ConsensusStateRecord:
    digest = hashlib.sha256(b"%d" % h).digest()
    return ConsensusStateRecord(
        height=h,
        time_ns=h,
        root=digest,
        header_hash=hashlib.sha256(digest).digest(),
        light_block=digest * 8,
        trusted_from=None if h == 1 else h - 1,
    )


async def populate(path: Path, heights: int = 2000) -> None:
    store = await SQLiteStore.open(path)
    try:
        await store.upsert_chain(
            ChainRecord(
                chain_id="c",
                domain="d",
                client_type=ClientType.TENDERMINT,
                descriptor=b"desc",
                status=ChainStatus.ACTIVE,
                anchor_height=1,
            )
        )
        rev = None
        for start in range(1, heights + 1, 250):
            batch = [state(h) for h in range(start, min(start + 250, heights + 1))]
            rev = await store.commit_verified(
                chain_id="c",
                client_state=b"cs",
                latest_height=batch[-1].height,
                expected_revision=rev,
                consensus_states=batch,
            )
    finally:
        await store.close()


@pytest.fixture(scope="module")
def pristine(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("pristine") / "relay.db"
    asyncio.run(populate(path))
    return path


@pytest.fixture
def db(pristine: Path, tmp_path: Path) -> Path:
    path = tmp_path / "relay.db"
    shutil.copyfile(pristine, path)
    return path


async def read_all(path: Path, heights: int = 2000) -> None:
    store = await SQLiteStore.open(path)
    try:
        for h in range(1, heights + 1):
            assert await store.get_consensus_state("c", h) is not None
    finally:
        await store.close()


# ----------------------------------------------------------------------------- format


def test_new_database_is_a_tagged_wal_database(db: Path) -> None:
    header = db.read_bytes()[:100]
    assert header.startswith(b"SQLite format 3\x00")
    assert int.from_bytes(header[68:72], "big") == APPLICATION_ID
    assert header[18:20] == b"\x02\x02"  # WAL read/write versions
    assert not db.with_name(db.name + "-wal").exists()  # clean close checkpointed it
    asyncio.run(read_all(db))


def test_writer_is_fully_synchronous(db: Path) -> None:
    async def body() -> tuple[int, int]:
        store = await SQLiteStore.open(db)
        try:
            conn = store._conn  # the writer connection: every commit fsyncs the WAL
            return (
                conn.execute("PRAGMA synchronous").fetchone()[0],
                conn.execute("PRAGMA foreign_keys").fetchone()[0],
            )
        finally:
            await store.close()

    assert asyncio.run(body()) == (2, 1)  # FULL, ON


# ----------------------------------------------------------------------------- corruption


def garbage_at(page: int, count: int = 1) -> Callable[[Path], None]:
    def mutate(path: Path) -> None:
        with open(path, "r+b") as f:
            f.seek(page * PAGE)
            f.write(os.urandom(count * PAGE))

    return mutate


def truncate_to(fraction: float, *, align: bool = True) -> Callable[[Path], None]:
    def mutate(path: Path) -> None:
        size = int(path.stat().st_size * fraction)
        os.truncate(path, size - size % PAGE if align else size)

    return mutate


def overwrite_header(path: Path) -> None:
    with open(path, "r+b") as f:
        f.write(b"NOT A DATABASE!!")


def empty(path: Path) -> None:
    os.truncate(path, 0)


def text_file(path: Path) -> None:
    path.write_text("chain_id,height\nc,1\n" * 100)


def foreign_sqlite(app_id: int) -> Callable[[Path], None]:
    def mutate(path: Path) -> None:
        path.unlink()
        conn = sqlite3.connect(path)
        conn.execute(f"PRAGMA application_id = {app_id}")
        conn.execute("CREATE TABLE consensus_states (x)")
        conn.commit()
        conn.close()

    return mutate


def tagged_but_empty(path: Path) -> None:
    path.unlink()
    conn = sqlite3.connect(path)
    conn.execute(f"PRAGMA application_id = {APPLICATION_ID}")
    conn.execute("CREATE TABLE unrelated (x)")
    conn.commit()
    conn.close()


CORRUPTIONS: dict[str, tuple[Callable[[Path], None], str]] = {
    "garbage over page 2": (garbage_at(1), "SQLite reported|quick_check"),
    "garbage over page 6": (garbage_at(5), "SQLite reported|quick_check"),
    "garbage over middle pages": (garbage_at(40, 3), "SQLite reported|quick_check"),
    "garbage over the last page": (garbage_at(-1), "SQLite reported|quick_check"),
    "truncated to half": (truncate_to(0.5), "truncated"),
    "truncated mid-page": (truncate_to(0.8, align=False), "truncated"),
    "header overwritten": (overwrite_header, "SQLite header"),
    "empty file": (empty, "empty"),
    "text file": (text_file, "SQLite header"),
    "plain SQLite file": (foreign_sqlite(0), "not a relay database"),
    "other application": (foreign_sqlite(0x12345678), "not a relay database"),
    "relay tag, no schema": (tagged_but_empty, "schema_migrations"),
}


@pytest.mark.parametrize("name", sorted(CORRUPTIONS))
def test_damaged_or_foreign_file_is_refused_at_start(db: Path, name: str) -> None:
    mutate, what = CORRUPTIONS[name]
    if name == "garbage over the last page":
        pages = db.stat().st_size // PAGE
        mutate = garbage_at(pages - 1)
    mutate(db)
    before = db.read_bytes()
    with pytest.raises(StoreCorruptError, match=what) as info:
        asyncio.run(SQLiteStore.open(db))
    message = str(info.value)
    assert str(db) in message and "restore" in message and "re-anchor" in message
    assert info.value.reason == "STORE_CORRUPT"
    assert db.read_bytes() == before  # not repaired, not rewritten: left for the operator
    # ... and refused again on the next start (nothing was "fixed" silently).
    with pytest.raises(StoreCorruptError):
        asyncio.run(SQLiteStore.open(db))


def test_truncation_is_caught_while_a_wal_is_pending(db: Path, tmp_path: Path) -> None:
    """After a crash the WAL still holds pages; the header-length check cannot apply, so the
    integrity check must catch a truncated main file."""
    crashed = tmp_path / "crashed"
    crashed.mkdir()

    async def write_and_copy() -> None:
        store = await SQLiteStore.open(db)
        try:
            client = await store.get_client_state("c")
            assert client is not None
            await store.commit_verified(
                chain_id="c",
                client_state=b"cs",
                latest_height=2001,
                expected_revision=client.revision,
                consensus_states=[state(2001)],
            )
            # Copy the files as a crash would leave them (WAL not checkpointed).
            for suffix in ("", "-wal"):
                shutil.copyfile(f"{db}{suffix}", crashed / f"relay.db{suffix}")
        finally:
            await store.close()

    asyncio.run(write_and_copy())
    victim = crashed / "relay.db"
    assert (crashed / "relay.db-wal").stat().st_size > 0
    asyncio.run(read_all(victim, 2001))  # the crash image itself is fine
    os.truncate(victim, victim.stat().st_size // 2 // PAGE * PAGE)
    with pytest.raises(StoreCorruptError):
        asyncio.run(SQLiteStore.open(victim))


def test_corruption_found_while_serving_poisons_the_store(db: Path) -> None:
    async def body() -> None:
        store = await SQLiteStore.open(db, readers=1)
        try:
            assert await store.get_consensus_state("c", 1) is not None
            pages = db.stat().st_size // PAGE
            with open(db, "r+b") as f:  # damage the file under the running store
                for page in range(2, pages):
                    f.seek(page * PAGE)
                    f.write(os.urandom(PAGE))
            with pytest.raises(StoreCorruptError):
                for h in range(1, 2001):
                    await store.get_consensus_state("c", h)
            with pytest.raises(StoreCorruptError):  # and stays refused, reads and writes
                await store.get_chain("c")
            with pytest.raises(StoreCorruptError):
                await store.set_chain_status("c", status=ChainStatus.FROZEN, reason="x")
        finally:
            await store.close()

    asyncio.run(body())


# ----------------------------------------------------------------------------- lifecycle


def test_one_writer_per_database(db: Path) -> None:
    async def body() -> None:
        first = await SQLiteStore.open(db)
        try:
            with pytest.raises(StoreLockedError, match="already open"):
                await SQLiteStore.open(db)
        finally:
            await first.close()
        second = await SQLiteStore.open(db)  # released on close
        await second.close()

    asyncio.run(body())


def test_missing_file_is_not_created_without_create(tmp_path: Path) -> None:
    path = tmp_path / "absent.db"
    with pytest.raises(StoreError, match="does not exist"):
        asyncio.run(SQLiteStore.open(path, create=False))
    assert not path.exists()


def test_interrupted_creation_leaves_no_database_behind(tmp_path: Path) -> None:
    """Creation happens under a temporary name; a leftover from a crash is discarded and the
    configured path only ever holds a complete database."""
    path = tmp_path / "relay.db"
    leftover = tmp_path / "relay.db.creating"
    leftover.write_bytes(b"half a database")

    async def body() -> None:
        store = await SQLiteStore.open(path)
        try:
            stats = await store.stats()
            assert stats.schema_version == len(shipped_migrations.load("sqlite"))
        finally:
            await store.close()

    asyncio.run(body())
    assert not leftover.exists()
    assert int.from_bytes(path.read_bytes()[68:72], "big") == APPLICATION_ID


# ----------------------------------------------------------------------------- migrations


def test_shipped_migrations_are_numbered_and_checksummed() -> None:
    shipped = shipped_migrations.load("sqlite")
    assert [(m.version, m.name) for m in shipped][:1] == [(1, "initial")]
    assert [m.version for m in shipped] == list(range(1, len(shipped) + 1))
    raw = resources.files("relay.store.migrations").joinpath("0001_initial.sqlite.sql")
    assert shipped[0].checksum == hashlib.sha256(raw.read_bytes()).hexdigest()
    with pytest.raises(ValueError, match="no nosuch migrations"):
        shipped_migrations.load("nosuch")
    gap = (Migration(1, "a", "SELECT 1;"), Migration(3, "c", "SELECT 1;"))
    with pytest.raises(ValueError, match="without gaps"):
        shipped_migrations.check_sequence(gap)


def test_schema_matches_the_shipped_migration(db: Path) -> None:
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    try:
        tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_schema WHERE type='table'")}
        rows = conn.execute("SELECT version, name, checksum FROM schema_migrations").fetchall()
    finally:
        conn.close()
    assert {"chains", "client_states", "consensus_states", "misbehaviour"} <= tables
    shipped = shipped_migrations.load("sqlite")
    assert rows == [(m.version, m.name, m.checksum) for m in shipped]
