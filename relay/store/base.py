"""The Store protocol: what the engine and service may ask of persistent light-client state,
the records it reads and writes, and the typed errors it raises.

DESIGN.md principle 4, "Nothing is lost, nothing is guessed": verified state is committed
(durably) before it is used or acknowledged, a write never half-lands, and a store that
cannot vouch for its own contents refuses to serve. The protocol is async and speaks only
in records and opaque blobs (the engine serialises its own client and consensus states), so
the SQLite implementation (:mod:`relay.store.sqlite`) and a later PostgreSQL one can be
swapped without changing callers; the behavioural suite in ``tests/test_store_contract.py``
is what "the same behaviour" means.

Invariants every implementation keeps (the contract suite checks them):

* Consensus states are immutable. Re-inserting an identical state is a no-op; a different
  header at a stored height raises :class:`ConflictError` (misbehaviour evidence).
* Every stored consensus state's ``trusted_from`` parent is stored too, so
  :meth:`Store.trust_path` from any stored height reaches the chain's anchor (the only
  state with ``trusted_from = None``). Pruning preserves this.
* A client state's ``latest_height`` always has its consensus state stored.
* ``revision`` of a client state grows by one with every write; a write that expects
  another revision is refused (:class:`StaleRevisionError`). This is the fencing hook for
  per-chain sync leases (issue 9).
* Verified state never lands on a chain that is not ``active``; a ``frozen`` or ``expired``
  chain becomes active again only through :meth:`Store.reanchor`.
"""

from __future__ import annotations

import enum
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar, Protocol

# Sanity bounds on identifiers. Heights and times are SQL 64-bit integers.
MAX_CHAIN_ID_LENGTH = 128
MAX_TEXT_LENGTH = 4096
MAX_INT64 = 2**63 - 1
DEFAULT_TRUST_PATH_LIMIT = 4096


class ClientType(enum.StrEnum):
    """Which light client follows the chain (DESIGN.md, trust model per chain)."""

    TENDERMINT = "tendermint"
    TLOG = "tlog"


class ChainStatus(enum.StrEnum):
    """Lifecycle of a registered chain.

    ``pending``: registered, awaiting operator approval. ``active``: followed and queried.
    ``frozen``: misbehaviour seen (fork, time violation); nothing is served or synced until
    an operator re-anchors it. ``expired``: the trusting period lapsed; likewise.
    """

    PENDING = "pending"
    ACTIVE = "active"
    FROZEN = "frozen"
    EXPIRED = "expired"


def _show(value: object) -> str:
    if isinstance(value, bytes | bytearray):
        return value.hex() if len(value) <= 64 else value[:64].hex() + f"...({len(value)} bytes)"
    return repr(value)


class StoreError(Exception):
    """Base of every error raised by :mod:`relay.store`.

    ``reason`` is a stable, machine-readable code; ``context`` holds the named values that
    explain the failure (chain, height, expected and actual values).
    """

    reason: ClassVar[str] = "STORE_ERROR"

    def __init__(self, message: str, **context: object) -> None:
        self.message = message
        self.context = context
        super().__init__(message)

    def __str__(self) -> str:
        if not self.context:
            return self.message
        details = ", ".join(f"{k}={_show(v)}" for k, v in self.context.items())
        return f"{self.message} ({details})"


class StoreCorruptError(StoreError):
    """The database file is damaged, truncated or not a relay database. It is never served
    from; the message names the file, what failed, and what to do."""

    reason = "STORE_CORRUPT"

    def __init__(self, path: str, what: str) -> None:
        self.path = path
        self.what = what
        super().__init__(
            f"relay database {path} cannot be trusted: {what}. The relay will not serve from "
            "it. Stop the relay and restore the file from a backup, or move it aside and "
            "re-anchor every chain from its registered trust anchor."
        )

    def __str__(self) -> str:
        return self.message


class StoreLockedError(StoreError):
    """Another process already holds the database open for writing (one writer only)."""

    reason = "STORE_LOCKED"


class StoreClosedError(StoreError):
    """The store was used after :meth:`Store.close`."""

    reason = "STORE_CLOSED"


class MigrationError(StoreError):
    """The schema applied to the database does not match the migrations this build ships
    (edited, missing or newer migrations). The relay refuses to start."""

    reason = "STORE_MIGRATION_MISMATCH"


class UnknownChainError(StoreError):
    """The chain is not registered."""

    reason = "CHAIN_UNKNOWN"

    def __init__(self, chain_id: str) -> None:
        self.chain_id = chain_id
        super().__init__(f"chain {chain_id!r} is not registered", chain_id=chain_id)


