"""Persistent light-client state (DESIGN.md: relay/store/): the :class:`Store` protocol, its
records and errors, and the embedded SQLite implementation. A PostgreSQL implementation of
the same protocol follows (issue 9) without changing callers."""

from relay.store.base import (
    ChainRecord,
    ChainStatus,
    ChainStatusError,
    ClientStateRecord,
    ClientType,
    ConflictError,
    ConsensusStateRecord,
    InvalidRecordError,
    MigrationError,
    MisbehaviourRecord,
    StaleRevisionError,
    Store,
    StoreClosedError,
    StoreCorruptError,
    StoreError,
    StoreIntegrityError,
    StoreLockedError,
    StoreStats,
    TrustPathTooLongError,
    UnknownChainError,
)
from relay.store.sqlite import APPLICATION_ID, SQLiteStore

__all__ = [
    "APPLICATION_ID",
    "ChainRecord",
    "ChainStatus",
    "ChainStatusError",
    "ClientStateRecord",
    "ClientType",
    "ConflictError",
    "ConsensusStateRecord",
    "InvalidRecordError",
    "MigrationError",
    "MisbehaviourRecord",
    "SQLiteStore",
    "StaleRevisionError",
    "Store",
    "StoreClosedError",
    "StoreCorruptError",
    "StoreError",
    "StoreIntegrityError",
    "StoreLockedError",
    "StoreStats",
    "TrustPathTooLongError",
    "UnknownChainError",
]
