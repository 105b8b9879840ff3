"""``relay.v1.AuditService`` (proto/relay/v1/audit.proto): signed checkpoints and
consistency proofs for anyone, inclusion proofs and listings of a court's own entries for
that court. Roles are decided by the servicers' guard (relay/access: AuditService rows of
METHOD_ROLES); which entries are the caller's is decided here from its identity.

Any relay replica answers (issue 9): before a checkpoint or a proof is served, the replica
catches up with the checkpoints and rows the others stored (AuditLog.refresh), so a proof
from any replica verifies against the same signed checkpoints.
"""

from __future__ import annotations

from typing import Any

from google.protobuf.timestamp_pb2 import Timestamp

from relay.audit.checkpoint import TREE_HASHER
from relay.audit.log import AuditLog
from relay.pb.relay.v1 import audit_pb2, audit_pb2_grpc
from relay.service.errors import ServiceError, abort, status_for_exception
from relay.service.servicers import CallGuard, default_guard
from relay.store.base import AuditCheckpointRecord
from relay.verify.lightclient.tlog import parse_checkpoint

AUDIT_SERVICE = "relay.v1.AuditService"
MAX_PAGE = 1000
DEFAULT_PAGE = 100


def checkpoint_message(record: AuditCheckpointRecord) -> audit_pb2.AuditCheckpoint:
    text = record.note[: record.note.rfind(b"\n\n") + 1]
    parsed = parse_checkpoint(text, hasher=TREE_HASHER)
    return audit_pb2.AuditCheckpoint(
        note=record.note,
        origin=parsed.origin,
        size=record.size,
        root_hash=record.root,
        signed_at=Timestamp(seconds=record.at_ns // 10**9, nanos=record.at_ns % 10**9),
    )


class AuditServicer(audit_pb2_grpc.AuditServiceServicer):
    """relay.v1.AuditService over an AuditLog. ``identity`` returns the caller's
    relay.access Identity (None when the relay runs without access control)."""

    def __init__(
        self, audit: AuditLog, *, guard: CallGuard = default_guard, identity: Any = None
    ) -> None:
        self._audit = audit
        self._guard = guard
        self._identity = identity

    async def _enter(self, name: str, request: Any, context: Any) -> str:
        method = f"/{AUDIT_SERVICE}/{name}"
        await self._guard(method=method, request=request, context=context)
        return method

    def _court(self) -> str:
        ident = self._identity() if self._identity is not None else None
        if ident is None or ident.role.value != "court":
            raise ServiceError(
                "ROLE_FORBIDDEN",
                "only a court (identified by its client certificate) sees its audit entries",
            )
        code: str = ident.code
        return code

    async def _run(self, name: str, request: Any, context: Any, fn: Any) -> Any:
        method = f"/{AUDIT_SERVICE}/{name}"
        try:
            await self._enter(name, request, context)
            return await fn(request)
        except LookupError as e:  # also IndexError
            await abort(
                context,
                status_for_exception(ServiceError("NOT_FOUND", str(e).strip("'\"")), method=method),
            )
        except Exception as e:
            await abort(context, status_for_exception(e, method=method))

    async def GetCheckpoint(
        self, request: audit_pb2.GetAuditCheckpointRequest, context: Any
    ) -> audit_pb2.AuditCheckpoint:
        async def run(req: audit_pb2.GetAuditCheckpointRequest) -> audit_pb2.AuditCheckpoint:
            await self._audit.refresh()
            await self._audit.recall(req.size)
            return checkpoint_message(self._audit.checkpoint_at(req.size))

        result: audit_pb2.AuditCheckpoint = await self._run("GetCheckpoint", request, context, run)
        return result

    async def GetInclusionProof(
        self, request: audit_pb2.GetAuditInclusionProofRequest, context: Any
    ) -> audit_pb2.AuditInclusionProof:
        async def run(
            req: audit_pb2.GetAuditInclusionProofRequest,
        ) -> audit_pb2.AuditInclusionProof:
            court = self._court()
            rows = await self._audit.leaves(start=req.index, end=req.index + 1)
            if not rows:
                raise ServiceError("NOT_FOUND", f"the audit log has no entry {req.index}")
            row = rows[0]
            if row.court != court:
                raise ServiceError(
                    "NOT_OWNER",
                    f"audit entry {req.index} is not an entry of court {court}",
                )
            await self._audit.refresh()
            await self._audit.recall(req.tree_size)
            proof, checkpoint = self._audit.inclusion(req.index, tree_size=req.tree_size)
            return audit_pb2.AuditInclusionProof(
                index=row.index,
                entry=row.entry,
                leaf_hash=row.leaf_hash,
                hashes=proof,
                checkpoint=checkpoint_message(checkpoint),
            )

        result: audit_pb2.AuditInclusionProof = await self._run(
            "GetInclusionProof", request, context, run
        )
        return result

    async def GetConsistencyProof(
        self, request: audit_pb2.GetAuditConsistencyProofRequest, context: Any
    ) -> audit_pb2.AuditConsistencyProof:
        async def run(
            req: audit_pb2.GetAuditConsistencyProofRequest,
        ) -> audit_pb2.AuditConsistencyProof:
            await self._audit.refresh()
            await self._audit.recall(req.first_size, req.second_size)
            first, second, proof = self._audit.consistency(req.first_size, req.second_size)
            out = audit_pb2.AuditConsistencyProof(second=checkpoint_message(second), hashes=proof)
            if first is not None:
                out.first.CopyFrom(checkpoint_message(first))
            return out

        result: audit_pb2.AuditConsistencyProof = await self._run(
            "GetConsistencyProof", request, context, run
        )
        return result

    async def ListMyEntries(
        self, request: audit_pb2.ListMyAuditEntriesRequest, context: Any
    ) -> audit_pb2.ListMyAuditEntriesResponse:
        async def run(
            req: audit_pb2.ListMyAuditEntriesRequest,
        ) -> audit_pb2.ListMyAuditEntriesResponse:
            court = self._court()
            page = req.page_size or DEFAULT_PAGE
            if page > MAX_PAGE:
                raise ServiceError(
                    "INVALID_ARGUMENT", f"page_size is at most {MAX_PAGE}", field="page_size"
                )
            rows = await self._audit.leaves(start=req.start_index, court=court, limit=page + 1)
            out = audit_pb2.ListMyAuditEntriesResponse(
                entries=[
                    audit_pb2.AuditEntry(index=r.index, entry=r.entry, leaf_hash=r.leaf_hash)
                    for r in rows[:page]
                ]
            )
            if len(rows) > page:
                out.next_index = rows[page].index
            return out

        result: audit_pb2.ListMyAuditEntriesResponse = await self._run(
            "ListMyEntries", request, context, run
        )
        return result
