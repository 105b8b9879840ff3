"""PostgreSQL-only behaviour of the store (issue 9): several replicas sharing one database.
The behaviour both backends share is in tests/test_store_contract.py; here, what only a
shared server database can show — replicas starting together, racing writers on one chain,
racing lease takeovers — and the configuration that selects the backend."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from relay.config import ConfigError, StoreConfig, store_dsn
from relay.store import (
    ChainRecord,
    ChainStatus,
    ClientType,
    ConflictError,
    ConsensusStateRecord,
    StaleRevisionError,
    StoreError,
)
from relay.store import migrations as shipped_migrations
from relay.store.base import LeaseLostError
from relay.store.postgres import PostgresStore, _redact

CHAIN = "bank-ledger-3"


def state(height: int, parent: int | None, fork: str = "") -> ConsensusStateRecord:
    tag = f"{height}{fork}".encode()
    return ConsensusStateRecord(
        height=height,
        time_ns=height * 1000,
        root=b"r" + tag,
        header_hash=b"h" + tag,
        light_block=b"lb" + tag,
        trusted_from=parent,
    )


async def replicas(dsn: str, n: int) -> list[PostgresStore]:
    return list(await asyncio.gather(*(PostgresStore.open(dsn, pool_size=2) for _ in range(n))))


async def setup_chain(store: PostgresStore) -> int:
    await store.upsert_chain(
        ChainRecord(
            chain_id=CHAIN,
            domain="finance",
            client_type=ClientType.TENDERMINT,
            descriptor=b"d",
            status=ChainStatus.ACTIVE,
            anchor_height=1,
        )
    )
    return await store.commit_verified(
        chain_id=CHAIN,
        client_state=b"c1",
        latest_height=1,
        expected_revision=None,
        consensus_states=[state(1, None)],
    )


def test_replicas_starting_together_apply_each_migration_once(pg_cluster: Any) -> None:
    dsn = pg_cluster.create_database()

    async def body() -> None:
        stores = await replicas(dsn, 5)
        try:
            versions = {(await s.stats()).schema_version for s in stores}
            assert versions == {len(shipped_migrations.load("postgresql"))}
        finally:
            await asyncio.gather(*(s.close() for s in stores))

    asyncio.run(body())


def test_racing_replicas_commit_once_and_never_contradict(pg_cluster: Any) -> None:
    """Replicas verifying the same heights on demand race on one chain: exactly one write
    per revision lands, identical states are not duplicated, and two different headers for
    one height can never both be stored."""
    dsn = pg_cluster.create_database()

    async def body() -> None:
        stores = await replicas(dsn, 3)
        try:
            rev = await setup_chain(stores[0])

            async def commit(store: PostgresStore, states: list[ConsensusStateRecord]) -> Any:
                try:
                    return await store.commit_verified(
                        chain_id=CHAIN,
                        client_state=b"c%d" % states[-1].height,
                        latest_height=states[-1].height,
                        expected_revision=rev,
                        consensus_states=states,
                    )
                except (StaleRevisionError, ConflictError) as exc:
                    return exc

            same = [state(2, 1), state(3, 2)]
            results = await asyncio.gather(*(commit(s, same) for s in stores))
            wins = [r for r in results if isinstance(r, int)]
            assert wins == [rev + 1]
            assert all(isinstance(r, StaleRevisionError) for r in results if r not in wins)
            rev += 1
            # Forked headers for height 4 offered by two replicas at once: one lands.
            results = await asyncio.gather(
                commit(stores[1], [state(4, 3)]), commit(stores[2], [state(4, 3, fork="x")])
            )
            assert sum(isinstance(r, int) for r in results) == 1
            stored = await stores[0].get_consensus_state(CHAIN, 4)
            winner = 0 if isinstance(results[0], int) else 1
            assert stored is not None and stored.header_hash == (b"h4", b"h4x")[winner]
            # The loser, re-reading, now sees a conflict rather than overwriting.
            client = await stores[0].get_client_state(CHAIN)
            assert client is not None
            with pytest.raises(ConflictError):
                await stores[1 + (1 - winner)].commit_verified(
                    chain_id=CHAIN,
                    client_state=b"c4",
                    latest_height=4,
                    expected_revision=client.revision,
                    consensus_states=[state(4, 3, fork=("x", "")[winner])],
                )
            assert (await stores[0].stats()).consensus_states == 4
        finally:
            await asyncio.gather(*(s.close() for s in stores))

    asyncio.run(body())


def test_lease_takeover_race_across_replicas(pg_cluster: Any) -> None:
    """Replicas race for an expired lease: one wins with a greater token and the old
    owner's fenced writes are refused from then on, on every replica."""
    dsn = pg_cluster.create_database()

    async def body() -> None:
        stores = await replicas(dsn, 3)
        try:
            rev = await setup_chain(stores[0])
            old = await stores[0].acquire_lease(CHAIN, owner="r0", ttl_s=0.2)
            assert old is not None
            await asyncio.sleep(0.3)
            got = await asyncio.gather(
                *(s.acquire_lease(CHAIN, owner=f"r{i}", ttl_s=30) for i, s in enumerate(stores))
            )
            winners = [g for g in got if g is not None]
            assert len(winners) == 1 and winners[0].token == old.token + 1
            for s in stores:
                with pytest.raises(LeaseLostError):
                    await s.commit_verified(
                        chain_id=CHAIN,
                        client_state=b"c2",
                        latest_height=2,
                        expected_revision=rev,
                        consensus_states=[state(2, 1)],
                        fence=old.token,
                    )
            assert await stores[1].get_consensus_state(CHAIN, 2) is None
        finally:
            await asyncio.gather(*(s.close() for s in stores))

    asyncio.run(body())


def test_unreachable_database_is_a_store_error_without_the_password() -> None:
    async def body() -> None:
        with pytest.raises(StoreError) as info:
            await PostgresStore.open(
                "postgresql://relay:s3cret@127.0.0.1:1/relay", connect_timeout_s=2
            )
        assert "s3cret" not in str(info.value)

    asyncio.run(body())
    assert _redact("postgresql://u:pw@h:5432/db") == "postgresql://u@h:5432/db"


def test_config_selects_postgres_and_takes_the_dsn_only_from_the_environment() -> None:
    cfg = StoreConfig.model_validate({"backend": "postgres"})
    assert cfg.path is None and cfg.pool_size == 8
    with pytest.raises(ValueError, match="RELAY_STORE_DSN"):
        StoreConfig.model_validate({"backend": "postgres", "path": "/tmp/relay.db"})
    with pytest.raises(ValueError, match=r"[Ee]xtra"):
        StoreConfig.model_validate({"backend": "postgres", "dsn": "postgresql://x"})
    with pytest.raises(ValueError, match=r"store\.path is required"):
        StoreConfig.model_validate({"backend": "sqlite"})
    with pytest.raises(ConfigError, match="RELAY_STORE_DSN"):
        store_dsn({})
    assert store_dsn({"RELAY_STORE_DSN": " postgresql://a@b/c "}) == "postgresql://a@b/c"


def test_open_store_opens_postgres_from_the_environment(
    pg_cluster: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    from relay.service.app import open_store

    dsn = pg_cluster.create_database()
    monkeypatch.setenv("RELAY_STORE_DSN", dsn)

    class Cfg:
        store = StoreConfig.model_validate({"backend": "postgres", "pool_size": 2})

    async def body() -> None:
        store = await open_store(Cfg())  # type: ignore[arg-type]
        try:
            assert isinstance(store, PostgresStore)
            assert (await store.stats()).chains == 0
        finally:
            await store.close()

    asyncio.run(body())
