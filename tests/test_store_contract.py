"""Behavioural suite of the Store protocol (relay/store/base.py), written once for every
backend. Adding a backend (PostgreSQL, issue 9) is adding one ``Backend`` class and one
``BACKENDS`` entry; every test here must then pass unchanged.

Async tests run each body with ``asyncio.run`` (no pytest plugin needed)."""

from __future__ import annotations

import asyncio
import dataclasses
import functools
import hashlib
import random
from collections.abc import Callable, Coroutine, Sequence
from pathlib import Path
from typing import Any, Protocol

import pytest

from relay.store import (
    ChainExistsError,
    ChainRecord,
    ChainStatus,
    ChainStatusError,
    ClientType,
    ConflictError,
    ConsensusStateRecord,
    InvalidRecordError,
    MigrationError,
    SQLiteStore,
    StaleRevisionError,
    Store,
    StoreClosedError,
    TrustPathTooLongError,
    UnknownChainError,
)
from relay.store import migrations as shipped_migrations
from relay.store.base import (
    AuditCheckpointRecord,
    LeaseLostError,
    NonceReplayedError,
    ProposalClosedError,
    ProposalNotFoundError,
    StoreIntegrityError,
)
from relay.store.migrations import Migration
from relay.store.postgres import PostgresStore

# ----------------------------------------------------------------------------- backends


class Backend(Protocol):
    dialect: str

    async def open(
        self,
        *,
        migrations: Sequence[Migration] | None = None,
        clock: Callable[[], int] | None = None,
    ) -> Store: ...

    def extra_migration_sql(self, table: str) -> str:
        """SQL for a harmless extra migration creating ``table`` in this dialect."""
        ...


class SQLiteBackend:
    dialect = "sqlite"

    def __init__(self, tmp_path: Path) -> None:
        self.path = tmp_path / "relay.db"

    async def open(
        self,
        *,
        migrations: Sequence[Migration] | None = None,
        clock: Callable[[], int] | None = None,
    ) -> Store:
        if clock is None:
            return await SQLiteStore.open(self.path, migrations=migrations)
        return await SQLiteStore.open(self.path, migrations=migrations, clock=clock)

    def extra_migration_sql(self, table: str) -> str:
        return f"CREATE TABLE {table} (x INTEGER NOT NULL) STRICT;\n"


class PostgresBackend:
    """A fresh database on the session's throwaway cluster (conftest ``pg_cluster``)."""

    dialect = "postgresql"

    def __init__(self, dsn: str) -> None:
        self.dsn = dsn

    async def open(
        self,
        *,
        migrations: Sequence[Migration] | None = None,
        clock: Callable[[], int] | None = None,
    ) -> Store:
        return await PostgresStore.open(self.dsn, migrations=migrations, clock=clock)

    def extra_migration_sql(self, table: str) -> str:
        return f"CREATE TABLE {table} (x BIGINT NOT NULL);\n"


def _postgres(request: pytest.FixtureRequest, tmp_path: Path) -> Backend:
    return PostgresBackend(request.getfixturevalue("pg_cluster").create_database())


BACKENDS: dict[str, Callable[[pytest.FixtureRequest, Path], Backend]] = {
    "sqlite": lambda request, tmp_path: SQLiteBackend(tmp_path),
    "postgresql": _postgres,
}


@pytest.fixture(params=sorted(BACKENDS))
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> Backend:
    return BACKENDS[request.param](request, tmp_path)


def run_async(fn: Callable[..., Coroutine[Any, Any, None]]) -> Callable[..., None]:
    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> None:
        asyncio.run(fn(*args, **kwargs))

    return wrapper


# ----------------------------------------------------------------------------- helpers

CHAIN = "land-registry-1"


def chain_record(
    chain_id: str = CHAIN,
    *,
    anchor_height: int = 1,
    status: ChainStatus = ChainStatus.ACTIVE,
    descriptor: bytes = b"descriptor-v1",
    client_type: ClientType = ClientType.TENDERMINT,
) -> ChainRecord:
    return ChainRecord(
        chain_id=chain_id,
        domain="real_estate",
        client_type=client_type,
        descriptor=descriptor,
        status=status,
        anchor_height=anchor_height,
    )


def sha(*parts: object) -> bytes:
    return hashlib.sha256(repr(parts).encode()).digest()


def cs(
    height: int, parent: int | None, *, fork: str = "", time_ns: int | None = None
) -> ConsensusStateRecord:
    """A deterministic consensus state; ``fork`` changes the header (a conflicting one)."""
    return ConsensusStateRecord(
        height=height,
        time_ns=height * 1_000 if time_ns is None else time_ns,
        root=sha("root", height, fork),
        header_hash=sha("header", height, fork),
        next_validators_hash=sha("nvh", height, fork),
        light_block=sha("lb", height, fork) * 4,
        trusted_from=parent,
    )


def strip(record: ConsensusStateRecord | None) -> ConsensusStateRecord | None:
    """The record without the store-assigned timestamp, for comparison with what was written."""
    return None if record is None else dataclasses.replace(record, created_at_ns=0)


async def anchored(store: Store, chain_id: str = CHAIN, *, anchor_height: int = 1) -> int:
    await store.upsert_chain(chain_record(chain_id, anchor_height=anchor_height))
    return await store.commit_verified(
        chain_id=chain_id,
        client_state=b"client@%d" % anchor_height,
        latest_height=anchor_height,
        expected_revision=None,
        consensus_states=[cs(anchor_height, None)],
    )


async def extend(
    store: Store, states: Sequence[ConsensusStateRecord], revision: int, chain_id: str = CHAIN
) -> int:
    latest = max(s.height for s in states)
    return await store.commit_verified(
        chain_id=chain_id,
        client_state=b"client@%d" % latest,
        latest_height=latest,
        expected_revision=revision,
        consensus_states=states,
    )


async def snapshot(store: Store, chain_id: str = CHAIN, *, up_to: int = 200) -> dict[str, Any]:
    """Everything observable about a chain (for 'nothing changed' assertions)."""
    client = await store.get_client_state(chain_id)
    states = {}
    for h in range(up_to + 1):
        s = await store.get_consensus_state(chain_id, h)
        if s is not None:
            states[h] = s
    return {"chain": await store.get_chain(chain_id), "client": client, "states": states}


# ----------------------------------------------------------------------------- migrations


@run_async
async def test_migrations_apply_once_and_are_recorded(backend: Backend) -> None:
    shipped = shipped_migrations.load(backend.dialect)
    store = await backend.open()
    assert (await store.stats()).schema_version == len(shipped)
    await store.close()
    extra = Migration(
        version=len(shipped) + 1, name="extra", sql=backend.extra_migration_sql("extra_t")
    )
    # A new migration is applied on the next start, then never again (a second run of the
    # CREATE TABLE would fail).
    for _ in range(2):
        store = await backend.open(migrations=[*shipped, extra])
        assert (await store.stats()).schema_version == extra.version
        await store.close()


