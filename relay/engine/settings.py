"""Tunables of the engine (:class:`EngineSettings`), filled from the relay's YAML config by
the service's config loader. Defaults suit one relay following tens of chains."""

from __future__ import annotations

from dataclasses import dataclass, fields

MIB = 1 << 20


@dataclass(frozen=True, slots=True, kw_only=True)
class EngineSettings:
    """How often to sync, how long to wait, how much to accept.

    Sync: each chain's task polls its adapter every ``sync_interval_s`` (plus up to
    ``sync_jitter`` of it at random, so chains do not poll in lockstep); after a failure it
    backs off exponentially with full jitter from ``sync_interval_s`` up to
    ``sync_backoff_max_s``. One sync round (poll, fetch, verify, persist) must finish within
    ``sync_round_timeout_s``. ``max_light_blocks_per_fetch`` bounds one GetLightBlocks
    stream; ``max_skipping_verifications`` one bisection walk. New headers are verified from
    the oldest state on the latest trust path that is younger than ``base_window`` of the
    trusting period, which keeps evidence trust paths short (see relay/engine/clients.py).

    Adapters: every call has ``adapter_deadline_s``; idempotent calls are retried up to
    ``adapter_retries`` times on UNAVAILABLE / DEADLINE_EXCEEDED, sleeping a random time in
    [0, min(``retry_max_delay_s``, ``retry_base_delay_s`` * 2**attempt)] (full jitter). After
    ``breaker_failure_threshold`` consecutive failures a chain's circuit breaker opens for
    ``breaker_reset_s``, then lets one trial call through (half open). Messages above
    ``max_message_bytes`` and streams above ``max_stream_items`` items or
    ``max_stream_bytes`` bytes in all are refused (a stream is read whole before it is
    checked, so its total is bounded, not only each message).
    ``adapter_client_cert_pem`` / ``adapter_client_key_pem`` are the relay's client
    certificate for mutual TLS to remote adapters (None: server-authenticated TLS only).

    Queries: a whole query (every adapter call and any on-demand header verification) must
    finish within ``query_deadline_s``. ``on_demand_verification`` lets a query verify a
    header above the trusted height when an adapter answers there. Evidence trust paths
    longer than ``max_trust_path`` states are refused.

    Pruning: every ``prune_interval_s`` consensus states older than the trusting period are
    pruned (what recent evidence rests on is kept). ``verify_threads`` threads check
    validator signatures in parallel (1: on the calling worker thread).

    Replicas (issue 9): a chain is synced only by the replica holding its sync lease in the
    store, taken for ``lease_ttl_s`` seconds and renewed every third of it; ``replica_id``
    names this replica as the lease owner ("": ``<hostname>-<pid>``). Every replica, owner
    or not, re-reads the registered chains and their trusted state every third of the lease.
    """

    sync_interval_s: float = 5.0
    sync_jitter: float = 0.2
    sync_backoff_max_s: float = 120.0
    sync_round_timeout_s: float = 60.0
    max_light_blocks_per_fetch: int = 64
    max_skipping_verifications: int = 256
    base_window: float = 0.5

    adapter_deadline_s: float = 5.0
    adapter_retries: int = 2
    retry_base_delay_s: float = 0.05
    retry_max_delay_s: float = 1.0
    breaker_failure_threshold: int = 5
    breaker_reset_s: float = 30.0
    max_message_bytes: int = 16 * MIB
    max_stream_items: int = 4096
    max_stream_bytes: int = 64 * MIB
    adapter_client_cert_pem: bytes | None = None
    adapter_client_key_pem: bytes | None = None

    query_deadline_s: float = 10.0
    on_demand_verification: bool = True
    max_trust_path: int = 1024

    prune_interval_s: float = 3600.0
    verify_threads: int = 2

    lease_ttl_s: float = 15.0
    replica_id: str = ""

    def __post_init__(self) -> None:
        for f in fields(self):
            value = getattr(self, f.name)
            if isinstance(value, bool | str | bytes) or value is None:
                continue
            if not isinstance(value, int | float) or value < 0:
                raise ValueError(f"engine setting {f.name} must be a non-negative number")
        positive = (
            "sync_interval_s",
            "sync_round_timeout_s",
            "max_light_blocks_per_fetch",
            "max_skipping_verifications",
            "adapter_deadline_s",
            "breaker_failure_threshold",
            "max_message_bytes",
            "max_stream_items",
            "max_stream_bytes",
            "query_deadline_s",
            "max_trust_path",
            "prune_interval_s",
            "verify_threads",
            "lease_ttl_s",
        )
        for name in positive:
            if getattr(self, name) <= 0:
                raise ValueError(f"engine setting {name} must be positive")
        if not 0 < self.base_window <= 1:
            raise ValueError("engine setting base_window must be in (0, 1]")
        if self.sync_jitter > 1:
            raise ValueError("engine setting sync_jitter must be at most 1")
        if len(self.replica_id) > 200 or not self.replica_id.isprintable():
            raise ValueError("engine setting replica_id must be at most 200 printable characters")
        if (self.adapter_client_cert_pem is None) != (self.adapter_client_key_pem is None):
            raise ValueError("adapter client certificate and key must be given together")
