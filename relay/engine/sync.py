"""Per-chain runtime and sync: one task per chain polls its adapter, verifies what it fetched
with the chain's light client, and persists it (``Store.commit_verified``) before anything
uses it (DESIGN.md principle 4). Failures back off exponentially with full jitter; every
round has a timeout and each chain has its own task, so a failing or hanging chain never
stalls another.

:class:`ChainRuntime` is the one place where a chain's verified state changes: sync rounds,
on-demand verification of a height a query needs, pruning. Writes are serialised per chain
by a lock and fenced by the client state's revision. Before committing, every newly verified
header is compared with what the store already holds: a different header at a stored height,
or a header whose time does not fit between its stored neighbours, is misbehaviour; the
evidence is recorded and the chain frozen in one store transaction
(``Store.record_misbehaviour``), and it stays frozen until an operator re-anchors it. A chain
whose trusting period lapsed is marked EXPIRED the first time sync or a query sees it.

Status reasons are stored as ``"<ErrorReason>: <message>"`` so ChainInfo can report both.

Replicas (issue 9): several relay processes may share one store. :func:`run_sync` syncs a
chain only while this replica holds the chain's sync lease (``Store.acquire_lease``, owner
``EngineSettings.replica_id``); it renews the lease every third of its ttl and passes the
lease token as ``fence=`` on every sync write, so a write by an owner that lost its lease
(expired while it was paused, or taken over) is refused inside the store's transaction
(:class:`~relay.store.base.LeaseLostError`). It then stops writing at once and goes back to
acquiring. A replica without the lease does no sync rounds; it re-reads the chain's status
and trusted state from the store every third of the ttl, and still verifies on demand the
heights its queries need: unfenced writes that race safely (an identical header is a no-op,
a stale revision is re-read and retried, a different header is misbehaviour).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import random
import socket
from collections import OrderedDict
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Final

from relay.engine.adapters import AdapterClient
from relay.engine.clients import (
    ChainClient,
    MisbehaviourFound,
    StateFormatError,
    TendermintClient,
    TrustedView,
    decode_hop,
    misbehaviour_evidence,
)
from relay.engine.errors import RelayError
from relay.engine.settings import EngineSettings
from relay.logs import bind as bind_log_context
from relay.metrics import RelayMetrics
from relay.pb.relay.v1 import types_pb2 as pb
from relay.store import (
    ChainRecord,
    ChainStatus,
    ChainStatusError,
    ConflictError,
    ConsensusStateRecord,
    StaleRevisionError,
    Store,
    StoreError,
)
from relay.store.base import Lease, LeaseLostError

log = logging.getLogger("relay.engine.sync")

NS: Final = 1_000_000_000
_STATE_CACHE_SIZE: Final = 256
MAX_STATUS_TEXT: Final = 1000
# Commits retried when another replica wrote the chain's client state in between (its
# on-demand verification, or a takeover): each retry re-reads the trusted state.
_COMMIT_ATTEMPTS: Final = 4


def default_replica_id() -> str:
    """``<hostname>-<pid>``: the lease owner name when the config sets none."""
    return f"{socket.gethostname()}-{os.getpid()}"[:200]


def status_text(reason: str, message: str) -> str:
    """The stored form of a chain's status reason."""
    return f"{reason}: {message}"[:MAX_STATUS_TEXT]


def parse_status_text(text: str) -> tuple[str, str]:
    """(ErrorReason name or "", message) of a stored status reason."""
    reason, sep, message = text.partition(": ")
    if sep and reason.isupper() and reason.replace("_", "").isalpha():
        return reason, message
    return "", text


@dataclass
class SyncStats:
    """Counters of one chain's sync and verification (metrics-ready; a later issue exports
    them to Prometheus with bounded labels)."""

    rounds: int = 0
    successes: int = 0
    failures: int = 0
    consecutive_failures: int = 0
    states_committed: int = 0
    on_demand_verifications: int = 0
    misbehaviour: int = 0
    pruned: int = 0
    leases_acquired: int = 0
    leases_lost: int = 0
    last_error_reason: str = ""
    last_error: str = ""
    last_success_ns: int = 0
    errors_by_reason: dict[str, int] = field(default_factory=dict)

    def failed(self, error: RelayError) -> None:
        self.failures += 1
        self.consecutive_failures += 1
        self.last_error_reason = error.reason
        self.last_error = error.message
        self.errors_by_reason[error.reason] = self.errors_by_reason.get(error.reason, 0) + 1