@run_async
async def test_edited_migration_refuses_to_start(backend: Backend) -> None:
    shipped = shipped_migrations.load(backend.dialect)
    extra = Migration(
        version=len(shipped) + 1, name="extra", sql=backend.extra_migration_sql("extra_t")
    )
    store = await backend.open(migrations=[*shipped, extra])
    await store.close()
    edited = dataclasses.replace(extra, sql=extra.sql + "-- edited after release\n")
    with pytest.raises(MigrationError, match="checksums differ") as info:
        await backend.open(migrations=[*shipped, edited])
    assert f"{extra.version:04d}_extra" in str(info.value)
    renamed = dataclasses.replace(extra, name="renamed")
    with pytest.raises(MigrationError):
        await backend.open(migrations=[*shipped, renamed])
    # The database is newer than a build that lacks the migration: refuse, don't guess.
    with pytest.raises(MigrationError, match="only knows migrations up to"):
        await backend.open(migrations=shipped)
    store = await backend.open(migrations=[*shipped, extra])  # the right build still works
    await store.close()


@run_async
async def test_failed_migration_leaves_nothing_applied(backend: Backend) -> None:
    shipped = shipped_migrations.load(backend.dialect)
    await (await backend.open()).close()
    # Second statement fails after the first one succeeded: both must roll back.
    broken = Migration(
        version=len(shipped) + 1,
        name="broken",
        sql=backend.extra_migration_sql("half_t") + backend.extra_migration_sql("half_t"),
    )
    with pytest.raises(MigrationError, match=f"{broken.version:04d}_broken failed"):
        await backend.open(migrations=[*shipped, broken])
    fixed = Migration(
        version=len(shipped) + 1, name="fixed", sql=backend.extra_migration_sql("half_t")
    )
    store = await backend.open(migrations=[*shipped, fixed])  # half_t was not left behind
    assert (await store.stats()).schema_version == fixed.version
    await store.close()


# ----------------------------------------------------------------------------- chains


@run_async
async def test_chain_roundtrip_list_and_update(backend: Backend) -> None:
    ticks = iter(range(1_000, 10_000_000, 1_000))
    store = await backend.open(clock=lambda: next(ticks))
    try:
        assert await store.get_chain(CHAIN) is None
        assert await store.list_chains() == []
        await store.upsert_chain(chain_record("b-chain", status=ChainStatus.PENDING))
        await store.upsert_chain(chain_record("a-chain", client_type=ClientType.TLOG))
        first = await store.get_chain("b-chain")
        assert first is not None
        assert (first.status, first.client_type, first.descriptor) == (
            ChainStatus.PENDING,
            ClientType.TENDERMINT,
            b"descriptor-v1",
        )
        assert first.created_at_ns == first.updated_at_ns > 0
        assert [c.chain_id for c in await store.list_chains()] == ["a-chain", "b-chain"]
        await store.upsert_chain(
            dataclasses.replace(
                chain_record("b-chain", descriptor=b"descriptor-v2"), status_reason="approved"
            )
        )
        second = await store.get_chain("b-chain")
        assert second is not None
        assert (second.descriptor, second.status, second.status_reason) == (
            b"descriptor-v2",
            ChainStatus.ACTIVE,
            "approved",
        )
        assert second.created_at_ns == first.created_at_ns < second.updated_at_ns
    finally:
        await store.close()


@run_async
async def test_create_chain_is_insert_only(backend: Backend) -> None:
    store = await backend.open()
    other = await second_writer(backend, store)
    try:
        await store.create_chain(chain_record(descriptor=b"first"))
        # Whatever the second registration says, the stored record is the first one's.
        for writer in (store, other):
            with pytest.raises(ChainExistsError, match=CHAIN):
                await writer.create_chain(chain_record(descriptor=b"second"))
            with pytest.raises(ChainExistsError):
                await writer.create_chain(chain_record(client_type=ClientType.TLOG))
        stored = await other.get_chain(CHAIN)
        assert stored is not None
        assert (stored.descriptor, stored.client_type) == (b"first", ClientType.TENDERMINT)
        # Registrations of one id racing from two writers: exactly one wins.
        results = await asyncio.gather(
            *(
                (store if i % 2 else other).create_chain(
                    chain_record("raced-chain", descriptor=b"from-%d" % i)
                )
                for i in range(8)
            ),
            return_exceptions=True,
        )
        winners = [i for i, r in enumerate(results) if r is None]
        assert len(winners) == 1, results
        assert all(isinstance(r, ChainExistsError) for r in results if r is not None)
        raced = await store.get_chain("raced-chain")
        assert raced is not None and raced.descriptor == b"from-%d" % winners[0]
    finally:
        if other is not store:
            await other.close()
        await store.close()


@run_async
async def test_upsert_cannot_change_client_type_or_anchor(backend: Backend) -> None:
    store = await backend.open()
    try:
        await anchored(store)
        with pytest.raises(InvalidRecordError, match="client type"):
            await store.upsert_chain(chain_record(client_type=ClientType.TLOG))
        with pytest.raises(InvalidRecordError, match="reanchor"):
            await store.upsert_chain(chain_record(anchor_height=5))
        chain = await store.get_chain(CHAIN)
        assert chain is not None
        assert (chain.client_type, chain.anchor_height) == (ClientType.TENDERMINT, 1)
    finally:
        await store.close()


@run_async
async def test_status_rules_frozen_and_expired_need_a_new_anchor(backend: Backend) -> None:
    store = await backend.open()
    try:
        await store.upsert_chain(chain_record(status=ChainStatus.PENDING))
        await store.set_chain_status(CHAIN, status=ChainStatus.ACTIVE, reason="approved")
        await store.set_chain_status(CHAIN, status=ChainStatus.EXPIRED, reason="trust lapsed")
        for target in (ChainStatus.ACTIVE, ChainStatus.PENDING):
            with pytest.raises(ChainStatusError, match="new trust anchor"):
                await store.set_chain_status(CHAIN, status=target, reason="x")
        await store.set_chain_status(CHAIN, status=ChainStatus.FROZEN, reason="fork at 9")
        for target in (ChainStatus.ACTIVE, ChainStatus.PENDING, ChainStatus.EXPIRED):
            with pytest.raises(ChainStatusError):
                await store.set_chain_status(CHAIN, status=target, reason="x")
        with pytest.raises(ChainStatusError):  # upsert is no back door
            await store.upsert_chain(chain_record(status=ChainStatus.ACTIVE))
        chain = await store.get_chain(CHAIN)
        assert chain is not None
        assert (chain.status, chain.status_reason) == (ChainStatus.FROZEN, "fork at 9")
        with pytest.raises(UnknownChainError):
            await store.set_chain_status("nope", status=ChainStatus.FROZEN, reason="x")
    finally:
        await store.close()


