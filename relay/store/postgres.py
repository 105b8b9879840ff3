"""The PostgreSQL implementation of :class:`relay.store.base.Store` (issue 9), for several
relay replicas sharing one database.

Driver: asyncpg (https://magicstack.github.io/asyncpg/), a connection pool; nothing blocks
the event loop. Every write is one transaction (PostgreSQL commits durably under the
server's ``synchronous_commit``); writes that touch a chain first lock its ``chains`` row
(``SELECT ... FOR UPDATE``), so concurrent writers of one chain — a sync owner and replicas
verifying on demand — are serialised and see each other's commits: the same identical
re-insert is a no-op, a different header is a ConflictError, a stale revision is refused.
Writes are shielded from the caller's cancellation: once handed to the database they
commit whole or not at all, and the client state's revision tells which.

Migrations are the ``NNNN_name.postgresql.sql`` files beside the SQLite ones, with the same
versions, names and checksum rules (:mod:`relay.store.migrations`). They run under a
session-level advisory lock (``pg_advisory_lock``), so replicas starting together apply
each migration exactly once and the others wait and then check what was applied.

Sync leases (:meth:`PostgresStore.acquire_lease`) use the database server's clock, the one
clock every replica shares; a fencing check reads the lease row ``FOR SHARE`` inside the
write's transaction, so a takeover either commits before the write (which is then refused)
or waits for it.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Collection, Mapping, Sequence
from typing import TYPE_CHECKING, Any, TypeVar

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
    StoreError,
    StoreIntegrityError,
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

try:
    import asyncpg
except ImportError:  # pragma: no cover - reported when a postgres store is opened
    asyncpg = None

T = TypeVar("T")
Conn = Any  # asyncpg.Connection / pool proxy (asyncpg ships no type hints)

# Key of the session advisory lock held while migrating ("JRLY" like SQLite's application_id).
MIGRATION_LOCK_KEY = 0x4A524C59_00000001

_SCHEMA_MIGRATIONS_DDL = """
CREATE TABLE IF NOT EXISTS schema_migrations (
    version        BIGINT  PRIMARY KEY,
    name           TEXT    NOT NULL,
    checksum       TEXT    NOT NULL,
    applied_at_ns  BIGINT  NOT NULL
)
"""

_CHAIN_COLUMNS = (
    "chain_id, domain, client_type, descriptor, status, status_reason, anchor_height, "
    "created_at_ns, updated_at_ns"
)
_CS_QUALIFIED = ", ".join("cs." + c.strip() for c in CS_COLUMNS.split(","))
# The database server's clock in nanoseconds (leases; shared by every replica).
_NOW_NS = "(extract(epoch from clock_timestamp()) * 1000000000)::bigint"


def _redact(dsn: str) -> str:
    """The DSN without its password, for messages."""
    if "@" not in dsn or "://" not in dsn:
        return dsn
    scheme, rest = dsn.split("://", 1)
    creds, host = rest.rsplit("@", 1)
    return f"{scheme}://{creds.split(':', 1)[0]}@{host}"


async def _insert_chain(conn: Conn, chain: ChainRecord, now: int) -> bool:
    """Insert ``chain`` unless its id is stored; whether it was inserted."""
    inserted = await conn.fetchval(
        f"INSERT INTO chains ({_CHAIN_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $8) "
        "ON CONFLICT (chain_id) DO NOTHING RETURNING chain_id",
        chain.chain_id,
        chain.domain,
        chain.client_type.value,
        chain.descriptor,
        chain.status.value,
        chain.status_reason,
        chain.anchor_height,
        now,
    )
    return inserted is not None


class PostgresStore:
    """PostgreSQL-backed :class:`~relay.store.base.Store`. Create with :meth:`open`."""

    def __init__(self, *, pool: Any, where: str, clock: Callable[[], int]) -> None:
        self._pool = pool
        self.where = where
        self._clock = clock
        self._closed = False
        self._writes: set[asyncio.Task[Any]] = set()

    # ------------------------------------------------------------------ opening

    @classmethod
    async def open(
        cls,
        dsn: str,
        *,
        pool_size: int = 8,
        migrations: Sequence[Migration] | None = None,
        clock: Callable[[], int] | None = None,
        connect_timeout_s: float = 10.0,
        command_timeout_s: float = 60.0,
        idle_in_transaction_timeout_s: float = 10.0,
    ) -> PostgresStore:
        """Connect to the database at ``dsn`` (libpq URI), apply missing migrations under
        the advisory lock, and check the applied ones. ``migrations`` replaces the shipped
        ones (tests); ``clock`` stamps record times (default: ``time.time_ns``). The server
        ends a session idle inside a transaction for ``idle_in_transaction_timeout_s``: a
        replica frozen mid-write (SIGSTOP, a VM pause) must not hold its chain's row locks,
        and so block the takeover of its lease, for longer than that. Raises
        MigrationError, StoreError (unreachable server, driver missing)."""
        import time

        if asyncpg is None:
            raise StoreError(
                "the PostgreSQL store needs the asyncpg package (pip install 'asyncpg>=0.29')"
            )
        if pool_size < 1:
            raise ValueError("pool_size must be at least 1")
        shipped = (
            _migrations.load("postgresql")
            if migrations is None
            else _migrations.check_sequence(tuple(migrations))
        )
        where = _redact(dsn)
        try:
            pool = await asyncpg.create_pool(
                dsn,
                min_size=1,
                max_size=pool_size,
                timeout=connect_timeout_s,
                command_timeout=command_timeout_s,
                server_settings={
                    "idle_in_transaction_session_timeout": str(
                        max(1, int(idle_in_transaction_timeout_s * 1000))
                    )
                },
            )
        except (TimeoutError, OSError, asyncpg.PostgresError) as exc:
            raise StoreError(f"cannot connect to relay database {where}: {exc}") from exc
        except ValueError as exc:  # a malformed DSN
            raise StoreError(f"invalid relay database address: {exc}") from None
        try:
            async with pool.acquire() as conn:
                await _migrate(conn, where, shipped, clock or time.time_ns)
        except BaseException:
            await pool.close()
            raise
        return cls(pool=pool, where=where, clock=clock or time.time_ns)

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        if self._writes:
            await asyncio.gather(*self._writes, return_exceptions=True)
        await self._pool.close()

    # ------------------------------------------------------------------ plumbing

    def _check_usable(self) -> None:
        if self._closed:
            raise StoreClosedError(f"store {self.where} is closed")

    def _translate(self, exc: BaseException) -> StoreError:
        return StoreError(f"database error on {self.where}: {exc}")

    async def _write(self, fn: Callable[[Conn], Awaitable[T]]) -> T:
        """Run ``fn`` in one transaction. Shielded: a cancelled caller does not abort it."""
        self._check_usable()

        async def run() -> T:
            try:
                async with self._pool.acquire() as conn, conn.transaction():
                    return await fn(conn)
            except StoreError:
                raise
            except (asyncpg.PostgresError, asyncpg.InterfaceError, OSError) as exc:
                raise self._translate(exc) from exc

        task = asyncio.ensure_future(run())
        self._writes.add(task)
        task.add_done_callback(self._write_done)
        return await asyncio.shield(task)

    def _write_done(self, task: asyncio.Task[Any]) -> None:
        self._writes.discard(task)
        if not task.cancelled():
            # Retrieved here too: when the caller gave up (cancelled) before a write failed,
            # the error is no longer anyone's, and must not be logged as "never retrieved".
            task.exception()

    async def _read(self, fn: Callable[[Conn], Awaitable[T]], *, snapshot: bool = False) -> T:
        self._check_usable()
        try:
            async with self._pool.acquire() as conn:
                if snapshot:
                    async with conn.transaction(isolation="repeatable_read", readonly=True):
                        return await fn(conn)
                return await fn(conn)
        except StoreError:
            raise
        except (asyncpg.PostgresError, asyncpg.InterfaceError, OSError) as exc:
            raise self._translate(exc) from exc

    # ------------------------------------------------------------------ chains

    async def create_chain(self, chain: ChainRecord) -> None:
        if not isinstance(chain, ChainRecord):
            raise InvalidRecordError("create_chain takes a ChainRecord")
        now = self._clock()

        async def write(conn: Conn) -> None:
            if not await _insert_chain(conn, chain, now):
                raise ChainExistsError(chain.chain_id)

        await self._write(write)

    async def upsert_chain(self, chain: ChainRecord) -> None:
        if not isinstance(chain, ChainRecord):
            raise InvalidRecordError("upsert_chain takes a ChainRecord")
        now = self._clock()

        async def write(conn: Conn) -> None:
            if await _insert_chain(conn, chain, now):
                return
            row = await conn.fetchrow(
                "SELECT client_type, status, anchor_height FROM chains WHERE chain_id = $1 "
                "FOR UPDATE",
                chain.chain_id,
            )
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
            await conn.execute(
                "UPDATE chains SET domain = $1, descriptor = $2, status = $3, status_reason = $4, "
                "updated_at_ns = $5 WHERE chain_id = $6",
                chain.domain,
                chain.descriptor,
                chain.status.value,
                chain.status_reason,
                now,
                chain.chain_id,
            )

        await self._write(write)

    async def get_chain(self, chain_id: str) -> ChainRecord | None:
        async def read(conn: Conn) -> ChainRecord | None:
            row = await conn.fetchrow(
                f"SELECT {_CHAIN_COLUMNS} FROM chains WHERE chain_id = $1", chain_id
            )
            return None if row is None else chain_from_row(row)

        return await self._read(read)

    async def list_chains(self) -> list[ChainRecord]:
        async def read(conn: Conn) -> list[ChainRecord]:
            rows = await conn.fetch(f"SELECT {_CHAIN_COLUMNS} FROM chains ORDER BY chain_id")
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

        async def write(conn: Conn) -> None:
            current = await _lock_chain(conn, chain_id)
            await _fence(conn, chain_id, fence)
            check_status_change(chain_id, current=current, new=new)
            await conn.execute(
                "UPDATE chains SET status = $1, status_reason = $2, updated_at_ns = $3 "
                "WHERE chain_id = $4",
                new.value,
                reason,
                now,
                chain_id,
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

        async def write(conn: Conn) -> int:
            row = await conn.fetchrow(
                "SELECT status, anchor_height FROM chains WHERE chain_id = $1 FOR UPDATE",
                chain_id,
            )
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
            await _fence(conn, chain_id, fence)
            current = await _check_revision(conn, chain_id, expected_revision)
            await _insert_states(conn, chain_id, anchor_height, states, now, lease_token=fence)
            if not await _has_state(conn, chain_id, latest_height):
                raise InvalidRecordError(
                    f"client state of chain {chain_id!r} names latest height {latest_height}, "
                    "but no consensus state is stored or offered for it",
                    chain_id=chain_id,
                    height=latest_height,
                )
            return await _write_client_state(
                conn, chain_id, client_state, latest_height, current, now
            )

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

        async def write(conn: Conn) -> int:
            await _lock_chain(conn, chain_id)
            current = await _check_revision(conn, chain_id, expected_revision)
            await conn.execute("DELETE FROM consensus_states WHERE chain_id = $1", chain_id)
            await conn.execute(
                "UPDATE chains SET descriptor = $1, anchor_height = $2, status = $3, "
                "status_reason = $4, updated_at_ns = $5 WHERE chain_id = $6",
                descriptor,
                anchor.height,
                ChainStatus.ACTIVE.value,
                reason,
                now,
                chain_id,
            )
            await _insert_states(conn, chain_id, anchor.height, [anchor], now)
            return await _write_client_state(
                conn, chain_id, client_state, anchor.height, current, now
            )

        return await self._write(write)

    async def get_client_state(self, chain_id: str) -> ClientStateRecord | None:
        async def read(conn: Conn) -> ClientStateRecord | None:
            row = await conn.fetchrow(
                "SELECT state, latest_height, revision, updated_at_ns FROM client_states "
                "WHERE chain_id = $1",
                chain_id,
            )
            if row is None:
                return None
            return ClientStateRecord(
                chain_id=chain_id,
                state=bytes(row[0]),
                latest_height=row[1],
                revision=row[2],
                updated_at_ns=row[3],
            )

        return await self._read(read)

    async def get_consensus_state(self, chain_id: str, height: int) -> ConsensusStateRecord | None:
        check_height(height)

        async def read(conn: Conn) -> ConsensusStateRecord | None:
            row = await conn.fetchrow(
                f"SELECT {CS_COLUMNS} FROM consensus_states WHERE chain_id = $1 AND height = $2",
                chain_id,
                height,
            )
            return None if row is None else cs_from_row(row)

        return await self._read(read)

    async def nearest_consensus_state(
        self, chain_id: str, height: int, *, below: bool
    ) -> ConsensusStateRecord | None:
        check_height(height)
        query = (
            f"SELECT {CS_COLUMNS} FROM consensus_states WHERE chain_id = $1 AND height <= $2 "
            "ORDER BY height DESC LIMIT 1"
            if below
            else f"SELECT {CS_COLUMNS} FROM consensus_states WHERE chain_id = $1 "
            "AND height >= $2 ORDER BY height ASC LIMIT 1"
        )

        async def read(conn: Conn) -> ConsensusStateRecord | None:
            row = await conn.fetchrow(query, chain_id, height)
            return None if row is None else cs_from_row(row)

        return await self._read(read)

    async def latest_consensus_state(self, chain_id: str) -> ConsensusStateRecord | None:
        async def read(conn: Conn) -> ConsensusStateRecord | None:
            row = await conn.fetchrow(
                f"SELECT {CS_COLUMNS} FROM consensus_states WHERE chain_id = $1 "
                "ORDER BY height DESC LIMIT 1",
                chain_id,
            )
            return None if row is None else cs_from_row(row)

        return await self._read(read)

    async def list_consensus_states(
        self, chain_id: str, *, from_height: int = 0, limit: int = 1000
    ) -> list[ConsensusStateRecord]:
        check_height(from_height, "from_height")
        check_list_limit(limit)

        async def read(conn: Conn) -> list[ConsensusStateRecord]:
            rows = await conn.fetch(
                f"SELECT {CS_COLUMNS} FROM consensus_states WHERE chain_id = $1 "
                "AND height >= $2 ORDER BY height LIMIT $3",
                chain_id,
                from_height,
                limit,
            )
            return [cs_from_row(r) for r in rows]

        return await self._read(read)

    async def trust_path(
        self, chain_id: str, height: int, *, max_length: int = DEFAULT_TRUST_PATH_LIMIT
    ) -> list[ConsensusStateRecord]:
        check_height(height)
        if type(max_length) is not int or max_length < 1:
            raise ValueError("max_length must be a positive integer")
        # One round trip; depth capped at max_length so a path one too long is seen.
        query = f"""
            WITH RECURSIVE path(height, depth) AS (
                SELECT height, 0 FROM consensus_states WHERE chain_id = $1 AND height = $2
                UNION ALL
                SELECT cs.trusted_from, path.depth + 1
                FROM path JOIN consensus_states AS cs
                    ON cs.chain_id = $1 AND cs.height = path.height
                WHERE cs.trusted_from IS NOT NULL AND path.depth < $3
            )
            SELECT {_CS_QUALIFIED}
            FROM path JOIN consensus_states AS cs
                ON cs.chain_id = $1 AND cs.height = path.height
            ORDER BY path.depth DESC
        """

        async def read(conn: Conn) -> list[ConsensusStateRecord]:
            rows = await conn.fetch(query, chain_id, height, max_length)
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

        async def write(conn: Conn) -> int:
            status = await _lock_chain(conn, chain_id)
            await _fence(conn, chain_id, fence)
            record_id = await conn.fetchval(
                "INSERT INTO misbehaviour (chain_id, height, kind, evidence, detected_at_ns) "
                "VALUES ($1, $2, $3, $4, $5) RETURNING id",
                chain_id,
                height,
                kind,
                evidence,
                now,
            )
            if status != ChainStatus.FROZEN:
                await conn.execute(
                    "UPDATE chains SET status = $1, status_reason = $2, updated_at_ns = $3 "
                    "WHERE chain_id = $4",
                    ChainStatus.FROZEN.value,
                    freeze_reason,
                    now,
                    chain_id,
                )
            return int(record_id)

        return await self._write(write)

    async def list_misbehaviour(self, chain_id: str) -> list[MisbehaviourRecord]:
        async def read(conn: Conn) -> list[MisbehaviourRecord]:
            rows = await conn.fetch(
                "SELECT id, chain_id, height, kind, evidence, detected_at_ns FROM misbehaviour "
                "WHERE chain_id = $1 ORDER BY id",
                chain_id,
            )
            return [
                MisbehaviourRecord(
                    id=r[0],
                    chain_id=r[1],
                    height=r[2],
                    kind=r[3],
                    evidence=bytes(r[4]),
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

        async def write(conn: Conn) -> int:
            row = await conn.fetchrow(
                "SELECT c.anchor_height, s.latest_height FROM chains AS c "
                "LEFT JOIN client_states AS s ON s.chain_id = c.chain_id "
                "WHERE c.chain_id = $1 FOR UPDATE OF c",
                chain_id,
            )
            if row is None:
                raise UnknownChainError(chain_id)
            roots = {row[0], *keep}
            if row[1] is not None:
                roots.add(row[1])
            # Everything recent or explicitly kept, plus (recursively) every parent of a
            # kept state: what remains still reaches the anchor.
            status = await conn.execute(
                """
                WITH RECURSIVE kept(height) AS (
                    SELECT height FROM consensus_states
                    WHERE chain_id = $1 AND (
                        time_ns >= $2
                        OR height = ANY($3::bigint[])
                        OR height = (SELECT max(height) FROM consensus_states
                                     WHERE chain_id = $1)
                    )
                    UNION
                    SELECT cs.trusted_from
                    FROM kept JOIN consensus_states AS cs
                        ON cs.chain_id = $1 AND cs.height = kept.height
                    WHERE cs.trusted_from IS NOT NULL
                )
                DELETE FROM consensus_states
                WHERE chain_id = $1 AND time_ns < $2
                    AND height NOT IN (SELECT height FROM kept)
                """,
                chain_id,
                older_than_ns,
                sorted(roots),
            )
            return int(str(status).rsplit(" ", 1)[-1])

        return await self._write(write)

    async def note_evidence_heights(self, chain_id: str, heights: Mapping[int, int]) -> None:
        check_chain_id(chain_id)
        rows = [(chain_id, h, t) for h, t in check_evidence_heights(heights)]
        if not rows:
            return

        async def write(conn: Conn) -> None:
            await conn.executemany(
                "INSERT INTO evidence_heights (chain_id, height, used_at_ns) VALUES ($1, $2, $3) "
                "ON CONFLICT (chain_id, height) DO UPDATE SET "
                "used_at_ns = greatest(evidence_heights.used_at_ns, excluded.used_at_ns)",
                rows,
            )

        await self._write(write)

    async def evidence_heights(self, chain_id: str, *, since_ns: int) -> list[int]:
        check_chain_id(chain_id)

        async def read(conn: Conn) -> list[int]:
            rows = await conn.fetch(
                "SELECT height FROM evidence_heights WHERE chain_id = $1 AND used_at_ns >= $2 "
                "ORDER BY height",
                chain_id,
                int(since_ns),
            )
            return [int(r[0]) for r in rows]

        return await self._read(read)

    async def forget_evidence_heights(self, chain_id: str, *, older_than_ns: int) -> int:
        check_chain_id(chain_id)

        async def write(conn: Conn) -> int:
            status = await conn.execute(
                "DELETE FROM evidence_heights WHERE chain_id = $1 AND used_at_ns < $2",
                chain_id,
                int(older_than_ns),
            )
            return int(str(status).rsplit(" ", 1)[-1])

        return await self._write(write)

    async def stats(self) -> StoreStats:
        async def read(conn: Conn) -> tuple[int, int, int, int, int]:
            row = await conn.fetchrow(
                """
                SELECT (SELECT count(*) FROM chains),
                       (SELECT count(*) FROM consensus_states),
                       (SELECT count(*) FROM misbehaviour),
                       (SELECT max(version) FROM schema_migrations),
                       (SELECT coalesce(sum(pg_total_relation_size(c.oid)), 0)
                        FROM pg_class AS c JOIN pg_namespace AS n ON n.oid = c.relnamespace
                        WHERE n.nspname = current_schema() AND c.relkind = 'r')
                """
            )
            return int(row[0]), int(row[1]), int(row[2]), int(row[3]), int(row[4])

        chains, states, bad, version, size = await self._read(read, snapshot=True)
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

        async def write(conn: Conn) -> int:
            # One appender at a time across replicas: the next index is read under the lock.
            await conn.execute("LOCK TABLE audit_leaves IN EXCLUSIVE MODE")
            size = int(await conn.fetchval("SELECT coalesce(max(idx) + 1, 0) FROM audit_leaves"))
            if first_index is not None and first_index != size:
                # The caller's view of the log is not the stored one (a row was added or
                # removed behind its back): refuse rather than leave a gap or an overlap.
                raise StoreIntegrityError(
                    f"audit rows are expected from {first_index} but the log has {size}: the "
                    "audit log changed outside this relay; run `relay audit verify`"
                )
            await conn.executemany(
                "INSERT INTO audit_leaves (idx, entry, leaf_hash, court, at_ns)"
                " VALUES ($1, $2, $3, $4, $5)",
                [(size + i, *row) for i, row in enumerate(rows)],
            )
            return size + len(rows)

        return await self._write(write)

    async def audit_size(self) -> int:
        async def read(conn: Conn) -> int:
            return int(await conn.fetchval("SELECT coalesce(max(idx) + 1, 0) FROM audit_leaves"))

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
        sql = "SELECT idx, entry, leaf_hash, court, at_ns FROM audit_leaves WHERE idx >= $1"
        sql += " AND idx < $2"
        args: list[Any] = [start, stop]
        if court is not None:
            args.append(court)
            sql += f" AND court = ${len(args)}"
        sql += " ORDER BY idx"
        if limit is not None:
            args.append(max(0, limit))
            sql += f" LIMIT ${len(args)}"

        async def read(conn: Conn) -> list[AuditLeafRecord]:
            return [
                AuditLeafRecord(int(r[0]), bytes(r[1]), bytes(r[2]), str(r[3]), int(r[4]))
                for r in await conn.fetch(sql, *args)
            ]

        return await self._read(read)

    async def put_audit_checkpoint(
        self, checkpoint: AuditCheckpointRecord, *, lease: Lease | None = None
    ) -> AuditCheckpointRecord:
        c = checkpoint

        async def write(conn: Conn) -> AuditCheckpointRecord:
            if lease is not None:
                await _fence(conn, lease.chain_id, lease.token)
            inserted = await conn.fetchval(
                "INSERT INTO audit_checkpoints (size, root, note, at_ns) VALUES ($1, $2, $3, $4)"
                " ON CONFLICT (size) DO NOTHING RETURNING size",
                c.size,
                c.root,
                c.note,
                c.at_ns,
            )
            if inserted is not None:
                return c
            row = await conn.fetchrow(
                "SELECT size, root, note, at_ns FROM audit_checkpoints WHERE size = $1", c.size
            )
            stored = AuditCheckpointRecord(int(row[0]), bytes(row[1]), bytes(row[2]), int(row[3]))
            return check_same_checkpoint(stored, c)

        return await self._write(write)

    async def audit_checkpoints(
        self, *, min_size: int = 0, limit: int | None = None, newest_first: bool = False
    ) -> list[AuditCheckpointRecord]:
        order = "DESC" if newest_first else "ASC"
        rows = MAX_INT64 if limit is None else max(0, min(int(limit), MAX_INT64))

        async def read(conn: Conn) -> list[AuditCheckpointRecord]:
            return [
                AuditCheckpointRecord(int(r[0]), bytes(r[1]), bytes(r[2]), int(r[3]))
                for r in await conn.fetch(
                    "SELECT size, root, note, at_ns FROM audit_checkpoints WHERE size >= $1"
                    f" ORDER BY size {order} LIMIT $2",
                    max(0, min(int(min_size), MAX_INT64)),
                    rows,
                )
            ]

        return await self._read(read)

    # ------------------------------------------------------------------ sync leases

    async def acquire_lease(self, chain_id: str, *, owner: str, ttl_s: float) -> Lease | None:
        check_chain_id(chain_id)
        check_owner(owner)
        ttl_ns = lease_ttl_ns(ttl_s)

        async def write(conn: Conn) -> Lease | None:
            # Make sure the row exists, then lock it: two replicas racing for a never-leased
            # chain serialise on the row like any later takeover.
            await conn.execute(
                "INSERT INTO sync_leases (chain_id, owner, token, expires_at_ns, acquired_at_ns)"
                " VALUES ($1, '', 1, 0, 0) ON CONFLICT (chain_id) DO NOTHING",
                chain_id,
            )
            row = await conn.fetchrow(
                f"SELECT owner, token, expires_at_ns, acquired_at_ns, {_NOW_NS} FROM sync_leases "
                "WHERE chain_id = $1 FOR UPDATE",
                chain_id,
            )
            now = int(row[4])
            fresh = row[3] == 0  # the placeholder just inserted: its first term is token 1
            current = None if fresh else (row[0], int(row[1]), int(row[2]))
            lease = next_lease(chain_id, owner, current, now_ns=now, ttl_ns=ttl_ns)
            if lease is None:
                return None
            await conn.execute(
                "UPDATE sync_leases SET owner = $2, token = $3, expires_at_ns = $4,"
                " acquired_at_ns = CASE WHEN token = $3 AND acquired_at_ns > 0"
                " THEN acquired_at_ns ELSE $5 END WHERE chain_id = $1",
                chain_id,
                lease.owner,
                lease.token,
                lease.expires_at_ns,
                max(now, 1),
            )
            return lease

        return await self._write(write)

    async def renew_lease(self, lease: Lease, *, ttl_s: float) -> Lease:
        ttl_ns = lease_ttl_ns(ttl_s)

        async def write(conn: Conn) -> Lease:
            row = await conn.fetchrow(
                f"SELECT token, expires_at_ns, {_NOW_NS} FROM sync_leases WHERE chain_id = $1 "
                "FOR UPDATE",
                lease.chain_id,
            )
            now = int(row[2]) if row is not None else 0
            check_fence(
                lease.chain_id,
                lease.token,
                None if row is None else (int(row[0]), int(row[1])),
                now_ns=now,
            )
            expires = min(now + ttl_ns, MAX_INT64)
            await conn.execute(
                "UPDATE sync_leases SET expires_at_ns = $1 WHERE chain_id = $2 AND token = $3",
                expires,
                lease.chain_id,
                lease.token,
            )
            return Lease(
                chain_id=lease.chain_id, owner=lease.owner, token=lease.token, expires_at_ns=expires
            )

        return await self._write(write)

    async def release_lease(self, lease: Lease) -> None:
        async def write(conn: Conn) -> None:
            await conn.execute(
                f"UPDATE sync_leases SET expires_at_ns = least(expires_at_ns, {_NOW_NS})"
                " WHERE chain_id = $1 AND token = $2",
                lease.chain_id,
                lease.token,
            )

        await self._write(write)

    async def get_lease(self, chain_id: str) -> Lease | None:
        async def read(conn: Conn) -> Lease | None:
            row = await conn.fetchrow(
                "SELECT owner, token, expires_at_ns FROM sync_leases WHERE chain_id = $1 "
                "AND acquired_at_ns > 0",
                chain_id,
            )
            if row is None:
                return None
            return Lease(chain_id=chain_id, owner=row[0], token=row[1], expires_at_ns=row[2])

        return await self._read(read)

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
        async def write(conn: Conn) -> None:
            await conn.execute(
                "INSERT INTO admin_actions (at_ns, actor, role, action, target, outcome, detail)"
                " VALUES ($1, $2, $3, $4, $5, $6, $7)",
                at_ns,
                actor,
                role,
                action,
                target,
                outcome,
                detail,
            )

        await self._write(write)

    async def admin_actions(self) -> list[AdminActionRecord]:
        async def read(conn: Conn) -> list[AdminActionRecord]:
            return [admin_action_from_row(r) for r in await conn.fetch(ADMIN_ACTIONS_SELECT)]

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
        async def write(conn: Conn) -> None:
            # The primary key makes a racing replay fail too; ON CONFLICT tells it apart.
            burned = await conn.fetchval(
                "INSERT INTO proposal_nonces (institution, nonce, expires_at_ns)"
                " VALUES ($1, $2, $3) ON CONFLICT DO NOTHING RETURNING 1",
                institution,
                nonce,
                expires_at_ns,
            )
            if burned is None:
                raise NonceReplayedError(
                    f"institution {institution} already used this nonce; a replayed "
                    "proposal is refused",
                    institution=institution,
                )
            await conn.execute(
                "INSERT INTO proposals (proposal_id, institution, kind, chain_id, state, signed,"
                " submitted_by, submitted_at_ns, expires_at_ns, updated_at_ns)"
                " VALUES ($1, $2, $3, $4, 'pending', $5, $6, $7, $8, $7)",
                proposal_id,
                institution,
                kind,
                chain_id,
                signed,
                submitted_by,
                submitted_at_ns,
                expires_at_ns,
            )

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

        async def write(conn: Conn) -> tuple[str, int]:
            row = await conn.fetchrow(
                "SELECT state, expires_at_ns FROM proposals WHERE proposal_id = $1 FOR UPDATE",
                pid,
            )
            if row is None:
                raise ProposalNotFoundError(f"no proposal {pid[:64]!r}")
            state, expires = row
            if state == "pending" and expires <= now_ns:
                await conn.execute(
                    "UPDATE proposals SET state = 'expired', updated_at_ns = $1 "
                    "WHERE proposal_id = $2",
                    now_ns,
                    pid,
                )
                return "expired", 0
            if state != "pending":
                raise ProposalClosedError(f"proposal {pid[:16]}... is already {state}")
            inserted = await conn.fetchval(
                "INSERT INTO proposal_decisions (proposal_id, operator_id, decision, comment,"
                " decided_at_ns) VALUES ($1, $2, $3, $4, $5) ON CONFLICT DO NOTHING RETURNING 1",
                pid,
                operator_id,
                decision,
                comment,
                now_ns,
            )
            if inserted is None:
                raise ProposalClosedError(
                    f"{operator_id} already decided on proposal {pid[:16]}...; k of n needs "
                    "distinct operators"
                )
            approvals = int(
                await conn.fetchval(
                    "SELECT count(*) FROM proposal_decisions WHERE proposal_id = $1 AND "
                    "decision = 'approve'",
                    pid,
                )
            )
            if decision == "reject":
                await conn.execute(
                    "UPDATE proposals SET state = 'rejected', updated_at_ns = $1 "
                    "WHERE proposal_id = $2",
                    now_ns,
                    pid,
                )
                return "rejected", approvals
            return ("apply" if approvals >= required else "pending"), approvals

        return await self._write(write)

    async def finish_proposal(
        self, proposal_id: str, *, state: str, message: str, now_ns: int
    ) -> None:
        async def write(conn: Conn) -> None:
            await conn.execute(
                "UPDATE proposals SET state = $1, status_message = $2, updated_at_ns = $3 "
                "WHERE proposal_id = $4 AND state = 'pending'",
                state,
                message,
                now_ns,
                proposal_id,
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
        where: list[str] = []
        args: list[Any] = []
        for column, value in (
            ("proposal_id", proposal_id),
            ("institution", institution),
            ("state", state),
        ):
            if value is not None:
                args.append(value)
                where.append(f"{column} = ${len(args)}")
        args.append(max(0, limit))
        sql = (
            "SELECT proposal_id, institution, kind, chain_id, state, status_message, signed,"
            " submitted_by, submitted_at_ns, expires_at_ns FROM proposals"
            + (" WHERE " + " AND ".join(where) if where else "")
            + f" ORDER BY submitted_at_ns DESC, proposal_id LIMIT ${len(args)}"
        )

        async def read(conn: Conn) -> list[ProposalRecord]:
            out = []
            for row in await conn.fetch(sql, *args):
                decisions = await conn.fetch(
                    "SELECT operator_id, decision, comment, decided_at_ns FROM "
                    "proposal_decisions WHERE proposal_id = $1 ORDER BY decided_at_ns",
                    row[0],
                )
                out.append(
                    ProposalRecord(
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
                )
            return out

        return await self._read(read, snapshot=True)


# ---------------------------------------------------------------------- write helpers
# These run inside the caller's transaction.


async def _lock_chain(conn: Conn, chain_id: str) -> ChainStatus:
    status = await conn.fetchval(
        "SELECT status FROM chains WHERE chain_id = $1 FOR UPDATE", chain_id
    )
    if status is None:
        raise UnknownChainError(chain_id)
    return ChainStatus(status)


async def _fence(conn: Conn, chain_id: str, fence: int | None) -> None:
    if fence is None:
        return
    # FOR SHARE: a takeover (which updates the row) waits for this transaction, or this
    # one sees the takeover's newer token. Either way no write lands under a lost lease.
    row = await conn.fetchrow(
        f"SELECT token, expires_at_ns, {_NOW_NS} FROM sync_leases WHERE chain_id = $1 "
        "AND acquired_at_ns > 0 FOR SHARE",
        chain_id,
    )
    if row is None:
        check_fence(chain_id, fence, None, now_ns=0)
        return
    check_fence(chain_id, fence, (int(row[0]), int(row[1])), now_ns=int(row[2]))


def _check_client_state(client_state: object, latest_height: object, revision: object) -> None:
    if type(client_state) is not bytes:
        raise InvalidRecordError("client_state must be bytes")
    check_height(latest_height, "latest_height")
    if revision is not None and (type(revision) is not int or revision < 1):
        raise InvalidRecordError("expected_revision must be None or a positive integer")


async def _check_revision(conn: Conn, chain_id: str, expected: int | None) -> int | None:
    value = await conn.fetchval("SELECT revision FROM client_states WHERE chain_id = $1", chain_id)
    actual = None if value is None else int(value)
    if actual != expected:
        raise StaleRevisionError(chain_id=chain_id, expected=expected, actual=actual)
    return actual


async def _has_state(conn: Conn, chain_id: str, height: int) -> bool:
    value = await conn.fetchval(
        "SELECT 1 FROM consensus_states WHERE chain_id = $1 AND height = $2", chain_id, height
    )
    return value is not None


async def _insert_states(
    conn: Conn,
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
            row = await conn.fetchrow(
                f"SELECT {CS_COLUMNS} FROM consensus_states WHERE chain_id = $1 AND height = $2",
                chain_id,
                rec.height,
            )
            prior = None if row is None else cs_from_row(row)
        if prior is not None:
            check_against_stored(chain_id, rec, prior)
            continue  # identical header: idempotent
        parent = parent_to_check(chain_id, rec, anchor_height=anchor_height)
        if (
            parent is not None
            and parent not in added
            and not await _has_state(conn, chain_id, parent)
        ):
            raise parent_not_stored(chain_id, rec)
        await conn.execute(
            "INSERT INTO consensus_states (chain_id, height, time_ns, root, header_hash, "
            "next_validators_hash, light_block, trusted_from, created_at_ns, lease_token) "
            "VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
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
        )
        added[rec.height] = rec


async def _write_client_state(
    conn: Conn, chain_id: str, state: bytes, latest_height: int, current: int | None, now: int
) -> int:
    if current is None:
        await conn.execute(
            "INSERT INTO client_states (chain_id, state, latest_height, revision, updated_at_ns) "
            "VALUES ($1, $2, $3, 1, $4)",
            chain_id,
            state,
            latest_height,
            now,
        )
        return 1
    await conn.execute(
        "UPDATE client_states SET state = $1, latest_height = $2, revision = revision + 1, "
        "updated_at_ns = $3 WHERE chain_id = $4 AND revision = $5",
        state,
        latest_height,
        now,
        chain_id,
        current,
    )
    return current + 1


# ---------------------------------------------------------------------- migrations


async def _migrate(
    conn: Conn, where: str, migrations: tuple[Migration, ...], clock: Callable[[], int]
) -> None:
    """Apply missing migrations under a session advisory lock: replicas starting together
    queue here, and each sees what the first applied."""
    try:
        await conn.execute("SELECT pg_advisory_lock($1)", MIGRATION_LOCK_KEY)
    except (asyncpg.PostgresError, OSError) as exc:
        raise StoreError(f"cannot lock relay database {where} for migration: {exc}") from exc
    try:
        await _migrate_locked(conn, where, migrations, clock)
    finally:
        try:
            await conn.execute("SELECT pg_advisory_unlock($1)", MIGRATION_LOCK_KEY)
        except (asyncpg.PostgresError, asyncpg.InterfaceError, OSError):
            # The lock is session-level; closing the connection releases it anyway.
            await conn.close()


async def _migrate_locked(
    conn: Conn, where: str, migrations: tuple[Migration, ...], clock: Callable[[], int]
) -> None:
    try:
        await conn.execute(_SCHEMA_MIGRATIONS_DDL)
        applied = await conn.fetch(
            "SELECT version, name, checksum FROM schema_migrations ORDER BY version"
        )
    except asyncpg.PostgresError as exc:
        raise StoreError(f"cannot read the schema history of {where}: {exc}") from exc
    shipped = {m.version: m for m in migrations}
    newest = migrations[-1].version if migrations else 0
    for index, (version, name, checksum) in enumerate(applied, start=1):
        m = shipped.get(version)
        if m is None:
            raise MigrationError(
                f"relay database {where} has schema migration {version:04d}_{name} applied, "
                f"but this relay only knows migrations up to {newest:04d}: run a relay build at "
                "least as new as the one that last opened it, or restore a backup",
                path=where,
                version=version,
            )
        if version != index:
            raise MigrationError(
                f"relay database {where} lacks schema migration {index:04d} but has "
                f"{version:04d}; restore a backup",
                path=where,
            )
        if (m.name, m.checksum) != (name, checksum):
            raise MigrationError(
                f"schema migration {version:04d}_{name} applied to {where} differs from the "
                f"shipped {m.version:04d}_{m.name} (checksums differ): a released migration "
                "was edited, or another build wrote this database. Refusing to start; ship "
                "schema changes as new migrations",
                path=where,
                version=version,
                expected=checksum,
                calculated=m.checksum,
            )
    for m in migrations[len(applied) :]:
        try:
            async with conn.transaction():
                # No arguments: the simple query protocol runs the file's statements in order.
                await conn.execute(m.sql)
                await conn.execute(
                    "INSERT INTO schema_migrations (version, name, checksum, applied_at_ns) "
                    "VALUES ($1, $2, $3, $4)",
                    m.version,
                    m.name,
                    m.checksum,
                    clock(),
                )
        except asyncpg.PostgresError as exc:
            raise MigrationError(
                f"schema migration {m.version:04d}_{m.name} failed on {where}: {exc}",
                path=where,
                version=m.version,
            ) from exc


if TYPE_CHECKING:

    def _conforms(store: PostgresStore) -> Store:
        return store
