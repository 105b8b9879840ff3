"""Every Prometheus metric of the relay, declared once, with its help text and bounded labels.

The catalogue (issue 8, "Operations") follows the Prometheus naming guide: prefix ``relay_``,
base units (seconds, bytes), ``_total`` on counters. Labels are drawn only from closed sets:
a chain id that was registered with :meth:`RelayMetrics.register_chain`, a domain, client type
or chain status from the ``relay.v1`` enums, an RPC method name from the proto service
descriptors, and an ``ErrorReason`` name (:func:`reason_label`). A height, hash, party or case
can therefore never become a label value: the recording helpers map anything outside those
sets to ``OTHER``/``other`` or drop the sample (counted in
``relay_metrics_dropped_samples_total``).

Every per-chain series exists, at zero, from the moment the chain is registered (as Hermes
does for its telemetry), so ``rate()`` and alerts work from the first scrape.

:class:`GrpcServerMetrics` is a ``grpc.aio`` server interceptor producing the series of
go-grpc-prometheus (``grpc_server_started_total``, ``grpc_server_handled_total``,
``grpc_server_msg_received_total``, ``grpc_server_msg_sent_total`` and the
``grpc_server_handling_seconds`` histogram, labelled ``grpc_type``, ``grpc_service``,
``grpc_method`` and, for ``handled``, ``grpc_code`` in Go's spelling such as ``NotFound``),
so the community's gRPC dashboards and alerts work unchanged.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import re
import threading
import time
from collections.abc import AsyncIterator, Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Final

import grpc
import grpc.aio
import prometheus_client
from google.protobuf.descriptor import ServiceDescriptor
from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    PlatformCollector,
    ProcessCollector,
)
from prometheus_client.exposition import choose_encoder

from relay import __version__
from relay.interceptors import PerMethodInterceptor
from relay.pb.relay.adapter.v1 import adapter_pb2
from relay.pb.relay.v1 import admin_pb2, query_pb2, types_pb2

log = logging.getLogger("relay.metrics")

# ``_created`` series double the series count for no operational gain (go-grpc-prometheus
# and Hermes emit none); the relay owns its process, so the switch is set once here.
prometheus_client.disable_created_metrics()  # type: ignore[no-untyped-call]

NAMESPACE: Final = "relay"
OTHER_REASON: Final = "OTHER"
OTHER_METHOD: Final = "other"
UNSPECIFIED: Final = "unspecified"

#: Every label name a relay metric may carry. Anything else is a review finding: a test
#: checks the registry against this list.
ALLOWED_LABELS: Final = frozenset(
    {
        "chain",
        "domain",
        "client_type",
        "adapter",
        "method",
        "reason",
        "status",
        "version",
        "grpc_type",
        "grpc_service",
        "grpc_method",
        "grpc_code",
    }
)

#: Upper bound on registered chains, so the chain label's cardinality is bounded even if a
#: caller registers in a loop.
MAX_CHAINS: Final = 1000

# Same alphabet and length as relay.engine's chain-id rule (ChainDescriptor.chain_id).
_CHAIN_ID: Final = re.compile(r"[A-Za-z0-9._-]{1,50}")
# A run of 32+ hex digits looks like a hash or key, which must never become a label value.
_HEXRUN: Final = re.compile(r"[0-9a-fA-F]{32,}")


def _enum_names(enum: Any, prefix: str) -> dict[int, str]:
    return {
        v.number: v.name.removeprefix(prefix).lower() for v in enum.DESCRIPTOR.values if v.number
    }


#: ErrorReason names (proto/relay/v1/types.proto) usable as ``reason``, plus ``OTHER``.
REASONS: Final[tuple[str, ...]] = (
    *(v.name for v in types_pb2.ErrorReason.DESCRIPTOR.values if v.number != 0),
    OTHER_REASON,
)
_REASON_SET: Final = frozenset(REASONS)

_DOMAINS: Final = _enum_names(types_pb2.Domain, "DOMAIN_")
#: ``domain`` label values: real_estate, ip, credit, bank, unspecified.
DOMAINS: Final[tuple[str, ...]] = (*_DOMAINS.values(), UNSPECIFIED)

_CLIENT_TYPES: Final = _enum_names(types_pb2.ClientType, "CLIENT_TYPE_")
#: ``client_type`` label values: tendermint, tlog, unspecified.
CLIENT_TYPES: Final[tuple[str, ...]] = (*_CLIENT_TYPES.values(), UNSPECIFIED)

_STATUSES: Final = _enum_names(types_pb2.ChainStatus, "CHAIN_STATUS_")
#: ``status`` label values of ``relay_chain_status``: pending, active, frozen, expired.
CHAIN_STATUSES: Final[tuple[str, ...]] = tuple(_STATUSES.values())

#: ``adapter`` label values of ``relay_chain_info``: how the relay reaches the adapter
#: (the oneof of AdapterEndpoint), never its address.
ADAPTER_KINDS: Final[tuple[str, ...]] = ("grpc", "entry_point", UNSPECIFIED)


def _methods(service: ServiceDescriptor) -> tuple[str, ...]:
    return tuple(m.name for m in service.methods)


QUERY_SERVICE: Final = query_pb2.DESCRIPTOR.services_by_name["QueryService"]
ADMIN_SERVICE: Final = admin_pb2.DESCRIPTOR.services_by_name["AdminService"]
ADAPTER_SERVICE: Final = adapter_pb2.DESCRIPTOR.services_by_name["AdapterService"]
#: ``method`` label values of the query metrics (QueryService RPC names) plus ``other``.
QUERY_METHODS: Final[tuple[str, ...]] = (*_methods(QUERY_SERVICE), OTHER_METHOD)
#: ``method`` label values of the adapter metrics (AdapterService RPC names) plus ``other``.
ADAPTER_METHODS: Final[tuple[str, ...]] = (*_methods(ADAPTER_SERVICE), OTHER_METHOD)

# The reasons an adapter call fails with (relay/engine/adapters.py); their series are created
# at registration. Other reasons still count, their series appear on first use.
ADAPTER_ERROR_REASONS: Final = (
    "ADAPTER_UNAVAILABLE",
    "STREAM_TRUNCATED",
    "MALFORMED_INPUT",
    "LIMIT_EXCEEDED",
    "HEIGHT_OUT_OF_RANGE",
    "UNSUPPORTED",
    "NOT_FOUND",
)

# Seconds; from a local SQLite lookup (~1 ms) to a query that waits on a slow adapter.
DURATION_BUCKETS: Final = (
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
    10.0,
    30.0,
)
# go-grpc-prometheus uses prometheus.DefBuckets; the same here keeps shared dashboards right.
GRPC_BUCKETS: Final = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)

_PER_CHAIN: Final = ("chain", "domain")


class UnboundedLabelError(ValueError):
    """A value that could make a label unbounded (or carry a hash) was offered as a label."""


def reason_label(reason: object) -> str:
    """The ``reason`` label for ``reason``: an ErrorReason name (as a string, an enum number,
    or an object with a ``reason`` attribute such as a VerificationError or RelayError),
    anything else ``OTHER``."""
    value = getattr(reason, "reason", reason)
    if isinstance(value, int) and not isinstance(value, bool):
        try:
            value = types_pb2.ErrorReason.Name(value)  # type: ignore[arg-type]
        except ValueError:
            return OTHER_REASON
    if isinstance(value, str) and value in _REASON_SET:
        return value
    return OTHER_REASON


def _from_enum(value: object, names: Mapping[int, str], prefix: str) -> str:
    if isinstance(value, int) and not isinstance(value, bool):
        return names.get(value, UNSPECIFIED)
    if isinstance(value, str):
        text = value.strip().upper().replace("-", "_").removeprefix(prefix).lower()
        if text in names.values():
            return text
    return UNSPECIFIED


def domain_label(domain: object) -> str:
    """``real_estate``, ``ip``, ``credit``, ``bank`` from a ``relay.v1.Domain`` number or
    name (``DOMAIN_IP``, ``ip``, ``real-estate``); anything else ``unspecified``."""
    return _from_enum(domain, _DOMAINS, "DOMAIN_")


def client_type_label(client_type: object) -> str:
    """``tendermint`` or ``tlog`` from a ``relay.v1.ClientType``; else ``unspecified``."""
    return _from_enum(client_type, _CLIENT_TYPES, "CLIENT_TYPE_")


def status_label(status: object) -> str:
    """``pending``, ``active``, ``frozen`` or ``expired`` from a ``relay.v1.ChainStatus``."""
    label = _from_enum(status, _STATUSES, "CHAIN_STATUS_")
    if label == UNSPECIFIED:
        raise UnboundedLabelError(f"not a chain status: {status!r}")
    return label


def _method_label(method: object, allowed: tuple[str, ...]) -> str:
    if isinstance(method, str):
        name = method.rsplit("/", 1)[-1]  # also accept a full "/pkg.Service/Method" path
        if name in allowed:
            return name
    return OTHER_METHOD


def query_method_label(method: object) -> str:
    """A QueryService RPC name (``GetOwnership``), else ``other``."""
    return _method_label(method, QUERY_METHODS)


def adapter_method_label(method: object) -> str:
    """An AdapterService RPC name (``GetLightBlocks``), else ``other``."""
    return _method_label(method, ADAPTER_METHODS)


def adapter_kind_label(adapter: object) -> str:
    """``grpc`` or ``entry_point`` (the AdapterEndpoint target kind); else ``unspecified``."""
    return adapter if isinstance(adapter, str) and adapter in ADAPTER_KINDS else UNSPECIFIED


def check_chain_id(chain_id: object) -> str:
    """``chain_id`` if it may be a label value; raises UnboundedLabelError otherwise."""
    if not isinstance(chain_id, str) or _CHAIN_ID.fullmatch(chain_id) is None:
        raise UnboundedLabelError(
            f"chain id {chain_id!r} is not 1 to 50 characters of [A-Za-z0-9._-]"
        )
    if _HEXRUN.search(chain_id):
        raise UnboundedLabelError(f"chain id {chain_id!r} looks like a hash")
    return chain_id


@dataclass
class _Chain:
    """What the scrape-time gauges of one chain are computed from (unix seconds)."""

    domain: str
    info: tuple[str, str] = (UNSPECIFIED, UNSPECIFIED)  # client_type, adapter
    trusted_time: float | None = None
    trusting_period: float | None = None
    head_time: float | None = None
    trusted_height: int = 0
    head_height: int = 0
    # Label children of the hot per-call metrics, resolved once: ``labels()`` takes a lock
    # and builds a key on every call. Dropped with the chain by forget_chain.
    children: dict[tuple[int, tuple[str, ...]], Any] = field(default_factory=dict)

    def child(self, metric: Any, *labels: str) -> Any:
        key = (id(metric), labels)
        found = self.children.get(key)
        if found is None:
            found = self.children[key] = metric.labels(*labels)
        return found


class RelayMetrics:
    """The relay's metrics in their own registry, with typed recording helpers.

    ``clock`` (unix seconds) is read only when Prometheus scrapes, to compute the ages and
    time-left gauges; tests pass a fake one.
    """

    def __init__(
        self,
        *,
        registry: CollectorRegistry | None = None,
        clock: Callable[[], float] = time.time,
        process_collectors: bool = True,
    ) -> None:
        self.registry = CollectorRegistry(auto_describe=True) if registry is None else registry
        self._clock = clock
        self._lock = threading.Lock()
        self._chains: dict[str, _Chain] = {}
        self._warned: set[str] = set()
        self._query_children: dict[str, Any] = {}
        self._audit_checkpoint: float | None = None
        self._started = clock()
        r = self.registry
        if process_collectors:
            ProcessCollector(registry=r)
            PlatformCollector(registry=r)

        # -- process
        self.build_info = Gauge(
            "relay_build_info",
            "Always 1; the version label says which relay build is running.",
            ["version"],
            registry=r,
        )
        self.build_info.labels(__version__).set(1)
        self.dropped_samples = Counter(
            "relay_metrics_dropped_samples_total",
            "Samples dropped because a label value was outside its closed set (a chain "
            "that was never registered); non-zero means a bug in the caller.",
            registry=r,
        )

        # -- chains: light-client state
        self.chain_info = Gauge(
            "relay_chain_info",
            "Always 1 per registered chain; labels give its domain, light-client type and "
            "how the relay reaches its adapter.",
            ["chain", "domain", "client_type", "adapter"],
            registry=r,
        )
        self.chain_status = Gauge(
            "relay_chain_status",
            "1 for the chain's current light-client status (pending, active, frozen, "
            "expired), 0 for the others.",
            [*_PER_CHAIN, "status"],
            registry=r,
        )
        self.trusted_height = Gauge(
            "relay_chain_trusted_height",
            "Height (tree size for logs) of the newest verified header or checkpoint.",
            _PER_CHAIN,
            registry=r,
        )
        self.trusted_time = Gauge(
            "relay_chain_trusted_time_seconds",
            "Time (unix seconds) of the newest verified header or checkpoint.",
            _PER_CHAIN,
            registry=r,
        )
        self.trusting_period_remaining = Gauge(
            "relay_chain_trusting_period_remaining_seconds",
            "Seconds until the newest trusted state leaves its trusting period; at 0 the "
            "chain expires and needs an operator to re-anchor it (0 before the first state).",
            _PER_CHAIN,
            registry=r,
        )
        self.partner_head_height = Gauge(
            "relay_chain_partner_head_height",
            "Newest height the partner's adapter reports (unverified).",
            _PER_CHAIN,
            registry=r,
        )
        self.lag_blocks = Gauge(
            "relay_chain_lag_blocks",
            "Partner head height minus trusted height (0 when the relay is at the head).",
            _PER_CHAIN,
            registry=r,
        )
        self.lag_seconds = Gauge(
            "relay_chain_lag_seconds",
            "Seconds between the partner head's reported time (now, if unreported) and "
            "the newest trusted header's time (0 before the first state).",
            _PER_CHAIN,
            registry=r,
        )

        # -- chains: verification
        self.header_verifications = Counter(
            "relay_header_verifications_total",
            "Headers (light blocks, checkpoints) the light client checked, verified or not.",
            _PER_CHAIN,
            registry=r,
        )
        self.header_verification_failures = Counter(
            "relay_header_verification_failures_total",
            "Headers the light client refused, by ErrorReason.",
            [*_PER_CHAIN, "reason"],
            registry=r,
        )
        self.proof_verifications = Counter(
            "relay_proof_verifications_total",
            "State proofs checked against a trusted root, verified or not.",
            _PER_CHAIN,
            registry=r,
        )
        self.proof_verification_failures = Counter(
            "relay_proof_verification_failures_total",
            "State proofs refused, by ErrorReason (a forged proof counts here).",
            [*_PER_CHAIN, "reason"],
            registry=r,
        )
        self.misbehaviour = Counter(
            "relay_misbehaviour_detected_total",
            "Forks, split views and time violations detected; each freezes the chain.",
            _PER_CHAIN,
            registry=r,
        )

        # -- chains: sync leases (issue 9, several replicas on one PostgreSQL)
        self.lease_held = Gauge(
            "relay_sync_lease_held",
            "1 while this replica holds the chain's sync lease (it alone syncs the chain), "
            "else 0; summed over replicas it is 1 per followed chain.",
            _PER_CHAIN,
            registry=r,
        )
        self.leases_lost = Counter(
            "relay_sync_leases_lost",
            "Sync leases this replica lost while holding them (renewal refused or a fenced "
            "write refused: another replica took the chain over, or this one was paused).",
            _PER_CHAIN,
            registry=r,
        )

        # -- chains: adapters
        self.adapter_up = Gauge(
            "relay_adapter_up",
            "1 when the last call to the chain's adapter reached it, 0 when it failed at "
            "the transport (unreachable, timed out, circuit breaker open).",
            _PER_CHAIN,
            registry=r,
        )
        self.adapter_request_duration = Histogram(
            "relay_adapter_request_duration_seconds",
            "Duration of calls to partner adapters (retries included), by AdapterService method.",
            [*_PER_CHAIN, "method"],
            buckets=DURATION_BUCKETS,
            registry=r,
        )
        self.adapter_request_errors = Counter(
            "relay_adapter_request_errors_total",
            "Failed calls to partner adapters, by method and ErrorReason.",
            [*_PER_CHAIN, "method", "reason"],
            registry=r,
        )

        # -- court-facing queries
        self.query_duration = Histogram(
            "relay_query_duration_seconds",
            "Duration of court queries (fetch, verify, assemble evidence), by QueryService "
            "method, failed ones included.",
            ["method"],
            buckets=DURATION_BUCKETS,
            registry=r,
        )
        self.query_errors = Counter(
            "relay_query_errors_total",
            "Court queries that failed, by QueryService method and ErrorReason.",
            ["method", "reason"],
            registry=r,
        )
        for method in QUERY_METHODS:
            self.query_duration.labels(method)

        # -- audit log
        self.audit_entries = Gauge(
            "relay_audit_log_entries",
            "Entries (leaves) in the tamper-evident audit log.",
            registry=r,
        )
        self.audit_bytes = Gauge(
            "relay_audit_log_size_bytes",
            "Bytes the audit log occupies in the store.",
            registry=r,
        )
        self.audit_checkpoint_time = Gauge(
            "relay_audit_last_checkpoint_time_seconds",
            "Time (unix seconds) of the newest signed audit-log checkpoint (0: none yet).",
            registry=r,
        )
        self.audit_checkpoint_age = Gauge(
            "relay_audit_checkpoint_age_seconds",
            "Seconds since the newest signed audit-log checkpoint (since start-up while "
            "there is none).",
            registry=r,
        )
        self.audit_checkpoint_age.set_function(self._checkpoint_age)

        # -- gRPC server (go-grpc-prometheus names and labels)
        grpc_labels = ["grpc_type", "grpc_service", "grpc_method"]
        self.grpc_started = Counter(
            "grpc_server_started_total",
            "gRPC calls the relay began serving.",
            grpc_labels,
            registry=r,
        )
        self.grpc_handled = Counter(
            "grpc_server_handled_total",
            "gRPC calls the relay finished, by status code (go-grpc-prometheus spelling).",
            [*grpc_labels, "grpc_code"],
            registry=r,
        )
        self.grpc_msg_received = Counter(
            "grpc_server_msg_received_total",
            "Request messages the relay received, stream items included.",
            grpc_labels,
            registry=r,
        )
        self.grpc_msg_sent = Counter(
            "grpc_server_msg_sent_total",
            "Response messages the relay sent, stream items included.",
            grpc_labels,
            registry=r,
        )
        self.grpc_handling = Histogram(
            "grpc_server_handling_seconds",
            "Seconds from the start of a gRPC call to its last response message or error.",
            grpc_labels,
            buckets=GRPC_BUCKETS,
            registry=r,
        )

    # ------------------------------------------------------------------ chain lifecycle

    def register_chain(
        self,
        chain_id: str,
        domain: object,
        *,
        client_type: object = UNSPECIFIED,
        adapter: object = UNSPECIFIED,
    ) -> None:
        """Create every per-chain series of ``chain_id`` at zero (status ``pending``).
        Idempotent; re-registering with another domain moves the chain's series.

        Raises UnboundedLabelError for a chain id that is not a plain identifier, or when
        :data:`MAX_CHAINS` chains are registered already.
        """
        chain = check_chain_id(chain_id)
        dom = domain_label(domain)
        info = (client_type_label(client_type), adapter_kind_label(adapter))
        with self._lock:
            known = self._chains.get(chain)
            if known is None and len(self._chains) >= MAX_CHAINS:
                raise UnboundedLabelError(f"more than {MAX_CHAINS} chains registered")
        if known is not None and known.domain == dom:
            if known.info != info:  # e.g. a new adapter endpoint: keep the counters
                self.chain_info.remove(chain, dom, *known.info)
                self.chain_info.labels(chain, dom, *info).set(1)
                known.info = info
            return
        if known is not None:
            self.forget_chain(chain)
        state = _Chain(domain=dom, info=info)
        with self._lock:
            self._chains[chain] = state
        labels = (chain, dom)
        self.chain_info.labels(chain, dom, *info).set(1)
        for status in CHAIN_STATUSES:
            self.chain_status.labels(*labels, status).set(1 if status == "pending" else 0)
        for gauge in (self.trusted_height, self.trusted_time, self.partner_head_height):
            gauge.labels(*labels).set(0)
        self.lag_blocks.labels(*labels).set(0)
        self.lag_seconds.labels(*labels).set_function(lambda: self._lag_seconds(state))
        self.trusting_period_remaining.labels(*labels).set_function(lambda: self._time_left(state))
        self.adapter_up.labels(*labels).set(0)
        self.lease_held.labels(*labels).set(0)
        self.leases_lost.labels(*labels)
        for counter in (self.header_verifications, self.proof_verifications, self.misbehaviour):
            counter.labels(*labels)
        for reason in REASONS:
            self.header_verification_failures.labels(*labels, reason)
            self.proof_verification_failures.labels(*labels, reason)
        for method in ADAPTER_METHODS:
            self.adapter_request_duration.labels(*labels, method)
            for reason in ADAPTER_ERROR_REASONS:
                self.adapter_request_errors.labels(*labels, method, reason)

    def forget_chain(self, chain_id: str) -> None:
        """Remove every series of ``chain_id`` (after the chain is deregistered)."""
        with self._lock:
            state = self._chains.pop(chain_id, None)
        if state is None:
            return
        for metric in self._per_chain_metrics():
            metric.remove_by_labels({"chain": chain_id})

    def _per_chain_metrics(self) -> tuple[Any, ...]:
        return (
            self.chain_info,
            self.chain_status,
            self.trusted_height,
            self.trusted_time,
            self.trusting_period_remaining,
            self.partner_head_height,
            self.lag_blocks,
            self.lag_seconds,
            self.header_verifications,
            self.header_verification_failures,
            self.proof_verifications,
            self.proof_verification_failures,
            self.misbehaviour,
            self.lease_held,
            self.leases_lost,
            self.adapter_up,
            self.adapter_request_duration,
            self.adapter_request_errors,
        )

    @property
    def chains(self) -> tuple[str, ...]:
        """The registered chain ids."""
        with self._lock:
            return tuple(self._chains)

    def _chain(self, chain_id: object, what: str) -> tuple[str, _Chain] | None:
        state = self._chains.get(chain_id) if isinstance(chain_id, str) else None
        if state is None:
            self.dropped_samples.inc()
            if what not in self._warned:
                self._warned.add(what)
                log.warning("metrics: %s for an unregistered chain dropped (once per metric)", what)
            return None
        assert isinstance(chain_id, str)
        return chain_id, state

    # ---------------------------------------------------------------- chain recording

    def record_chain_status(self, chain_id: str, status: object) -> None:
        """Set the chain's light-client status (a ChainStatus number or name)."""
        found = self._chain(chain_id, "chain status")
        if found is None:
            return
        chain, state = found
        current = status_label(status)
        for name in CHAIN_STATUSES:
            self.chain_status.labels(chain, state.domain, name).set(1 if name == current else 0)

    def record_trusted_state(
        self,
        chain_id: str,
        *,
        height: int,
        time_s: float,
        trusting_period_s: float | None = None,
    ) -> None:
        """A newly verified (and persisted) header or checkpoint became the newest trusted
        state: its height, its header time (unix seconds) and the chain's trusting period."""
        found = self._chain(chain_id, "trusted state")
        if found is None:
            return
        chain, state = found
        state.trusted_height = max(0, int(height))
        state.trusted_time = float(time_s)
        if trusting_period_s is not None:
            state.trusting_period = float(trusting_period_s)
        self.trusted_height.labels(chain, state.domain).set(state.trusted_height)
        self.trusted_time.labels(chain, state.domain).set(state.trusted_time)
        self._update_lag_blocks(chain, state)

    def record_partner_head(
        self, chain_id: str, *, height: int, time_s: float | None = None
    ) -> None:
        """The adapter reported the partner's newest height (and optionally its time)."""
        found = self._chain(chain_id, "partner head")
        if found is None:
            return
        chain, state = found
        state.head_height = max(0, int(height))
        state.head_time = None if time_s is None else float(time_s)
        self.partner_head_height.labels(chain, state.domain).set(state.head_height)
        self._update_lag_blocks(chain, state)

    def _update_lag_blocks(self, chain: str, state: _Chain) -> None:
        lag = max(0, state.head_height - state.trusted_height)
        self.lag_blocks.labels(chain, state.domain).set(lag)

    def _lag_seconds(self, state: _Chain) -> float:
        if state.trusted_time is None:
            return 0.0
        head = state.head_time if state.head_time is not None else self._clock()
        return max(0.0, head - state.trusted_time)

    def _time_left(self, state: _Chain) -> float:
        if state.trusted_time is None or state.trusting_period is None:
            return 0.0
        return max(0.0, state.trusted_time + state.trusting_period - self._clock())

    def record_header_verification(self, chain_id: str, *, ok: bool, reason: object = None) -> None:
        """One header or checkpoint checked; on failure ``reason`` (an ErrorReason name or
        an error carrying ``.reason``) says why."""
        found = self._chain(chain_id, "header verification")
        if found is None:
            return
        chain, state = found
        self.header_verifications.labels(chain, state.domain).inc()
        if not ok:
            label = reason_label(reason)
            self.header_verification_failures.labels(chain, state.domain, label).inc()

    def record_proof_verification(self, chain_id: str, *, ok: bool, reason: object = None) -> None:
        """One state proof checked against a trusted root; on failure, why."""
        found = self._chain(chain_id, "proof verification")
        if found is None:
            return
        chain, state = found
        state.child(self.proof_verifications, chain, state.domain).inc()
        if not ok:
            label = reason_label(reason)
            self.proof_verification_failures.labels(chain, state.domain, label).inc()

    def record_misbehaviour(self, chain_id: str) -> None:
        """Misbehaviour (fork, split view, time violation) was detected on the chain."""
        found = self._chain(chain_id, "misbehaviour")
        if found is not None:
            chain, state = found
            self.misbehaviour.labels(chain, state.domain).inc()

    def record_lease(self, chain_id: str, *, held: bool, lost: bool = False) -> None:
        """This replica took (``held``) or gave up the chain's sync lease; ``lost``: it was
        taken from it (counted in relay_sync_leases_lost_total)."""
        found = self._chain(chain_id, "sync lease")
        if found is not None:
            chain, state = found
            self.lease_held.labels(chain, state.domain).set(1 if held else 0)
            if lost:
                self.leases_lost.labels(chain, state.domain).inc()

    def record_adapter_request(
        self, chain_id: str, *, method: str, seconds: float, reason: object = None
    ) -> None:
        """One call to the chain's adapter took ``seconds``; ``reason`` None means it
        succeeded. ADAPTER_UNAVAILABLE marks the adapter down, success marks it up; other
        failures (the adapter answered, wrongly) leave ``relay_adapter_up`` as it is."""
        found = self._chain(chain_id, "adapter request")
        if found is None:
            return
        chain, state = found
        name = adapter_method_label(method)
        duration = state.child(self.adapter_request_duration, chain, state.domain, name)
        duration.observe(max(0.0, seconds))
        if reason is None:
            state.child(self.adapter_up, chain, state.domain).set(1)
            return
        label = reason_label(reason)
        self.adapter_request_errors.labels(chain, state.domain, name, label).inc()
        if label == "ADAPTER_UNAVAILABLE":
            self.adapter_up.labels(chain, state.domain).set(0)

    def set_adapter_up(self, chain_id: str, up: bool) -> None:
        """Mark the chain's adapter reachable or not (e.g. when its circuit breaker opens)."""
        found = self._chain(chain_id, "adapter up")
        if found is not None:
            chain, state = found
            self.adapter_up.labels(chain, state.domain).set(1 if up else 0)

    # -------------------------------------------------------------- queries and audit

    def observe_query(self, method: str, *, seconds: float, reason: object = None) -> None:
        """One court query (a QueryService RPC name) took ``seconds``; ``reason`` None means
        it was answered, otherwise the ErrorReason it failed with."""
        name = query_method_label(method)
        duration = self._query_children.get(name)
        if duration is None:
            duration = self._query_children[name] = self.query_duration.labels(name)
        duration.observe(max(0.0, seconds))
        if reason is not None:
            self.query_errors.labels(name, reason_label(reason)).inc()

    def record_audit_log(self, *, entries: int, size_bytes: int | None = None) -> None:
        """The audit log's size after an append."""
        self.audit_entries.set(max(0, int(entries)))
        if size_bytes is not None:
            self.audit_bytes.set(max(0, int(size_bytes)))

    def record_audit_checkpoint(self, *, time_s: float) -> None:
        """A signed audit-log checkpoint was written at ``time_s`` (unix seconds)."""
        self._audit_checkpoint = float(time_s)
        self.audit_checkpoint_time.set(self._audit_checkpoint)

    def _checkpoint_age(self) -> float:
        since = self._audit_checkpoint if self._audit_checkpoint is not None else self._started
        return max(0.0, self._clock() - since)

    # ------------------------------------------------------------------------ output

    def exposition(self, accept: str | None = None) -> tuple[bytes, str]:
        """The registry in the text format the ``Accept`` header asks for (Prometheus
        text or OpenMetrics) and its content type."""
        encoder, content_type = choose_encoder(accept or "")
        return encoder(self.registry), content_type