# ----------------------------------------------------------------------------- commits


@run_async
async def test_commit_verified_revisions_and_reads(backend: Backend) -> None:
    store = await backend.open()
    try:
        assert await store.get_client_state(CHAIN) is None
        assert await anchored(store) == 1
        rev = await extend(store, [cs(2, 1), cs(3, 2)], 1)
        assert rev == 2
        rev = await extend(store, [cs(10, 3)], rev)
        assert rev == 3
        client = await store.get_client_state(CHAIN)
        assert client is not None
        assert (client.state, client.latest_height, client.revision) == (b"client@10", 10, 3)
        for h, parent in ((1, None), (2, 1), (3, 2), (10, 3)):
            got = await store.get_consensus_state(CHAIN, h)
            assert strip(got) == cs(h, parent)
            assert got is not None and got.created_at_ns > 0
        assert await store.get_consensus_state(CHAIN, 4) is None
        assert await store.get_consensus_state("other", 1) is None
    finally:
        await store.close()


@run_async
async def test_stale_revision_is_refused_and_changes_nothing(backend: Backend) -> None:
    store = await backend.open()
    try:
        rev = await anchored(store)
        rev = await extend(store, [cs(2, 1)], rev)
        before = await snapshot(store)
        for stale in (None, rev - 1, rev + 1):
            with pytest.raises(StaleRevisionError) as info:
                await extend(store, [cs(3, 2)], stale)  # type: ignore[arg-type]
            assert (info.value.expected, info.value.actual) == (stale, rev)
        assert await snapshot(store) == before
    finally:
        await store.close()


@run_async
async def test_identical_reinsert_is_a_no_op(backend: Backend) -> None:
    store = await backend.open()
    try:
        rev = await anchored(store)
        rev = await extend(store, [cs(2, 1), cs(3, 2)], rev)
        stored = await store.get_consensus_state(CHAIN, 2)
        # Same header again, even verified along another path: nothing changes but the
        # client state, which the caller did write.
        again = dataclasses.replace(cs(2, 1), trusted_from=None, light_block=b"other bytes")
        rev = await extend(store, [cs(3, 2), again, cs(2, 1)], rev)
        assert rev == 3
        assert await store.get_consensus_state(CHAIN, 2) == stored
    finally:
        await store.close()


@run_async
async def test_conflicting_header_raises_and_rolls_back_the_batch(backend: Backend) -> None:
    store = await backend.open()
    try:
        rev = await anchored(store)
        rev = await extend(store, [cs(2, 1), cs(3, 2)], rev)
        before = await snapshot(store)
        with pytest.raises(ConflictError) as info:
            await extend(store, [cs(4, 3), cs(5, 4), cs(3, 2, fork="evil"), cs(6, 5)], rev)
        err = info.value
        assert (err.chain_id, err.height) == (CHAIN, 3)
        assert err.stored_header_hash == cs(3, 2).header_hash
        assert err.offered_header_hash == cs(3, 2, fork="evil").header_hash
        assert err.reason == "CONSENSUS_CONFLICT"
        assert await snapshot(store) == before  # heights 4 and 5 were not kept
        # Two different headers for one height inside one batch are a conflict too.
        with pytest.raises(ConflictError):
            await extend(store, [cs(4, 3), cs(4, 3, fork="evil")], rev)
        assert await snapshot(store) == before
    finally:
        await store.close()


@run_async
async def test_same_header_hash_with_other_contents_is_refused(backend: Backend) -> None:
    store = await backend.open()
    try:
        rev = await anchored(store)
        rev = await extend(store, [cs(2, 1)], rev)
        odd = dataclasses.replace(cs(2, 1), root=b"another root")
        with pytest.raises(InvalidRecordError, match="same header hash"):
            await extend(store, [odd], rev)
        assert strip(await store.get_consensus_state(CHAIN, 2)) == cs(2, 1)
    finally:
        await store.close()


@run_async
async def test_commit_checks_invariants_and_writes_nothing_on_failure(backend: Backend) -> None:
    store = await backend.open()
    try:
        rev = await anchored(store)
        before = await snapshot(store)
        bad_batches: list[tuple[list[ConsensusStateRecord], int, str]] = [
            ([cs(2, 1), cs(4, 3)], 4, "not stored"),  # parent 3 missing
            ([cs(2, 1), cs(3, None)], 3, "only the anchor"),  # second root of trust
            ([cs(2, 1)], 7, "latest height 7"),  # client state ahead of its states
            ([cs(3, 2), cs(2, 1)], 3, "not stored"),  # not in trust order
        ]
        for states, latest, message in bad_batches:
            with pytest.raises(InvalidRecordError, match=message):
                await store.commit_verified(
                    chain_id=CHAIN,
                    client_state=b"x",
                    latest_height=latest,
                    expected_revision=rev,
                    consensus_states=states,
                )
            assert await snapshot(store) == before
        # The anchor itself cannot claim a parent.
        await store.upsert_chain(chain_record("second", anchor_height=5))
        with pytest.raises(InvalidRecordError, match="anchor"):
            await store.commit_verified(
                chain_id="second",
                client_state=b"x",
                latest_height=5,
                expected_revision=None,
                consensus_states=[cs(5, 4)],
            )
        assert await store.get_client_state("second") is None
    finally:
        await store.close()


@run_async
async def test_commit_refused_unless_chain_active(backend: Backend) -> None:
    store = await backend.open()
    try:
        with pytest.raises(UnknownChainError):
            await anchored_commit_only(store, "ghost")
        await store.upsert_chain(chain_record(status=ChainStatus.PENDING))
        with pytest.raises(ChainStatusError, match="pending"):
            await anchored_commit_only(store, CHAIN)
        assert await store.get_client_state(CHAIN) is None
        await store.set_chain_status(CHAIN, status=ChainStatus.ACTIVE, reason="approved")
        rev = await anchored_commit_only(store, CHAIN)
        await store.set_chain_status(CHAIN, status=ChainStatus.EXPIRED, reason="lapsed")
        with pytest.raises(ChainStatusError, match="expired"):
            await extend(store, [cs(2, 1)], rev)
        assert await store.get_consensus_state(CHAIN, 2) is None
    finally:
        await store.close()


async def anchored_commit_only(store: Store, chain_id: str) -> int:
    return await store.commit_verified(
        chain_id=chain_id,
        client_state=b"c",
        latest_height=1,
        expected_revision=None,
        consensus_states=[cs(1, None)],
    )