class ChainRuntime:
    """Everything the engine keeps about one registered chain while running."""

    def __init__(
        self,
        *,
        record: ChainRecord,
        descriptor: pb.ChainDescriptor,
        client: ChainClient,
        adapter: AdapterClient,
        store: Store,
        settings: EngineSettings,
        clock: Callable[[], int],
        metrics: RelayMetrics | None = None,
    ) -> None:
        self.record = record
        self.descriptor = descriptor
        self.client = client
        self.adapter = adapter
        self.store = store
        self.settings = settings
        self.clock = clock
        self.metrics = metrics
        self.chain_id = record.chain_id
        self.lock = asyncio.Lock()
        # The sync lease while this replica holds it, and the event-loop time by which it
        # surely ends (measured before the store call that set it: never later than the
        # store's own expiry).
        self.replica_id = settings.replica_id or default_replica_id()
        self.lease: Lease | None = None
        self.lease_deadline = 0.0
        self.partner_head: int | None = None
        self.partner_head_seen_ns: int | None = None
        self.stats = SyncStats()
        self.recent_evidence: dict[int, int] = {}
        self._view: TrustedView | None = None
        self._inflight: dict[int, asyncio.Task[ConsensusStateRecord]] = {}
        # Evidence heights not yet written to the store (share_evidence_notes).
        self._unshared: dict[int, int] = {}
        # Verified states read for queries at a height, kept in memory so repeated queries
        # there skip the store's thread hop. A verified state never changes; only pruning
        # removes states, so it empties this and bumps the generation (a read that started
        # before a prune is not remembered).
        self._states: OrderedDict[int, ConsensusStateRecord] = OrderedDict()
        self._states_generation = 0

    # ------------------------------------------------------------------ status and view

    @property
    def status(self) -> ChainStatus:
        return self.record.status

    async def refresh_record(self) -> ChainRecord:
        record = await self.store.get_chain(self.chain_id)
        if record is None:
            raise RelayError(
                "NOT_FOUND", f"chain {self.chain_id!r} is not registered", chain_id=self.chain_id
            )
        self.record = record
        if self.metrics is not None:  # every status change passes through here
            self.metrics.record_chain_status(self.chain_id, record.status.value)
        return record

    def publish(self, view: TrustedView) -> None:
        """Report the trusted state to metrics (after a commit, at load)."""
        if self.metrics is None:
            return
        period_ns = self.client.trusting_period_ns
        # The time the trusting period counts from (header time for CometBFT, last
        # verification for logs), so the time-left gauge matches ChainInfo exactly.
        since_ns = self.client.trust_expires_at_ns(view) - period_ns
        self.metrics.record_trusted_state(
            self.chain_id,
            height=view.latest.height,
            time_s=since_ns / NS,
            trusting_period_s=period_ns / NS,
        )

    def _publish_head(self, head: int) -> None:
        if self.metrics is not None:
            self.metrics.record_partner_head(self.chain_id, height=head)

    def status_error(self) -> RelayError | None:
        """The error a query gets in the chain's current status (None when ACTIVE)."""
        if self.status == ChainStatus.ACTIVE:  # every query asks: skip parsing the reason
            return None
        reason, message = parse_status_text(self.record.status_reason)
        chain = self.chain_id
        if self.status == ChainStatus.FROZEN:
            return RelayError(
                "CHAIN_FROZEN",
                f"chain {chain!r} is frozen ({message or 'no reason recorded'}); an operator "
                "must recover it with a new trust anchor",
                chain_id=chain,
                check=reason or "CHAIN_FROZEN",
            )
        if self.status == ChainStatus.EXPIRED:
            return RelayError(
                "CHAIN_EXPIRED",
                f"chain {chain!r}: {message or 'its trusting period passed'}; an operator must "
                "recover it with a new trust anchor",
                chain_id=chain,
            )
        if self.status == ChainStatus.PENDING:
            return RelayError(
                "CHAIN_PENDING",
                f"chain {chain!r} is registered but not serving yet ({message or 'pending'}); "
                "retry after its first verified sync",
                chain_id=chain,
                retry_after_s=self.settings.sync_interval_s,
            )
        return None

    def invalidate(self) -> None:
        self._view = None

    async def load_view(self, *, fresh: bool = False) -> TrustedView:
        """The trusted state (cached between writes; ``fresh`` re-reads the store)."""
        if self._view is not None and not fresh:
            return self._view
        try:
            cs = await self.store.get_client_state(self.chain_id)
            if cs is None:
                raise RelayError(
                    "INTERNAL",
                    f"chain {self.chain_id!r} has no verified state in the store",
                    chain_id=self.chain_id,
                )
            latest = await self.store.get_consensus_state(self.chain_id, cs.latest_height)
            if latest is None:
                raise RelayError(
                    "INTERNAL",
                    f"chain {self.chain_id!r}: the latest trusted height {cs.latest_height} is "
                    "missing from the store",
                    chain_id=self.chain_id,
                    height=cs.latest_height,
                )
            state = self.client.parse_client_state(cs.state)
        except StoreError as e:
            raise RelayError(
                "INTERNAL", f"reading chain {self.chain_id!r}: {e}", chain_id=self.chain_id
            ) from e
        except StateFormatError as e:
            raise RelayError("INTERNAL", str(e), chain_id=self.chain_id) from e
        view = TrustedView(cs, state, latest, self.record.anchor_height)
        self._view = view
        return view

    async def mark_expired(
        self, view: TrustedView, *, now_ns: int, fence: int | None = None
    ) -> RelayError:
        expired_at = self.client.trust_expires_at_ns(view)
        message = (
            f"the trusting period of chain {self.chain_id!r} ended at {expired_at // NS} "
            f"(Unix seconds) without a newer verified state (latest trusted height "
            f"{view.latest.height})"
        )
        if self.status in (ChainStatus.ACTIVE, ChainStatus.PENDING):
            with contextlib.suppress(ChainStatusError):
                await self.store.set_chain_status(
                    self.chain_id,
                    status=ChainStatus.EXPIRED,
                    reason=status_text("CHAIN_EXPIRED", message),
                    fence=fence,
                )
            await self.refresh_record()
            log.warning("chain %s expired: %s", self.chain_id, message)
        return self.status_error() or RelayError("CHAIN_EXPIRED", message, chain_id=self.chain_id)

    async def serving_view(self, *, now_ns: int) -> TrustedView:
        """The trusted state for a query, or the error the chain's status means."""
        error = self.status_error()
        if error is not None:
            raise error
        view = await self.load_view()
        if self.client.is_expired(view, now_ns=now_ns):
            raise await self.mark_expired(view, now_ns=now_ns)
        return view

    # ------------------------------------------------------------------ misbehaviour

    async def freeze_for(self, found: MisbehaviourFound, *, fence: int | None = None) -> RelayError:
        """Record misbehaviour evidence and freeze the chain (one store transaction).
        ``fence``: the sync lease token (LeaseLostError when it is lost; the new owner
        finds the misbehaviour again)."""
        self.stats.misbehaviour += 1
        if self.metrics is not None:
            self.metrics.record_misbehaviour(self.chain_id)
        try:
            await self.store.record_misbehaviour(
                chain_id=self.chain_id,
                height=found.height,
                kind=found.kind,
                evidence=found.evidence,
                freeze_reason=status_text("MISBEHAVIOUR_DETECTED", found.message),
                fence=fence,
            )
        except LeaseLostError:
            raise
        except StoreError as e:
            raise RelayError(
                "INTERNAL",
                f"chain {self.chain_id!r}: misbehaviour seen ({found.message}) but it could not "
                f"be recorded: {e}",
                chain_id=self.chain_id,
            ) from e
        self.invalidate()
        await self.refresh_record()
        log.error("chain %s frozen: %s", self.chain_id, found.message)
        return RelayError(
            "MISBEHAVIOUR_DETECTED",
            f"{found.message}; chain {self.chain_id!r} is frozen until an operator recovers it "
            "with a new trust anchor",
            chain_id=self.chain_id,
            height=found.height,
            check=found.kind,
        )

    def _conflict(
        self, stored: ConsensusStateRecord, offered: ConsensusStateRecord
    ) -> MisbehaviourFound:
        return MisbehaviourFound(
            kind="DUPLICATE_HEIGHT",
            height=offered.height,
            message=(
                f"chain {self.chain_id!r} has two verified headers at height {offered.height} "
                f"({stored.header_hash.hex()[:16]}... stored, {offered.header_hash.hex()[:16]}... "
                "offered): a fork"
            ),
            evidence=misbehaviour_evidence(
                "DUPLICATE_HEIGHT",
                offered.height,
                stored=decode_hop(stored.light_block).header,
                offered=decode_hop(offered.light_block).header,
            ),
        )

    async def _check_against_store(
        self, candidate: ConsensusStateRecord
    ) -> ConsensusStateRecord | None:
        """The stored state equal to ``candidate`` (None: not stored); MisbehaviourFound if
        it conflicts with what is stored."""
        chain = self.chain_id
        stored = await self.store.get_consensus_state(chain, candidate.height)
        if stored is not None:
            if stored.header_hash != candidate.header_hash:
                raise self._conflict(stored, candidate)
            return stored
        if isinstance(self.client, TendermintClient):
            # BFT time must increase with height across everything the relay verified.
            below = await self.store.nearest_consensus_state(chain, candidate.height, below=True)
            above = await self.store.nearest_consensus_state(chain, candidate.height, below=False)
            for other in (below, above):
                # Another replica (or this one's sync) committed this very height since the
                # read above: the same header is already verified, another one is a fork.
                if other is not None and other.height == candidate.height:
                    if other.header_hash != candidate.header_hash:
                        raise self._conflict(other, candidate)
                    return other
            for other, ok in (
                (below, below is None or below.time_ns < candidate.time_ns),
                (above, above is None or above.time_ns > candidate.time_ns),
            ):
                if not ok and other is not None:
                    raise MisbehaviourFound(
                        kind="BFT_TIME_VIOLATION",
                        height=candidate.height,
                        message=(
                            f"chain {chain!r}: header {candidate.height} has time "
                            f"{candidate.time_ns} but verified header {other.height} has "
                            f"{other.time_ns}: time does not increase with height"
                        ),
                        evidence=misbehaviour_evidence(
                            "BFT_TIME_VIOLATION",
                            candidate.height,
                            stored=decode_hop(other.light_block).header,
                            offered=decode_hop(candidate.light_block).header,
                        ),
                    )
        return None

    # ------------------------------------------------------------------ commits

    async def commit(
        self,
        candidates: tuple[ConsensusStateRecord, ...],
        *,
        now_ns: int,
        refreshed: bool = False,
        activate: bool = False,
        fence: int | None = None,
    ) -> TrustedView:
        """Persist verified states (misbehaviour checks first); return the new view.
        ``fence``: the sync lease token of a sync round (None: an on-demand write). When
        another replica wrote the client state in between, re-read it and try again: the
        candidates stay valid (consensus states never change), identical ones are skipped."""
        async with self.lock:
            for attempt in range(_COMMIT_ATTEMPTS):
                try:
                    return await self._commit_locked(
                        candidates,
                        now_ns=now_ns,
                        refreshed=refreshed,
                        activate=activate,
                        fence=fence,
                    )
                except MisbehaviourFound as found:
                    raise await self.freeze_for(found, fence=fence) from found
                except StaleRevisionError as e:
                    if attempt + 1 == _COMMIT_ATTEMPTS:
                        raise RelayError(
                            "INTERNAL",
                            f"chain {self.chain_id!r} was written by other relay replicas "
                            f"{_COMMIT_ATTEMPTS} times in a row while committing: {e}",
                            chain_id=self.chain_id,
                        ) from e
                    log.debug("chain %s: client state moved on (%s); re-reading", self.chain_id, e)
            raise AssertionError("unreachable")

    async def _commit_locked(
        self,
        candidates: tuple[ConsensusStateRecord, ...],
        *,
        now_ns: int,
        refreshed: bool,
        activate: bool,
        fence: int | None,
    ) -> TrustedView:
        view = await self.load_view(fresh=True)
        fresh: list[ConsensusStateRecord] = []
        for candidate in candidates:
            if await self._check_against_store(candidate) is None:
                fresh.append(candidate)
        top = max((c.height for c in fresh), default=0)
        advanced = top > view.latest.height
        if not fresh and not refreshed and not activate:
            return view
        latest = max(view.latest.height, top)
        last_verified = now_ns if (advanced or refreshed) else view.state.last_verified_ns
        if activate and self.status == ChainStatus.PENDING:
            await self.store.set_chain_status(
                self.chain_id, status=ChainStatus.ACTIVE, reason="", fence=fence
            )
            await self.refresh_record()
        state = self.client.client_state(latest_height=latest, last_verified_ns=last_verified)
        try:
            await self.store.commit_verified(
                chain_id=self.chain_id,
                client_state=state,
                latest_height=latest,
                expected_revision=view.client_state.revision,
                consensus_states=fresh,
                fence=fence,
            )
        except (LeaseLostError, StaleRevisionError):
            raise
        except ConflictError as e:
            stored = await self.store.get_consensus_state(self.chain_id, e.height)
            offered = next(c for c in fresh if c.height == e.height)
            if stored is None:
                raise RelayError("INTERNAL", str(e), chain_id=self.chain_id) from e
            raise self._conflict(stored, offered) from e
        except ChainStatusError as e:
            await self.refresh_record()
            raise self.status_error() or RelayError(
                "INTERNAL", str(e), chain_id=self.chain_id
            ) from e
        except StoreError as e:
            raise RelayError(
                "INTERNAL", f"persisting chain {self.chain_id!r}: {e}", chain_id=self.chain_id
            ) from e
        self.stats.states_committed += len(fresh)
        new = await self.load_view(fresh=True)
        self.publish(new)
        return new

    # ------------------------------------------------------------------ sync

    async def check_adapter(self) -> None:
        """The adapter must claim this chain, client type and record schema."""
        described = await self.adapter.describe()
        expected = (self.chain_id, self.client.client_type_enum, 1)
        got = (described.chain_id, described.client_type, described.record_schema_version)
        if got != expected:
            raise RelayError(
                "ADAPTER_UNAVAILABLE",
                f"the adapter of chain {self.chain_id!r} describes itself as chain "
                f"{described.chain_id!r}, client type {described.client_type}, record schema "
                f"{described.record_schema_version}; it must serve the registered chain",
                chain_id=self.chain_id,
                check="DESCRIBE_MISMATCH",
                expected=str(expected),
                calculated=str(got),
            )

    async def sync_once(self, *, fence: int | None = None) -> bool:
        """One sync round; True when new verified state was committed. ``fence`` is the
        sync lease token every write of the round carries (LeaseLostError: stop syncing)."""
        self.stats.rounds += 1
        if self.status in (ChainStatus.FROZEN, ChainStatus.EXPIRED):
            return False
        now_ns = self.clock()
        view = await self.load_view(fresh=True)
        if self.client.is_expired(view, now_ns=now_ns):
            raise await self.mark_expired(view, now_ns=now_ns, fence=fence)
        pending = self.status == ChainStatus.PENDING
        if pending:
            await self.check_adapter()
        try:
            advance = await self.client.advance(
                adapter=self.adapter, store=self.store, view=view, now_ns=now_ns
            )
        except MisbehaviourFound as found:
            raise await self.freeze_for(found, fence=fence) from found
        self.partner_head = advance.partner_head
        self.partner_head_seen_ns = now_ns
        self._publish_head(advance.partner_head)
        before = view.latest.height
        new = await self.commit(
            advance.candidates,
            now_ns=now_ns,
            refreshed=advance.refreshed,
            activate=pending and (bool(advance.candidates) or advance.refreshed),
            fence=fence,
        )
        self.stats.successes += 1
        self.stats.consecutive_failures = 0
        self.stats.last_success_ns = now_ns
        return new.latest.height > before

    async def refresh_head(self) -> int:
        head = await self.adapter.latest_height()
        self.partner_head = head
        self.partner_head_seen_ns = self.clock()
        self._publish_head(head)
        return head

    # ------------------------------------------------------------------ on demand

    async def ensure_verified(self, height: int, *, now_ns: int) -> ConsensusStateRecord:
        """The verified state at ``height``: stored, or verified now from the nearest
        trusted state and committed before it is returned."""
        view = await self.load_view()
        if height == view.latest.height:
            return view.latest
        stored = await self._stored_state(height)
        if stored is not None:
            return stored
        if height < view.anchor_height:
            raise RelayError(
                "STALE_HEIGHT",
                f"chain {self.chain_id!r}: height {height} is below the registered anchor "
                f"({view.anchor_height})",
                chain_id=self.chain_id,
                height=height,
            )
        if not self.settings.on_demand_verification:
            raise RelayError(
                "HEADER_UNVERIFIED",
                f"chain {self.chain_id!r}: height {height} is not verified yet and on-demand "
                "verification is off; retry after the next sync",
                chain_id=self.chain_id,
                height=height,
                check="ON_DEMAND_DISABLED",
            )
        if height > view.latest.height:
            # Another replica may own the chain's sync: start from what it committed since
            # this replica last looked (the nearest trusted state, the shortest walk).
            view = await self.load_view(fresh=True)
        # One verification per height, whoever asks: it runs as its own task (bounded by
        # the query deadline) so that a caller giving up does not cancel it for the others.
        task = self._inflight.get(height)
        if task is None:
            task = asyncio.create_task(self._verify_bounded(height, view=view, now_ns=now_ns))
            self._inflight[height] = task
            task.add_done_callback(lambda _: self._inflight.pop(height, None))
        return await asyncio.shield(task)

    async def stop_verifications(self) -> None:
        """Cancel the on-demand verifications still running (each outlives the query that
        started it, for the others asking the same height) and wait for them: closing."""
        tasks = list(self._inflight.values())
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    async def _stored_state(self, height: int) -> ConsensusStateRecord | None:
        cached = self._states.get(height)
        if cached is not None:
            self._states.move_to_end(height)
            return cached
        generation = self._states_generation
        stored = await self.store.get_consensus_state(self.chain_id, height)
        if stored is not None and generation == self._states_generation:
            self._states[height] = stored
            if len(self._states) > _STATE_CACHE_SIZE:
                self._states.popitem(last=False)
        return stored

    async def _verify_bounded(
        self, height: int, *, view: TrustedView, now_ns: int
    ) -> ConsensusStateRecord:
        try:
            async with asyncio.timeout(self.settings.query_deadline_s):
                return await self._verify_now(height, view=view, now_ns=now_ns)
        except TimeoutError:
            raise RelayError(
                "ADAPTER_UNAVAILABLE",
                f"chain {self.chain_id!r}: verifying height {height} took longer than "
                f"{self.settings.query_deadline_s:g} s",
                chain_id=self.chain_id,
                height=height,
            ) from None

    async def _verify_now(
        self, height: int, *, view: TrustedView, now_ns: int
    ) -> ConsensusStateRecord:
        self.stats.on_demand_verifications += 1
        try:
            candidates = await self.client.verify_height(
                adapter=self.adapter, store=self.store, view=view, height=height, now_ns=now_ns
            )
        except MisbehaviourFound as found:
            raise await self.freeze_for(found) from found
        await self.commit(candidates, now_ns=now_ns)
        stored = await self.store.get_consensus_state(self.chain_id, height)
        if stored is None:
            raise RelayError(
                "INTERNAL",
                f"chain {self.chain_id!r}: height {height} was verified but is not stored",
                chain_id=self.chain_id,
                height=height,
            )
        return stored

    # ------------------------------------------------------------------ sync lease

    @property
    def lease_ttl_s(self) -> float:
        return self.settings.lease_ttl_s

    def holds_lease(self) -> bool:
        """True while this replica holds an unexpired sync lease of the chain (by its own
        conservative deadline; the store's fencing is what makes writes safe)."""
        return self.lease is not None and asyncio.get_running_loop().time() < self.lease_deadline

    async def acquire_lease(self) -> Lease | None:
        """Take or extend the chain's sync lease; None while another replica holds it or
        the store cannot be reached (logged)."""
        loop = asyncio.get_running_loop()
        started = loop.time()
        try:
            lease = await self.store.acquire_lease(
                self.chain_id, owner=self.replica_id, ttl_s=self.lease_ttl_s
            )
        except StoreError as e:
            log.warning("chain %s: cannot take its sync lease: %s", self.chain_id, e)
            return None
        if lease is None:
            return None
        if self.lease is None or self.lease.token != lease.token:
            self.stats.leases_acquired += 1
            log.info(
                "chain %s: this replica (%s) now syncs it (lease term %d)",
                self.chain_id,
                self.replica_id,
                lease.token,
            )
        self.lease = lease
        self.lease_deadline = started + self.lease_ttl_s
        if self.metrics is not None:
            self.metrics.record_lease(self.chain_id, held=True)
        return lease

    async def renew_lease(self) -> bool:
        """Renew the held lease; False when it is lost (refused, or not renewed before its
        deadline). A store error short of that is retried by the next renewal."""
        lease = self.lease
        if lease is None:
            return False
        loop = asyncio.get_running_loop()
        started = loop.time()
        try:
            renewed = await self.store.renew_lease(lease, ttl_s=self.lease_ttl_s)
        except LeaseLostError as e:
            self.lose_lease(str(e))
            return False
        except StoreError as e:
            if loop.time() >= self.lease_deadline:
                self.lose_lease(f"not renewed before it ran out ({e})")
                return False
            log.warning("chain %s: renewing its sync lease failed: %s", self.chain_id, e)
            return True
        if self.lease is lease:
            self.lease = renewed
            self.lease_deadline = started + self.lease_ttl_s
        return self.lease is not None

    def lose_lease(self, why: str) -> None:
        """This replica no longer owns the chain's sync: stop writing, count it, log it."""
        lease, self.lease = self.lease, None
        if lease is None:
            return
        self.stats.leases_lost += 1
        if self.metrics is not None:
            self.metrics.record_lease(self.chain_id, held=False, lost=True)
        log.warning(
            "chain %s: sync lease term %d lost (%s); this replica (%s) stops syncing the "
            "chain and follows what the owner commits",
            self.chain_id,
            lease.token,
            why,
            self.replica_id,
        )

    async def release_lease(self) -> None:
        """Give the held lease up (graceful shutdown, the chain stopped) so another
        replica can take over at once."""
        lease, self.lease = self.lease, None
        if lease is None:
            return
        if self.metrics is not None:
            self.metrics.record_lease(self.chain_id, held=False)
        try:
            await self.store.release_lease(lease)
        except StoreError as e:
            log.warning("chain %s: releasing its sync lease failed: %s", self.chain_id, e)

    async def follow(self) -> None:
        """A non-owner's refresh: the chain's status and trusted state as the owner
        committed them, and the partner's head as its adapter reports it now (so this
        replica's ChainInfo and lag metrics say how far the trusted state trails the chain,
        as the owner's do)."""
        try:
            await self.refresh_record()
            if self.status in (ChainStatus.ACTIVE, ChainStatus.PENDING):
                self.publish(await self.load_view(fresh=True))
        except RelayError as e:
            log.debug("chain %s: refreshing from the store failed: %s", self.chain_id, e)
            return
        except StoreError as e:
            log.warning("chain %s: refreshing from the store failed: %s", self.chain_id, e)
            return
        if self.status not in (ChainStatus.ACTIVE, ChainStatus.PENDING):
            return
        await self.share_evidence_notes()
        try:
            await self.refresh_head()
        except RelayError as e:  # the adapter is down: the owner's sync reports it too
            log.debug("chain %s: asking the partner's head failed: %s", self.chain_id, e)

    # ------------------------------------------------------------------ pruning

    def note_evidence(self, height: int, *, now_ns: int) -> None:
        """Remember that evidence rests on ``height`` (pruning keeps it a while). The note
        also goes to the store at the next :meth:`share_evidence_notes`, so that the sync
        owner, whichever replica it is, keeps the height too."""
        self.recent_evidence[height] = now_ns
        if len(self.recent_evidence) > 10_000:
            oldest = sorted(self.recent_evidence.items(), key=lambda kv: kv[1])[:5_000]
            for h, _ in oldest:
                del self.recent_evidence[h]
        if height not in self._unshared and len(self._unshared) >= 10_000:
            return  # the store learns of it from the next evidence at that height
        self._unshared[height] = now_ns

    async def share_evidence_notes(self) -> None:
        """Write the heights evidence was served at since the last call to the store (never
        raises: a failed write is retried with the next notes)."""
        if not self._unshared:
            return
        notes, self._unshared = self._unshared, {}
        try:
            await self.store.note_evidence_heights(self.chain_id, notes)
        except StoreError as e:
            log.warning("chain %s: sharing evidence heights failed: %s", self.chain_id, e)
            for h, t in notes.items():
                self._unshared.setdefault(h, t)

    async def prune(self, *, now_ns: int) -> int:
        """Delete consensus states older than the trusting period, keeping what recent
        evidence rests on (and, by the store's rule, every trust-path ancestor)."""
        if self.status != ChainStatus.ACTIVE:
            return 0
        cutoff = now_ns - self.client.trusting_period_ns
        self.recent_evidence = {h: t for h, t in self.recent_evidence.items() if t >= cutoff}
        # What every replica served evidence at (issue 9): shared through the store.
        await self.share_evidence_notes()
        shared = await self.store.evidence_heights(self.chain_id, since_ns=cutoff)
        await self.store.forget_evidence_heights(self.chain_id, older_than_ns=cutoff)
        keep = sorted({*self.recent_evidence, *shared})
        async with self.lock:
            self._states_generation += 1
            self._states.clear()
            deleted = await self.store.prune_consensus_states(
                self.chain_id, older_than_ns=cutoff, keep_heights=keep
            )
            self._states_generation += 1  # reads that ran during the prune: not remembered
            self._states.clear()
        self.stats.pruned += deleted
        return deleted