# ---------------------------------------------------------------------------- gRPC

# grpc.StatusCode -> Go's codes.Code.String(), which go-grpc-prometheus puts in grpc_code.
GRPC_CODE_NAMES: Final[Mapping[grpc.StatusCode, str]] = {
    grpc.StatusCode.OK: "OK",
    grpc.StatusCode.CANCELLED: "Canceled",
    grpc.StatusCode.UNKNOWN: "Unknown",
    grpc.StatusCode.INVALID_ARGUMENT: "InvalidArgument",
    grpc.StatusCode.DEADLINE_EXCEEDED: "DeadlineExceeded",
    grpc.StatusCode.NOT_FOUND: "NotFound",
    grpc.StatusCode.ALREADY_EXISTS: "AlreadyExists",
    grpc.StatusCode.PERMISSION_DENIED: "PermissionDenied",
    grpc.StatusCode.RESOURCE_EXHAUSTED: "ResourceExhausted",
    grpc.StatusCode.FAILED_PRECONDITION: "FailedPrecondition",
    grpc.StatusCode.ABORTED: "Aborted",
    grpc.StatusCode.OUT_OF_RANGE: "OutOfRange",
    grpc.StatusCode.UNIMPLEMENTED: "Unimplemented",
    grpc.StatusCode.INTERNAL: "Internal",
    grpc.StatusCode.UNAVAILABLE: "Unavailable",
    grpc.StatusCode.DATA_LOSS: "DataLoss",
    grpc.StatusCode.UNAUTHENTICATED: "Unauthenticated",
}