@run_async
async def test_malformed_arguments_are_typed_errors(backend: Backend) -> None:
    store = await backend.open()
    try:
        rev = await anchored(store)
        with pytest.raises(InvalidRecordError):
            cs(2**63, 1)
        with pytest.raises(InvalidRecordError):
            cs(-1, None)
        with pytest.raises(InvalidRecordError):
            dataclasses.replace(cs(2, 1), root="not bytes")  # type: ignore[arg-type]
        with pytest.raises(InvalidRecordError):
            dataclasses.replace(cs(2, 1), trusted_from=2)
        with pytest.raises(InvalidRecordError):
            chain_record("")
        with pytest.raises(InvalidRecordError):
            chain_record("x" * 1000)
        with pytest.raises(InvalidRecordError):
            dataclasses.replace(chain_record(), status="thawed")  # type: ignore[arg-type]
        with pytest.raises(InvalidRecordError):
            await store.get_consensus_state(CHAIN, 2**64)
        with pytest.raises(InvalidRecordError):
            await store.commit_verified(
                chain_id=CHAIN,
                client_state="text",  # type: ignore[arg-type]
                latest_height=1,
                expected_revision=rev,
                consensus_states=[],
            )
        with pytest.raises(InvalidRecordError):
            await store.commit_verified(
                chain_id=CHAIN,
                client_state=b"x",
                latest_height=1,
                expected_revision=rev,
                consensus_states=[b"not a record"],  # type: ignore[list-item]
            )
        with pytest.raises(InvalidRecordError):
            await store.set_chain_status(CHAIN, status="thawed", reason="x")  # type: ignore[arg-type]
        with pytest.raises(InvalidRecordError):
            await store.prune_consensus_states(CHAIN, older_than_ns=0, keep_heights=[-1])
    finally:
        await store.close()


# ----------------------------------------------------------------------------- lookups


@run_async
async def test_nearest_and_latest_lookups(backend: Backend) -> None:
    store = await backend.open()
    try:
        assert await store.latest_consensus_state(CHAIN) is None
        assert await store.nearest_consensus_state(CHAIN, 5, below=True) is None
        rev = await anchored(store, anchor_height=10)
        await extend(store, [cs(20, 10), cs(35, 20), cs(50, 35)], rev)

        async def near(h: int, below: bool) -> int | None:
            got = await store.nearest_consensus_state(CHAIN, h, below=below)
            return None if got is None else got.height

        cases = {
            (9, True): None,
            (10, True): 10,
            (19, True): 10,
            (20, True): 20,
            (49, True): 35,
            (10**9, True): 50,
            (0, False): 10,
            (11, False): 20,
            (35, False): 35,
            (36, False): 50,
            (51, False): None,
        }
        for (h, below), want in cases.items():
            assert await near(h, below) == want, (h, below)
        assert strip(await store.nearest_consensus_state(CHAIN, 40, below=True)) == cs(35, 20)
        assert strip(await store.latest_consensus_state(CHAIN)) == cs(50, 35)
        assert await store.nearest_consensus_state("other", 40, below=True) is None
    finally:
        await store.close()


@run_async
async def test_trust_path_follows_parents_to_the_anchor(backend: Backend) -> None:
    store = await backend.open()
    try:
        rev = await anchored(store, anchor_height=100)
        # Skipping verification forward and backward from the anchor, plus a side branch.
        rev = await extend(store, [cs(200, 100), cs(150, 200), cs(300, 200), cs(160, 150)], rev)
        path = await store.trust_path(CHAIN, 160)
        assert [s.height for s in path] == [100, 200, 150, 160]
        assert [strip(s) for s in path] == [cs(100, None), cs(200, 100), cs(150, 200), cs(160, 150)]
        assert [s.height for s in await store.trust_path(CHAIN, 300)] == [100, 200, 300]
        assert [s.height for s in await store.trust_path(CHAIN, 100)] == [100]
        assert await store.trust_path(CHAIN, 101) == []
        assert len(await store.trust_path(CHAIN, 160, max_length=4)) == 4
        with pytest.raises(TrustPathTooLongError):
            await store.trust_path(CHAIN, 160, max_length=3)
    finally:
        await store.close()


# ----------------------------------------------------------------------------- pruning


def reference_prune(
    states: dict[int, ConsensusStateRecord],
    *,
    anchor: int,
    latest: int,
    cutoff: int,
    keep: set[int],
) -> set[int]:
    """Obviously-correct model of the pruning rule: the heights that must remain."""
    roots = {h for h, s in states.items() if s.time_ns >= cutoff}
    roots |= {anchor, latest, max(states)} | (keep & states.keys())
    remaining = set()
    for h in roots:
        while h is not None and h not in remaining:
            remaining.add(h)
            h = states[h].trusted_from  # type: ignore[assignment]
    return remaining


@run_async
async def test_prune_matches_reference_model_on_random_trees(backend: Backend) -> None:
    store = await backend.open()
    rng = random.Random(20240611)
    try:
        for trial in range(25):
            chain_id = f"chain-{trial}"
            anchor = rng.randint(1, 50)
            rev = await anchored(store, chain_id, anchor_height=anchor)
            states = {anchor: cs(anchor, None)}
            # Random trust trees: each new state is verified from some stored one.
            for _ in range(rng.randint(1, 60)):
                h = rng.choice([x for x in range(1, 400) if x not in states])
                parent = rng.choice(sorted(states))
                states[h] = cs(h, parent, time_ns=rng.randint(0, 1_000))
                # Commit in small random batches, sometimes with latest not the maximum.
                rev = await store.commit_verified(
                    chain_id=chain_id,
                    client_state=b"c",
                    latest_height=rng.choice(sorted(states)),
                    expected_revision=rev,
                    consensus_states=[states[h]],
                )
            client = await store.get_client_state(chain_id)
            assert client is not None
            cutoff = rng.randint(0, 1_100)
            keep = set(rng.sample(range(1, 400), rng.randint(0, 5)))
            want = reference_prune(
                states, anchor=anchor, latest=client.latest_height, cutoff=cutoff, keep=keep
            )
            deleted = await store.prune_consensus_states(
                chain_id, older_than_ns=cutoff, keep_heights=keep
            )
            assert deleted == len(states) - len(want), trial
            for h, state in states.items():
                got = await store.get_consensus_state(chain_id, h)
                assert (got is not None) == (h in want), (trial, h)
                if h in want:  # every survivor still reaches the anchor
                    path = await store.trust_path(chain_id, h)
                    assert path[0].height == anchor and strip(path[-1]) == state
            # Pruning again with the same inputs deletes nothing more.
            again = await store.prune_consensus_states(
                chain_id, older_than_ns=cutoff, keep_heights=keep
            )
            assert again == 0
    finally:
        await store.close()