class ChainRegistry:
    """The running chains, and which chain is authoritative for each registry code."""

    def __init__(self) -> None:
        self._chains: dict[str, ChainRuntime] = {}
        self._registries: dict[str, str] = {}

    def __iter__(self) -> Iterator[ChainRuntime]:
        return iter(sorted(self._chains.values(), key=lambda r: r.chain_id))

    def __len__(self) -> int:
        return len(self._chains)

    def __contains__(self, chain_id: object) -> bool:
        return chain_id in self._chains

    def add(self, runtime: ChainRuntime) -> None:
        self.remove(runtime.chain_id)
        self._chains[runtime.chain_id] = runtime
        for code in runtime.descriptor.registry_codes:
            self._registries[code] = runtime.chain_id

    def remove(self, chain_id: str) -> None:
        old = self._chains.pop(chain_id, None)
        if old is not None:
            for code in old.descriptor.registry_codes:
                if self._registries.get(code) == chain_id:
                    del self._registries[code]

    def get(self, chain_id: str) -> ChainRuntime:
        runtime = self._chains.get(chain_id)
        if runtime is None:
            raise RelayError(
                "NOT_FOUND",
                f"chain {chain_id!r} is not registered",
                chain_id=chain_id or None,
                field="chain_id",
            )
        return runtime

    def owner_of(self, registry: str) -> str | None:
        return self._registries.get(registry)

    def by_registry(self, registry: str, *, field: str) -> ChainRuntime:
        chain_id = self._registries.get(registry)
        if chain_id is None:
            raise RelayError(
                "NOT_FOUND",
                f"no registered chain is authoritative for registry code {registry!r}",
                field=field,
            )
        return self._chains[chain_id]