_GRPC_PATH: Final = re.compile(r"/([A-Za-z_][A-Za-z0-9_.]*)/([A-Za-z_][A-Za-z0-9_]*)")


def _grpc_type(request_streaming: bool, response_streaming: bool) -> str:
    if request_streaming and response_streaming:
        return "bidi_stream"
    if request_streaming:
        return "client_stream"
    if response_streaming:
        return "server_stream"
    return "unary"


def _code_of(context: Any, error: BaseException | None) -> str:
    """The status an RPC ended with, as go-grpc-prometheus names it."""
    code = None
    try:
        code = context.code()
    except Exception:  # a context without code() (never in grpc.aio; be safe)
        code = None
    if isinstance(code, grpc.StatusCode):
        return GRPC_CODE_NAMES.get(code, "Unknown")
    if error is None:
        return "OK"
    if isinstance(error, asyncio.CancelledError | GeneratorExit):
        try:
            remaining = context.time_remaining()
        except Exception:
            remaining = None
        return "DeadlineExceeded" if remaining is not None and remaining <= 0 else "Canceled"
    # An exception that escaped the servicer: grpc.aio answers UNKNOWN.
    return "Unknown"


class GrpcServerMetrics(PerMethodInterceptor):
    """``grpc.aio`` server interceptor counting and timing every RPC of a registered method
    with the labels of go-grpc-prometheus. Calls of unknown methods never reach interceptors'
    handlers, so ``grpc_service`` and ``grpc_method`` only take registered names."""

    def __init__(self, metrics: RelayMetrics) -> None:
        super().__init__()
        self._m = metrics

    def initialize(self, services: Iterable[ServiceDescriptor]) -> None:
        """Create the series of every method of ``services`` at zero, every code included
        (go-grpc-prometheus's ``InitializeMetrics``)."""
        m = self._m
        for service in services:
            for method in service.methods:
                kind = _grpc_type(method.client_streaming, method.server_streaming)
                labels = (kind, service.full_name, method.name)
                m.grpc_started.labels(*labels)
                m.grpc_msg_received.labels(*labels)
                m.grpc_msg_sent.labels(*labels)
                m.grpc_handling.labels(*labels)
                for code in GRPC_CODE_NAMES.values():
                    m.grpc_handled.labels(*labels, code)

    def wrap(self, path: str, handler: Any) -> Any:
        # Label children resolved once per method; nothing of one call is captured.
        labels = grpc_labels(path, handler)
        return handler if labels is None else wrap_handler(handler, labels, self._m)