@run_async
async def test_prune_keeps_anchor_latest_and_kept_heights(backend: Backend) -> None:
    store = await backend.open()
    try:
        rev = await anchored(store)
        # Spine 1 -> 10 -> 20 -> 30, side leaves 11, 12 (from 10) and 21 (from 20).
        rev = await extend(store, [cs(10, 1), cs(11, 10), cs(12, 10), cs(20, 10)], rev)
        rev = await extend(store, [cs(21, 20), cs(30, 20)], rev)
        deleted = await store.prune_consensus_states(
            CHAIN, older_than_ns=10**12, keep_heights={12, 999}
        )
        assert deleted == 2  # 11 and 21: everything else is the anchor, kept or on a path
        remaining = [h for h in range(40) if await store.get_consensus_state(CHAIN, h)]
        assert remaining == [1, 10, 12, 20, 30]
        with pytest.raises(UnknownChainError):
            await store.prune_consensus_states("ghost", older_than_ns=0, keep_heights=())
    finally:
        await store.close()


# ----------------------------------------------------------------------------- misbehaviour


@run_async
async def test_misbehaviour_freezes_the_chain_atomically(backend: Backend) -> None:
    store = await backend.open()
    try:
        rev = await anchored(store)
        rev = await extend(store, [cs(2, 1)], rev)
        with pytest.raises(ConflictError) as info:
            await extend(store, [cs(2, 1, fork="evil")], rev)
        evidence = info.value.offered_header_hash + info.value.stored_header_hash
        first = await store.record_misbehaviour(
            chain_id=CHAIN, height=2, kind="fork", evidence=evidence, freeze_reason="fork at 2"
        )
        chain = await store.get_chain(CHAIN)
        assert chain is not None
        assert (chain.status, chain.status_reason) == (ChainStatus.FROZEN, "fork at 2")
        with pytest.raises(ChainStatusError, match="frozen"):
            await extend(store, [cs(3, 2)], rev)
        second = await store.record_misbehaviour(
            chain_id=CHAIN, height=7, kind="time", evidence=b"t", freeze_reason="later"
        )
        assert second > first
        chain = await store.get_chain(CHAIN)
        assert chain is not None and chain.status_reason == "fork at 2"  # first reason kept
        records = await store.list_misbehaviour(CHAIN)
        assert [(r.id, r.height, r.kind, r.evidence) for r in records] == [
            (first, 2, "fork", evidence),
            (second, 7, "time", b"t"),
        ]
        assert all(r.chain_id == CHAIN and r.detected_at_ns > 0 for r in records)
        with pytest.raises(UnknownChainError):
            await store.record_misbehaviour(
                chain_id="ghost", height=1, kind="fork", evidence=b"", freeze_reason="x"
            )
        assert await store.list_misbehaviour("ghost") == []
    finally:
        await store.close()


@run_async
async def test_reanchor_recovers_a_frozen_chain(backend: Backend) -> None:
    store = await backend.open()
    try:
        rev = await anchored(store)
        rev = await extend(store, [cs(2, 1), cs(3, 2)], rev)
        await store.record_misbehaviour(
            chain_id=CHAIN, height=3, kind="fork", evidence=b"e", freeze_reason="fork"
        )
        new_anchor = cs(50, None, fork="recovered")
        with pytest.raises(StaleRevisionError):
            await store.reanchor(
                chain_id=CHAIN,
                descriptor=b"descriptor-v2",
                anchor=new_anchor,
                client_state=b"fresh",
                expected_revision=rev - 1,
                reason="x",
            )
        with pytest.raises(InvalidRecordError):
            await store.reanchor(
                chain_id=CHAIN,
                descriptor=b"descriptor-v2",
                anchor=cs(50, 3),
                client_state=b"fresh",
                expected_revision=rev,
                reason="x",
            )
        new_rev = await store.reanchor(
            chain_id=CHAIN,
            descriptor=b"descriptor-v2",
            anchor=new_anchor,
            client_state=b"fresh",
            expected_revision=rev,
            reason="recovered by operator",
        )
        assert new_rev == rev + 1
        chain = await store.get_chain(CHAIN)
        assert chain is not None
        assert (chain.status, chain.anchor_height, chain.descriptor) == (
            ChainStatus.ACTIVE,
            50,
            b"descriptor-v2",
        )
        assert [await store.get_consensus_state(CHAIN, h) for h in (1, 2, 3)] == [None] * 3
        assert [strip(s) for s in await store.trust_path(CHAIN, 50)] == [new_anchor]
        client = await store.get_client_state(CHAIN)
        assert client is not None and (client.latest_height, client.state) == (50, b"fresh")
        assert len(await store.list_misbehaviour(CHAIN)) == 1  # evidence is kept
        new_rev = await extend(store, [cs(51, 50)], new_rev)
        assert new_rev == rev + 2
    finally:
        await store.close()


# ----------------------------------------------------------------------------- lifecycle


@run_async
async def test_reopen_after_close_keeps_everything(backend: Backend) -> None:
    store = await backend.open()
    rev = await anchored(store)
    rev = await extend(store, [cs(2, 1), cs(5, 2)], rev)
    await store.upsert_chain(chain_record("other", status=ChainStatus.PENDING))
    await store.record_misbehaviour(
        chain_id="other", height=3, kind="time", evidence=b"ev", freeze_reason="clock"
    )
    before = await snapshot(store)
    before_other = await snapshot(store, "other")
    misbehaviour = await store.list_misbehaviour("other")
    stats = await store.stats()
    await store.close()
    store = await backend.open()
    try:
        assert await snapshot(store) == before
        assert await snapshot(store, "other") == before_other
        assert await store.list_misbehaviour("other") == misbehaviour
        after = await store.stats()
        assert (after.chains, after.consensus_states, after.misbehaviour) == (2, 3, 1)
        assert after.schema_version == stats.schema_version
        assert await extend(store, [cs(6, 5)], rev) == rev + 1
    finally:
        await store.close()


@run_async
async def test_close_is_idempotent_and_use_after_close_fails(backend: Backend) -> None:
    store = await backend.open()
    await anchored(store)
    await store.close()
    await store.close()
    with pytest.raises(StoreClosedError):
        await store.get_chain(CHAIN)
    with pytest.raises(StoreClosedError):
        await store.upsert_chain(chain_record("x"))


@run_async
async def test_stats_count_rows(backend: Backend) -> None:
    store = await backend.open()
    try:
        empty = await store.stats()
        assert (empty.chains, empty.consensus_states, empty.misbehaviour) == (0, 0, 0)
        rev = await anchored(store)
        await extend(store, [cs(h, h - 1) for h in range(2, 52)], rev)
        stats = await store.stats()
        assert (stats.chains, stats.consensus_states) == (1, 51)
        assert stats.size_bytes > 0
    finally:
        await store.close()