def _delay(settings: EngineSettings, failures: int, rng: random.Random) -> float:
    base = settings.sync_interval_s
    if failures == 0:
        return base * (1 + rng.uniform(0, settings.sync_jitter))
    cap = min(settings.sync_backoff_max_s, base * (2**failures))
    return base + rng.uniform(0, max(0.0, cap - base))


async def run_sync(runtime: ChainRuntime, *, rng: random.Random | None = None) -> None:
    """The sync task of one chain: take the chain's sync lease, then sync rounds while it is
    held (renewed every third of its ttl), then back to taking it; without it, follow what
    the owner commits. Ends when the chain is frozen or expired (or the task is
    cancelled). Never raises except CancelledError."""
    rng = rng or random.Random()
    # The task was created inside whatever call started it (RegisterChain...): its log lines
    # belong to the chain, not to that call's request id.
    bind_log_context(chain=runtime.chain_id)
    period = runtime.lease_ttl_s / 3
    try:
        while runtime.status not in (ChainStatus.FROZEN, ChainStatus.EXPIRED):
            if await runtime.acquire_lease() is None:
                await runtime.follow()
                await asyncio.sleep(period * (1 + rng.uniform(0, 0.2)))
                continue
            await _sync_while_owner(runtime, rng)
        await runtime.release_lease()  # frozen or expired: nothing left to sync
    finally:
        if runtime.lease is not None and runtime.metrics is not None:
            runtime.metrics.record_lease(runtime.chain_id, held=False)
    log.info("sync of chain %s stopped (%s)", runtime.chain_id, runtime.status.value)