class _CountingContext:
    """A servicer context that counts ``write()`` calls and forwards everything else."""

    def __init__(self, context: Any, sent: Any) -> None:
        self._context = context
        self._sent = sent

    async def write(self, message: Any) -> None:
        await self._context.write(message)
        self._sent.inc()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._context, name)


def grpc_labels(path: str, handler: Any) -> tuple[str, str, str] | None:
    """(grpc_type, grpc_service, grpc_method) of a method path and its handler, or None for
    a path that is not ``/package.Service/Method``."""
    match = _GRPC_PATH.fullmatch(path)
    if match is None:
        return None
    kind = _grpc_type(handler.request_streaming, handler.response_streaming)
    return kind, match.group(1), match.group(2)


class MethodCounters:
    """The go-grpc-prometheus series of one method, label children resolved once (this runs
    on every call; relay/service/pipeline.py and :class:`GrpcServerMetrics` use it)."""

    __slots__ = ("_handled", "_handling", "_labels", "_m", "received", "sent", "started")

    def __init__(self, m: RelayMetrics, labels: tuple[str, str, str]) -> None:
        self._m = m
        self._labels = labels
        self.started = m.grpc_started.labels(*labels)
        self.received = m.grpc_msg_received.labels(*labels)
        self.sent = m.grpc_msg_sent.labels(*labels)
        self._handling = m.grpc_handling.labels(*labels)
        self._handled: dict[str, Any] = {}

    def done(self, context: Any, t0: float, error: BaseException | None) -> None:
        """The call that started at ``t0`` (perf_counter) ended, with ``error`` if any."""
        self._handling.observe(time.perf_counter() - t0)
        code = _code_of(context, error)
        child = self._handled.get(code)
        if child is None:
            child = self._handled[code] = self._m.grpc_handled.labels(*self._labels, code)
        child.inc()