@run_async
async def test_readers_never_see_a_client_state_ahead_of_its_states(backend: Backend) -> None:
    """Concurrent readers and a writer: whatever a reader sees as the client state's latest
    height, the consensus state for it is already readable (committed before used)."""
    store = await backend.open()
    try:
        rev = await anchored(store)
        done = asyncio.Event()

        async def writer() -> None:
            nonlocal rev
            for top in range(2, 122, 3):
                rev = await extend(
                    store, [cs(top, top - 1), cs(top + 1, top), cs(top + 2, top + 1)], rev
                )
            done.set()

        async def reader() -> int:
            seen = 0
            while not done.is_set():
                client = await store.get_client_state(CHAIN)
                assert client is not None
                state = await store.get_consensus_state(CHAIN, client.latest_height)
                assert state is not None, client.latest_height
                seen += 1
            return seen

        results = await asyncio.gather(writer(), *(reader() for _ in range(6)))
        assert sum(r for r in results[1:] if r) > 0
        client = await store.get_client_state(CHAIN)
        assert client is not None and client.latest_height == 121 and client.revision == 41
    finally:
        await store.close()


# ----------------------------------------------------------------------------- sync leases


@run_async
async def test_lease_has_one_owner_and_tokens_grow_per_chain(backend: Backend) -> None:
    store = await backend.open()
    try:
        assert await store.get_lease(CHAIN) is None
        a = await store.acquire_lease(CHAIN, owner="replica-a", ttl_s=30)
        assert a is not None and a.token == 1 and a.owner == "replica-a"
        assert await store.acquire_lease(CHAIN, owner="replica-b", ttl_s=30) is None
        again = await store.acquire_lease(CHAIN, owner="replica-a", ttl_s=30)
        assert again is not None and again.token == a.token  # extending keeps the term
        other = await store.acquire_lease("other-chain", owner="replica-b", ttl_s=30)
        assert other is not None and other.token == 1  # tokens are per chain
        await store.release_lease(a)
        b = await store.acquire_lease(CHAIN, owner="replica-b", ttl_s=30)
        assert b is not None and b.token == 2
        await store.release_lease(a)  # a lost lease's release leaves the new term alone
        assert await store.acquire_lease(CHAIN, owner="replica-a", ttl_s=30) is None
        current = await store.get_lease(CHAIN)
        assert current is not None and (current.owner, current.token) == ("replica-b", 2)
        with pytest.raises(LeaseLostError) as info:
            await store.renew_lease(a, ttl_s=30)
        assert (info.value.token, info.value.current) == (1, 2)
        renewed = await store.renew_lease(b, ttl_s=60)
        assert renewed.token == 2 and renewed.expires_at_ns >= b.expires_at_ns
        with pytest.raises(InvalidRecordError):
            await store.acquire_lease(CHAIN, owner="", ttl_s=30)
        with pytest.raises(InvalidRecordError):
            await store.acquire_lease(CHAIN, owner="x", ttl_s=0)
    finally:
        await store.close()


@run_async
async def test_lease_expires_and_the_next_term_gets_a_greater_token(backend: Backend) -> None:
    store = await backend.open()
    try:
        a = await store.acquire_lease(CHAIN, owner="replica-a", ttl_s=0.2)
        assert a is not None
        assert await store.acquire_lease(CHAIN, owner="replica-b", ttl_s=30) is None
        await asyncio.sleep(0.3)
        with pytest.raises(LeaseLostError, match="expired"):
            await store.renew_lease(a, ttl_s=30)
        b = await store.acquire_lease(CHAIN, owner="replica-b", ttl_s=30)
        assert b is not None and b.token == a.token + 1
        # Even the former owner re-acquiring after expiry starts a new, greater term.
        await store.release_lease(b)
        a2 = await store.acquire_lease(CHAIN, owner="replica-a", ttl_s=30)
        assert a2 is not None and a2.token == b.token + 1
    finally:
        await store.close()


@run_async
async def test_concurrent_acquirers_get_one_lease(backend: Backend) -> None:
    store = await backend.open()
    try:
        results = await asyncio.gather(
            *(store.acquire_lease(CHAIN, owner=f"replica-{i}", ttl_s=30) for i in range(8))
        )
        winners = [r for r in results if r is not None]
        assert len(winners) == 1 and winners[0].token == 1
    finally:
        await store.close()


@run_async
async def test_fenced_sync_writes_are_refused_once_the_lease_is_lost(backend: Backend) -> None:
    """A paused former owner (its lease expired, then taken over) can write nothing: not
    verified state, not misbehaviour, not a status change. The new owner can."""
    store = await backend.open()
    try:
        await store.upsert_chain(chain_record())
        a = await store.acquire_lease(CHAIN, owner="replica-a", ttl_s=0.3)
        assert a is not None
        rev = await store.commit_verified(
            chain_id=CHAIN,
            client_state=b"client@1",
            latest_height=1,
            expected_revision=None,
            consensus_states=[cs(1, None)],
            fence=a.token,
        )
        before = await snapshot(store, up_to=4)
        await asyncio.sleep(0.4)  # "paused" past the lease
        with pytest.raises(LeaseLostError, match="expired"):
            await store.commit_verified(
                chain_id=CHAIN,
                client_state=b"client@2",
                latest_height=2,
                expected_revision=rev,
                consensus_states=[cs(2, 1)],
                fence=a.token,
            )
        b = await store.acquire_lease(CHAIN, owner="replica-b", ttl_s=30)
        assert b is not None and b.token > a.token
        with pytest.raises(LeaseLostError) as info:
            await store.commit_verified(
                chain_id=CHAIN,
                client_state=b"client@2",
                latest_height=2,
                expected_revision=rev,
                consensus_states=[cs(2, 1)],
                fence=a.token,
            )
        assert info.value.current == b.token and info.value.reason == "LEASE_LOST"
        with pytest.raises(LeaseLostError):
            await store.record_misbehaviour(
                chain_id=CHAIN,
                height=2,
                kind="fork",
                evidence=b"e",
                freeze_reason="fork",
                fence=a.token,
            )
        with pytest.raises(LeaseLostError):
            await store.set_chain_status(
                CHAIN, status=ChainStatus.EXPIRED, reason="stale", fence=a.token
            )
        assert await snapshot(store, up_to=4) == before
        assert await store.list_misbehaviour(CHAIN) == []
        # The new owner's fenced writes land; unfenced writes (on-demand verification by any
        # replica) are governed by the revision alone.
        rev = await store.commit_verified(
            chain_id=CHAIN,
            client_state=b"client@2",
            latest_height=2,
            expected_revision=rev,
            consensus_states=[cs(2, 1)],
            fence=b.token,
        )
        rev = await extend(store, [cs(3, 2)], rev)
        assert rev == 3
        await store.upsert_chain(chain_record("never-leased"))
        with pytest.raises(LeaseLostError, match="no sync lease"):
            await store.set_chain_status(
                "never-leased", status=ChainStatus.FROZEN, reason="x", fence=1
            )
    finally:
        await store.close()


