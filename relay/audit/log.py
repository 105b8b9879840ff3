"""The relay's tamper-evident audit log (issue 7): an append-only RFC 6962 Merkle log of
every query and admin call, kept in the store, with signed checkpoints published to the
judicial chain. One log per deployment: relay replicas sharing one PostgreSQL (issue 9)
append to the same log.

Durability and throughput (group commit): :meth:`AuditLog.append` returns only once its
entry is committed to the store (one durable transaction), and the service sends no answer
before that (relay/audit/recorder.py), so nothing is answered unrecorded. Appends waiting
while a commit is in flight are written together by the next one, so under load one commit
covers many entries and the cost per query stays small. The store assigns the indexes
(``append_audit_leaves`` without ``first_index``: atomically, under PostgreSQL's lock on
the log or SQLite's single writer), so replicas appending at once never collide and leave
no gap.

Each replica's view: the leaf hashes of the stored log up to the size it has read and
checked, plus its own entries past that (committed, their place known). Before it builds
an inclusion or consistency proof (:meth:`AuditLog.refresh`) or a checkpoint, it reads the
rows other replicas appended since (the tail), rehashes them and chains them in; rows it
had read or written itself must be unchanged.

Integrity: at start-up, and then every ``full_verify_interval``, the log re-reads every
stored leaf (in chunks of :data:`READ_CHUNK` rows, so memory stays bounded), rehashes each
entry, checks that indexes run 0..n-1 without a gap, that rows this replica already knew are
unchanged and none is missing, and that the stored checkpoints' roots are the roots of that
many rows. Before every other checkpoint it does the same for the rows appended since the
last check (the tail): what it signs is always rows it re-read, and the cost of a checkpoint
follows the traffic since the last one, not the size of the log (the root comes from the
subtree roots a :class:`~relay.verify.merkle.rfc6962.MerkleTree` keeps). A row edited
after it was checked and signed cannot change any later checkpoint (those are computed from
the verified leaf hashes in memory and must extend the signed ones); the next full check
reports it, as ``relay audit verify`` does against the signed checkpoints at any time. A
deleted, inserted or edited row makes a check fail: the log reports it (logger
``relay.audit``, error level; metric if the metrics object has
``record_audit_integrity_failure``) and refuses to sign any checkpoint until a full check
passes again. Rows merely appended by other replicas after what this one knew are accepted.

Checkpoints: one replica at a time signs, stores and publishes them, the holder of the
audit lease (the store's sync lease mechanism under the name :data:`AUDIT_LEASE`, which no
chain id can take); its checkpoint write is fenced with the lease's token, so a replica
paused past its lease cannot store one. The others serve proofs against the stored
checkpoints, each checked against the rows before it is served. Storing a checkpoint is
idempotent per size (the store keeps one note per size), so the judicial chain is never
offered two notes for one size. Signed checkpoints (relay/audit/checkpoint.py) are stored
and handed to every configured :class:`AuditSink`.

Proofs: RFC 6962 / RFC 9162 section 2.1 inclusion and consistency proofs
(relay.verify.merkle.rfc6962), computed from the leaf hashes held in memory, which are
exactly the verified stored ones: a MerkleTree (32 bytes a leaf, and the roots of its
complete subtrees of 256 leaves and more), so a proof costs O(log n) kept roots, not a
rehash of the log.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import time
from bisect import bisect_left
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import partial
from typing import Any, Protocol, TypeVar

from relay.audit.checkpoint import TREE_HASHER, audit_origin, sign_checkpoint
from relay.store.base import (
    AuditCheckpointRecord,
    AuditLeafRecord,
    Lease,
    LeaseLostError,
    StoreIntegrityError,
)
from relay.verify.merkle.rfc6962 import MerkleTree

log = logging.getLogger("relay.audit")
T = TypeVar("T")

AUDIT_LEASE = "relay/audit-checkpoints"
"""The lease name of the checkpoint signer. Chain ids are ``[A-Za-z0-9._-]`` only
(relay.verify.anchors), so no chain's sync lease can have this name."""
DEFAULT_LEASE_TTL_S = 15.0
DEFAULT_FULL_VERIFY_INTERVAL_S = 3600.0
READ_CHUNK = 10_000  # stored rows read and rehashed at a time
_INLINE_ROWS = 256  # rehash at most this many rows on the event loop; more in a thread
_CHECK_EACH = 4  # new checkpoints whose roots are each checked (more: the newest only)
# Checkpoints held in memory: the newest ones (one a minute is half a million a year), and a
# few older ones read back from the store when a proof asks for them (recall()).
_RECENT_CHECKPOINTS = 1024
_RECALLED_CHECKPOINTS = 256
_SIGNED_KEPT = 1024