class ChainExistsError(StoreError):
    """A chain with this id is already stored (:meth:`Store.create_chain`): registered
    before, or by another replica sharing the store at the same moment."""

    reason = "CHAIN_EXISTS"

    def __init__(self, chain_id: str) -> None:
        self.chain_id = chain_id
        super().__init__(f"chain {chain_id!r} is already registered", chain_id=chain_id)


class ChainStatusError(StoreError):
    """The operation is not allowed in the chain's current status (e.g. verified state for a
    frozen chain, or un-freezing a chain without a new anchor)."""

    reason = "CHAIN_STATUS"

    def __init__(self, message: str, *, chain_id: str, status: str, **context: object) -> None:
        self.chain_id = chain_id
        self.status = status
        super().__init__(message, chain_id=chain_id, status=status, **context)


class ConflictError(StoreError):
    """A consensus state with a different header is already stored at this height: two
    headers for one height is misbehaviour evidence. The whole write was rolled back."""

    reason = "CONSENSUS_CONFLICT"

    def __init__(
        self, *, chain_id: str, height: int, stored_header_hash: bytes, offered_header_hash: bytes
    ) -> None:
        self.chain_id = chain_id
        self.height = height
        self.stored_header_hash = stored_header_hash
        self.offered_header_hash = offered_header_hash
        super().__init__(
            f"chain {chain_id!r} already has a different header at height {height}",
            chain_id=chain_id,
            height=height,
            expected=stored_header_hash,
            calculated=offered_header_hash,
        )


class StaleRevisionError(StoreError):
    """The client state was written by someone else since the caller read it (or, with
    ``expected=None``, it already exists). The write was refused."""

    reason = "STALE_REVISION"

    def __init__(self, *, chain_id: str, expected: int | None, actual: int | None) -> None:
        self.chain_id = chain_id
        self.expected = expected
        self.actual = actual
        super().__init__(
            f"client state of chain {chain_id!r} is at revision {actual}, not {expected}; "
            "re-read it and verify again",
            chain_id=chain_id,
            expected=expected,
            actual=actual,
        )


class InvalidRecordError(StoreError):
    """A record is malformed or would break a store invariant (missing trust-path parent,
    latest height without its consensus state, a second anchor...). Nothing was written."""

    reason = "INVALID_RECORD"


class LeaseLostError(StoreError):
    """A sync write or lease renewal carried a fencing token that is no longer the chain's
    current, unexpired sync lease (another replica took the chain over, or the lease ran
    out while its owner was paused). Nothing was written; the caller must stop syncing the
    chain and acquire the lease again (issue 9)."""

    reason = "LEASE_LOST"

    def __init__(self, *, chain_id: str, token: int, current: int | None, why: str) -> None:
        self.chain_id = chain_id
        self.token = token
        self.current = current
        super().__init__(
            f"sync lease {token} of chain {chain_id!r} is lost: {why}",
            chain_id=chain_id,
            expected=current,
            actual=token,
        )


class NonceReplayedError(StoreError):
    """A proposal's (institution, nonce) pair was already used (issue 5)."""

    reason = "PROPOSAL_REPLAYED"


class ProposalNotFoundError(StoreError):
    """No proposal has this id."""

    reason = "NOT_FOUND"


class ProposalClosedError(StoreError):
    """The proposal is no longer pending, or the operator already decided on it."""

    reason = "PROPOSAL_CLOSED"


class TrustPathTooLongError(StoreError):
    """The trust path from a height back to the anchor is longer than the caller's limit."""

    reason = "TRUST_PATH_TOO_LONG"


class StoreIntegrityError(StoreError):
    """Stored data violates a store invariant (e.g. a trust path that does not reach the
    anchor). Indicates a bug or outside tampering; treat like corruption."""

    reason = "STORE_INTEGRITY"


def _check_int(name: str, value: object, *, minimum: int = 0) -> None:
    if type(value) is not int or not minimum <= value <= MAX_INT64:
        raise InvalidRecordError(f"{name} must be an integer in [{minimum}, 2^63)", value=value)


def _check_bytes(name: str, value: object) -> None:
    if type(value) is not bytes:
        raise InvalidRecordError(f"{name} must be bytes", type=type(value).__name__)


def _check_text(name: str, value: object, *, limit: int = MAX_TEXT_LENGTH) -> None:
    if not isinstance(value, str) or len(value) > limit:
        raise InvalidRecordError(f"{name} must be a string of at most {limit} characters")


def check_height(height: object, name: str = "height") -> None:
    """Raise :class:`InvalidRecordError` unless ``height`` is an int in [0, 2^63)."""
    _check_int(name, height)