@run_async
async def test_each_state_records_the_lease_term_that_wrote_it(backend: Backend) -> None:
    """Migration 0005: a fenced write stores its token on every state it adds, an unfenced
    one NULL; an identical re-insert under a later term keeps the first writer's token, and
    a refused write (lost lease) leaves no state carrying its token."""
    store = await backend.open()
    try:
        rev = await anchored(store)
        a = await store.acquire_lease(CHAIN, owner="replica-a", ttl_s=0.3)
        assert a is not None
        rev = await store.commit_verified(
            chain_id=CHAIN,
            client_state=b"client@3",
            latest_height=3,
            expected_revision=rev,
            consensus_states=[cs(2, 1), cs(3, 2)],
            fence=a.token,
        )
        rev = await extend(store, [cs(4, 3)], rev)  # unfenced: on-demand by any replica
        await asyncio.sleep(0.4)
        b = await store.acquire_lease(CHAIN, owner="replica-b", ttl_s=30)
        assert b is not None and b.token > a.token
        with pytest.raises(LeaseLostError):
            await store.commit_verified(
                chain_id=CHAIN,
                client_state=b"client@5",
                latest_height=5,
                expected_revision=rev,
                consensus_states=[cs(5, 4)],
                fence=a.token,
            )
        rev = await store.commit_verified(
            chain_id=CHAIN,
            client_state=b"client@6",
            latest_height=6,
            expected_revision=rev,
            consensus_states=[cs(4, 3), cs(6, 4)],  # 4 again: identical, keeps its writer
            fence=b.token,
        )
        listed = await store.list_consensus_states(CHAIN)
        assert [(s.height, s.lease_token) for s in listed] == [
            (1, None),
            (2, a.token),
            (3, a.token),
            (4, None),
            (6, b.token),
        ]
        one = await store.get_consensus_state(CHAIN, 6)
        assert one is not None and one.lease_token == b.token
        assert strip(dataclasses.replace(one, lease_token=None)) == cs(6, 4)
        # Paging: from a height, at most ``limit`` states, in height order.
        page = await store.list_consensus_states(CHAIN, from_height=3, limit=2)
        assert [s.height for s in page] == [3, 4]
        assert await store.list_consensus_states("no-such-chain") == []
        for bad in ({"limit": 0}, {"limit": 10_001}, {"from_height": -1}):
            with pytest.raises(InvalidRecordError):
                await store.list_consensus_states(CHAIN, **bad)
    finally:
        await store.close()


# ----------------------------------------------------------------------------- access records


@run_async
async def test_proposals_nonces_decisions_and_admin_actions(backend: Backend) -> None:
    store = await backend.open()
    try:
        proposal = {
            "institution": "court-7",
            "kind": "register",
            "chain_id": "land-9",
            "signed": b"signed-bytes",
            "submitted_by": "partner:court-7",
            "submitted_at_ns": 1_000,
            "expires_at_ns": 10_000,
        }
        await store.insert_proposal(proposal_id="p1", nonce=b"n1", **proposal)  # type: ignore[arg-type]
        with pytest.raises(NonceReplayedError):
            await store.insert_proposal(proposal_id="p2", nonce=b"n1", **proposal)  # type: ignore[arg-type]
        await store.insert_proposal(proposal_id="p3", nonce=b"n3", **proposal)  # type: ignore[arg-type]
        decide = functools.partial(store.decide_proposal, comment="ok", required=2)
        assert await decide(
            proposal_id="p1", operator_id="op1", decision="approve", now_ns=2_000
        ) == ("pending", 1)
        with pytest.raises(ProposalClosedError):
            await decide(proposal_id="p1", operator_id="op1", decision="approve", now_ns=2_001)
        assert await decide(
            proposal_id="p1", operator_id="op2", decision="approve", now_ns=2_002
        ) == ("apply", 2)
        await store.finish_proposal("p1", state="applied", message="registered", now_ns=2_003)
        with pytest.raises(ProposalClosedError, match="applied"):
            await decide(proposal_id="p1", operator_id="op3", decision="approve", now_ns=2_004)
        with pytest.raises(ProposalNotFoundError):
            await decide(proposal_id="nope", operator_id="op1", decision="approve", now_ns=1)
        # Past its expiry a pending proposal expires instead of taking the decision.
        assert await decide(
            proposal_id="p3", operator_id="op1", decision="approve", now_ns=10_000
        ) == ("expired", 0)
        listed = await store.list_proposals(limit=10)
        assert [(p.proposal_id, p.state) for p in listed] == [("p1", "applied"), ("p3", "expired")]
        p1 = (await store.list_proposals(proposal_id="p1", limit=10))[0]
        assert p1.status_message == "registered" and p1.signed == b"signed-bytes"
        assert [(d.operator_id, d.decision) for d in p1.decisions] == [
            ("op1", "approve"),
            ("op2", "approve"),
        ]
        assert await store.list_proposals(state="pending", limit=10) == []
        assert len(await store.list_proposals(institution="court-7", limit=1)) == 1
        for i in range(3):
            await store.record_admin_action(
                at_ns=i, actor=f"op{i}", role="operator", action="approve", target="p1",
                outcome="OK", detail="",
            )  # fmt: skip
        actions = await store.admin_actions()
        assert [(a.at_ns, a.actor) for a in actions] == [(0, "op0"), (1, "op1"), (2, "op2")]
    finally:
        await store.close()


# ----------------------------------------------------------------------------- audit log
# Issue 7 with the replicas of issue 9: one log for the whole deployment. The store picks
# each appended leaf's index, so writers sharing the database never collide or leave gaps.


def audit_leaf(writer: int, n: int) -> tuple[bytes, bytes, str, int]:
    entry = b'{"writer":%d,"n":%d}' % (writer, n)
    return entry, hashlib.sha256(b"\x00" + entry).digest(), f"court-{writer}", n


async def second_writer(backend: Backend, store: Store) -> Store:
    """Another writer of the same database: a second store instance where the backend is
    shared by processes (PostgreSQL), else the same instance (SQLite has one writer)."""
    if backend.dialect == "postgresql":
        return await backend.open()
    return store


@run_async
async def test_concurrent_audit_appends_get_distinct_consecutive_indexes(
    backend: Backend,
) -> None:
    store = await backend.open()
    other = await second_writer(backend, store)
    try:
        batches: dict[tuple[int, int], list[tuple[bytes, bytes, str, int]]] = {
            (w, b): [audit_leaf(w, b * 10 + i) for i in range(1 + (b % 4))]
            for w in (0, 1)
            for b in range(25)
        }

        async def append(key: tuple[int, int]) -> tuple[tuple[int, int], int]:
            writer = store if key[0] == 0 else other
            return key, await writer.append_audit_leaves(batches[key])

        ends = dict(await asyncio.gather(*(append(k) for k in batches)))
        total = sum(len(rows) for rows in batches.values())
        assert await store.audit_size() == await other.audit_size() == total
        stored = await store.audit_leaves()
        assert [leaf.index for leaf in stored] == list(range(total))  # no gap, no overlap
        for key, rows in batches.items():
            first = ends[key] - len(rows)  # each batch is contiguous, at the returned place
            got = stored[first : ends[key]]
            assert [(g.entry, g.leaf_hash, g.court, g.at_ns) for g in got] == rows, key
        # A writer that names its own first index is refused when the log moved on.
        with pytest.raises(StoreIntegrityError):
            await other.append_audit_leaves([audit_leaf(9, 0)], first_index=total - 1)
        assert await store.append_audit_leaves([audit_leaf(9, 1)]) == total + 1
    finally:
        if other is not store:
            await other.close()
        await store.close()


