"""Wiring of the audit log into the relay process (relay/service/app.py calls
:func:`start_audit` when ``audit.enabled``, the default)."""

from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass, field
from typing import Any

from relay.access.control import current_identity as _current_identity
from relay.audit.log import (
    AuditIntegrityError,
    AuditLog,
    AuditSink,
    NotCheckpointSignerError,
    default_replica_id,
)
from relay.audit.recorder import AuditInterceptor
from relay.audit.sink import JudicialChain, RemoteChainSink, start_judicial_chain
from relay.config import RelayConfig

log = logging.getLogger("relay.audit")

_SALT_LABEL = b"relay.judicial audit request-digest salt v1\n"


def audit_salt(private_key: bytes) -> bytes:
    """The relay-local salt of request digests: derived from the relay's private signing
    key, so it is stable across restarts and never leaves the relay."""
    return hashlib.sha256(_SALT_LABEL + private_key).digest()


@dataclass
class AuditRuntime:
    """A started audit log: the log, the interceptor that feeds it, the AuditService
    registration for RelayServer, and the judicial chain it publishes to (if any)."""

    log: AuditLog
    interceptor: AuditInterceptor
    judicial: JudicialChain | None = None
    services: list[tuple[str, Any]] = field(default_factory=list)
    remote: RemoteChainSink | None = None

    async def stop(self, *, final_checkpoint: bool = True) -> None:
        """Stop checkpointing, commit what is pending and, on the replica holding the audit
        lease, sign a last checkpoint and release the lease (another replica takes over at
        once instead of after its expiry)."""
        await self.log.close()
        if final_checkpoint and self.log.holds_lease:
            try:
                await self.log.checkpoint()
            except (AuditIntegrityError, NotCheckpointSignerError):
                pass  # already reported / another replica signs now
            except Exception:  # the store may be going away: say so, do not mask stop
                log.exception("final audit checkpoint failed")
        await self.log.release_lease()
        if self.remote is not None:
            # A bounded wait: what is not published now is queued again at the next start.
            await self.remote.close(timeout_s=3.0)
        if self.judicial is not None:
            await self.judicial.stop()


def _identity() -> Any:
    """The caller's relay.access Identity (None without access control)."""
    return _current_identity()


async def start_audit(
    config: RelayConfig, *, store: Any, signer: Any, private_key: bytes, metrics: Any = None
) -> AuditRuntime:
    """Open the audit log (checking the stored rows), start the judicial chain sink (in
    process, or :class:`RemoteChainSink` to ``audit.sink.endpoint``), try the audit lease
    (the replica holding it signs and publishes the checkpoints: ``store.replica_id``
    names it, ``store.lease_ttl`` is its term) and start the periodic checkpoints."""
    from relay.audit.service import AUDIT_SERVICE, AuditServicer
    from relay.pb.relay.v1 import audit_pb2_grpc

    audit_config = config.audit
    judicial = None
    sinks: list[AuditSink] = []
    sink_config = audit_config.sink
    if sink_config is not None and sink_config.in_process:
        judicial = await start_judicial_chain(
            chain_id=sink_config.chain_id,
            listen=sink_config.listen,
            tls_cert=sink_config.tls_cert.read_bytes() if sink_config.tls_cert else None,
            tls_key=sink_config.tls_key.read_bytes() if sink_config.tls_key else None,
            tls_ca=sink_config.tls_ca.read_bytes() if sink_config.tls_ca else None,
            # Readers are courts and operators: the relay's own client CA vouches for them.
            client_ca=(
                config.tls.client_ca.read_bytes()
                if config.tls is not None and config.tls.client_ca is not None
                else None
            ),
            descriptor_out=sink_config.descriptor_out,
        )
        sinks.append(judicial.sink)
    remote = None
    if sink_config is not None and sink_config.endpoint is not None:
        from relay.service.client import ClientTls

        assert sink_config.tls_ca and sink_config.tls_cert and sink_config.tls_key  # validated
        remote = RemoteChainSink(
            sink_config.endpoint,
            tls=ClientTls.from_files(
                ca=sink_config.tls_ca,
                cert=sink_config.tls_cert,
                key=sink_config.tls_key,
                server_name=sink_config.server_name,
            ),
            retry_max_s=sink_config.retry_max,
        )
        sinks.append(remote)
    try:
        audit = await AuditLog.open(
            store=store,
            signer=signer,
            metrics=metrics,
            sinks=sinks,
            group_commit_window_s=audit_config.group_commit_window,
            replica_id=config.store.replica_id or default_replica_id(),
            lease_ttl_s=config.store.lease_ttl,
            full_verify_interval_s=audit_config.full_verify_interval,
        )
    except BaseException:
        # Start-up stops here (e.g. a tampered log): leave no judicial server listening.
        if judicial is not None:
            await judicial.stop()
        if remote is not None:
            await remote.close(timeout_s=0)
        raise
    interceptor = AuditInterceptor(audit, salt=audit_salt(private_key), identity=_identity)

    def add(server: Any, guard: Any) -> None:
        servicer = AuditServicer(audit, guard=guard, identity=_identity)
        audit_pb2_grpc.add_AuditServiceServicer_to_server(servicer, server)  # type: ignore[no-untyped-call]

    if remote is not None:
        # Whenever this replica starts a term of the audit lease (now, or when it takes over
        # from another), stored checkpoints the judicial chain lacks are sent.
        audit.on_new_term.append(remote.attach)
    try:
        await audit.hold_lease()
    except Exception:  # the lease loop tries again; queries are recorded meanwhile
        log.exception("could not take the audit lease at start-up")
    audit.start_periodic(audit_config.checkpoint_interval)
    return AuditRuntime(audit, interceptor, judicial, [(AUDIT_SERVICE, add)], remote)