def check_chain_id(chain_id: object) -> None:
    """Raise :class:`InvalidRecordError` unless ``chain_id`` is a non-empty bounded string."""
    _check_text("chain_id", chain_id, limit=MAX_CHAIN_ID_LENGTH)
    if not chain_id:
        raise InvalidRecordError("chain_id must not be empty")


# --- rows: the column orders and row conversions every SQL backend shares -----------------

CS_COLUMNS = (
    "height, time_ns, root, header_hash, light_block, next_validators_hash, trusted_from, "
    "created_at_ns, lease_token"
)
"""Column order of a consensus-state row, as :func:`cs_from_row` reads it."""

ADMIN_ACTIONS_SELECT = (
    "SELECT at_ns, actor, role, action, target, outcome, detail FROM admin_actions ORDER BY id"
)


def chain_from_row(row: Sequence[Any]) -> ChainRecord:
    """A chains row (chain_id, domain, client_type, descriptor, status, status_reason,
    anchor_height, created_at_ns, updated_at_ns) as a record; blobs become ``bytes`` whatever
    the driver returns (SQLite: bytes, asyncpg: bytes or memoryview)."""
    return ChainRecord(
        chain_id=row[0],
        domain=row[1],
        client_type=row[2],
        descriptor=bytes(row[3]),
        status=row[4],
        status_reason=row[5],
        anchor_height=row[6],
        created_at_ns=row[7],
        updated_at_ns=row[8],
    )


def cs_from_row(row: Sequence[Any]) -> ConsensusStateRecord:
    """A consensus-state row in :data:`CS_COLUMNS` order as a record."""
    return ConsensusStateRecord(
        height=row[0],
        time_ns=row[1],
        root=bytes(row[2]),
        header_hash=bytes(row[3]),
        light_block=bytes(row[4]),
        next_validators_hash=None if row[5] is None else bytes(row[5]),
        trusted_from=row[6],
        created_at_ns=row[7],
        lease_token=None if row[8] is None else int(row[8]),
    )


def admin_action_from_row(row: Sequence[Any]) -> AdminActionRecord:
    """A row of :data:`ADMIN_ACTIONS_SELECT` as a record."""
    return AdminActionRecord(
        at_ns=row[0],
        actor=row[1],
        role=row[2],
        action=row[3],
        target=row[4],
        outcome=row[5],
        detail=row[6],
    )


def check_misbehaviour_args(*, kind: object, freeze_reason: object, evidence: object) -> None:
    """The argument checks of :meth:`Store.record_misbehaviour`, shared by every backend."""
    _check_text("kind", kind)
    _check_text("freeze_reason", freeze_reason)
    if type(evidence) is not bytes:
        raise InvalidRecordError("evidence must be bytes")


def check_states(states: Sequence[ConsensusStateRecord]) -> list[ConsensusStateRecord]:
    """The consensus states of a commit, as a list, each checked to be a record."""
    out = list(states)
    for s in out:
        if not isinstance(s, ConsensusStateRecord):
            raise InvalidRecordError("consensus_states must hold ConsensusStateRecord values")
    return out


def check_against_stored(
    chain_id: str, rec: ConsensusStateRecord, stored: ConsensusStateRecord
) -> None:
    """``rec`` offered at a height that already holds ``stored``: an identical header is an
    idempotent no-op; a different header is a ConflictError (misbehaviour for the engine)."""
    if stored.header_hash != rec.header_hash:
        raise ConflictError(
            chain_id=chain_id,
            height=rec.height,
            stored_header_hash=stored.header_hash,
            offered_header_hash=rec.header_hash,
        )
    if not stored.same_header(rec):
        raise InvalidRecordError(
            f"chain {chain_id!r} height {rec.height}: same header hash as the stored "
            "state but a different time, root or next validators hash",
            chain_id=chain_id,
            height=rec.height,
        )


def parent_to_check(chain_id: str, rec: ConsensusStateRecord, *, anchor_height: int) -> int | None:
    """Check a new state's ``trusted_from`` against the anchor rule (only the anchor has
    none); the parent height that must be stored already, None for the anchor."""
    if rec.height == anchor_height:
        if rec.trusted_from is not None:
            raise InvalidRecordError(
                f"chain {chain_id!r} height {rec.height} is the anchor; it is trusted from "
                "the descriptor, not from another height",
                chain_id=chain_id,
                height=rec.height,
            )
        return None
    if rec.trusted_from is None:
        raise InvalidRecordError(
            f"chain {chain_id!r} height {rec.height} has no trusted_from; only the anchor "
            f"(height {anchor_height}) may have none",
            chain_id=chain_id,
            height=rec.height,
        )
    return rec.trusted_from