async def _sync_while_owner(runtime: ChainRuntime, rng: random.Random) -> None:
    """Sync rounds beside a renewal loop; whichever ends first (lease lost, chain frozen)
    ends the other at once, so no round keeps going once the lease is gone."""
    rounds = asyncio.create_task(_rounds(runtime, rng))
    renewals = asyncio.create_task(_renewals(runtime))
    try:
        await asyncio.wait((rounds, renewals), return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in (rounds, renewals):
            task.cancel()
        await asyncio.gather(rounds, renewals, return_exceptions=True)


async def _renewals(runtime: ChainRuntime) -> None:
    period = runtime.lease_ttl_s / 3
    while True:
        await asyncio.sleep(period)
        if not await runtime.renew_lease():
            return


async def _rounds(runtime: ChainRuntime, rng: random.Random) -> None:
    settings = runtime.settings
    while runtime.status not in (ChainStatus.FROZEN, ChainStatus.EXPIRED):
        lease = runtime.lease
        if lease is None or not runtime.holds_lease():
            runtime.lose_lease("it ran out before it could be renewed")
            return
        try:
            async with asyncio.timeout(settings.sync_round_timeout_s):
                await runtime.sync_once(fence=lease.token)
        except LeaseLostError as e:
            runtime.lose_lease(str(e))
            return
        except RelayError as e:
            runtime.stats.failed(e)
            log.warning("sync of chain %s failed: %s", runtime.chain_id, e)
        except TimeoutError:
            runtime.stats.failed(
                RelayError(
                    "ADAPTER_UNAVAILABLE",
                    f"a sync round of chain {runtime.chain_id!r} took longer than "
                    f"{settings.sync_round_timeout_s:g} s",
                    chain_id=runtime.chain_id,
                )
            )
        except Exception as e:  # a bug must not kill the chain's sync for good
            runtime.stats.failed(RelayError("INTERNAL", repr(e), chain_id=runtime.chain_id))
            log.exception("sync of chain %s crashed", runtime.chain_id)
        if runtime.status in (ChainStatus.FROZEN, ChainStatus.EXPIRED):
            break
        await asyncio.sleep(_delay(settings, runtime.stats.consecutive_failures, rng))
