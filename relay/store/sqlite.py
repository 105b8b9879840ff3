"""The embedded SQLite implementation of :class:`relay.store.base.Store`.

One process owns the database file (an exclusive lock on ``<file>.lock``). All writes go
through one connection on one dedicated thread, each in one ``BEGIN IMMEDIATE`` transaction
that is fsync'ed (WAL, ``synchronous=FULL``) before the coroutine returns, so verified state
is on disk before it is used or acknowledged. Reads use a small pool of read-only
connections on their own threads and see only committed data; nothing blocks the event loop.

A database is created under a temporary name and renamed into place only once its schema
is complete, so a file at the configured path is always a whole relay database. At every
open the file header (magic, page size, length, ``application_id``), ``PRAGMA quick_check``
and the applied migrations' checksums are checked; a damaged or foreign file raises
:class:`~relay.store.base.StoreCorruptError` and is never served from. Corruption noticed
later (``SQLITE_CORRUPT``/``SQLITE_NOTADB``) poisons the store: every later call raises.

SQLite file format: https://www.sqlite.org/fileformat2.html (header offsets used below).
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import os
import sqlite3
import threading
import time
from collections.abc import Callable, Collection, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar
from urllib.parse import quote

from relay.store import migrations as _migrations
from relay.store.base import (
    ADMIN_ACTIONS_SELECT,
    CS_COLUMNS,
    DEFAULT_TRUST_PATH_LIMIT,
    MAX_INT64,
    MAX_TEXT_LENGTH,
    AdminActionRecord,
    AuditCheckpointRecord,
    AuditLeafRecord,
    ChainExistsError,
    ChainRecord,
    ChainStatus,
    ChainStatusError,
    ClientStateRecord,
    ConsensusStateRecord,
    InvalidRecordError,
    Lease,
    MigrationError,
    MisbehaviourRecord,
    NonceReplayedError,
    ProposalClosedError,
    ProposalDecisionRecord,
    ProposalNotFoundError,
    ProposalRecord,
    StaleRevisionError,
    StoreClosedError,
    StoreCorruptError,
    StoreError,
    StoreIntegrityError,
    StoreLockedError,
    StoreStats,
    UnknownChainError,
    admin_action_from_row,
    chain_from_row,
    check_against_stored,
    check_chain_id,
    check_evidence_heights,
    check_fence,
    check_height,
    check_keep_heights,
    check_list_limit,
    check_misbehaviour_args,
    check_owner,
    check_same_checkpoint,
    check_states,
    check_status_change,
    checked_trust_path,
    cs_from_row,
    lease_ttl_ns,
    next_lease,
    parent_not_stored,
    parent_to_check,
)
from relay.store.migrations import Migration

if TYPE_CHECKING:
    from relay.store.base import Store

T = TypeVar("T")

# "JRLY": PRAGMA application_id of every relay database (file header offset 68), so a
# foreign SQLite file is told apart from ours before anything is read from it.
APPLICATION_ID = 0x4A524C59
_MAGIC = b"SQLite format 3\x00"
_MIN_SQLITE = (3, 37, 0)  # STRICT tables

# Result codes (primary code is the low byte of the extended one).
_SQLITE_CORRUPT = 11
_SQLITE_NOTADB = 26
_SQLITE_BUSY = 5
_SQLITE_LOCKED = 6
_SQLITE_IOERR_SHORT_READ = 522

# Audit rows per INSERT statement (5 parameters each; SQLite allows 32766 per statement).
_AUDIT_CHUNK = 500

_SCHEMA_MIGRATIONS_DDL = """
CREATE TABLE schema_migrations (
    version        INTEGER PRIMARY KEY,
    name           TEXT    NOT NULL,
    checksum       TEXT    NOT NULL,
    applied_at_ns  INTEGER NOT NULL
) STRICT
"""

_CHAIN_COLUMNS = (
    "chain_id, domain, client_type, descriptor, status, status_reason, anchor_height, "
    "created_at_ns, updated_at_ns"
)


def _is_corruption(exc: sqlite3.Error) -> bool:
    code = getattr(exc, "sqlite_errorcode", None)
    if code is None:
        return False
    return code & 0xFF in (_SQLITE_CORRUPT, _SQLITE_NOTADB) or code == _SQLITE_IOERR_SHORT_READ


def _fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _wal_path(path: Path) -> Path:
    return path.with_name(path.name + "-wal")


def _insert_chain(conn: sqlite3.Connection, chain: ChainRecord, now: int) -> None:
    conn.execute(
        f"INSERT INTO chains ({_CHAIN_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
        (
            chain.chain_id,
            chain.domain,
            chain.client_type.value,
            chain.descriptor,
            chain.status.value,
            chain.status_reason,
            chain.anchor_height,
            now,
            now,
        ),
    )


class SQLiteStore:
    """SQLite-backed :class:`~relay.store.base.Store`. Create with :meth:`open`."""

    def __init__(
        self,
        *,
        path: Path,
        conn: sqlite3.Connection,
        writer: ThreadPoolExecutor,
        lock_fd: int,
        readers: int,
        clock: Callable[[], int],
        busy_timeout_ms: int,
    ) -> None:
        self.path = path
        self._conn = conn
        self._writer = writer
        self._lock_fd = lock_fd
        self._readers = ThreadPoolExecutor(max_workers=readers, thread_name_prefix="store-read")
        self._reader_conns: list[sqlite3.Connection] = []
        self._reader_lock = threading.Lock()
        self._local = threading.local()
        self._clock = clock
        self._busy_timeout_ms = busy_timeout_ms
        self._closed = False
        # The event loop thread's own read connection (see _point_read).
        self._inline_conn: sqlite3.Connection | None = None
        self._corrupt: StoreCorruptError | None = None

    # ------------------------------------------------------------------ opening

    @classmethod
    async def open(
        cls,
        path: str | os.PathLike[str],
        *,
        create: bool = True,
        readers: int = 4,
        full_check: bool = False,
        migrations: Sequence[Migration] | None = None,
        clock: Callable[[], int] = time.time_ns,
        busy_timeout_ms: int = 5000,
    ) -> SQLiteStore:
        """Open (or, with ``create``, create) the relay database at ``path``.

        Checks the file before serving from it: ``full_check`` runs ``integrity_check``
        instead of the faster ``quick_check``. ``migrations`` replaces the shipped ones
        (tests). Raises StoreCorruptError, StoreLockedError, MigrationError, StoreError.
        """
        if sqlite3.sqlite_version_info < _MIN_SQLITE:
            raise StoreError(
                f"SQLite {sqlite3.sqlite_version} is too old; the relay needs "
                f"{'.'.join(map(str, _MIN_SQLITE))} or newer"
            )
        if readers < 1:
            raise ValueError("readers must be at least 1")
        shipped = (
            _migrations.load("sqlite")
            if migrations is None
            else _migrations.check_sequence(tuple(migrations))
        )
        target = Path(path).absolute()
        writer = ThreadPoolExecutor(max_workers=1, thread_name_prefix="store-write")
        loop = asyncio.get_running_loop()
        try:
            conn, lock_fd = await loop.run_in_executor(
                writer,
                lambda: _open_writer(
                    target,
                    create=create,
                    full_check=full_check,
                    migrations=shipped,
                    clock=clock,
                    busy_timeout_ms=busy_timeout_ms,
                ),
            )
        except BaseException:
            writer.shutdown(wait=True)
            raise
        store = cls(
            path=target,
            conn=conn,
            writer=writer,
            lock_fd=lock_fd,
            readers=readers,
            clock=clock,
            busy_timeout_ms=busy_timeout_ms,
        )
        try:
            await store._end_previous_leases()
        except BaseException:
            await store.close()
            raise
        return store

    async def _end_previous_leases(self) -> None:
        """End every sync lease still running: this process holds the database's only
        write lock, so whoever took them (a relay that crashed, with another replica id
        such as ``<hostname>-<pid>``) is gone, and one replica must not wait out its own
        predecessor's lease. Tokens are kept, so the next term's is greater."""
        now = self._clock()

        def write(conn: sqlite3.Connection) -> None:
            conn.execute(
                "UPDATE sync_leases SET expires_at_ns = ? WHERE expires_at_ns > ?", (now, now)
            )

        await self._write(write)

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        await asyncio.get_running_loop().run_in_executor(None, self._shutdown)

    def _shutdown(self) -> None:
        self._readers.shutdown(wait=True)
        with self._reader_lock:
            for conn in self._reader_conns:
                conn.close()
            self._reader_conns.clear()
        # The last connection to close checkpoints the WAL into the database file.
        self._writer.submit(self._conn.close).result()
        self._writer.shutdown(wait=True)
        os.close(self._lock_fd)

    # ------------------------------------------------------------------ plumbing

    def _check_usable(self) -> None:
        if self._corrupt is not None:
            raise self._corrupt
        if self._closed:
            raise StoreClosedError(f"store {self.path} is closed")

    def _translate(self, exc: sqlite3.Error) -> StoreError:
        if _is_corruption(exc):
            self._corrupt = StoreCorruptError(str(self.path), f"SQLite reported: {exc}")
            return self._corrupt
        return StoreError(f"database error on {self.path}: {exc}")

    async def _write(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        self._check_usable()
        return await asyncio.get_running_loop().run_in_executor(self._writer, self._run_write, fn)

    def _run_write(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        conn = self._conn
        try:
            conn.execute("BEGIN IMMEDIATE")
            try:
                result = fn(conn)
                conn.execute("COMMIT")
            except BaseException:
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
                raise
        except sqlite3.Error as exc:
            raise self._translate(exc) from exc
        return result

    async def _read(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        self._check_usable()
        return await asyncio.get_running_loop().run_in_executor(self._readers, self._run_read, fn)

    def _run_read(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        try:
            conn: sqlite3.Connection | None = getattr(self._local, "conn", None)
            if conn is None:
                conn = self._open_reader()
                self._local.conn = conn
            return fn(conn)
        except sqlite3.Error as exc:
            raise self._translate(exc) from exc

    async def _point_read(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        """A read of a few rows by key, run on the calling (event loop) thread.

        A thread hop costs more CPU than such a read (a wake-up, two GIL hand-offs and a
        self-pipe write per hop, about 10 hops per sync round): a relay following a
        thousand chains spends a large part of its time on hops (bench/bench_scale.py). In
        WAL mode readers do not wait for the writer, so the read takes microseconds; should
        SQLite answer BUSY (a WAL recovery or checkpoint in progress) the read goes to the
        reader threads, which wait out the busy timeout there, never on the loop.
        """
        self._check_usable()
        try:
            conn = self._inline_conn
            if conn is None:
                conn = self._open_reader(timeout_s=0.0)
                self._inline_conn = conn
            result = fn(conn)
        except sqlite3.OperationalError as exc:
            if getattr(exc, "sqlite_errorcode", 0) & 0xFF not in (_SQLITE_BUSY, _SQLITE_LOCKED):
                raise self._translate(exc) from exc
        except sqlite3.Error as exc:
            raise self._translate(exc) from exc
        else:
            # Still a suspension point, as a read through the threads is: a caller polling
            # the store in a loop must not starve the other tasks.
            await asyncio.sleep(0)
            return result
        return await self._read(fn)

    def _open_reader(self, *, timeout_s: float | None = None) -> sqlite3.Connection:
        uri = f"file:{quote(str(self.path))}?mode=ro"
        conn = sqlite3.connect(
            uri,
            uri=True,
            isolation_level=None,
            check_same_thread=False,
            timeout=self._busy_timeout_ms / 1000 if timeout_s is None else timeout_s,
        )
        conn.execute("PRAGMA query_only = ON")
        with self._reader_lock:
            self._reader_conns.append(conn)
        return conn

    # ------------------------------------------------------------------ chains

    async def create_chain(self, chain: ChainRecord) -> None:
        if not isinstance(chain, ChainRecord):
            raise InvalidRecordError("create_chain takes a ChainRecord")
        now = self._clock()

        def write(conn: sqlite3.Connection) -> None:
            try:
                _insert_chain(conn, chain, now)
            except sqlite3.IntegrityError as e:  # the primary key: stored already
                raise ChainExistsError(chain.chain_id) from e

        await self._write(write)

    async def upsert_chain(self, chain: ChainRecord) -> None:
        if not isinstance(chain, ChainRecord):
            raise InvalidRecordError("upsert_chain takes a ChainRecord")
        now = self._clock()

        def write(conn: sqlite3.Connection) -> None:
            row = conn.execute(
                "SELECT client_type, status, anchor_height FROM chains WHERE chain_id = ?",
                (chain.chain_id,),
            ).fetchone()
            if row is None:
                _insert_chain(conn, chain, now)
                return
            client_type, status, anchor_height = row
            if client_type != chain.client_type.value:
                raise InvalidRecordError(
                    f"chain {chain.chain_id!r} is a {client_type} chain; its client type cannot "
                    "change (register it under a new chain id)",
                    chain_id=chain.chain_id,
                    expected=client_type,
                    actual=chain.client_type.value,
                )
            if anchor_height != chain.anchor_height:
                raise InvalidRecordError(
                    f"chain {chain.chain_id!r} is anchored at height {anchor_height}; the "
                    "anchor changes only through recovery with a new anchor (reanchor)",
                    chain_id=chain.chain_id,
                    expected=anchor_height,
                    actual=chain.anchor_height,
                )
            check_status_change(chain.chain_id, current=ChainStatus(status), new=chain.status)
            conn.execute(
                "UPDATE chains SET domain = ?, descriptor = ?, status = ?, status_reason = ?, "
                "updated_at_ns = ? WHERE chain_id = ?",
                (
                    chain.domain,
                    chain.descriptor,
                    chain.status.value,
                    chain.status_reason,
                    now,
                    chain.chain_id,
                ),
            )

        await self._write(write)

    async def get_chain(self, chain_id: str) -> ChainRecord | None:
        def read(conn: sqlite3.Connection) -> ChainRecord | None:
            row = conn.execute(
                f"SELECT {_CHAIN_COLUMNS} FROM chains WHERE chain_id = ?", (chain_id,)
            ).fetchone()
            return None if row is None else chain_from_row(row)

        return await self._point_read(read)

    async def list_chains(self) -> list[ChainRecord]:
        def read(conn: sqlite3.Connection) -> list[ChainRecord]:
            rows = conn.execute(f"SELECT {_CHAIN_COLUMNS} FROM chains ORDER BY chain_id")
            return [chain_from_row(r) for r in rows]

        return await self._read(read)

    async def set_chain_status(
        self, chain_id: str, *, status: ChainStatus, reason: str, fence: int | None = None
    ) -> None:
        try:
            new = ChainStatus(status)
        except ValueError:
            raise InvalidRecordError(f"unknown chain status {status!r}") from None
        if not isinstance(reason, str) or len(reason) > MAX_TEXT_LENGTH:
            raise InvalidRecordError(f"reason must be a string of at most {MAX_TEXT_LENGTH}")
        now = self._clock()

        def write(conn: sqlite3.Connection) -> None:
            current = _chain_status(conn, chain_id)
            _fence(conn, chain_id, fence, self._clock())
            check_status_change(chain_id, current=current, new=new)
            conn.execute(
                "UPDATE chains SET status = ?, status_reason = ?, updated_at_ns = ? "
                "WHERE chain_id = ?",
                (new.value, reason, now, chain_id),
            )

        await self._write(write)

    # ------------------------------------------------------------------ verified state

    async def commit_verified(
        self,
        *,
        chain_id: str,
        client_state: bytes,
        latest_height: int,
        expected_revision: int | None,
        consensus_states: Sequence[ConsensusStateRecord],
        fence: int | None = None,
    ) -> int:
        check_chain_id(chain_id)
        _check_client_state(client_state, latest_height, expected_revision)
        states = check_states(consensus_states)
        now = self._clock()

        def write(conn: sqlite3.Connection) -> int:
            row = conn.execute(
                "SELECT status, anchor_height FROM chains WHERE chain_id = ?", (chain_id,)
            ).fetchone()
            if row is None:
                raise UnknownChainError(chain_id)
            status, anchor_height = row
            if status != ChainStatus.ACTIVE.value:
                raise ChainStatusError(
                    f"chain {chain_id!r} is {status}: verified state is not accepted for it "
                    "until an operator recovers it",
                    chain_id=chain_id,
                    status=status,
                )
            _fence(conn, chain_id, fence, self._clock())
            current = _check_revision(conn, chain_id, expected_revision)
            _insert_states(conn, chain_id, anchor_height, states, now, lease_token=fence)
            if not _has_state(conn, chain_id, latest_height):
                raise InvalidRecordError(
                    f"client state of chain {chain_id!r} names latest height {latest_height}, "
                    "but no consensus state is stored or offered for it",
                    chain_id=chain_id,
                    height=latest_height,
                )
            return _write_client_state(conn, chain_id, client_state, latest_height, current, now)

        return await self._write(write)

    async def reanchor(
        self,
        *,
        chain_id: str,
        descriptor: bytes,
        anchor: ConsensusStateRecord,
        client_state: bytes,
        expected_revision: int | None,
        reason: str,
    ) -> int:
        check_chain_id(chain_id)
        if type(descriptor) is not bytes:
            raise InvalidRecordError("descriptor must be bytes")
        if not isinstance(anchor, ConsensusStateRecord) or anchor.trusted_from is not None:
            raise InvalidRecordError(
                "the new anchor must be a ConsensusStateRecord with trusted_from=None",
                chain_id=chain_id,
            )
        _check_client_state(client_state, anchor.height, expected_revision)
        if not isinstance(reason, str) or len(reason) > MAX_TEXT_LENGTH:
            raise InvalidRecordError(f"reason must be a string of at most {MAX_TEXT_LENGTH}")
        now = self._clock()

        def write(conn: sqlite3.Connection) -> int:
            _chain_status(conn, chain_id)
            current = _check_revision(conn, chain_id, expected_revision)
            conn.execute("DELETE FROM consensus_states WHERE chain_id = ?", (chain_id,))
            conn.execute(
                "UPDATE chains SET descriptor = ?, anchor_height = ?, status = ?, "
                "status_reason = ?, updated_at_ns = ? WHERE chain_id = ?",
                (descriptor, anchor.height, ChainStatus.ACTIVE.value, reason, now, chain_id),
            )
            _insert_states(conn, chain_id, anchor.height, [anchor], now)
            return _write_client_state(conn, chain_id, client_state, anchor.height, current, now)

        return await self._write(write)

    async def get_client_state(self, chain_id: str) -> ClientStateRecord | None:
        def read(conn: sqlite3.Connection) -> ClientStateRecord | None:
            row = conn.execute(
                "SELECT state, latest_height, revision, updated_at_ns FROM client_states "
                "WHERE chain_id = ?",
                (chain_id,),
            ).fetchone()
            if row is None:
                return None
            return ClientStateRecord(
                chain_id=chain_id,
                state=row[0],
                latest_height=row[1],
                revision=row[2],
                updated_at_ns=row[3],
            )

        return await self._point_read(read)

    async def get_consensus_state(self, chain_id: str, height: int) -> ConsensusStateRecord | None:
        check_height(height)

        def read(conn: sqlite3.Connection) -> ConsensusStateRecord | None:
            row = conn.execute(
                f"SELECT {CS_COLUMNS} FROM consensus_states WHERE chain_id = ? AND height = ?",
                (chain_id, height),
            ).fetchone()
            return None if row is None else cs_from_row(row)

        return await self._point_read(read)

    async def nearest_consensus_state(
        self, chain_id: str, height: int, *, below: bool
    ) -> ConsensusStateRecord | None:
        check_height(height)
        query = (
            f"SELECT {CS_COLUMNS} FROM consensus_states WHERE chain_id = ? AND height <= ? "
            "ORDER BY height DESC LIMIT 1"
            if below
            else f"SELECT {CS_COLUMNS} FROM consensus_states WHERE chain_id = ? AND height >= ? "
            "ORDER BY height ASC LIMIT 1"
        )

        def read(conn: sqlite3.Connection) -> ConsensusStateRecord | None:
            row = conn.execute(query, (chain_id, height)).fetchone()
            return None if row is None else cs_from_row(row)

        return await self._point_read(read)

    async def latest_consensus_state(self, chain_id: str) -> ConsensusStateRecord | None:
        def read(conn: sqlite3.Connection) -> ConsensusStateRecord | None:
            row = conn.execute(
                f"SELECT {CS_COLUMNS} FROM consensus_states WHERE chain_id = ? "
                "ORDER BY height DESC LIMIT 1",
                (chain_id,),
            ).fetchone()
            return None if row is None else cs_from_row(row)

        return await self._point_read(read)

    async def list_consensus_states(
        self, chain_id: str, *, from_height: int = 0, limit: int = 1000
    ) -> list[ConsensusStateRecord]:
        check_height(from_height, "from_height")
        check_list_limit(limit)

        def read(conn: sqlite3.Connection) -> list[ConsensusStateRecord]:
            rows = conn.execute(
                f"SELECT {CS_COLUMNS} FROM consensus_states WHERE chain_id = ? AND height >= ? "
                "ORDER BY height LIMIT ?",
                (chain_id, from_height, limit),
            ).fetchall()
            return [cs_from_row(r) for r in rows]

        return await self._read(read)

    async def trust_path(
        self, chain_id: str, height: int, *, max_length: int = DEFAULT_TRUST_PATH_LIMIT
    ) -> list[ConsensusStateRecord]:
        check_height(height)
        if type(max_length) is not int or max_length < 1:
            raise ValueError("max_length must be a positive integer")
        # Walk parent links in SQL (one round trip); depth is capped at max_length so a
        # path one longer than allowed is seen and refused rather than truncated.
        query = f"""
            WITH RECURSIVE path(height, depth) AS (
                SELECT height, 0 FROM consensus_states WHERE chain_id = :chain AND height = :h
                UNION ALL
                SELECT cs.trusted_from, path.depth + 1
                FROM path JOIN consensus_states AS cs
                    ON cs.chain_id = :chain AND cs.height = path.height
                WHERE cs.trusted_from IS NOT NULL AND path.depth < :limit
            )
            SELECT {", ".join("cs." + c.strip() for c in CS_COLUMNS.split(","))}
            FROM path JOIN consensus_states AS cs
                ON cs.chain_id = :chain AND cs.height = path.height
            ORDER BY path.depth DESC
        """

        def read(conn: sqlite3.Connection) -> list[ConsensusStateRecord]:
            rows = conn.execute(query, {"chain": chain_id, "h": height, "limit": max_length})
            return [cs_from_row(r) for r in rows]

        path = await self._read(read)
        return checked_trust_path(path, chain_id=chain_id, height=height, max_length=max_length)

    # ------------------------------------------------------------------ misbehaviour

    async def record_misbehaviour(
        self,
        *,
        chain_id: str,
        height: int,
        kind: str,
        evidence: bytes,
        freeze_reason: str,
        fence: int | None = None,
    ) -> int:
        check_chain_id(chain_id)
        check_height(height)
        check_misbehaviour_args(kind=kind, freeze_reason=freeze_reason, evidence=evidence)
        now = self._clock()

        def write(conn: sqlite3.Connection) -> int:
            status = _chain_status(conn, chain_id)
            _fence(conn, chain_id, fence, self._clock())
            cur = conn.execute(
                "INSERT INTO misbehaviour (chain_id, height, kind, evidence, detected_at_ns) "
                "VALUES (?, ?, ?, ?, ?)",
                (chain_id, height, kind, evidence, now),
            )
            if status != ChainStatus.FROZEN:
                conn.execute(
                    "UPDATE chains SET status = ?, status_reason = ?, updated_at_ns = ? "
                    "WHERE chain_id = ?",
                    (ChainStatus.FROZEN.value, freeze_reason, now, chain_id),
                )
            assert cur.lastrowid is not None
            return cur.lastrowid

        return await self._write(write)

    async def list_misbehaviour(self, chain_id: str) -> list[MisbehaviourRecord]:
        def read(conn: sqlite3.Connection) -> list[MisbehaviourRecord]:
            rows = conn.execute(
                "SELECT id, chain_id, height, kind, evidence, detected_at_ns FROM misbehaviour "
                "WHERE chain_id = ? ORDER BY id",
                (chain_id,),
            )
            return [
                MisbehaviourRecord(
                    id=r[0],
                    chain_id=r[1],
                    height=r[2],
                    kind=r[3],
                    evidence=r[4],
                    detected_at_ns=r[5],
                )
                for r in rows
            ]

        return await self._read(read)

    # ------------------------------------------------------------------ pruning, stats

    async def prune_consensus_states(
        self, chain_id: str, *, older_than_ns: int, keep_heights: Collection[int]
    ) -> int:
        check_chain_id(chain_id)
        if type(older_than_ns) is not int:
            raise InvalidRecordError("older_than_ns must be an integer")
        keep = check_keep_heights(keep_heights)

        def write(conn: sqlite3.Connection) -> int:
            row = conn.execute(
                "SELECT c.anchor_height, s.latest_height FROM chains AS c "
                "LEFT JOIN client_states AS s ON s.chain_id = c.chain_id WHERE c.chain_id = ?",
                (chain_id,),
            ).fetchone()
            if row is None:
                raise UnknownChainError(chain_id)
            roots = {row[0], *keep}
            if row[1] is not None:
                roots.add(row[1])
            conn.execute(
                "CREATE TEMP TABLE IF NOT EXISTS prune_keep (height INTEGER PRIMARY KEY) STRICT"
            )
            conn.execute("DELETE FROM temp.prune_keep")
            conn.executemany("INSERT INTO temp.prune_keep VALUES (?)", [(h,) for h in roots])
            # Everything recent or explicitly kept, plus (recursively) every parent of a
            # kept state: what remains still reaches the anchor.
            conn.execute(
                """
                WITH RECURSIVE kept(height) AS (
                    SELECT height FROM consensus_states
                    WHERE chain_id = :chain AND (
                        time_ns >= :cutoff
                        OR height IN (SELECT height FROM temp.prune_keep)
                        OR height = (SELECT max(height) FROM consensus_states
                                     WHERE chain_id = :chain)
                    )
                    UNION
                    SELECT cs.trusted_from
                    FROM kept JOIN consensus_states AS cs
                        ON cs.chain_id = :chain AND cs.height = kept.height
                    WHERE cs.trusted_from IS NOT NULL
                )
                DELETE FROM consensus_states
                WHERE chain_id = :chain AND time_ns < :cutoff
                    AND height NOT IN (SELECT height FROM kept)
                """,
                {"chain": chain_id, "cutoff": older_than_ns},
            )
            # (cursor.rowcount is -1 for a statement starting with WITH; ask SQLite.)
            deleted = int(conn.execute("SELECT changes()").fetchone()[0])
            conn.execute("DELETE FROM temp.prune_keep")
            return deleted

        return await self._write(write)

    async def note_evidence_heights(self, chain_id: str, heights: Mapping[int, int]) -> None:
        check_chain_id(chain_id)
        rows = [(chain_id, h, t) for h, t in check_evidence_heights(heights)]
        if not rows:
            return

        def write(conn: sqlite3.Connection) -> None:
            conn.executemany(
                "INSERT INTO evidence_heights (chain_id, height, used_at_ns) VALUES (?, ?, ?) "
                "ON CONFLICT (chain_id, height) DO UPDATE SET "
                "used_at_ns = max(used_at_ns, excluded.used_at_ns)",
                rows,
            )

        await self._write(write)

    async def evidence_heights(self, chain_id: str, *, since_ns: int) -> list[int]:
        check_chain_id(chain_id)

        def read(conn: sqlite3.Connection) -> list[int]:
            rows = conn.execute(
                "SELECT height FROM evidence_heights WHERE chain_id = ? AND used_at_ns >= ? "
                "ORDER BY height",
                (chain_id, int(since_ns)),
            )
            return [int(r[0]) for r in rows]

        return await self._read(read)

    async def forget_evidence_heights(self, chain_id: str, *, older_than_ns: int) -> int:
        check_chain_id(chain_id)

        def write(conn: sqlite3.Connection) -> int:
            cur = conn.execute(
                "DELETE FROM evidence_heights WHERE chain_id = ? AND used_at_ns < ?",
                (chain_id, int(older_than_ns)),
            )
            return int(cur.rowcount)

        return await self._write(write)

    async def stats(self) -> StoreStats:
        def read(conn: sqlite3.Connection) -> tuple[int, int, int, int]:
            conn.execute("BEGIN")  # one snapshot for all counts
            try:
                chains = conn.execute("SELECT count(*) FROM chains").fetchone()[0]
                states = conn.execute("SELECT count(*) FROM consensus_states").fetchone()[0]
                bad = conn.execute("SELECT count(*) FROM misbehaviour").fetchone()[0]
                version = conn.execute("SELECT max(version) FROM schema_migrations").fetchone()[0]
            finally:
                conn.execute("COMMIT")
            return chains, states, bad, version

        chains, states, bad, version = await self._read(read)
        size = 0
        for p in (self.path, _wal_path(self.path)):
            with contextlib.suppress(FileNotFoundError):
                size += p.stat().st_size
        return StoreStats(
            chains=chains,
            consensus_states=states,
            misbehaviour=bad,
            size_bytes=size,
            schema_version=version,
        )

    # ------------------------------------------------------------------ audit log

    async def append_audit_leaves(
        self,
        leaves: Sequence[tuple[bytes, bytes, str, int]],
        *,
        first_index: int | None = None,
    ) -> int:
        rows = [(bytes(e), bytes(h), str(c)[:MAX_TEXT_LENGTH], int(t)) for e, h, c, t in leaves]
        if first_index is None and 0 < len(rows) <= _AUDIT_CHUNK:
            return await self._append_audit_next(rows)
        if first_index is None:
            # The next free index, found and used in one transaction.
            def write(conn: sqlite3.Connection) -> int:
                (size,) = conn.execute(
                    "SELECT coalesce(max(idx) + 1, 0) FROM audit_leaves"
                ).fetchone()
                conn.executemany(
                    "INSERT INTO audit_leaves (idx, entry, leaf_hash, court, at_ns)"
                    " VALUES (?, ?, ?, ?, ?)",
                    [(size + i, *row) for i, row in enumerate(rows)],
                )
                return int(size) + len(rows)

            return await self._write(write)
        if not rows:
            return first_index
        if len(rows) > _AUDIT_CHUNK:
            for start in range(0, len(rows), _AUDIT_CHUNK):
                await self.append_audit_leaves(
                    rows[start : start + _AUDIT_CHUNK], first_index=first_index + start
                )
            return first_index + len(rows)
        values: list[Any] = []
        for i, row in enumerate(rows):
            values.extend((first_index + i, *row))
        sql = "INSERT INTO audit_leaves (idx, entry, leaf_hash, court, at_ns) VALUES " + ",".join(
            ["(?, ?, ?, ?, ?)"] * len(rows)
        )

        # One statement in autocommit mode (its own durable transaction), not _write's
        # BEGIN/statements/COMMIT: every sqlite3 call releases and re-takes the GIL, and on a
        # busy event loop each re-take can wait a whole switch interval. This is on the query
        # path (group commit of audit entries, relay/audit/log.py).
        def run() -> None:
            try:
                self._conn.execute(sql, values)
            except sqlite3.IntegrityError as exc:
                raise StoreIntegrityError(
                    f"audit rows from {first_index} already exist: the audit log changed "
                    "behind the relay"
                ) from exc
            except sqlite3.Error as exc:
                raise self._translate(exc) from exc

        self._check_usable()
        await asyncio.get_running_loop().run_in_executor(self._writer, run)
        return first_index + len(rows)

    # The next free audit index, known to the writer thread (None: read it first). This
    # process is the database's only writer (the lock file), so after one read the count
    # is exact; a row inserted from outside makes the insert fail, and the count is read
    # again (relay/audit/log.py then finds the outside row when it checks the log).
    _audit_next: int | None = None

    async def _append_audit_next(self, rows: list[tuple[bytes, bytes, str, int]]) -> int:
        """Append at the next free indexes in one autocommit statement (the fast path of the
        group commit: no BEGIN/COMMIT round trips on the writer thread)."""
        sql = "INSERT INTO audit_leaves (idx, entry, leaf_hash, court, at_ns) VALUES " + ",".join(
            ["(?, ?, ?, ?, ?)"] * len(rows)
        )

        def run() -> int:
            for attempt in (0, 1):
                if self._audit_next is None or attempt:
                    (size,) = self._conn.execute(
                        "SELECT coalesce(max(idx) + 1, 0) FROM audit_leaves"
                    ).fetchone()
                    self._audit_next = int(size)
                first = self._audit_next
                values: list[Any] = []
                for i, row in enumerate(rows):
                    values.extend((first + i, *row))
                try:
                    self._conn.execute(sql, values)
                except sqlite3.IntegrityError:
                    self._audit_next = None
                    if attempt:
                        raise
                    continue
                except sqlite3.Error:
                    self._audit_next = None
                    raise
                self._audit_next = first + len(rows)
                return first + len(rows)
            raise AssertionError("unreachable")  # pragma: no cover

        def guarded() -> int:
            try:
                return run()
            except sqlite3.IntegrityError as exc:
                raise StoreIntegrityError(
                    f"audit rows could not be appended after the stored ones: {exc}"
                ) from exc
            except sqlite3.Error as exc:
                raise self._translate(exc) from exc

        self._check_usable()
        return await asyncio.get_running_loop().run_in_executor(self._writer, guarded)

    async def audit_size(self) -> int:
        def read(conn: sqlite3.Connection) -> int:
            (size,) = conn.execute("SELECT coalesce(max(idx) + 1, 0) FROM audit_leaves").fetchone()
            return int(size)

        return await self._read(read)

    async def audit_leaves(
        self,
        *,
        start: int = 0,
        end: int | None = None,
        court: str | None = None,
        limit: int | None = None,
    ) -> list[AuditLeafRecord]:
        stop = MAX_INT64 if end is None else end
        sql = "SELECT idx, entry, leaf_hash, court, at_ns FROM audit_leaves WHERE idx >= ?"
        sql += " AND idx < ?"
        args: list[Any] = [start, stop]
        if court is not None:
            sql += " AND court = ?"
            args.append(court)
        sql += " ORDER BY idx"
        if limit is not None:
            sql += " LIMIT ?"
            args.append(max(0, limit))

        def read(conn: sqlite3.Connection) -> list[AuditLeafRecord]:
            return [
                AuditLeafRecord(int(r[0]), bytes(r[1]), bytes(r[2]), str(r[3]), int(r[4]))
                for r in conn.execute(sql, args)
            ]

        return await self._read(read)

    async def put_audit_checkpoint(
        self, checkpoint: AuditCheckpointRecord, *, lease: Lease | None = None
    ) -> AuditCheckpointRecord:
        c = checkpoint

        def write(conn: sqlite3.Connection) -> AuditCheckpointRecord:
            if lease is not None:
                _fence(conn, lease.chain_id, lease.token, self._clock())
            row = conn.execute(
                "SELECT size, root, note, at_ns FROM audit_checkpoints WHERE size = ?", (c.size,)
            ).fetchone()
            if row is not None:
                stored = AuditCheckpointRecord(int(row[0]), bytes(row[1]), bytes(row[2]), row[3])
                return check_same_checkpoint(stored, c)
            conn.execute(
                "INSERT INTO audit_checkpoints (size, root, note, at_ns) VALUES (?, ?, ?, ?)",
                (c.size, c.root, c.note, c.at_ns),
            )
            return c

        return await self._write(write)

    async def audit_checkpoints(
        self, *, min_size: int = 0, limit: int | None = None, newest_first: bool = False
    ) -> list[AuditCheckpointRecord]:
        order = "DESC" if newest_first else "ASC"
        rows = MAX_INT64 if limit is None else max(0, min(int(limit), MAX_INT64))

        def read(conn: sqlite3.Connection) -> list[AuditCheckpointRecord]:
            return [
                AuditCheckpointRecord(int(r[0]), bytes(r[1]), bytes(r[2]), int(r[3]))
                for r in conn.execute(
                    "SELECT size, root, note, at_ns FROM audit_checkpoints WHERE size >= ?"
                    f" ORDER BY size {order} LIMIT ?",
                    (max(0, min(int(min_size), MAX_INT64)), rows),
                )
            ]

        return await self._read(read)

    # ------------------------------------------------------------------ sync leases

    async def acquire_lease(self, chain_id: str, *, owner: str, ttl_s: float) -> Lease | None:
        check_chain_id(chain_id)
        check_owner(owner)
        ttl_ns = lease_ttl_ns(ttl_s)

        def write(conn: sqlite3.Connection) -> Lease | None:
            now = self._clock()
            row = conn.execute(
                "SELECT owner, token, expires_at_ns FROM sync_leases WHERE chain_id = ?",
                (chain_id,),
            ).fetchone()
            lease = next_lease(chain_id, owner, row, now_ns=now, ttl_ns=ttl_ns)
            if lease is not None:
                conn.execute(
                    "INSERT INTO sync_leases (chain_id, owner, token, expires_at_ns,"
                    " acquired_at_ns) VALUES (?, ?, ?, ?, ?) ON CONFLICT (chain_id) DO UPDATE"
                    " SET owner = excluded.owner, token = excluded.token,"
                    " expires_at_ns = excluded.expires_at_ns,"
                    " acquired_at_ns = CASE WHEN sync_leases.token = excluded.token"
                    " THEN sync_leases.acquired_at_ns ELSE excluded.acquired_at_ns END",
                    (chain_id, lease.owner, lease.token, lease.expires_at_ns, now),
                )
            return lease

        return await self._write(write)

    async def renew_lease(self, lease: Lease, *, ttl_s: float) -> Lease:
        ttl_ns = lease_ttl_ns(ttl_s)

        def write(conn: sqlite3.Connection) -> Lease:
            now = self._clock()
            _fence(conn, lease.chain_id, lease.token, now)
            expires = min(now + ttl_ns, MAX_INT64)
            conn.execute(
                "UPDATE sync_leases SET expires_at_ns = ? WHERE chain_id = ? AND token = ?",
                (expires, lease.chain_id, lease.token),
            )
            return Lease(
                chain_id=lease.chain_id, owner=lease.owner, token=lease.token, expires_at_ns=expires
            )

        return await self._write(write)

    async def release_lease(self, lease: Lease) -> None:
        def write(conn: sqlite3.Connection) -> None:
            conn.execute(
                "UPDATE sync_leases SET expires_at_ns = min(expires_at_ns, ?)"
                " WHERE chain_id = ? AND token = ?",
                (self._clock(), lease.chain_id, lease.token),
            )

        await self._write(write)

    async def get_lease(self, chain_id: str) -> Lease | None:
        def read(conn: sqlite3.Connection) -> Lease | None:
            row = conn.execute(
                "SELECT owner, token, expires_at_ns FROM sync_leases WHERE chain_id = ?",
                (chain_id,),
            ).fetchone()
            if row is None:
                return None
            return Lease(chain_id=chain_id, owner=row[0], token=row[1], expires_at_ns=row[2])

        return await self._point_read(read)

    # ------------------------------------------------------------------ access records

    async def record_admin_action(
        self,
        *,
        at_ns: int,
        actor: str,
        role: str,
        action: str,
        target: str,
        outcome: str,
        detail: str,
    ) -> None:
        def write(conn: sqlite3.Connection) -> None:
            conn.execute(
                "INSERT INTO admin_actions (at_ns, actor, role, action, target, outcome, detail)"
                " VALUES (?, ?, ?, ?, ?, ?, ?)",
                (at_ns, actor, role, action, target, outcome, detail),
            )

        await self._write(write)

    async def admin_actions(self) -> list[AdminActionRecord]:
        def read(conn: sqlite3.Connection) -> list[AdminActionRecord]:
            return [admin_action_from_row(r) for r in conn.execute(ADMIN_ACTIONS_SELECT)]

        return await self._read(read)

    async def insert_proposal(
        self,
        *,
        proposal_id: str,
        institution: str,
        nonce: bytes,
        kind: str,
        chain_id: str,
        signed: bytes,
        submitted_by: str,
        submitted_at_ns: int,
        expires_at_ns: int,
    ) -> None:
        def write(conn: sqlite3.Connection) -> None:
            seen = conn.execute(
                "SELECT 1 FROM proposal_nonces WHERE institution = ? AND nonce = ?",
                (institution, nonce),
            ).fetchone()
            if seen is not None:
                raise NonceReplayedError(
                    f"institution {institution} already used this nonce; a replayed "
                    "proposal is refused",
                    institution=institution,
                )
            conn.execute(
                "INSERT INTO proposal_nonces (institution, nonce, expires_at_ns) VALUES (?, ?, ?)",
                (institution, nonce, expires_at_ns),
            )
            conn.execute(
                "INSERT INTO proposals (proposal_id, institution, kind, chain_id, state, signed,"
                " submitted_by, submitted_at_ns, expires_at_ns, updated_at_ns)"
                " VALUES (?, ?, ?, ?, 'pending', ?, ?, ?, ?, ?)",
                (proposal_id, institution, kind, chain_id, signed, submitted_by,
                 submitted_at_ns, expires_at_ns, submitted_at_ns),
            )  # fmt: skip

        await self._write(write)

    async def decide_proposal(
        self,
        *,
        proposal_id: str,
        operator_id: str,
        decision: str,
        comment: str,
        now_ns: int,
        required: int,
    ) -> tuple[str, int]:
        pid = proposal_id

        def write(conn: sqlite3.Connection) -> tuple[str, int]:
            row = conn.execute(
                "SELECT state, expires_at_ns FROM proposals WHERE proposal_id = ?", (pid,)
            ).fetchone()
            if row is None:
                raise ProposalNotFoundError(f"no proposal {pid[:64]!r}")
            state, expires = row
            if state == "pending" and expires <= now_ns:
                conn.execute(
                    "UPDATE proposals SET state = 'expired', updated_at_ns = ? "
                    "WHERE proposal_id = ?",
                    (now_ns, pid),
                )
                return "expired", 0
            if state != "pending":
                raise ProposalClosedError(f"proposal {pid[:16]}... is already {state}")
            if conn.execute(
                "SELECT 1 FROM proposal_decisions WHERE proposal_id = ? AND operator_id = ?",
                (pid, operator_id),
            ).fetchone():
                raise ProposalClosedError(
                    f"{operator_id} already decided on proposal {pid[:16]}...; k of n needs "
                    "distinct operators"
                )
            conn.execute(
                "INSERT INTO proposal_decisions (proposal_id, operator_id, decision, comment,"
                " decided_at_ns) VALUES (?, ?, ?, ?, ?)",
                (pid, operator_id, decision, comment, now_ns),
            )
            (approvals,) = conn.execute(
                "SELECT count(*) FROM proposal_decisions WHERE proposal_id = ? AND "
                "decision = 'approve'",
                (pid,),
            ).fetchone()
            if decision == "reject":
                conn.execute(
                    "UPDATE proposals SET state = 'rejected', updated_at_ns = ? "
                    "WHERE proposal_id = ?",
                    (now_ns, pid),
                )
                return "rejected", int(approvals)
            return ("apply" if approvals >= required else "pending"), int(approvals)

        return await self._write(write)

    async def finish_proposal(
        self, proposal_id: str, *, state: str, message: str, now_ns: int
    ) -> None:
        def write(conn: sqlite3.Connection) -> None:
            conn.execute(
                "UPDATE proposals SET state = ?, status_message = ?, updated_at_ns = ? "
                "WHERE proposal_id = ? AND state = 'pending'",
                (state, message, now_ns, proposal_id),
            )

        await self._write(write)

    async def list_proposals(
        self,
        *,
        proposal_id: str | None = None,
        institution: str | None = None,
        state: str | None = None,
        limit: int,
    ) -> list[ProposalRecord]:
        where, args = [], []
        for column, value in (
            ("proposal_id", proposal_id),
            ("institution", institution),
            ("state", state),
        ):
            if value is not None:
                where.append(f"{column} = ?")
                args.append(value)
        sql = (
            "SELECT proposal_id, institution, kind, chain_id, state, status_message, signed,"
            " submitted_by, submitted_at_ns, expires_at_ns FROM proposals"
            + (" WHERE " + " AND ".join(where) if where else "")
            + " ORDER BY submitted_at_ns DESC, proposal_id LIMIT ?"
        )

        def read(conn: sqlite3.Connection) -> list[ProposalRecord]:
            conn.execute("BEGIN")  # proposals and their decisions from one snapshot
            try:
                out = []
                for row in conn.execute(sql, [*args, max(0, limit)]).fetchall():
                    decisions = conn.execute(
                        "SELECT operator_id, decision, comment, decided_at_ns FROM "
                        "proposal_decisions WHERE proposal_id = ? ORDER BY decided_at_ns",
                        (row[0],),
                    ).fetchall()
                    out.append(_proposal_from_row(row, decisions))
            finally:
                conn.execute("COMMIT")
            return out

        return await self._read(read)


def _proposal_from_row(row: Sequence[Any], decisions: Sequence[Sequence[Any]]) -> ProposalRecord:
    return ProposalRecord(
        proposal_id=row[0],
        institution=row[1],
        kind=row[2],
        chain_id=row[3],
        state=row[4],
        status_message=row[5],
        signed=bytes(row[6]),
        submitted_by=row[7],
        submitted_at_ns=row[8],
        expires_at_ns=row[9],
        decisions=tuple(
            ProposalDecisionRecord(
                operator_id=d[0], decision=d[1], comment=d[2], decided_at_ns=d[3]
            )
            for d in decisions
        ),
    )


# ---------------------------------------------------------------------- write helpers
# These run on the writer thread inside the caller's transaction.


def _fence(conn: sqlite3.Connection, chain_id: str, fence: int | None, now: int) -> None:
    if fence is None:
        return
    row = conn.execute(
        "SELECT token, expires_at_ns FROM sync_leases WHERE chain_id = ?", (chain_id,)
    ).fetchone()
    check_fence(chain_id, fence, None if row is None else (int(row[0]), int(row[1])), now_ns=now)


def _chain_status(conn: sqlite3.Connection, chain_id: str) -> ChainStatus:
    row = conn.execute("SELECT status FROM chains WHERE chain_id = ?", (chain_id,)).fetchone()
    if row is None:
        raise UnknownChainError(chain_id)
    return ChainStatus(row[0])


def _check_client_state(client_state: object, latest_height: object, revision: object) -> None:
    if type(client_state) is not bytes:
        raise InvalidRecordError("client_state must be bytes")
    check_height(latest_height, "latest_height")
    if revision is not None and (type(revision) is not int or revision < 1):
        raise InvalidRecordError("expected_revision must be None or a positive integer")


def _check_revision(conn: sqlite3.Connection, chain_id: str, expected: int | None) -> int | None:
    row = conn.execute(
        "SELECT revision FROM client_states WHERE chain_id = ?", (chain_id,)
    ).fetchone()
    actual = None if row is None else int(row[0])
    if actual != expected:
        raise StaleRevisionError(chain_id=chain_id, expected=expected, actual=actual)
    return actual


def _has_state(conn: sqlite3.Connection, chain_id: str, height: int) -> bool:
    row = conn.execute(
        "SELECT 1 FROM consensus_states WHERE chain_id = ? AND height = ?", (chain_id, height)
    ).fetchone()
    return row is not None


def _insert_states(
    conn: sqlite3.Connection,
    chain_id: str,
    anchor_height: int,
    states: Sequence[ConsensusStateRecord],
    now: int,
    *,
    lease_token: int | None = None,
) -> None:
    added: dict[int, ConsensusStateRecord] = {}
    for rec in states:
        prior = added.get(rec.height)
        if prior is None:
            row = conn.execute(
                f"SELECT {CS_COLUMNS} FROM consensus_states WHERE chain_id = ? AND height = ?",
                (chain_id, rec.height),
            ).fetchone()
            prior = None if row is None else cs_from_row(row)
        if prior is not None:
            check_against_stored(chain_id, rec, prior)
            continue  # identical header: idempotent
        parent = parent_to_check(chain_id, rec, anchor_height=anchor_height)
        if parent is not None and parent not in added and not _has_state(conn, chain_id, parent):
            raise parent_not_stored(chain_id, rec)
        conn.execute(
            "INSERT INTO consensus_states (chain_id, height, time_ns, root, header_hash, "
            "next_validators_hash, light_block, trusted_from, created_at_ns, lease_token) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (
                chain_id,
                rec.height,
                rec.time_ns,
                rec.root,
                rec.header_hash,
                rec.next_validators_hash,
                rec.light_block,
                rec.trusted_from,
                now,
                lease_token,
            ),
        )
        added[rec.height] = rec


def _write_client_state(
    conn: sqlite3.Connection,
    chain_id: str,
    state: bytes,
    latest_height: int,
    current: int | None,
    now: int,
) -> int:
    if current is None:
        conn.execute(
            "INSERT INTO client_states (chain_id, state, latest_height, revision, updated_at_ns) "
            "VALUES (?, ?, ?, 1, ?)",
            (chain_id, state, latest_height, now),
        )
        return 1
    conn.execute(
        "UPDATE client_states SET state = ?, latest_height = ?, revision = revision + 1, "
        "updated_at_ns = ? WHERE chain_id = ? AND revision = ?",
        (state, latest_height, now, chain_id, current),
    )
    return current + 1


# ---------------------------------------------------------------------- opening helpers
# These run on the writer thread before the store exists.


def _open_writer(
    path: Path,
    *,
    create: bool,
    full_check: bool,
    migrations: tuple[Migration, ...],
    clock: Callable[[], int],
    busy_timeout_ms: int,
) -> tuple[sqlite3.Connection, int]:
    lock_fd = _acquire_lock(path)
    try:
        if not path.exists():
            if not create:
                raise StoreError(f"relay database {path} does not exist")
            _create(path, migrations=migrations, clock=clock)
        _check_file(path)
        conn = _connect(path, busy_timeout_ms)
        try:
            try:
                # Check before configuring: nothing is written to a file that fails.
                _check_integrity(conn, path, full=full_check)
                _configure(conn, path)
            except sqlite3.Error as exc:
                if _is_corruption(exc):
                    raise StoreCorruptError(str(path), f"SQLite reported: {exc}") from exc
                raise StoreError(f"cannot open relay database {path}: {exc}") from exc
            _migrate(conn, path, migrations, clock)
        except BaseException:
            conn.close()
            raise
    except BaseException:
        os.close(lock_fd)
        raise
    return conn, lock_fd


def _acquire_lock(path: Path) -> int:
    lock_path = path.with_name(path.name + ".lock")
    fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        raise StoreLockedError(
            f"relay database {path} is already open in another process or store "
            f"(lock {lock_path} is held); only one writer may run",
            path=str(path),
        ) from None
    return fd


def _connect(path: Path, busy_timeout_ms: int) -> sqlite3.Connection:
    return sqlite3.connect(
        path, isolation_level=None, check_same_thread=False, timeout=busy_timeout_ms / 1000
    )


def _create(path: Path, *, migrations: tuple[Migration, ...], clock: Callable[[], int]) -> None:
    """Build a complete database under a temporary name, then rename it into place: a crash
    while creating leaves no half-made file at ``path``."""
    tmp = path.with_name(path.name + ".creating")
    for leftover in (tmp, _wal_path(tmp), tmp.with_name(tmp.name + "-shm")):
        leftover.unlink(missing_ok=True)
    conn = _connect(tmp, 5000)
    try:
        conn.execute("PRAGMA journal_mode = WAL")
        conn.execute("PRAGMA synchronous = FULL")
        conn.execute("BEGIN IMMEDIATE")
        conn.execute(f"PRAGMA application_id = {APPLICATION_ID}")
        conn.execute(_SCHEMA_MIGRATIONS_DDL)
        conn.execute("COMMIT")
        _migrate(conn, tmp, migrations, clock)
    finally:
        conn.close()  # checkpoints the WAL into the file and removes it
    with open(tmp, "rb+") as f:
        os.fsync(f.fileno())
    os.rename(tmp, path)
    _fsync_dir(path.parent)


def _check_file(path: Path) -> None:
    """Check the database header before SQLite reads anything (fileformat2.html §1.3)."""
    where = str(path)
    size = path.stat().st_size
    if size == 0:
        raise StoreCorruptError(where, "the file is empty")
    with open(path, "rb") as f:
        header = f.read(100)
    if len(header) < 100 or not header.startswith(_MAGIC):
        raise StoreCorruptError(where, "the file does not start with an SQLite header")
    app_id = int.from_bytes(header[68:72], "big")
    if app_id != APPLICATION_ID:
        raise StoreCorruptError(
            where,
            f"it is not a relay database (application_id {app_id:#010x}, "
            f"expected {APPLICATION_ID:#010x})",
        )
    page_size = int.from_bytes(header[16:18], "big")
    page_size = 65536 if page_size == 1 else page_size
    if page_size < 512 or page_size & (page_size - 1):
        raise StoreCorruptError(where, f"the header's page size {page_size} is invalid")
    wal = _wal_path(path)
    if wal.exists() and wal.stat().st_size > 0:
        return  # pages may still live in the WAL; quick_check covers the combined state
    if size % page_size:
        raise StoreCorruptError(
            where, f"its size {size} is not a multiple of the page size {page_size} (truncated?)"
        )
    page_count = int.from_bytes(header[28:32], "big")
    header_count_valid = header[24:28] == header[92:96] and page_count > 0
    if header_count_valid and size < page_count * page_size:
        raise StoreCorruptError(
            where,
            f"it holds {size // page_size} pages but its header says {page_count} (truncated)",
        )


def _configure(conn: sqlite3.Connection, path: Path) -> None:
    mode = conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]
    if str(mode).lower() != "wal":
        raise StoreError(f"cannot put relay database {path} in WAL mode (got {mode!r})")
    conn.execute("PRAGMA synchronous = FULL")  # fsync the WAL at every commit
    conn.execute("PRAGMA foreign_keys = ON")
    conn.execute("PRAGMA temp_store = MEMORY")
    conn.execute("PRAGMA journal_size_limit = 67108864")
    conn.execute("PRAGMA cache_size = -8192")


def _check_integrity(conn: sqlite3.Connection, path: Path, *, full: bool) -> None:
    pragma = "integrity_check" if full else "quick_check"
    rows = [r[0] for r in conn.execute(f"PRAGMA {pragma}(20)")]
    if rows != ["ok"]:
        raise StoreCorruptError(str(path), f"{pragma} failed: " + "; ".join(map(str, rows[:5])))
    app_id = conn.execute("PRAGMA application_id").fetchone()[0]
    if app_id != APPLICATION_ID:
        raise StoreCorruptError(str(path), f"application_id is {app_id:#010x} after recovery")
    has_table = conn.execute(
        "SELECT 1 FROM sqlite_schema WHERE type = 'table' AND name = 'schema_migrations'"
    ).fetchone()
    if has_table is None:
        raise StoreCorruptError(str(path), "it has no schema_migrations table")


def _migrate(
    conn: sqlite3.Connection,
    path: Path,
    migrations: tuple[Migration, ...],
    clock: Callable[[], int],
) -> None:
    applied = conn.execute(
        "SELECT version, name, checksum FROM schema_migrations ORDER BY version"
    ).fetchall()
    shipped = {m.version: m for m in migrations}
    newest = migrations[-1].version if migrations else 0
    for index, (version, name, checksum) in enumerate(applied, start=1):
        m = shipped.get(version)
        if m is None:
            raise MigrationError(
                f"relay database {path} has schema migration {version:04d}_{name} applied, but "
                f"this relay only knows migrations up to {newest:04d}: run a relay build at "
                "least as new as the one that last opened it, or restore a backup",
                path=str(path),
                version=version,
            )
        if version != index:
            raise MigrationError(
                f"relay database {path} lacks schema migration {index:04d} but has "
                f"{version:04d}; restore a backup",
                path=str(path),
            )
        if (m.name, m.checksum) != (name, checksum):
            raise MigrationError(
                f"schema migration {version:04d}_{name} applied to {path} differs from the "
                f"shipped {m.version:04d}_{m.name} (checksums differ): a released migration "
                "was edited, or another build wrote this database. Refusing to start; ship "
                "schema changes as new migrations",
                path=str(path),
                version=version,
                expected=checksum,
                calculated=m.checksum,
            )
    for m in migrations[len(applied) :]:
        try:
            # executescript runs the whole file; the explicit BEGIN makes it one
            # transaction with the bookkeeping row.
            conn.executescript("BEGIN IMMEDIATE;\n" + m.sql)
            conn.execute(
                "INSERT INTO schema_migrations (version, name, checksum, applied_at_ns) "
                "VALUES (?, ?, ?, ?)",
                (m.version, m.name, m.checksum, clock()),
            )
            conn.execute("COMMIT")
        except sqlite3.Error as exc:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise MigrationError(
                f"schema migration {m.version:04d}_{m.name} failed on {path}: {exc}",
                path=str(path),
                version=m.version,
            ) from exc


if TYPE_CHECKING:

    def _conforms(store: SQLiteStore) -> Store:
        return store