async def _checked(fn: Callable[[], T], *, heavy: bool) -> T:
    """``fn()`` (a check over stored rows), in a worker thread when ``heavy`` (more rows
    than _INLINE_ROWS, or checkpoint roots), so the event loop keeps answering queries."""
    return await asyncio.to_thread(fn) if heavy else fn()


def default_replica_id() -> str:
    """``<hostname>-<pid>``, as the engine names its lease owner when the config sets none."""
    return f"{socket.gethostname()}-{os.getpid()}"[:200]


class AuditIntegrityError(Exception):
    """The stored audit log does not match itself, what this replica read or wrote of it,
    or its signed checkpoints."""

    def __init__(self, message: str, *, index: int | None = None) -> None:
        self.index = index
        super().__init__(message)


class NotCheckpointSignerError(Exception):
    """Another replica holds the audit lease: it signs this log's checkpoints."""


class AuditSink(Protocol):
    """Where signed checkpoints are published (the judicial chain)."""

    async def publish(self, checkpoint: AuditCheckpointRecord) -> None: ...


def check_leaves(leaves: Sequence[AuditLeafRecord], *, start: int = 0) -> list[bytes]:
    """The leaf hashes of ``leaves`` after checking that indexes run start, start+1... and
    each stored leaf hash is the RFC 6962 hash of its entry; raises AuditIntegrityError
    naming the first bad row."""
    hashes: list[bytes] = []
    for i, leaf in enumerate(leaves, start):
        if leaf.index != i:
            raise AuditIntegrityError(
                f"audit row {i} is missing (the next stored row is {leaf.index}): a row was "
                "deleted",
                index=i,
            )
        calculated = TREE_HASHER.hash_leaf(leaf.entry)
        if calculated != leaf.leaf_hash:
            raise AuditIntegrityError(
                f"audit row {i} was edited: its entry hashes to {calculated.hex()}, the stored "
                f"leaf hash is {leaf.leaf_hash.hex()}",
                index=i,
            )
        hashes.append(calculated)
    return hashes


def check_extends(
    size: int, previous: AuditCheckpointRecord | None, root_of: Callable[[int], bytes]
) -> None:
    """Raise AuditIntegrityError unless a log of ``size`` rows, whose first n rows have the
    root ``root_of(n)``, extends the checkpoint ``previous``."""
    if previous is None:
        return
    if size < previous.size:
        raise AuditIntegrityError(
            f"the audit log has {size} rows but checkpoint {previous.size} was signed "
            "over more: rows were deleted",
            index=size,
        )
    root = root_of(previous.size)
    if root != previous.root:
        raise AuditIntegrityError(
            f"the first {previous.size} audit rows no longer have the root of the signed "
            f"checkpoint {previous.size} ({root.hex()} != {previous.root.hex()}): rows were "
            "edited"
        )


def check_known(
    hashes: Sequence[bytes],
    *,
    start: int,
    known: Sequence[bytes],
    own: dict[int, bytes],
    complete: bool,
    known_size: int | None = None,
) -> None:
    """Raise AuditIntegrityError unless the stored rows ``hashes`` (from index ``start``)
    agree with what this replica knew before reading them: ``known`` (the leaf hashes it
    had read and checked, from index 0; only its first ``known_size`` when given, e.g. a
    live list that grew during the read) and ``own`` (index -> leaf hash of the entries it
    appended itself). With ``complete`` (the read ran to the end of the log) a known row
    missing from it was deleted."""
    known_len = len(known) if known_size is None else known_size
    end = start + len(hashes)
    overlap = min(known_len, end) - start
    if overlap > 0 and list(known[start : start + overlap]) != list(hashes[:overlap]):
        i = next(j for j in range(overlap) if known[start + j] != hashes[j])
        raise AuditIntegrityError(
            f"audit row {start + i} changed after this relay had read it (its leaf hash was "
            f"{known[start + i].hex()}, it is now {hashes[i].hex()}): a row was edited or "
            "replaced",
            index=start + i,
        )
    if complete and known_len > end:
        raise AuditIntegrityError(
            f"the audit log has {end} rows but this relay had read {known_len} of it: rows "
            "were deleted",
            index=end,
        )
    for index, leaf_hash in own.items():
        if start <= index < end:
            if hashes[index - start] != leaf_hash:
                raise AuditIntegrityError(
                    f"audit row {index}, appended by this relay, was edited or replaced "
                    f"(stored leaf hash {hashes[index - start].hex()}, appended "
                    f"{leaf_hash.hex()})",
                    index=index,
                )
        elif complete and index >= end:
            raise AuditIntegrityError(
                f"audit row {index}, appended by this relay, is no longer stored: rows were "
                "deleted",
                index=index,
            )