@run_async
async def test_audit_checkpoints_are_one_per_size_and_fenced_by_a_lease(backend: Backend) -> None:
    store = await backend.open()
    try:
        one = AuditCheckpointRecord(size=3, root=b"r" * 32, note=b"note-a", at_ns=1)
        assert await store.put_audit_checkpoint(one) == one
        # The same size and root again (another signer, another time): the first stays.
        again = dataclasses.replace(one, note=b"note-b", at_ns=2)
        assert await store.put_audit_checkpoint(again) == one
        split = dataclasses.replace(one, root=b"x" * 32, note=b"note-c")
        with pytest.raises(StoreIntegrityError, match="split view"):
            await store.put_audit_checkpoint(split)
        assert await store.audit_checkpoints() == [one]
        # Fenced: only the current, unexpired term of the (non-chain) lease writes.
        name = "relay/audit-checkpoints"
        old = await store.acquire_lease(name, owner="replica-a", ttl_s=30)
        assert old is not None
        two = AuditCheckpointRecord(size=5, root=b"s" * 32, note=b"n5", at_ns=3)
        assert await store.put_audit_checkpoint(two, lease=old) == two
        await store.release_lease(old)
        new = await store.acquire_lease(name, owner="replica-b", ttl_s=30)
        assert new is not None and new.token == old.token + 1
        three = AuditCheckpointRecord(size=8, root=b"t" * 32, note=b"n8", at_ns=4)
        with pytest.raises(LeaseLostError):
            await store.put_audit_checkpoint(three, lease=old)
        assert [c.size for c in await store.audit_checkpoints()] == [3, 5]
        assert await store.put_audit_checkpoint(three, lease=new) == three
        assert [c.size for c in await store.audit_checkpoints(min_size=4)] == [5, 8]
        assert await store.audit_checkpoints(min_size=9) == []
        # One by size, and the newest few (what the audit log keeps in memory).
        assert [c.size for c in await store.audit_checkpoints(min_size=4, limit=1)] == [5]
        newest = await store.audit_checkpoints(newest_first=True, limit=2)
        assert [c.size for c in newest] == [8, 5]
        assert await store.audit_checkpoints(limit=0) == []
    finally:
        await store.close()


@run_async
async def test_migration_6_keeps_every_proposal_and_decision_and_takes_recoveries(
    backend: Backend,
) -> None:
    """0006 widens the proposal kinds (SQLite rebuilds the table and its decisions): a
    database written under 0005 keeps its proposals and their decisions, and takes
    'recover' proposals afterwards, while unknown kinds stay refused."""
    shipped = shipped_migrations.load(backend.dialect)
    assert [m.name for m in shipped][5] == "recovery_proposals"
    old = await backend.open(migrations=shipped[:5])
    proposal = {
        "institution": "inst-1",
        "kind": "update_endpoint",
        "chain_id": "land-9",
        "signed": b"signed-bytes",
        "submitted_by": "partner:inst-1",
        "submitted_at_ns": 1_000,
        "expires_at_ns": 10_000,
    }
    try:
        await old.insert_proposal(proposal_id="p1", nonce=b"n1", **proposal)  # type: ignore[arg-type]
        await old.decide_proposal(
            proposal_id="p1", operator_id="op1", decision="approve", comment="ok", required=2,
            now_ns=2_000,
        )  # fmt: skip
        with pytest.raises(Exception):  # noqa: B017 - the 0005 schema refuses the kind
            await old.insert_proposal(
                proposal_id="p0",
                nonce=b"n0",
                **{**proposal, "kind": "recover"},  # type: ignore[arg-type]
            )
    finally:
        await old.close()
    store = await backend.open()
    try:
        (p1,) = await store.list_proposals(proposal_id="p1", limit=10)
        assert (p1.kind, p1.state, p1.signed) == ("update_endpoint", "pending", b"signed-bytes")
        assert [(d.operator_id, d.decision, d.comment) for d in p1.decisions] == [
            ("op1", "approve", "ok")
        ]
        await store.insert_proposal(
            proposal_id="p2", nonce=b"n2", **{**proposal, "kind": "recover"}
        )  # type: ignore[arg-type]
        assert await store.decide_proposal(
            proposal_id="p2", operator_id="op1", decision="approve", comment="", required=1,
            now_ns=2_000,
        ) == ("apply", 1)  # fmt: skip
        with pytest.raises(Exception):  # noqa: B017 - still a closed set of kinds
            await store.insert_proposal(
                proposal_id="p3",
                nonce=b"n3",
                **{**proposal, "kind": "anything"},  # type: ignore[arg-type]
            )
    finally:
        await store.close()


@run_async
async def test_evidence_heights_are_shared_kept_latest_and_forgotten(backend: Backend) -> None:
    """What replicas note as served evidence (issue 9): the latest time per height wins,
    reads filter by time, old notes are forgotten, and bad notes are typed errors."""
    store = await backend.open()
    other = await second_writer(backend, store)
    try:
        await store.note_evidence_heights(CHAIN, {5: 1_000, 9: 3_000})
        await other.note_evidence_heights(CHAIN, {5: 4_000, 7: 2_000})  # another replica
        await other.note_evidence_heights(CHAIN, {9: 2_500})  # older: 9 stays at 3_000
        await store.note_evidence_heights("another-chain", {5: 9_000})
        await store.note_evidence_heights(CHAIN, {})
        assert await store.evidence_heights(CHAIN, since_ns=0) == [5, 7, 9]
        assert await store.evidence_heights(CHAIN, since_ns=3_000) == [5, 9]
        assert await other.evidence_heights(CHAIN, since_ns=4_000) == [5]
        assert await store.forget_evidence_heights(CHAIN, older_than_ns=3_000) == 1  # 7
        assert await store.evidence_heights(CHAIN, since_ns=0) == [5, 9]
        assert await store.evidence_heights("another-chain", since_ns=0) == [5]
        for bad in ({-1: 5}, {5: -1}, {True: 5}, dict.fromkeys(range(10_001), 1)):
            with pytest.raises(InvalidRecordError):
                await store.note_evidence_heights(CHAIN, bad)  # type: ignore[arg-type]
    finally:
        if other is not store:
            await other.close()
        await store.close()