def parent_not_stored(chain_id: str, rec: ConsensusStateRecord) -> InvalidRecordError:
    """The error for a state whose ``trusted_from`` height is not stored."""
    return InvalidRecordError(
        f"chain {chain_id!r} height {rec.height} was verified from height "
        f"{rec.trusted_from}, which is not stored: store its parent first",
        chain_id=chain_id,
        height=rec.height,
        trusted_from=rec.trusted_from,
    )


def checked_trust_path(
    path: list[ConsensusStateRecord], *, chain_id: str, height: int, max_length: int
) -> list[ConsensusStateRecord]:
    """Return a trust path read by a backend (anchor first) after the checks every backend
    makes: not longer than ``max_length``, and starting at the anchor (a path that stops at
    a state whose parent is missing means the store lost a state)."""
    if not path:
        return path
    if len(path) > max_length:
        raise TrustPathTooLongError(
            f"trust path of chain {chain_id!r} from height {height} to its anchor is longer "
            f"than {max_length} states",
            chain_id=chain_id,
            height=height,
            limit=max_length,
        )
    if path[0].trusted_from is not None:
        raise StoreIntegrityError(
            f"trust path of chain {chain_id!r} from height {height} stops at height "
            f"{path[0].height}, whose parent {path[0].trusted_from} is not stored",
            chain_id=chain_id,
            height=height,
        )
    return path


@dataclass(frozen=True, slots=True, kw_only=True)
class ChainRecord:
    """A registered chain. ``descriptor`` is the serialized, signed chain descriptor (opaque
    to the store). ``anchor_height`` is the height of the trust anchor's consensus state.
    ``created_at_ns``/``updated_at_ns`` are set by the store and ignored on write."""

    chain_id: str
    domain: str
    client_type: ClientType
    descriptor: bytes = field(repr=False)
    status: ChainStatus
    anchor_height: int
    status_reason: str = ""
    created_at_ns: int = 0
    updated_at_ns: int = 0

    def __post_init__(self) -> None:
        check_chain_id(self.chain_id)
        _check_text("domain", self.domain)
        _check_text("status_reason", self.status_reason)
        _check_bytes("descriptor", self.descriptor)
        _check_int("anchor_height", self.anchor_height)
        try:
            object.__setattr__(self, "client_type", ClientType(self.client_type))
            object.__setattr__(self, "status", ChainStatus(self.status))
        except ValueError as exc:
            raise InvalidRecordError(str(exc), chain_id=self.chain_id) from None


@dataclass(frozen=True, slots=True, kw_only=True)
class ClientStateRecord:
    """The latest serialized client state of a chain (opaque to the store) and the
    revision it was written at."""

    chain_id: str
    state: bytes = field(repr=False)
    latest_height: int
    revision: int
    updated_at_ns: int


@dataclass(frozen=True, slots=True, kw_only=True)
class ConsensusStateRecord:
    """One verified header (or log checkpoint) of a chain.

    ``root`` is the state/log root proofs are checked against; ``light_block`` is the
    verified header or checkpoint bytes as received, kept so offline evidence can carry the
    trust path. ``trusted_from`` is the height of the trusted state this one was verified
    from (its parent on the trust path); ``None`` only for the chain's anchor.
    ``created_at_ns`` is set by the store and ignored on write, and so is ``lease_token``:
    the sync lease term whose fenced write stored the state (None: an unfenced write, such
    as registration or on-demand verification; migration 0005).
    """

    height: int
    time_ns: int
    root: bytes
    header_hash: bytes
    light_block: bytes = field(repr=False)
    next_validators_hash: bytes | None = None
    trusted_from: int | None = None
    created_at_ns: int = 0
    lease_token: int | None = None

    def __post_init__(self) -> None:
        _check_int("height", self.height)
        _check_int("time_ns", self.time_ns, minimum=-MAX_INT64)
        _check_bytes("root", self.root)
        _check_bytes("header_hash", self.header_hash)
        _check_bytes("light_block", self.light_block)
        if not self.header_hash:
            raise InvalidRecordError("header_hash must not be empty", height=self.height)
        if self.next_validators_hash is not None:
            _check_bytes("next_validators_hash", self.next_validators_hash)
        if self.trusted_from is not None:
            _check_int("trusted_from", self.trusted_from)
            if self.trusted_from == self.height:
                raise InvalidRecordError(
                    "a state cannot be trusted from itself", height=self.height
                )

    def same_header(self, other: ConsensusStateRecord) -> bool:
        """True when both records describe the same verified header (the fields derived from
        the header agree); ``light_block``, ``trusted_from`` and timestamps may differ."""
        return (
            self.height == other.height
            and self.header_hash == other.header_hash
            and self.time_ns == other.time_ns
            and self.root == other.root
            and self.next_validators_hash == other.next_validators_hash
        )