@dataclass
class _Pending:
    entry: bytes
    leaf_hash: bytes
    court: str
    at_ns: int
    future: asyncio.Future[int]


class AuditLog:
    """The audit log as one relay replica sees it. Create with :meth:`open`; close with
    :meth:`close`. ``replica_id`` names this replica as the audit lease's owner (default
    ``<hostname>-<pid>``), held for ``lease_ttl_s`` and renewed every third of it."""

    def __init__(
        self,
        *,
        store: Any,
        signer: Any,
        metrics: Any = None,
        sinks: Sequence[AuditSink] = (),
        clock: Callable[[], int] = time.time_ns,
        group_commit_window_s: float = 0.0,
        max_batch: int = 500,
        replica_id: str | None = None,
        lease_ttl_s: float = DEFAULT_LEASE_TTL_S,
        full_verify_interval_s: float = DEFAULT_FULL_VERIFY_INTERVAL_S,
    ) -> None:
        self._store = store
        self._window_s = group_commit_window_s
        self._max_batch = max_batch
        self._last_commit = -1e9
        self._signer = signer
        self.origin = audit_origin(signer.key_id)
        self._metrics = metrics
        self.sinks = list(sinks)
        self._clock = clock
        self.replica_id = replica_id or default_replica_id()
        self.lease_ttl_s = lease_ttl_s
        # The verified stored log from index 0 (as far as this replica has read it), and
        # this replica's own committed entries past it (index -> leaf hash).
        self._hashes = MerkleTree(TREE_HASHER)
        self._own: dict[int, bytes] = {}
        self._own_end = 0  # one past the greatest index this replica appended
        # Rows [0, _checked) were re-read from the store and checked (a full check, then the
        # tails before checkpoints); _hashes may run past it with this replica's own rows.
        self._checked = 0
        self._full_interval_s = full_verify_interval_s
        self._full_at = -1e18  # loop time the last complete full check started
        # The newest checkpoints, checked against the rows, by size (at most
        # _RECENT_CHECKPOINTS), and older ones recalled from the store for proofs.
        self._checkpoints: list[AuditCheckpointRecord] = []
        self._recalled: OrderedDict[int, AuditCheckpointRecord] = OrderedDict()
        self._pending: list[_Pending] = []
        self._flusher: asyncio.Task[None] | None = None
        self._committing: list[_Pending] = []  # the batch whose transaction is under way
        self._checkpoint_lock = asyncio.Lock()
        self._view_lock = asyncio.Lock()  # one reader of the stored log at a time
        self._refreshed_at = -1e18  # loop time the last completed refresh started
        self._periodic: asyncio.Task[None] | None = None
        self._lease_task: asyncio.Task[None] | None = None
        self._lease: Lease | None = None
        self._lease_deadline = 0.0  # time.monotonic() before which the lease surely holds
        self._lease_lock = asyncio.Lock()
        self.on_new_term: list[Callable[[AuditLog], None]] = []
        self.integrity_error: AuditIntegrityError | None = None
        self.commits = 0  # store transactions made by appends (group commit: <= entries)
        self.signed: list[int] = []  # sizes of the newest checkpoints this replica signed

    @classmethod
    async def open(
        cls,
        *,
        store: Any,
        signer: Any,
        metrics: Any = None,
        sinks: Sequence[AuditSink] = (),
        clock: Callable[[], int] = time.time_ns,
        group_commit_window_s: float = 0.0,
        replica_id: str | None = None,
        lease_ttl_s: float = DEFAULT_LEASE_TTL_S,
        full_verify_interval_s: float = DEFAULT_FULL_VERIFY_INTERVAL_S,
    ) -> AuditLog:
        """Load and check the stored log (a failed check is reported and blocks
        checkpoints; the relay still serves and keeps recording). With
        ``group_commit_window_s``, back-to-back commits start at most that often, so under
        load each commit carries more entries; an idle log commits at once. Every stored
        row is re-read every ``full_verify_interval_s`` (at the next checkpoint after it)."""
        self = cls(
            store=store,
            signer=signer,
            metrics=metrics,
            sinks=sinks,
            clock=clock,
            group_commit_window_s=group_commit_window_s,
            replica_id=replica_id,
            lease_ttl_s=lease_ttl_s,
            full_verify_interval_s=full_verify_interval_s,
        )
        await self.open_check()
        return self

    # ------------------------------------------------------------------ state

    @property
    def size(self) -> int:
        """Entries committed so far as this replica knows them (the rows it has read, and
        its own appends past them; other replicas' newer rows are read by refresh)."""
        return max(len(self._hashes), self._own_end)

    @property
    def verified_size(self) -> int:
        """How many rows from index 0 this replica has read and checked."""
        return len(self._hashes)

    @property
    def checkpoints(self) -> list[AuditCheckpointRecord]:
        """The newest checkpoints (at most 1,024), oldest first; :meth:`recall` reads older
        ones back from the store."""
        return list(self._checkpoints)

    @property
    def latest(self) -> AuditCheckpointRecord | None:
        return self._checkpoints[-1] if self._checkpoints else None

    @property
    def holds_lease(self) -> bool:
        """Whether this replica holds the audit lease (signs checkpoints), as of its last
        acquisition or renewal."""
        return self._lease is not None and time.monotonic() < self._lease_deadline

    def checkpoint_of_size(self, size: int) -> AuditCheckpointRecord | None:
        """The checkpoint of ``size`` if it is held in memory (the newest ones, and those
        recalled), else None."""
        recent = self._checkpoints
        i = bisect_left(recent, size, key=lambda c: c.size)
        if i < len(recent) and recent[i].size == size:
            return recent[i]
        found = self._recalled.get(size)
        if found is not None:
            self._recalled.move_to_end(size)
        return found

    async def recall(self, *sizes: int) -> None:
        """Make the checkpoints of ``sizes`` (0: the newest) available to
        :meth:`checkpoint_at`, :meth:`inclusion` and :meth:`consistency`: one older than
        those held in memory is read from the store and checked against the verified leaf
        hashes first (a stored checkpoint whose root is not theirs is an integrity fault,
        reported and raised). Sizes the store does not hold, or beyond the rows read, are
        left for those methods to refuse."""
        for size in sizes:
            if size <= 0 or size > len(self._hashes) or self.checkpoint_of_size(size):
                continue
            rows = await self._store.audit_checkpoints(min_size=size, limit=1)
            if not rows or rows[0].size != size:
                continue
            checkpoint = rows[0]
            root = self._hashes.root(size)
            if root != checkpoint.root:
                error = AuditIntegrityError(
                    f"stored audit checkpoint {size} has root {checkpoint.root.hex()}, not the "
                    f"root of the first {size} rows ({root.hex()}): it was replaced",
                    index=size,
                )
                self._report(error)
                raise error
            self._recalled[size] = checkpoint
            while len(self._recalled) > _RECALLED_CHECKPOINTS:
                self._recalled.popitem(last=False)

    # ------------------------------------------------------------------ integrity

    def _report(self, error: AuditIntegrityError) -> None:
        if self.integrity_error is None or str(self.integrity_error) != str(error):
            log.error("audit log integrity check failed: %s", error)
        self.integrity_error = error
        hook = getattr(self._metrics, "record_audit_integrity_failure", None)
        if hook is not None:
            hook()

    def _merge_own(self) -> None:
        """Move this replica's own entries that now follow the read rows into them."""
        own = self._own
        hashes = self._hashes
        while own:
            leaf_hash = own.pop(len(hashes), None)
            if leaf_hash is None:
                break
            hashes.append(leaf_hash)

    def _absorb(self, hashes: list[bytes], *, start: int) -> None:
        """Chain in checked stored rows ``hashes`` from index ``start`` (``start`` <= the
        read size): rows already known must be equal (check_known ran on what was known
        before the read; this covers what was merged meanwhile)."""
        check_known(hashes, start=start, known=self._hashes, own=self._own, complete=False)
        new = hashes[len(self._hashes) - start :]
        for i in range(len(self._hashes), len(self._hashes) + len(new)):
            self._own.pop(i, None)
        self._hashes.extend(new)
        self._merge_own()
        if self._metrics is not None:
            self._metrics.record_audit_log(entries=self.size)

    async def _new_checkpoints(self) -> list[AuditCheckpointRecord]:
        """Stored checkpoints newer than the newest known one (signed by any replica); at
        start-up, the newest few only (each covers the ones before it)."""
        latest = self.latest
        if latest is None:
            newest = await self._store.audit_checkpoints(newest_first=True, limit=_CHECK_EACH)
            return list(reversed(newest))
        stored: list[AuditCheckpointRecord] = await self._store.audit_checkpoints(
            min_size=latest.size + 1
        )
        return stored

    def _check_checkpoints(
        self,
        size: int,
        root_of: Callable[[int], bytes],
        checkpoints: Sequence[AuditCheckpointRecord],
    ) -> None:
        """Raise AuditIntegrityError unless the newest of ``checkpoints`` and, when there are
        a few only, each of them has the root ``root_of(n)`` of the first n of the ``size``
        rows read (a worker thread's job). At start-up (every stored checkpoint is new) the
        newest covers the rows below it; the older ones were checked when they were signed,
        and ``relay audit verify`` checks them all."""
        chosen = list(checkpoints) if len(checkpoints) <= _CHECK_EACH else list(checkpoints[-1:])
        for c in chosen:
            check_extends(size, c, root_of)

    def _chain_checkpoints(self, checkpoints: Sequence[AuditCheckpointRecord]) -> None:
        for c in checkpoints:
            if self.latest is None or c.size > self.latest.size:
                self._checkpoints.append(c)
        if len(self._checkpoints) > _RECENT_CHECKPOINTS:
            del self._checkpoints[: len(self._checkpoints) - _RECENT_CHECKPOINTS]

    async def _read_rows(self, start: int, end: int | None) -> list[bytes]:
        """The leaf hashes of the stored rows from ``start`` (to ``end``, or to the end of
        the log), read :data:`READ_CHUNK` rows at a time, each chunk rehashed and checked
        (indexes contiguous from ``start``, stored leaf hash = hash of the entry; large
        chunks in a worker thread). Raises AuditIntegrityError."""
        hashes: list[bytes] = []
        while end is None or start + len(hashes) < end:
            first = start + len(hashes)
            limit = READ_CHUNK if end is None else min(READ_CHUNK, end - first)
            rows: list[AuditLeafRecord] = await self._store.audit_leaves(
                start=first, end=end, limit=limit
            )
            heavy = len(rows) > _INLINE_ROWS
            hashes.extend(await _checked(partial(check_leaves, rows, start=first), heavy=heavy))
            if len(rows) < limit:
                break
        return hashes

    def _full_due(self) -> bool:
        """Whether the next check must re-read every row: none has passed yet, the last
        one found a fault (a checkpoint is signed only after a full check passes again), or
        ``full_verify_interval`` has gone by."""
        now = asyncio.get_running_loop().time()
        return self.integrity_error is not None or now - self._full_at >= self._full_interval_s

    async def _verify(self, *, full: bool) -> int:
        """Re-read the stored rows (all of them with ``full``, else those from the checked
        size on), check them against themselves, against what this replica had read or
        appended and against the stored checkpoints; chain in rows other replicas
        appended. Returns how many rows from index 0 are now checked. Raises
        AuditIntegrityError (also reported)."""
        async with self._view_lock:
            loop = asyncio.get_running_loop()
            started = loop.time()
            try:
                start = 0 if full else min(self._checked, len(self._hashes))
                # The live tree: appends only grow it meanwhile; what was known before the
                # read is its first known_size leaves.
                known = self._hashes
                known_size = len(known)
                own = dict(self._own)
                new = await self._new_checkpoints()
                previous = self.latest
                # Read after the checkpoints: every row a stored checkpoint covers is in it.
                tail = await self._read_rows(start, None)
                end = start + len(tail)

                def root_of(n: int) -> bytes:
                    # The read log: the known rows below ``start`` (checked before, and
                    # unchanged since: only appended to), then the rows just read.
                    return known.root_with(n, held=start, more=tail)

                def check() -> None:
                    check_known(
                        tail, start=start, known=known, own=own, complete=True,
                        known_size=known_size,
                    )  # fmt: skip
                    checkpoints = [*([previous] if previous and full else []), *new]
                    self._check_checkpoints(end, root_of, checkpoints)

                await _checked(check, heavy=len(tail) > _INLINE_ROWS or bool(new))
                self._absorb(tail, start=start)
            except AuditIntegrityError as e:
                self._report(e)
                raise
            self._checked = max(self._checked, end) if not full else end
            self._chain_checkpoints(new)
            self._refreshed_at = started
            if full:
                self._full_at = started
        if full and self.integrity_error is not None:
            log.warning("audit log integrity restored (%d rows verify)", end)
            self.integrity_error = None
        return end

    async def verify_stored(self) -> list[bytes]:
        """Re-read every stored row and check it against itself, against what this replica
        had read or appended, and against the stored checkpoints; on success the in-memory
        leaf hashes become the verified ones (rows other replicas appended are chained in)
        and an earlier fault is cleared. Returns the verified leaf hashes. Raises
        AuditIntegrityError (also reported)."""
        size = await self._verify(full=True)
        return self._hashes[:size]

    async def open_check(self) -> None:
        """verify_stored() that logs instead of raising (start-up)."""
        with contextlib.suppress(AuditIntegrityError):
            await self.verify_stored()

    async def refresh(self, *, full: bool = False) -> None:
        """Catch up with the other replicas: load the checkpoints stored since the newest
        known one, read the rows appended since this replica's verified size (up to the
        newest checkpoint, or all of them with ``full``), rehash and chain them in, and
        check each new checkpoint's root against them. Calls made while another refresh
        runs wait for it and for no second one. Raises AuditIntegrityError (reported)."""
        loop = asyncio.get_running_loop()
        asked = loop.time()
        async with self._view_lock:
            if self._refreshed_at >= asked and not full:
                return  # a refresh that started after this call has completed
            started = loop.time()
            try:
                new = await self._new_checkpoints()
                start = len(self._hashes)
                # The live list: appends only grow it past ``start`` (check_known compares
                # what overlaps the read; nothing before ``start`` changes).
                known = self._hashes
                own = dict(self._own)
                target = max([c.size for c in new], default=0)
                if full or target > start:
                    hashes = await self._read_rows(start, None if full else target)
                else:
                    hashes = []

                def root_of(n: int) -> bytes:
                    return known.root_with(n, held=start, more=hashes)

                def check() -> None:
                    check_known(hashes, start=start, known=known, own=own, complete=False)
                    end = start + len(hashes)
                    lost = [i for i in own if i >= end] if full else []
                    if lost:  # read to the end of the log after these were committed
                        raise AuditIntegrityError(
                            f"audit row {min(lost)}, appended by this relay, is no longer "
                            "stored: rows were deleted",
                            index=min(lost),
                        )
                    if new:
                        self._check_checkpoints(end, root_of, new)

                await _checked(check, heavy=len(hashes) > _INLINE_ROWS or bool(new))
                self._absorb(hashes, start=start)
            except AuditIntegrityError as e:
                self._report(e)
                raise
            self._chain_checkpoints(new)
            self._refreshed_at = started

    # ------------------------------------------------------------------ appends

    async def append(self, entry: bytes, *, court: str = "") -> int:
        """Append one entry; returns its index once it is durably committed. Raises the
        store's error if the commit fails (the caller must then not answer)."""
        loop = asyncio.get_running_loop()
        pending = _Pending(
            entry, TREE_HASHER.hash_leaf(entry), court, self._clock(), loop.create_future()
        )
        self._pending.append(pending)
        if self._flusher is None or self._flusher.done():
            self._flusher = asyncio.create_task(self._flush())
        # A cancelled caller cancels only its future: the entry is already in the batch
        # and is committed with it (_flush skips futures that are done).
        return await pending.future

    async def _flush(self) -> None:
        loop = asyncio.get_running_loop()
        while self._pending:
            if self._window_s > 0:
                # Busy (the previous commit started less than a window ago): let the batch
                # grow until the window is over, so commits per second stay bounded.
                wait = self._last_commit + self._window_s - loop.time()
                if wait > 0 and len(self._pending) < self._max_batch:
                    await asyncio.sleep(wait)
            self._last_commit = loop.time()
            batch, self._pending = (
                self._pending[: self._max_batch],
                self._pending[self._max_batch :],
            )
            rows = [(p.entry, p.leaf_hash, p.court, p.at_ns) for p in batch]
            self._committing = batch
            try:
                # The store picks the indexes: other replicas may be appending too.
                end = await self._store.append_audit_leaves(rows)
            except BaseException as e:
                for p in batch:
                    if not p.future.done():
                        p.future.set_exception(e)
                        p.future.exception()  # retrieved: a cancelled caller logs nothing
                if isinstance(e, asyncio.CancelledError):
                    raise
                continue
            self.commits += 1
            first = end - len(batch)
            if first == len(self._hashes) and not self._own:
                self._hashes.extend(p.leaf_hash for p in batch)  # nobody appended between
            else:
                known = len(self._hashes)
                for i, p in enumerate(batch):
                    index = first + i
                    if index >= known:
                        self._own[index] = p.leaf_hash
                    elif self._hashes[index] != p.leaf_hash:  # a refresh read it meanwhile
                        self._report(
                            AuditIntegrityError(
                                f"audit row {index} was replaced right after this relay "
                                "appended it",
                                index=index,
                            )
                        )
                self._merge_own()
            self._own_end = max(self._own_end, end)
            for i, p in enumerate(batch):
                if not p.future.done():
                    p.future.set_result(first + i)
            if self._metrics is not None:
                self._metrics.record_audit_log(entries=self.size)

    async def drain(self) -> None:
        """Wait until every append made so far is committed (or failed). Appends made
        meanwhile are not waited for: under steady load the flusher never idles, and a
        checkpoint waiting for that would never be signed."""
        waiting = [p.future for p in (*self._committing, *self._pending) if not p.future.done()]
        if waiting:
            await asyncio.wait(waiting)

    async def _flushed(self) -> None:
        """Wait until the flusher has nothing left (no more appends are coming)."""
        while self._flusher is not None and not self._flusher.done():
            await asyncio.shield(self._flusher)

    # ------------------------------------------------------------------ the audit lease

    async def hold_lease(self) -> bool:
        """Take or renew the audit lease; whether this replica now holds it. A new term
        first catches up with the whole stored log, then runs the ``on_new_term`` hooks
        (e.g. RemoteChainSink.attach: publish the stored checkpoints the chain lacks)."""
        async with self._lease_lock:
            return await self._hold_lease()

    async def _hold_lease(self) -> bool:
        store = self._store
        # Measured before the call: the store's term runs from its own clock's "now", at
        # or after this, so the lease holds at least until then.
        started = time.monotonic()
        if self._lease is not None:
            try:
                self._lease = await store.renew_lease(self._lease, ttl_s=self.lease_ttl_s)
                self._lease_deadline = started + self.lease_ttl_s
                return True
            except LeaseLostError as e:
                log.warning("audit lease lost (%s): another replica signs checkpoints now", e)
                self._lease = None
        lease: Lease | None = await store.acquire_lease(
            AUDIT_LEASE, owner=self.replica_id, ttl_s=self.lease_ttl_s
        )
        if lease is None:
            return False
        self._lease = lease
        self._lease_deadline = started + self.lease_ttl_s
        log.info(
            "audit lease term %d taken by %s: this replica signs checkpoints",
            lease.token,
            self.replica_id,
        )
        with contextlib.suppress(AuditIntegrityError):  # reported; nothing is signed over it
            await self.refresh(full=True)
        for hook in self.on_new_term:
            try:
                hook(self)
            except Exception:
                log.exception("audit lease term hook failed")
        return True

    async def release_lease(self) -> None:
        """End this replica's audit lease so another replica signs at once."""
        async with self._lease_lock:
            lease, self._lease = self._lease, None
        if lease is not None:
            with contextlib.suppress(Exception):  # a lost lease or a closing store: expiry
                await self._store.release_lease(lease)

    # ------------------------------------------------------------------ checkpoints

    async def checkpoint(self) -> AuditCheckpointRecord:
        """Check the stored log, then sign, store and publish a checkpoint of it (the
        previous one when nothing was appended since). Only the audit lease's holder signs:
        the lease is taken here if it is free, and NotCheckpointSignerError is raised while
        another replica holds it. Raises AuditIntegrityError, and signs nothing, when the
        stored rows do not extend the previous checkpoint."""
        async with self._checkpoint_lock:
            if not await self.hold_lease():
                raise NotCheckpointSignerError(
                    "another relay replica holds the audit lease and signs the checkpoints"
                )
            lease = self._lease
            await self.drain()
            size = await self._verify(full=self._full_due())
            previous = self.latest
            if previous is not None and previous.size == size:
                return previous
            tree = self._hashes  # its first ``size`` leaves are the rows just checked

            def sign() -> tuple[bytes, bytes]:
                root = tree.root(size)
                return root, sign_checkpoint(self._signer, size=size, root=root)

            # Off the event loop too (the root from the tree's kept subtree roots, then a
            # signature): periodic checkpoints must not hold up the queries being answered.
            root, note = await asyncio.to_thread(sign)
            now = self._clock()
            record = AuditCheckpointRecord(size=size, root=root, note=note, at_ns=now)
            try:
                stored = await self._store.put_audit_checkpoint(record, lease=lease)
            except LeaseLostError as e:
                self._lease = None
                raise NotCheckpointSignerError(
                    f"the audit lease was lost while signing checkpoint {size}: {e}"
                ) from e
            except StoreIntegrityError as e:
                error = AuditIntegrityError(str(e), index=size)
                self._report(error)
                raise error from e
            # The store keeps one note per size: an earlier holder's stays (same root).
            record = stored if isinstance(stored, AuditCheckpointRecord) else record
            self._chain_checkpoints([record])
            self.signed.append(record.size)
            del self.signed[:-_SIGNED_KEPT]
            if self._metrics is not None:
                self._metrics.record_audit_checkpoint(time_s=now / 1e9)
            log.info("signed audit checkpoint %d", record.size)
        for sink in self.sinks:
            try:
                await sink.publish(record)
            except Exception:  # publication is retried with the next checkpoint
                log.exception("could not publish audit checkpoint %d", record.size)
        return record

    def start_periodic(self, interval_s: float) -> None:
        """Every ``interval_s`` seconds: the lease holder checkpoints (when something was
        appended), the other replicas catch up with the stored log and checkpoints. The
        lease is renewed every third of its time meanwhile."""

        async def periodic() -> None:
            while True:
                await asyncio.sleep(interval_s)
                try:
                    if not self.holds_lease:
                        await self.refresh(full=True)
                        continue
                    latest = self.latest
                    if latest is not None and latest.size == await self._store.audit_size():
                        continue
                    await self.checkpoint()
                except (AuditIntegrityError, NotCheckpointSignerError):
                    pass  # reported / another replica signs
                except Exception:
                    log.exception("periodic audit checkpoint failed")

        async def leases() -> None:
            while True:
                try:
                    await self.hold_lease()
                except Exception:
                    log.exception("could not take or renew the audit lease")
                await asyncio.sleep(self.lease_ttl_s / 3)

        if self._periodic is None:
            self._periodic = asyncio.create_task(periodic())
        if self._lease_task is None:
            self._lease_task = asyncio.create_task(leases())

    async def close(self) -> None:
        """Stop checkpointing and wait for pending appends (the lease is kept: stop a
        relay with AuditRuntime.stop, which signs a last checkpoint and then releases it)."""
        for name in ("_periodic", "_lease_task"):
            task = getattr(self, name)
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
                setattr(self, name, None)
        await self._flushed()

    # ------------------------------------------------------------------ proofs

    def _checkpoint_for(self, size: int) -> AuditCheckpointRecord:
        found = self.latest if size == 0 else self.checkpoint_of_size(size)
        if found is None:
            raise LookupError(
                "the audit log has no signed checkpoint yet"
                if size == 0
                else f"the audit log has no signed checkpoint of size {size}"
            )
        return found

    def checkpoint_at(self, size: int = 0) -> AuditCheckpointRecord:
        """The checkpoint of ``size`` (0: the newest known); LookupError if none (call
        :meth:`refresh` first to see the ones other replicas stored, and :meth:`recall`
        for an older one than those held in memory)."""
        return self._checkpoint_for(size)

    def _held(self, checkpoint: AuditCheckpointRecord) -> int:
        if len(self._hashes) < checkpoint.size:  # not caught up (refresh was not called)
            raise LookupError(
                f"this relay has read {len(self._hashes)} audit rows, fewer than checkpoint "
                f"{checkpoint.size} covers; retry"
            )
        return checkpoint.size

    def inclusion(
        self, index: int, *, tree_size: int = 0
    ) -> tuple[list[bytes], AuditCheckpointRecord]:
        """The inclusion proof of leaf ``index`` against the checkpoint of ``tree_size``
        (0: the newest). LookupError / IndexError when there is none. O(log n) kept
        subtree roots (relay.verify.merkle.rfc6962.MerkleTree), not a rehash of the log."""
        checkpoint = self._checkpoint_for(tree_size)
        if not 0 <= index < checkpoint.size:
            raise IndexError(f"entry {index} is not covered by checkpoint {checkpoint.size}")
        return self._hashes.inclusion_proof(index, self._held(checkpoint)), checkpoint

    def consistency(
        self, first_size: int, second_size: int = 0
    ) -> tuple[AuditCheckpointRecord | None, AuditCheckpointRecord, list[bytes]]:
        """The consistency proof between two checkpoints (first_size 0: the empty log)."""
        second = self._checkpoint_for(second_size)
        first = None if first_size == 0 else self._checkpoint_for(first_size)
        if first is not None and first.size > second.size:
            raise IndexError(f"checkpoint {first.size} is newer than checkpoint {second.size}")
        if first is None or first.size == second.size:
            return first, second, []
        proof = self._hashes.consistency_proof(first.size, self._held(second))
        return first, second, proof

    def consistency_proof(self, size1: int, size2: int) -> list[bytes]:
        """The RFC 6962 consistency proof between the log's first ``size1`` and ``size2``
        rows (e.g. from the checkpoint a judicial chain holds to a newer one), whether or
        not their checkpoints are held in memory. LookupError beyond the rows read."""
        if size2 > len(self._hashes):
            raise LookupError(
                f"this relay has read {len(self._hashes)} audit rows, fewer than {size2}"
            )
        return self._hashes.consistency_proof(size1, size2)

    async def leaves(
        self,
        *,
        start: int = 0,
        end: int | None = None,
        court: str | None = None,
        limit: int | None = None,
    ) -> list[AuditLeafRecord]:
        """Stored rows (see Store.audit_leaves)."""
        result: list[AuditLeafRecord] = await self._store.audit_leaves(
            start=start, end=end, court=court, limit=limit
        )
        return result