def wrap_handler(handler: Any, labels: tuple[str, str, str], m: RelayMetrics) -> Any:
    """``handler`` counted and timed under ``labels`` (any of the four RPC kinds)."""
    counters = MethodCounters(m, labels)
    started, received, sent, done = (
        counters.started,
        counters.received,
        counters.sent,
        counters.done,
    )

    async def counted(requests: AsyncIterator[Any]) -> AsyncIterator[Any]:
        async for request in requests:
            received.inc()
            yield request

    def unary_response(
        behaviour: Callable[..., Any], streaming_request: bool, streaming_response: bool = False
    ) -> Any:
        async def call(request: Any, context: Any) -> Any:
            started.inc()
            if streaming_request:
                request = counted(request)
            else:
                received.inc()
            t0 = time.perf_counter()
            try:
                response = behaviour(request, context)
                if inspect.isawaitable(response):
                    response = await response
            except BaseException as e:
                done(context, t0, e)
                raise
            if not streaming_response:
                sent.inc()
            done(context, t0, None)
            return response

        return call

    def stream_response(behaviour: Callable[..., Any], streaming_request: bool) -> Any:
        if inspect.isasyncgenfunction(behaviour):

            async def generate(request: Any, context: Any) -> AsyncIterator[Any]:
                started.inc()
                if streaming_request:
                    request = counted(request)
                else:
                    received.inc()
                t0 = time.perf_counter()
                try:
                    async for response in behaviour(request, context):
                        sent.inc()
                        yield response
                except BaseException as e:
                    done(context, t0, e)
                    raise
                done(context, t0, None)

            return generate
        # A coroutine that writes with context.write() (grpc_health's Watch does): count
        # the writes through a context that forwards everything else.
        call = unary_response(behaviour, streaming_request, True)

        async def writer(request: Any, context: Any) -> Any:
            return await call(request, _CountingContext(context, sent))

        return writer

    if handler.unary_unary is not None:
        return grpc.unary_unary_rpc_method_handler(
            unary_response(handler.unary_unary, False),
            request_deserializer=handler.request_deserializer,
            response_serializer=handler.response_serializer,
        )
    if handler.unary_stream is not None:
        return grpc.unary_stream_rpc_method_handler(
            stream_response(handler.unary_stream, False),
            request_deserializer=handler.request_deserializer,
            response_serializer=handler.response_serializer,
        )
    if handler.stream_unary is not None:
        return grpc.stream_unary_rpc_method_handler(
            unary_response(handler.stream_unary, True),
            request_deserializer=handler.request_deserializer,
            response_serializer=handler.response_serializer,
        )
    if handler.stream_stream is not None:
        return grpc.stream_stream_rpc_method_handler(
            stream_response(handler.stream_stream, True),
            request_deserializer=handler.request_deserializer,
            response_serializer=handler.response_serializer,
        )
    return handler


# ------------------------------------------------------------------------- default

_default: RelayMetrics | None = None
_default_lock = threading.Lock()


def default_metrics() -> RelayMetrics:
    """The process-wide metrics the relay records into and ``/metrics`` serves."""
    global _default
    with _default_lock:
        if _default is None:
            _default = RelayMetrics()
        return _default