@dataclass(frozen=True, slots=True, kw_only=True)
class MisbehaviourRecord:
    """Stored evidence of misbehaviour (``evidence`` is opaque, serialized by the engine)."""

    id: int
    chain_id: str
    height: int
    kind: str
    evidence: bytes
    detected_at_ns: int


@dataclass(frozen=True, slots=True, kw_only=True)
class StoreStats:
    """Sizes for operators and benchmarks. ``size_bytes`` counts the database and any
    write-ahead log on disk (for a server database: the relation sizes)."""

    chains: int
    consensus_states: int
    misbehaviour: int
    size_bytes: int
    schema_version: int


@dataclass(frozen=True, slots=True)
class AuditLeafRecord:
    """One leaf of the audit log (issue 7, relay/audit/): its position, the entry's
    canonical bytes, the stored RFC 6962 leaf hash, the court it belongs to ("" for
    entries of no court) and when it was appended."""

    index: int
    entry: bytes
    leaf_hash: bytes
    court: str
    at_ns: int


@dataclass(frozen=True, slots=True)
class AuditCheckpointRecord:
    """A signed checkpoint of the audit log: tree size, root and the C2SP signed note."""

    size: int
    root: bytes
    note: bytes
    at_ns: int


@dataclass(frozen=True, slots=True, kw_only=True)
class Lease:
    """A per-chain sync lease (issue 9). ``token`` is the fencing token: it grows strictly
    per chain with every new term (a renewal keeps it), and every sync write carries it as
    ``fence=`` so a former owner is refused once a newer term exists or its own expired.
    ``expires_at_ns`` is on the store's clock (PostgreSQL: the database server's)."""

    chain_id: str
    owner: str
    token: int
    expires_at_ns: int


@dataclass(frozen=True, slots=True, kw_only=True)
class AdminActionRecord:
    """One recorded admin call (issue 5, migration 0002)."""

    at_ns: int
    actor: str
    role: str
    action: str
    target: str
    outcome: str
    detail: str


@dataclass(frozen=True, slots=True, kw_only=True)
class ProposalDecisionRecord:
    """One operator's decision on a proposal."""

    operator_id: str
    decision: str
    comment: str
    decided_at_ns: int


@dataclass(frozen=True, slots=True, kw_only=True)
class ProposalRecord:
    """A signed partner proposal and its decisions, oldest decision first."""

    proposal_id: str
    institution: str
    kind: str
    chain_id: str
    state: str
    status_message: str
    signed: bytes = field(repr=False)
    submitted_by: str
    submitted_at_ns: int
    expires_at_ns: int
    decisions: tuple[ProposalDecisionRecord, ...] = ()


