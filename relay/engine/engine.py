"""The engine facade the service layer calls: chain administration, queries, sync and
pruning tasks, over one :class:`~relay.store.Store`.

:meth:`Engine.open` loads every registered chain, builds its light client and adapter
client (a missing or broken in-process adapter stops start-up with
:class:`~relay.engine.adapters.AdapterLoadError` naming it) and finishes any registration a
crash interrupted. :meth:`Engine.start_sync` starts one sync task per chain, the pruning
task and the catalogue task; :meth:`Engine.close` cancels and awaits them, releases the sync
leases this replica holds and closes adapter channels.

Replicas (issue 9): every replica sharing the store answers queries for every chain, but a
chain is synced only by the holder of its sync lease (relay/engine/sync.py). The catalogue
task re-reads the registered chains every third of the lease ttl, so a chain registered,
recovered or re-pointed through another replica is loaded (or rebuilt) and followed here
too.

Registration validates the descriptor fully (chain id format, algorithms, parameters,
proof spec, registry codes unique across chains, the anchor verifying on its own) and
persists it with the anchor as the first verified state before acknowledging; the chain is
PENDING until its first sync verifies the adapter's head. Only this module and the rest of
relay/engine read the clock, through the injected ``clock`` (ns since the epoch).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import re
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Final, TypeVar

from google.protobuf.message import DecodeError
from google.protobuf.timestamp_pb2 import Timestamp

from relay.engine.adapters import AdapterClient, AdapterFactory, AdapterLoadError
from relay.engine.clients import ChainClient, make_client
from relay.engine.errors import RelayError
from relay.engine.evidence import EvidenceBuilder, RelaySigner
from relay.engine.queries import Queries, QueryStats
from relay.engine.settings import EngineSettings
from relay.engine.sync import (
    NS,
    ChainRegistry,
    ChainRuntime,
    SyncStats,
    parse_status_text,
    run_sync,
    status_text,
)
from relay.metrics import RelayMetrics
from relay.pb.relay.v1 import admin_pb2 as a
from relay.pb.relay.v1 import query_pb2 as q
from relay.pb.relay.v1 import types_pb2 as pb
from relay.store import (
    ChainExistsError,
    ChainRecord,
    ChainStatus,
    ChainStatusError,
    ConsensusStateRecord,
    StaleRevisionError,
    Store,
    StoreError,
)
from relay.store.base import LeaseLostError
from relay.verify import evidence as rules

log = logging.getLogger("relay.engine")

T = TypeVar("T")

CHAIN_ID: Final = re.compile(r"[A-Za-z0-9._-]{1,50}")
_REGISTRY_CODE: Final = re.compile(r"[^\s]{1,64}")
_STATUS: Final = {
    ChainStatus.PENDING: pb.CHAIN_STATUS_PENDING,
    ChainStatus.ACTIVE: pb.CHAIN_STATUS_ACTIVE,
    ChainStatus.FROZEN: pb.CHAIN_STATUS_FROZEN,
    ChainStatus.EXPIRED: pb.CHAIN_STATUS_EXPIRED,
}
_SUPPORTED_SPECS: Final = frozenset(
    {
        pb.PROOF_SPEC_ICS23_IAVL,
        pb.PROOF_SPEC_ICS23_TENDERMINT,
        pb.PROOF_SPEC_ICS23_SMT,
        pb.PROOF_SPEC_ICS23_SMT_SM3,
    }
)


def _ts(ns: int) -> Timestamp:
    return Timestamp(seconds=ns // NS, nanos=ns % NS)


def _bad(field: str, message: str, *, chain_id: str | None = None) -> RelayError:
    return RelayError("INVALID_ARGUMENT", message, chain_id=chain_id, field=field)


def validate_endpoint(endpoint: pb.AdapterEndpoint, *, field: str, chain_id: str) -> None:
    target = endpoint.WhichOneof("target")
    if target is None:
        raise _bad(
            field, "the adapter endpoint names no grpc_address or entry_point", chain_id=chain_id
        )
    if target == "grpc_address":
        host, sep, port = endpoint.grpc_address.rpartition(":")
        if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
            raise _bad(f"{field}.grpc_address", "grpc_address must be host:port", chain_id=chain_id)
        if "BEGIN CERTIFICATE" not in endpoint.ca_certificates_pem:
            raise _bad(
                f"{field}.ca_certificates_pem",
                "a remote adapter needs the PEM CA certificates of its TLS server certificate",
                chain_id=chain_id,
            )
    elif not endpoint.entry_point or len(endpoint.entry_point) > 128:
        raise _bad(
            f"{field}.entry_point", "entry_point must be 1 to 128 characters", chain_id=chain_id
        )
    for pin in endpoint.spki_sha256_pins:
        if len(pin) != 32:
            raise _bad(
                f"{field}.spki_sha256_pins",
                "SPKI pins are 32-byte SHA-256 digests",
                chain_id=chain_id,
            )


# Domains whose chains register no assets (their descriptors list no asset kinds).
_ASSETLESS_DOMAINS = frozenset({pb.DOMAIN_CREDIT, pb.DOMAIN_JUDICIAL})


def validate_descriptor(d: pb.ChainDescriptor) -> None:
    """Static checks of a descriptor (the anchor is verified by the chain's client)."""
    f = "descriptor"
    chain_id = d.chain_id
    if CHAIN_ID.fullmatch(chain_id) is None:
        raise _bad(f"{f}.chain_id", "chain_id must be 1 to 50 characters of [A-Za-z0-9._-]")
    if not d.institution or len(d.institution) > 64:
        raise _bad(f"{f}.institution", "institution must be 1 to 64 characters", chain_id=chain_id)
    if d.domain not in pb.Domain.values() or d.domain == pb.DOMAIN_UNSPECIFIED:
        raise _bad(f"{f}.domain", "domain must be set", chain_id=chain_id)
    for name in ("display_name_zh", "display_name_en"):
        if len(getattr(d, name)) > 200:
            raise _bad(f"{f}.{name}", f"{name} is longer than 200 characters", chain_id=chain_id)
    if d.WhichOneof("client") is None:
        raise _bad(
            f"{f}.client", "the descriptor names no client (tendermint or tlog)", chain_id=chain_id
        )
    if d.proof_spec not in _SUPPORTED_SPECS:
        raise RelayError(
            "UNSUPPORTED",
            f"chain {chain_id!r}: proof spec {d.proof_spec} is not supported for state queries "
            "(supported: the ICS-23 specs)",
            chain_id=chain_id,
            field=f"{f}.proof_spec",
        )
    if d.record_schema_version != 1:
        raise RelayError(
            "UNSUPPORTED",
            f"chain {chain_id!r}: record schema {d.record_schema_version} is not supported "
            "(supported: 1)",
            chain_id=chain_id,
            field=f"{f}.record_schema_version",
        )
    if d.party_key.hash_algorithm not in (pb.HASH_ALGORITHM_SHA256, pb.HASH_ALGORITHM_SM3):
        raise _bad(f"{f}.party_key.hash_algorithm", "must be SHA256 or SM3", chain_id=chain_id)
    if not 16 <= len(d.party_key.salt) <= 0xFFFF:
        raise _bad(
            f"{f}.party_key.salt", "the party-key salt must be at least 16 bytes", chain_id=chain_id
        )
    codes = list(d.registry_codes)
    if len(set(codes)) != len(codes):
        raise _bad(f"{f}.registry_codes", "registry codes repeat", chain_id=chain_id)
    for i, code in enumerate(codes):
        if _REGISTRY_CODE.fullmatch(code) is None:
            raise _bad(
                f"{f}.registry_codes[{i}]",
                "registry codes are 1 to 64 characters without spaces",
                chain_id=chain_id,
            )
    kinds = list(d.asset_kinds)
    if len(set(kinds)) != len(kinds) or any(
        k not in pb.AssetKind.values() or k == pb.ASSET_KIND_UNSPECIFIED for k in kinds
    ):
        raise _bad(f"{f}.asset_kinds", "asset kinds must be known and distinct", chain_id=chain_id)
    if d.domain not in _ASSETLESS_DOMAINS and not kinds:
        raise _bad(
            f"{f}.asset_kinds", "a chain holding assets must list their kinds", chain_id=chain_id
        )
    validate_endpoint(d.adapter, field=f"{f}.adapter", chain_id=chain_id)


def public_descriptor(d: pb.ChainDescriptor) -> pb.ChainDescriptor:
    """The descriptor with the write-only party-key salt removed."""
    out = pb.ChainDescriptor()
    out.CopyFrom(d)
    out.party_key.ClearField("salt")
    return out


class Engine:
    """Per-chain sync, verified queries and chain administration over one store."""

    def __init__(
        self,
        *,
        settings: EngineSettings,
        store: Store,
        signer: RelaySigner,
        adapters: AdapterFactory,
        clock: Callable[[], int],
        metrics: RelayMetrics | None = None,
    ) -> None:
        self.settings = settings
        # Without a registry of its own the engine still records (tests read it back); the
        # service passes the one its ops port serves.
        self.metrics = metrics if metrics is not None else RelayMetrics(process_collectors=False)
        self.store = store
        self.signer = signer
        self.adapters = adapters
        self.clock = clock
        self.registry = ChainRegistry()
        self.sig_pool = ThreadPoolExecutor(
            max_workers=settings.verify_threads, thread_name_prefix="relay-sig"
        )
        self.evidence = EvidenceBuilder(
            store=store, signer=signer, max_trust_path=settings.max_trust_path
        )
        self.queries = Queries(
            registry=self.registry, evidence=self.evidence, settings=settings, clock=clock
        )
        self._tasks: dict[str, asyncio.Task[None]] = {}
        self._prune_task: asyncio.Task[None] | None = None
        self._catalogue_task: asyncio.Task[None] | None = None
        self._syncing = False
        self._admin_lock = asyncio.Lock()
        self._rng = random.Random()
        self._closed = False

    # ------------------------------------------------------------------ lifecycle

    @classmethod
    async def open(
        cls,
        *,
        settings: EngineSettings,
        store: Store,
        signer: RelaySigner,
        adapters: AdapterFactory,
        clock: Callable[[], int] = time.time_ns,
        metrics: RelayMetrics | None = None,
    ) -> Engine:
        """Load every registered chain. Raises AdapterLoadError (a chain's adapter cannot be
        loaded) or RuntimeError (a stored descriptor is unusable), naming the chain.
        ``metrics`` receives the engine's measurements (default: a private registry)."""
        engine = cls(
            settings=settings,
            store=store,
            signer=signer,
            adapters=adapters,
            clock=clock,
            metrics=metrics,
        )
        try:
            for record in await store.list_chains():
                await engine._load(record)
        except BaseException:
            await engine._close_adapters()
            engine.sig_pool.shutdown(wait=False)
            raise
        return engine

    def _client(self, descriptor: pb.ChainDescriptor) -> ChainClient:
        client = make_client(descriptor, settings=self.settings, sig_pool=self.sig_pool)
        client.metrics = self.metrics
        return client

    def _adapter(self, descriptor: pb.ChainDescriptor) -> AdapterClient:
        """The chain's adapter client from the factory, timed into the engine's metrics
        when it supports that (a test's fake adapter need not)."""
        made = self.adapters(descriptor)
        bind = getattr(made, "bind_metrics", None)
        if callable(bind):
            bind(self.metrics)
        return made

    def _meter(self, runtime: ChainRuntime) -> None:
        """Create the chain's series (at zero) and report its status."""
        d = runtime.descriptor
        target = d.adapter.WhichOneof("target") or ""
        try:
            self.metrics.register_chain(
                runtime.chain_id,
                d.domain,
                client_type=runtime.client.client_type_enum,
                adapter={"grpc_address": "grpc", "entry_point": "entry_point"}.get(target),
            )
        except ValueError as e:  # UnboundedLabelError: too many chains; serve on regardless
            log.error("chain %s gets no metrics: %s", runtime.chain_id, e)
            return
        self.metrics.record_chain_status(runtime.chain_id, runtime.status.value)

    async def _meter_state(self, runtime: ChainRuntime) -> None:
        """Report the trusted state a chain starts with (none yet: its series stay 0)."""
        with contextlib.suppress(RelayError):
            runtime.publish(await runtime.load_view())

    async def _load(self, record: ChainRecord) -> None:
        runtime = await self._build(record)
        self.registry.add(runtime)
        self._meter(runtime)
        if await self.store.get_client_state(record.chain_id) is None:
            await self._finish_registration(runtime)
        await self._meter_state(runtime)

    async def _build(self, record: ChainRecord) -> ChainRuntime:
        """A chain's runtime (light client, adapter client) from its stored record."""
        chain_id = record.chain_id
        try:
            descriptor = pb.ChainDescriptor.FromString(record.descriptor)
        except DecodeError as e:
            raise RuntimeError(
                f"stored descriptor of chain {chain_id!r} does not decode: {e}"
            ) from e
        try:
            client = self._client(descriptor)
        except RelayError as e:
            raise RuntimeError(f"stored descriptor of chain {chain_id!r} is unusable: {e}") from e
        try:
            adapter = self._adapter(descriptor)
        except AdapterLoadError as e:
            raise AdapterLoadError(f"chain {chain_id!r}: {e}") from e
        return ChainRuntime(
            record=record,
            descriptor=descriptor,
            client=client,
            adapter=adapter,
            store=self.store,
            settings=self.settings,
            clock=self.clock,
            metrics=self.metrics,
        )

    async def _finish_registration(self, runtime: ChainRuntime) -> None:
        """Store the anchor of a chain whose registration was interrupted before it."""
        now = self.clock()
        if runtime.status in (ChainStatus.FROZEN, ChainStatus.EXPIRED):
            return
        try:
            anchor = runtime.client.anchor_record(now_ns=now)
        except RelayError as e:
            log.error("chain %s: its anchor no longer verifies: %s", runtime.chain_id, e)
            await self.store.set_chain_status(
                runtime.chain_id,
                status=ChainStatus.EXPIRED,
                reason=status_text("CHAIN_EXPIRED", f"registration incomplete: {e.message}"),
            )
            await runtime.refresh_record()
            return
        try:
            await self._store_anchor(runtime.client, anchor, now_ns=now)
        except (StaleRevisionError, ChainStatusError):
            # Another replica sharing the store is finishing (or just finished) the same
            # registration: its anchor is the same record, so follow it (issue 9).
            for _ in range(50):
                if await self.store.get_client_state(runtime.chain_id) is not None:
                    break
                await asyncio.sleep(0.1)
            else:
                raise
            log.info("chain %s: another replica stored its anchor", runtime.chain_id)
        await runtime.refresh_record()

    async def _store_anchor(
        self, client: ChainClient, anchor: ConsensusStateRecord, *, now_ns: int
    ) -> None:
        chain_id = client.chain_id
        record = await self.store.get_chain(chain_id)
        if record is not None and record.status == ChainStatus.PENDING:
            # Verified state lands only on an active chain (Store.commit_verified).
            await self.store.set_chain_status(chain_id, status=ChainStatus.ACTIVE, reason="")
        await self.store.commit_verified(
            chain_id=chain_id,
            client_state=client.client_state(latest_height=anchor.height, last_verified_ns=now_ns),
            latest_height=anchor.height,
            expected_revision=None,
            consensus_states=[anchor],
        )
        await self.store.set_chain_status(
            chain_id,
            status=ChainStatus.PENDING,
            reason=status_text("CHAIN_PENDING", "awaiting the first verified sync"),
        )

    async def start_sync(self) -> None:
        """Start one sync task per chain that is active or pending, and the pruning task."""
        self._syncing = True
        for runtime in self.registry:
            self._start(runtime)
        if self._prune_task is None:
            self._prune_task = asyncio.create_task(self._prune_loop(), name="relay-prune")
        if self._catalogue_task is None:
            self._catalogue_task = asyncio.create_task(
                self._catalogue_loop(), name="relay-catalogue"
            )

    def _start(self, runtime: ChainRuntime) -> None:
        if not self._syncing or runtime.status in (ChainStatus.FROZEN, ChainStatus.EXPIRED):
            return
        old = self._tasks.get(runtime.chain_id)
        if old is not None and not old.done():
            return
        self._tasks[runtime.chain_id] = asyncio.create_task(
            run_sync(runtime, rng=self._rng), name=f"relay-sync-{runtime.chain_id}"
        )

    async def _stop(self, chain_id: str) -> None:
        task = self._tasks.pop(chain_id, None)
        if task is not None:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)

    async def close(self) -> None:
        """Cancel sync and pruning tasks, wait for them, close adapter channels."""
        if self._closed:
            return
        self._closed = True
        self._syncing = False
        tasks = list(self._tasks.values())
        for extra in (self._prune_task, self._catalogue_task):
            if extra is not None:
                tasks.append(extra)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        self._tasks.clear()
        # Graceful shutdown: another replica takes the chains over at once, not after the
        # leases run out.
        await asyncio.gather(*(r.release_lease() for r in self.registry))
        await asyncio.gather(*(r.stop_verifications() for r in self.registry))
        await self._close_adapters()
        self.sig_pool.shutdown(wait=True)

    async def _close_adapters(self) -> None:
        for runtime in self.registry:
            try:
                await runtime.adapter.close()
            except Exception:
                log.exception("closing the adapter of chain %s failed", runtime.chain_id)

    async def sync_chain_once(self, chain_id: str) -> bool:
        """One sync round of one chain now (for tests and the CLI) under the chain's sync
        lease, taken (or extended) first; raises its error."""
        runtime = self.registry.get(chain_id)
        lease = await runtime.acquire_lease()
        if lease is None:
            held = await self.store.get_lease(chain_id)
            raise RelayError(
                "INTERNAL",
                f"chain {chain_id!r} is synced by replica "
                f"{held.owner if held is not None else '?'!r}, not this one "
                f"({runtime.replica_id!r})",
                chain_id=chain_id,
                check="SYNC_LEASE_HELD_ELSEWHERE",
            )
        try:
            return await runtime.sync_once(fence=lease.token)
        except LeaseLostError as e:
            runtime.lose_lease(str(e))
            raise RelayError("INTERNAL", str(e), chain_id=chain_id, check="LEASE_LOST") from e

    async def prune_once(self, *, owned_only: bool = False) -> int:
        """Prune every chain once (``owned_only``: only the chains whose sync lease this
        replica holds, so replicas do not prune one chain at once); returns how many states
        were deleted."""
        deleted = 0
        now = self.clock()
        for runtime in self.registry:
            if owned_only and not runtime.holds_lease():
                continue
            try:
                deleted += await runtime.prune(now_ns=now)
            except StoreError as e:
                log.error("pruning chain %s failed: %s", runtime.chain_id, e)
        return deleted

    async def _prune_loop(self) -> None:
        while True:
            await asyncio.sleep(self.settings.prune_interval_s)
            await self.prune_once(owned_only=True)

    async def _catalogue_loop(self) -> None:
        while True:
            await asyncio.sleep(self.settings.lease_ttl_s / 3)
            try:
                await self.refresh_catalogue()
            except (StoreError, RelayError) as e:
                log.warning("re-reading the registered chains failed: %s", e)
            except Exception:  # a bug must not end the catalogue for good
                log.exception("re-reading the registered chains crashed")

    async def refresh_catalogue(self) -> int:
        """Load what other replicas changed in the store: chains registered elsewhere are
        loaded and followed; a chain whose descriptor changed (recovered with a new anchor,
        adapter endpoint updated) is rebuilt from it. Returns how many chains were
        (re)loaded. A chain that cannot be loaded is logged and skipped."""
        changed = 0
        for record in await self.store.list_chains():
            chain_id = record.chain_id
            async with self._admin_lock:
                current = self.registry.get(chain_id) if chain_id in self.registry else None
                try:
                    if current is None:
                        fresh = await self._build(record)
                        self.registry.add(fresh)
                    else:
                        # Under the chain's lock: an endpoint update here swaps descriptor
                        # and store row together, so a half-done one is never "changed".
                        async with current.lock:
                            stored = current.descriptor.SerializeToString(deterministic=True)
                            if stored == record.descriptor:
                                continue
                            fresh = await self._build(record)
                            await self._stop(chain_id)
                            fresh.stats = current.stats
                            fresh.lease = current.lease
                            fresh.lease_deadline = current.lease_deadline
                            self.registry.add(fresh)
                        self.evidence.forget(chain_id)
                        await current.adapter.close()
                except (RuntimeError, AdapterLoadError) as e:
                    log.error("chain %s changed in the store but cannot be loaded: %s", chain_id, e)
                    continue
                changed += 1
            self._meter(fresh)
            await self._meter_state(fresh)
            log.info(
                "chain %s %s from the store (changed through another replica)",
                chain_id,
                "reloaded" if current is not None else "loaded",
            )
            self._start(fresh)
        return changed

    def sync_stats(self) -> dict[str, SyncStats]:
        return {r.chain_id: r.stats for r in self.registry}

    def query_stats(self) -> QueryStats:
        return self.queries.stats

    # ------------------------------------------------------------------ chain info

    async def chain_info(self, runtime: ChainRuntime) -> pb.ChainInfo:
        d = runtime.descriptor
        rec = runtime.record
        info = pb.ChainInfo(
            chain_id=d.chain_id,
            institution=d.institution,
            domain=d.domain,
            display_name_zh=d.display_name_zh,
            display_name_en=d.display_name_en,
            client_type=pb.ClientType.ValueType(runtime.client.client_type_enum),
            proof_spec=d.proof_spec,
            registry_codes=list(d.registry_codes),
            asset_kinds=list(d.asset_kinds),
            record_schema_version=d.record_schema_version,
            status=pb.ChainStatus.ValueType(_STATUS[rec.status]),
            anchor_height=rec.anchor_height,
        )
        reason, message = parse_status_text(rec.status_reason)
        if reason in pb.ErrorReason.keys() and rec.status in (  # noqa: SIM118
            ChainStatus.FROZEN,
            ChainStatus.EXPIRED,
        ):
            info.status_reason = pb.ErrorReason.Value(reason)
        info.status_message = message
        if rec.updated_at_ns:
            info.status_since.CopyFrom(_ts(rec.updated_at_ns))
        try:
            view = await runtime.load_view()
        except RelayError:
            return info
        info.trusted_height = view.latest.height
        time_ns = runtime.client.header_time_ns(view.latest)
        if time_ns is not None:
            info.trusted_time.CopyFrom(_ts(time_ns))
        if runtime.partner_head is not None and runtime.partner_head_seen_ns is not None:
            info.partner_head_height = runtime.partner_head
            info.partner_head_seen_at.CopyFrom(_ts(runtime.partner_head_seen_ns))
        expires = runtime.client.trust_expires_at_ns(view)
        info.trust_expires_at.CopyFrom(_ts(expires))
        info.seconds_until_trust_expiry = (expires - self.clock()) // NS
        info.assurance = pb.Assurance.ValueType(runtime.client.assurance(view.latest))
        return info

    def _chains(self, domain: int) -> list[ChainRuntime]:
        return [r for r in self.registry if domain in (pb.DOMAIN_UNSPECIFIED, r.descriptor.domain)]

    # ------------------------------------------------------------------ QueryService

    def _done(self, method: str, request: object, t0: float, error: BaseException | None) -> None:
        """Observe relay_query_duration_seconds{method} (and relay_query_errors_total on
        failure) and log the query by method and case reference: never the parties or
        assets it names (they are personal data; the audit log keeps them)."""
        seconds = time.perf_counter() - t0
        reason = None
        if isinstance(error, RelayError):
            reason = error.reason
        elif isinstance(error, Exception):
            reason = "INTERNAL"
        self.metrics.observe_query(method, seconds=seconds, reason=reason)
        case_ref = getattr(request, "case_ref", None)
        case = case_ref.case_number if case_ref is not None else ""
        extra = {"case": case, "duration_ms": round(seconds * 1000, 3), "reason": reason}
        if error is None:
            log.debug("%s answered", method, extra=extra)
        elif reason is None:  # cancelled: the caller went away or its deadline passed
            log.debug("%s cancelled", method, extra=extra)
        else:
            log.info("%s failed: %s", method, reason, extra=extra)

    async def _timed(self, method: str, request: object, work: Awaitable[T]) -> T:
        t0 = time.perf_counter()
        try:
            result = await work
        except BaseException as e:
            self._done(method, request, t0, e)
            raise
        self._done(method, request, t0, None)
        return result

    async def get_ownership(self, req: q.GetOwnershipRequest) -> q.OwnershipAnswer:
        return await self._timed("GetOwnership", req, self.queries.get_ownership(req))

    def list_holdings(self, req: q.ListHoldingsRequest) -> AsyncIterator[q.HoldingsAnswer]:
        return self._timed_stream("ListHoldings", req, self.queries.list_holdings(req))

    async def _timed_stream(
        self, method: str, request: object, stream: AsyncIterator[q.HoldingsAnswer]
    ) -> AsyncIterator[q.HoldingsAnswer]:
        t0 = time.perf_counter()
        error: BaseException | None = None
        try:
            async for item in stream:
                yield item
        except BaseException as e:
            error = e
            raise
        finally:
            self._done(method, request, t0, error)
            closer = getattr(stream, "aclose", None)
            if closer is not None:  # a caller that stops early stops the chains' tasks too
                await closer()

    async def get_credit_status(self, req: q.GetCreditStatusRequest) -> q.CreditAnswer:
        return await self._timed("GetCreditStatus", req, self.queries.get_credit_status(req))

    async def get_account(self, req: q.GetAccountRequest) -> q.AccountAnswer:
        return await self._timed("GetAccount", req, self.queries.get_account(req))

    async def get_history(self, req: q.GetHistoryRequest) -> q.HistoryAnswer:
        return await self._timed("GetHistory", req, self.queries.get_history(req))

    async def get_state(self, req: q.GetStateRequest) -> q.StateAnswer:
        return await self._timed("GetState", req, self.queries.get_state(req))

    async def list_chains(self, req: q.ListChainsRequest) -> q.ListChainsResponse:
        async def work() -> q.ListChainsResponse:
            return q.ListChainsResponse(
                chains=[await self.chain_info(r) for r in self._chains(req.domain)]
            )

        return await self._timed("ListChains", req, work())

    async def get_chain(self, req: q.GetChainRequest) -> q.GetChainResponse:
        async def work() -> q.GetChainResponse:
            return q.GetChainResponse(chain=await self.chain_info(self.registry.get(req.chain_id)))

        return await self._timed("GetChain", req, work())

    # ------------------------------------------------------------------ AdminService

    async def register_chain(self, req: a.RegisterChainRequest) -> a.RegisterChainResponse:
        if req.WhichOneof("submission") != "descriptor":
            raise _bad("descriptor", "the request carries no descriptor")
        descriptor = pb.ChainDescriptor()
        descriptor.CopyFrom(req.descriptor)
        validate_descriptor(descriptor)
        chain_id = descriptor.chain_id
        client = self._client(descriptor)
        now = self.clock()
        anchor = client.anchor_record(now_ns=now)
        async with self._admin_lock:
            self._check_unique(descriptor)
            try:
                adapter = self._adapter(descriptor)
            except AdapterLoadError as e:
                raise _bad("descriptor.adapter", str(e), chain_id=chain_id) from e
            try:
                # Insert-only: a replica sharing the store may have registered this id (now
                # or earlier, before this one re-read the catalogue); its record stands.
                await self.store.create_chain(
                    ChainRecord(
                        chain_id=chain_id,
                        domain=pb.Domain.Name(descriptor.domain),
                        client_type=client.store_client_type,
                        descriptor=descriptor.SerializeToString(deterministic=True),
                        status=ChainStatus.ACTIVE,
                        anchor_height=anchor.height,
                    )
                )
            except ChainExistsError as e:
                await adapter.close()
                raise RelayError(
                    "ALREADY_EXISTS",
                    f"chain {chain_id!r} is already registered (by another relay replica "
                    "sharing the store); its registration stands",
                    chain_id=chain_id,
                    field="descriptor.chain_id",
                ) from e
            except StoreError as e:
                await adapter.close()
                raise RelayError(
                    "INTERNAL", f"registering chain {chain_id!r}: {e}", chain_id=chain_id
                ) from e
            try:
                await self._store_anchor(client, anchor, now_ns=now)
                record = await self.store.get_chain(chain_id)
            except StoreError as e:
                await adapter.close()
                raise RelayError(
                    "INTERNAL", f"registering chain {chain_id!r}: {e}", chain_id=chain_id
                ) from e
            assert record is not None
            runtime = ChainRuntime(
                record=record,
                descriptor=descriptor,
                client=client,
                adapter=adapter,
                store=self.store,
                settings=self.settings,
                clock=self.clock,
                metrics=self.metrics,
            )
            self.registry.add(runtime)
        self._meter(runtime)
        await self._meter_state(runtime)
        log.info("chain %s registered (anchor height %d)", chain_id, anchor.height)
        self._start(runtime)
        return a.RegisterChainResponse(chain=await self.chain_info(runtime))

    def _check_unique(self, d: pb.ChainDescriptor) -> None:
        if d.chain_id in self.registry:
            raise RelayError(
                "ALREADY_EXISTS",
                f"chain {d.chain_id!r} is already registered",
                chain_id=d.chain_id,
                field="descriptor.chain_id",
            )
        for i, code in enumerate(d.registry_codes):
            owner = self.registry.owner_of(code)
            if owner is not None and owner != d.chain_id:
                raise RelayError(
                    "ALREADY_EXISTS",
                    f"registry code {code!r} already belongs to chain {owner!r}",
                    chain_id=d.chain_id,
                    field=f"descriptor.registry_codes[{i}]",
                )

    async def freeze_chain(self, req: a.FreezeChainRequest) -> a.FreezeChainResponse:
        runtime = self.registry.get(req.chain_id)
        if len(req.reason) > 900:
            raise _bad("reason", "reason is longer than 900 characters", chain_id=req.chain_id)
        if runtime.status != ChainStatus.FROZEN:
            await self._stop(runtime.chain_id)
            async with runtime.lock:
                await self.store.set_chain_status(
                    runtime.chain_id,
                    status=ChainStatus.FROZEN,
                    reason=status_text(
                        "CHAIN_FROZEN", f"frozen by an operator: {req.reason or 'no reason given'}"
                    ),
                )
                await runtime.refresh_record()
            log.warning("chain %s frozen by an operator: %s", runtime.chain_id, req.reason)
        return a.FreezeChainResponse(chain=await self.chain_info(runtime))

    async def recover_chain(self, req: a.RecoverChainRequest) -> a.RecoverChainResponse:
        runtime = self.registry.get(req.chain_id)
        chain_id = runtime.chain_id
        if runtime.status not in (ChainStatus.FROZEN, ChainStatus.EXPIRED):
            raise _bad(
                "chain_id",
                f"chain {chain_id!r} is {runtime.status.value}; only a frozen or expired chain "
                "is recovered",
                chain_id=chain_id,
            )
        if len(req.reason) > 900:
            raise _bad("reason", "reason is longer than 900 characters", chain_id=chain_id)
        which = req.new_anchor.WhichOneof("anchor")
        expected = runtime.descriptor.WhichOneof("client")
        if which != expected:
            raise _bad(
                "new_anchor",
                f"chain {chain_id!r} is a {expected} chain; the new anchor must be one too",
                chain_id=chain_id,
            )
        descriptor = pb.ChainDescriptor()
        descriptor.CopyFrom(runtime.descriptor)
        if which == "tendermint":
            descriptor.tendermint.anchor.CopyFrom(req.new_anchor.tendermint)
        else:
            descriptor.tlog.anchor.CopyFrom(req.new_anchor.tlog)
        client = self._client(descriptor)
        now = self.clock()
        anchor = client.anchor_record(now_ns=now)
        async with self._admin_lock, runtime.lock:
            await self._stop(chain_id)
            current = await self.store.get_client_state(chain_id)
            previous = -1 if current is None else current.latest_height
            if anchor.height < previous or (which == "tendermint" and anchor.height == previous):
                raise _bad(
                    "new_anchor",
                    f"the new anchor of chain {chain_id!r} is at height {anchor.height}, not "
                    f"above the last trusted height {previous}",
                    chain_id=chain_id,
                )
            message = (
                f"recovered by an operator with a new anchor at height {anchor.height} "
                f"({req.reason or 'no reason given'}); awaiting the first verified sync"
            )
            try:
                await self.store.reanchor(
                    chain_id=chain_id,
                    descriptor=descriptor.SerializeToString(deterministic=True),
                    anchor=anchor,
                    client_state=client.client_state(
                        latest_height=anchor.height, last_verified_ns=now
                    ),
                    expected_revision=None if current is None else current.revision,
                    reason=status_text("CHAIN_PENDING", message),
                )
                await self.store.set_chain_status(
                    chain_id,
                    status=ChainStatus.PENDING,
                    reason=status_text("CHAIN_PENDING", message),
                )
            except (StoreError, ChainStatusError) as e:
                raise RelayError(
                    "INTERNAL", f"recovering chain {chain_id!r}: {e}", chain_id=chain_id
                ) from e
            record = await runtime.refresh_record()
            new = ChainRuntime(
                record=record,
                descriptor=descriptor,
                client=client,
                adapter=runtime.adapter,
                store=self.store,
                settings=self.settings,
                clock=self.clock,
                metrics=self.metrics,
            )
            new.stats = runtime.stats
            self.registry.add(new)
            self.evidence.forget(chain_id)
        self._meter(new)
        await self._meter_state(new)
        log.warning("chain %s recovered: %s", chain_id, message)
        self._start(new)
        return a.RecoverChainResponse(chain=await self.chain_info(new))

    async def update_adapter_endpoint(
        self, req: a.UpdateAdapterEndpointRequest
    ) -> a.UpdateAdapterEndpointResponse:
        runtime = self.registry.get(req.chain_id)
        chain_id = runtime.chain_id
        if req.WhichOneof("update") != "endpoint":
            raise _bad("endpoint", "the request carries no endpoint", chain_id=chain_id)
        validate_endpoint(req.endpoint, field="endpoint", chain_id=chain_id)
        descriptor = pb.ChainDescriptor()
        descriptor.CopyFrom(runtime.descriptor)
        descriptor.adapter.CopyFrom(req.endpoint)
        try:
            adapter = self._adapter(descriptor)
        except AdapterLoadError as e:
            raise _bad("endpoint", str(e), chain_id=chain_id) from e
        async with runtime.lock:
            record = await runtime.refresh_record()
            try:
                await self.store.upsert_chain(
                    ChainRecord(
                        chain_id=chain_id,
                        domain=record.domain,
                        client_type=record.client_type,
                        descriptor=descriptor.SerializeToString(deterministic=True),
                        status=record.status,
                        anchor_height=record.anchor_height,
                        status_reason=record.status_reason,
                    )
                )
            except StoreError as e:
                await adapter.close()
                raise RelayError(
                    "INTERNAL", f"updating chain {chain_id!r}: {e}", chain_id=chain_id
                ) from e
            old: AdapterClient = runtime.adapter
            runtime.adapter = adapter
            runtime.descriptor = descriptor
            runtime.client.descriptor = descriptor
            await runtime.refresh_record()
        await old.close()
        self._meter(runtime)  # the adapter kind (grpc, entry_point) may have changed
        log.info("chain %s: adapter endpoint updated", chain_id)
        return a.UpdateAdapterEndpointResponse(chain=await self.chain_info(runtime))

    async def admin_list_chains(self, req: a.AdminListChainsRequest) -> a.AdminListChainsResponse:
        out = a.AdminListChainsResponse()
        for runtime in self._chains(req.domain):
            item = out.chains.add(
                info=await self.chain_info(runtime),
                descriptor=public_descriptor(runtime.descriptor),
            )
            if runtime.record.created_at_ns:
                item.registered_at.CopyFrom(_ts(runtime.record.created_at_ns))
        return out

    def relay_key(self) -> rules.RelayKey:
        """The relay's public evidence key, for anchors files."""
        return self.signer.relay_key()