class Store(Protocol):
    """Persistent light-client state. All methods are coroutines; none blocks the event loop.

    Writes are serialised and each is one transaction, durable before the coroutine
    returns. Reads see only committed data. Cancelling an awaiting caller does not abort a
    write already handed to the database: it either commits whole or not at all, and the
    client state's revision tells which.
    """

    async def close(self) -> None:
        """Flush and release the database. Idempotent; later calls raise StoreClosedError."""

    async def create_chain(self, chain: ChainRecord) -> None:
        """Register a new chain: one insert that fails with :class:`ChainExistsError` when
        the id is stored already, whatever its status. Of replicas registering one chain id
        at the same moment exactly one succeeds, and a stored chain's descriptor is never
        replaced by a registration (updates go through :meth:`upsert_chain`)."""

    async def upsert_chain(self, chain: ChainRecord) -> None:
        """Register a chain, or update an existing one's domain, descriptor and status.

        An existing chain's ``client_type`` and ``anchor_height`` never change here (use
        :meth:`reanchor`), and status changes follow :meth:`set_chain_status`'s rules.
        """

    async def get_chain(self, chain_id: str) -> ChainRecord | None: ...

    async def list_chains(self) -> list[ChainRecord]:
        """All registered chains, ordered by ``chain_id``."""

    async def set_chain_status(
        self, chain_id: str, *, status: ChainStatus, reason: str, fence: int | None = None
    ) -> None:
        """Change a chain's status. A ``frozen`` chain leaves ``frozen`` only through
        :meth:`reanchor`; an ``expired`` one may be frozen but is otherwise re-anchored too.
        With ``fence`` (a sync write) it is refused unless that token is the chain's
        current, unexpired lease. Raises UnknownChainError, ChainStatusError,
        LeaseLostError."""

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
        """Persist newly verified consensus states and the new client state in ONE durable
        transaction; return the client state's new revision (1 for the first write).

        ``expected_revision`` is the revision the caller read (``None``: no client state may
        exist yet). ``consensus_states`` are in trust order: each state's ``trusted_from``
        is already stored or earlier in the batch; only the anchor height may have none.
        Identical re-inserts are skipped. Nothing is written when anything fails.

        Raises UnknownChainError, ChainStatusError (chain not active), StaleRevisionError,
        ConflictError (different header at a stored height), InvalidRecordError,
        LeaseLostError (``fence`` given and no longer the chain's current, unexpired lease:
        checked inside the same transaction, so a former owner never lands a write).
        """

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
        """Operator recovery: in one transaction replace the chain's descriptor and anchor,
        drop its consensus states (issued evidence carries its own trust path), store
        ``anchor`` (``trusted_from`` must be None) and the new client state at the anchor
        height, and set the chain ``active``. Misbehaviour records are kept. Returns the new
        revision (revisions keep growing across re-anchoring)."""

    async def get_client_state(self, chain_id: str) -> ClientStateRecord | None: ...

    async def get_consensus_state(self, chain_id: str, height: int) -> ConsensusStateRecord | None:
        """The verified consensus state at exactly ``height``, or None."""

    async def nearest_consensus_state(
        self, chain_id: str, height: int, *, below: bool
    ) -> ConsensusStateRecord | None:
        """The stored state nearest to ``height``: the highest at or below it when
        ``below`` is true, else the lowest at or above it. None when there is none. This is
        where skipping verification of an on-demand height starts."""

    async def latest_consensus_state(self, chain_id: str) -> ConsensusStateRecord | None:
        """The stored state with the greatest height, or None."""

    async def list_consensus_states(
        self, chain_id: str, *, from_height: int = 0, limit: int = 1000
    ) -> list[ConsensusStateRecord]:
        """Stored states with ``height >= from_height`` in height order, at most ``limit``
        (1 to 10,000) of them: for operators' checks and the replica tests (page on with
        the last height + 1)."""

    async def trust_path(
        self, chain_id: str, height: int, *, max_length: int = DEFAULT_TRUST_PATH_LIMIT
    ) -> list[ConsensusStateRecord]:
        """The chain of trust from the anchor to ``height``: anchor first, the state at
        ``height`` last, each element the ``trusted_from`` parent of the next. Empty when
        ``height`` is not stored. Raises TrustPathTooLongError beyond ``max_length``
        states, StoreIntegrityError if the path does not reach the anchor."""

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
        """In one transaction store the evidence AND freeze the chain; return the record's
        id. A chain already frozen keeps its first freeze reason. ``fence`` as in
        :meth:`commit_verified`."""

    async def list_misbehaviour(self, chain_id: str) -> list[MisbehaviourRecord]:
        """The chain's misbehaviour records, oldest first."""

    async def prune_consensus_states(
        self, chain_id: str, *, older_than_ns: int, keep_heights: Collection[int]
    ) -> int:
        """Delete consensus states whose ``time_ns`` is older than ``older_than_ns``; return
        how many were deleted.

        Never deleted: the anchor, the client state's latest height, the greatest stored
        height, every height in ``keep_heights`` (e.g. what recent evidence rests on), every
        state not older than the cut-off, and every state on the trust path of any of
        those, so every remaining state still has a trust path to the anchor.
        """

    async def note_evidence_heights(self, chain_id: str, heights: Mapping[int, int]) -> None:
        """Record that evidence was served at each height (height -> time, ns), keeping the
        latest time per height. Replicas call it for what they served, so the sync owner's
        pruning keeps those heights too (issue 9)."""

    async def evidence_heights(self, chain_id: str, *, since_ns: int) -> list[int]:
        """Heights of ``chain_id`` evidence was served at since ``since_ns``, ascending."""

    async def forget_evidence_heights(self, chain_id: str, *, older_than_ns: int) -> int:
        """Drop evidence heights last used before ``older_than_ns``; return how many."""

    async def stats(self) -> StoreStats: ...

    # -- audit log (issue 7): append-only leaves and signed checkpoints

    async def append_audit_leaves(
        self,
        leaves: Sequence[tuple[bytes, bytes, str, int]],
        *,
        first_index: int | None = None,
    ) -> int:
        """Store ``(entry, leaf_hash, court, at_ns)`` leaves durably, all or none, at the
        next free indexes or, given ``first_index`` (the writer's own count), at
        ``first_index``, ``first_index + 1``...; returns the index after the last one.
        Raises StoreIntegrityError when one of those indexes is taken (the log changed
        behind its writer). Without ``first_index`` the store assigns the indexes
        atomically: concurrent appenders, also in other processes sharing the database
        (relay replicas on PostgreSQL), get consecutive, distinct indexes and leave no
        gap, so the first index of the batch is the returned one minus its length."""

    async def audit_size(self) -> int:
        """Number of stored leaves (one more than the greatest index)."""

    async def audit_leaves(
        self,
        *,
        start: int = 0,
        end: int | None = None,
        court: str | None = None,
        limit: int | None = None,
    ) -> list[AuditLeafRecord]:
        """Leaves with ``start <= index < end`` in index order, only ``court``'s if given,
        at most ``limit`` of them."""

    async def put_audit_checkpoint(
        self, checkpoint: AuditCheckpointRecord, *, lease: Lease | None = None
    ) -> AuditCheckpointRecord:
        """Store a signed checkpoint and return the stored one. Idempotent per size: if
        that size is stored already with the same root, the stored record is kept and
        returned (one note per size, whoever signed it again); another root raises
        StoreIntegrityError (two trees of one size: a split view). Given ``lease`` (the
        audit log's checkpoint lease, relay/audit/log.py), the write is fenced like a sync
        write: LeaseLostError unless that term is still current and unexpired."""

    async def audit_checkpoints(
        self, *, min_size: int = 0, limit: int | None = None, newest_first: bool = False
    ) -> list[AuditCheckpointRecord]:
        """Stored checkpoints with ``size >= min_size``, by size (largest first with
        ``newest_first``), at most ``limit`` of them."""

    # -- per-chain sync leases with fencing (issue 9)

    async def acquire_lease(self, chain_id: str, *, owner: str, ttl_s: float) -> Lease | None:
        """Take (or, for its current owner, extend) the chain's sync lease for ``ttl_s``
        seconds. A new term gets a token greater than every earlier one of the chain.
        Returns None while another owner holds an unexpired lease."""

    async def renew_lease(self, lease: Lease, *, ttl_s: float) -> Lease:
        """Extend a held lease (same token). Raises LeaseLostError if it expired or a newer
        term exists."""

    async def release_lease(self, lease: Lease) -> None:
        """End a held lease now so another replica can take over at once; a lost lease is
        left alone. The token is kept, so the next term's is greater."""

    async def get_lease(self, chain_id: str) -> Lease | None:
        """The chain's latest lease term (possibly expired), or None if never leased."""

    # -- access records (issue 5, migration 0002)

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
        """Append one admin action record."""

    async def admin_actions(self) -> list[AdminActionRecord]:
        """Every admin action record, oldest first."""

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
        """In one transaction burn ``(institution, nonce)`` and store the pending proposal.
        Raises NonceReplayedError if the pair was used before."""

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
        """Record one operator's ``approve``/``reject`` in one transaction; returns (what
        happens next: ``expired``, ``rejected``, ``apply`` or ``pending``; approvals so
        far). An expired pending proposal is marked expired instead. Raises
        ProposalNotFoundError, ProposalClosedError (not pending, or the operator already
        decided)."""

    async def finish_proposal(
        self, proposal_id: str, *, state: str, message: str, now_ns: int
    ) -> None:
        """Move a pending proposal to its final ``state`` (no-op if it is not pending)."""

    async def list_proposals(
        self,
        *,
        proposal_id: str | None = None,
        institution: str | None = None,
        state: str | None = None,
        limit: int,
    ) -> list[ProposalRecord]:
        """Matching proposals with their decisions, newest first (then by id)."""


# The order in which a chain may move between statuses outside of re-anchoring.
ALLOWED_STATUS_CHANGES: frozenset[tuple[ChainStatus, ChainStatus]] = frozenset(
    {
        (ChainStatus.PENDING, ChainStatus.ACTIVE),
        (ChainStatus.PENDING, ChainStatus.FROZEN),
        (ChainStatus.PENDING, ChainStatus.EXPIRED),
        (ChainStatus.ACTIVE, ChainStatus.PENDING),
        (ChainStatus.ACTIVE, ChainStatus.FROZEN),
        (ChainStatus.ACTIVE, ChainStatus.EXPIRED),
        (ChainStatus.EXPIRED, ChainStatus.FROZEN),
    }
)


def check_status_change(chain_id: str, *, current: ChainStatus, new: ChainStatus) -> None:
    """Raise ChainStatusError unless ``current -> new`` is allowed without re-anchoring
    (staying in the same status is always allowed)."""
    if current == new or (current, new) in ALLOWED_STATUS_CHANGES:
        return
    if current in (ChainStatus.FROZEN, ChainStatus.EXPIRED):
        message = (
            f"chain {chain_id!r} is {current.value}; it can only become {new.value} again "
            "through recovery with a new trust anchor"
        )
    else:
        message = f"chain {chain_id!r} cannot move from {current.value} to {new.value}"
    raise ChainStatusError(message, chain_id=chain_id, status=current.value, requested=new.value)


MAX_LEASE_TTL_S = 86400.0


def lease_ttl_ns(ttl_s: object) -> int:
    """Validate a lease duration in seconds (0 < ttl <= one day) and return nanoseconds."""
    if isinstance(ttl_s, bool) or not isinstance(ttl_s, int | float):
        raise InvalidRecordError("lease ttl must be a number of seconds")
    if not 0 < ttl_s <= MAX_LEASE_TTL_S:
        raise InvalidRecordError(f"lease ttl must be in (0, {MAX_LEASE_TTL_S:g}] seconds")
    return max(1, int(ttl_s * 1e9))


def check_fence(
    chain_id: str, fence: int | None, row: tuple[int, int] | None, *, now_ns: int
) -> None:
    """Fencing rule shared by every backend: a sync write carrying ``fence`` proceeds only
    if ``row`` (the chain's lease ``(token, expires_at_ns)``, read inside the write's
    transaction) still holds that token and has not expired at ``now_ns``."""
    if fence is None:
        return
    if type(fence) is not int or fence < 1:
        raise InvalidRecordError("fence must be None or a positive integer lease token")
    if row is None:
        raise LeaseLostError(
            chain_id=chain_id, token=fence, current=None, why="the chain has no sync lease"
        )
    token, expires_at_ns = row
    if token != fence:
        raise LeaseLostError(
            chain_id=chain_id,
            token=fence,
            current=token,
            why=f"the chain's lease is now term {token}",
        )
    if expires_at_ns <= now_ns:
        raise LeaseLostError(chain_id=chain_id, token=fence, current=token, why="the lease expired")


def next_lease(
    chain_id: str, owner: str, row: tuple[str, int, int] | None, *, now_ns: int, ttl_ns: int
) -> Lease | None:
    """Lease rule shared by every backend. ``row`` is the chain's lease ``(owner, token,
    expires_at_ns)`` read under the write lock. Returns the lease to store, or None while
    another owner's term is unexpired. The same owner extends its own unexpired term."""
    expires = min(now_ns + ttl_ns, MAX_INT64)
    if row is None:
        return Lease(chain_id=chain_id, owner=owner, token=1, expires_at_ns=expires)
    held_by, token, expires_at_ns = row
    if expires_at_ns > now_ns:
        if held_by != owner:
            return None
        return Lease(chain_id=chain_id, owner=owner, token=token, expires_at_ns=expires)
    return Lease(chain_id=chain_id, owner=owner, token=token + 1, expires_at_ns=expires)


MAX_LIST_LIMIT = 10_000


def check_list_limit(limit: object) -> None:
    """Raise :class:`InvalidRecordError` unless ``limit`` is an int in [1, 10,000]."""
    _check_int("limit", limit, minimum=1)
    if limit > MAX_LIST_LIMIT:  # type: ignore[operator]
        raise InvalidRecordError(f"limit must be at most {MAX_LIST_LIMIT}", limit=limit)


def check_owner(owner: object) -> None:
    _check_text("owner", owner, limit=256)
    if not owner:
        raise InvalidRecordError("lease owner must not be empty")


def check_keep_heights(keep_heights: Collection[int]) -> list[int]:
    """Validate and de-duplicate a pruning keep-list."""
    out = sorted(set(keep_heights))
    for h in out:
        _check_int("keep height", h)
    return out


MAX_EVIDENCE_NOTES = 10_000


def check_evidence_heights(heights: Mapping[int, int]) -> list[tuple[int, int]]:
    """Validate (height -> time) notes of :meth:`Store.note_evidence_heights`."""
    if len(heights) > MAX_EVIDENCE_NOTES:
        raise InvalidRecordError(
            f"at most {MAX_EVIDENCE_NOTES} evidence heights per call, got {len(heights)}"
        )
    out = sorted(heights.items())
    for h, t in out:
        _check_int("evidence height", h)
        _check_int("evidence time", t)
    return out


def check_same_checkpoint(
    stored: AuditCheckpointRecord, offered: AuditCheckpointRecord
) -> AuditCheckpointRecord:
    """Rule of :meth:`Store.put_audit_checkpoint` shared by every backend: ``stored`` (the
    row of ``offered.size``, read in the write's transaction) is kept when it has the same
    root; another root for one size is a split view."""
    if stored.root != offered.root:
        raise StoreIntegrityError(
            f"audit checkpoint {offered.size} is stored with root {stored.root.hex()}, not "
            f"{offered.root.hex()}: two logs of one size (a split view); run `relay audit "
            "verify`"
        )
    return stored
