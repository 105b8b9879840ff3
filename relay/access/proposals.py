"""Partner onboarding by signed proposals with operator approval (issue 5), modelled on
BitXHub's appchain governance vote but bound to the institution's own key.

Flow::

    partner                       relay                             operators (k of n)
      | ProposeChain(signed) ------> | verify: cert O == institution,
      |                              |   key registered, signature,
      |                              |   audience, nonce unseen, expiry
      | <----- ProposalInfo PENDING  | store proposal + nonce (0002)
      |                              | <------- ApproveProposal(id)  (operator 1)
      |                              | <------- ApproveProposal(id)  (operator k)
      |                              | k approvals: engine.register_chain -> sync starts
      |                              | -------> ProposalInfo APPLIED + ChainInfo

A ``ChainProposal`` (admin.proto) names the institution, the action (register a descriptor,
or move one of its chains' adapter endpoint), a 16-32 byte nonce, creation and expiry times
and the relay's ``audience``. The partner signs ``b"relay.v1.ChainProposal\\n" + bytes`` with
its institution key (Ed25519, or SM2 with SM3, DER signature) and sends the bytes as signed;
the proposal id is the hex SHA-256 of those bytes. One rejection ends a proposal; it is
applied in the call that brings the k-th distinct operator approval. Every decision and every
admin call is recorded (who, role, what, when) in the store (migration 0002).

Client side: :func:`make_proposal` and :func:`sign_proposal` build what ``ProposeChain`` and
``ProposeEndpointUpdate`` take; :class:`InstitutionSigner` holds an institution key.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from google.protobuf.message import DecodeError
from google.protobuf.timestamp_pb2 import Timestamp

from relay.access.control import require_identity
from relay.access.identity import Identity, Role
from relay.config import AccessConfig, InstitutionKeyConfig
from relay.engine.engine import validate_descriptor, validate_endpoint
from relay.engine.errors import RelayError
from relay.pb.relay.v1 import admin_pb2, types_pb2
from relay.service.errors import ServiceError
from relay.store.base import NonceReplayedError, ProposalClosedError, ProposalNotFoundError
from relay.verify.errors import SignatureError, VerificationError
from relay.verify.signatures import ED25519, SignatureEncoding, Sm2

log = logging.getLogger("relay.access")

SIGNING_PREFIX = b"relay.v1.ChainProposal\n"
MIN_NONCE_BYTES = 16
MAX_NONCE_BYTES = 32
MAX_PROPOSAL_BYTES = 1 << 20
MAX_CLOCK_SKEW_NS = 300 * 10**9
MAX_COMMENT_CHARS = 2000
MAX_LISTED = 1000

_STATE = {
    "pending": admin_pb2.PROPOSAL_STATE_PENDING,
    "applied": admin_pb2.PROPOSAL_STATE_APPLIED,
    "rejected": admin_pb2.PROPOSAL_STATE_REJECTED,
    "failed": admin_pb2.PROPOSAL_STATE_FAILED,
    "expired": admin_pb2.PROPOSAL_STATE_EXPIRED,
}
_STATE_NAME = {v: k for k, v in _STATE.items()}
_KIND = {
    "register": admin_pb2.PROPOSAL_KIND_REGISTER,
    "update_endpoint": admin_pb2.PROPOSAL_KIND_UPDATE_ENDPOINT,
    "recover": admin_pb2.PROPOSAL_KIND_RECOVER,
}


def proposal_id(proposal_bytes: bytes) -> str:
    return hashlib.sha256(proposal_bytes).hexdigest()


def _ts(ns: int) -> Timestamp:
    t = Timestamp()
    t.FromNanoseconds(ns)
    return t


# ------------------------------------------------------------------------------ client side


@dataclass(frozen=True)
class InstitutionSigner:
    """An institution's proposal key. Build with :meth:`ed25519` or :meth:`sm2`."""

    key_id: str
    algorithm: int
    public_key: bytes
    sign: Callable[[bytes], bytes]
    sm2_signer_id: str = ""

    @classmethod
    def ed25519(cls, *, key_id: str, seed: bytes) -> InstitutionSigner:
        from nacl.signing import SigningKey

        key = SigningKey(seed)
        return cls(
            key_id,
            types_pb2.SIGNATURE_ALGORITHM_ED25519,
            bytes(key.verify_key),
            lambda m: bytes(key.sign(m).signature),
        )

    @classmethod
    def sm2(cls, *, key_id: str, private_key: int) -> InstitutionSigner:
        from relay.engine.evidence import RelaySigner

        signer = RelaySigner.sm2(key_id=key_id, private_key=private_key)
        return cls(
            key_id,
            types_pb2.SIGNATURE_ALGORITHM_SM2,
            signer.public_key,
            signer._sign,
        )

    @classmethod
    def from_seed_file(cls, *, key_id: str, path: os.PathLike[str] | str) -> InstitutionSigner:
        """A key file written by ``relay pki init``: ``ed25519:<hex seed>`` or
        ``sm2:<hex scalar>``."""
        text = Path(path).read_text(encoding="ascii").strip()
        algorithm, _, value = text.partition(":")
        if algorithm == "ed25519":
            return cls.ed25519(key_id=key_id, seed=bytes.fromhex(value))
        if algorithm == "sm2":
            return cls.sm2(key_id=key_id, private_key=int(value, 16))
        raise ValueError(f"{path}: not an institution key file (ed25519:HEX or sm2:HEX)")

    def config_entry(self, institution: str) -> dict[str, str]:
        """The ``access.institution_keys`` entry the operator configures for this key."""
        algorithm = "ed25519" if self.algorithm == types_pb2.SIGNATURE_ALGORITHM_ED25519 else "sm2"
        return {
            "institution": institution,
            "key_id": self.key_id,
            "algorithm": algorithm,
            "public_key": self.public_key.hex(),
        }


def make_proposal(
    *,
    institution: str,
    audience: str,
    register: types_pb2.ChainDescriptor | None = None,
    update_endpoint: admin_pb2.EndpointUpdate | None = None,
    recover: admin_pb2.RecoveryRequest | None = None,
    now_ns: int | None = None,
    lifetime_s: float = 3600.0,
    nonce: bytes | None = None,
) -> admin_pb2.ChainProposal:
    """A ChainProposal with a fresh random nonce, valid for ``lifetime_s``."""
    now_ns = time.time_ns() if now_ns is None else now_ns
    p = admin_pb2.ChainProposal(
        institution=institution,
        nonce=os.urandom(24) if nonce is None else nonce,
        audience=audience,
        created_at=_ts(now_ns),
        expires_at=_ts(now_ns + int(lifetime_s * 1e9)),
    )
    if register is not None:
        p.register.CopyFrom(register)
    if update_endpoint is not None:
        p.update_endpoint.CopyFrom(update_endpoint)
    if recover is not None:
        p.recover.CopyFrom(recover)
    return p


def sign_proposal(
    proposal: admin_pb2.ChainProposal, signer: InstitutionSigner
) -> admin_pb2.SignedChainProposal:
    data = proposal.SerializeToString(deterministic=True)
    return admin_pb2.SignedChainProposal(
        proposal=data,
        key_id=signer.key_id,
        algorithm=signer.algorithm,  # type: ignore[arg-type]
        signature=signer.sign(SIGNING_PREFIX + data),
        sm2_signer_id=signer.sm2_signer_id,
    )


# ------------------------------------------------------------------------------ verification


def verify_signed_proposal(
    signed: admin_pb2.SignedChainProposal,
    *,
    keys: list[InstitutionKeyConfig],
    audience: str,
    now_ns: int,
    max_lifetime_ns: int,
) -> admin_pb2.ChainProposal:
    """Decode and check a signed proposal (everything but the nonce, which the store
    checks atomically). Raises ServiceError with the documented reason."""
    data = signed.proposal
    if not data or len(data) > MAX_PROPOSAL_BYTES:
        raise ServiceError("INVALID_ARGUMENT", "signed.proposal is empty or too large",
                           field="signed.proposal")  # fmt: skip
    proposal = admin_pb2.ChainProposal()
    try:
        proposal.ParseFromString(data)
    except DecodeError:
        raise ServiceError(
            "INVALID_ARGUMENT", "signed.proposal is not a ChainProposal", field="signed.proposal"
        ) from None
    algorithm = {
        types_pb2.SIGNATURE_ALGORITHM_ED25519: "ed25519",
        types_pb2.SIGNATURE_ALGORITHM_SM2: "sm2",
    }.get(signed.algorithm)
    key = next(
        (
            k
            for k in keys
            if k.institution == proposal.institution
            and k.key_id == signed.key_id
            and k.algorithm == algorithm
        ),
        None,
    )
    if key is None:
        raise ServiceError(
            "PROPOSAL_SIGNATURE_INVALID",
            f"no {algorithm or 'supported'} key {signed.key_id[:128]!r} is registered for "
            f"institution {proposal.institution[:64]!r} (access.institution_keys)",
            field="signed.key_id",
        )
    message = SIGNING_PREFIX + data
    try:
        if algorithm == "ed25519":
            ED25519.verify(
                public_key=bytes.fromhex(key.public_key),
                message=message,
                signature=signed.signature,
            )
        else:
            signer_id = (signed.sm2_signer_id or key.sm2_signer_id).encode()
            scheme = (
                Sm2(SignatureEncoding.DER, signer_id) if signer_id else Sm2(SignatureEncoding.DER)
            )
            scheme.verify(
                public_key=bytes.fromhex(key.public_key),
                message=message,
                signature=signed.signature,
            )
    except (SignatureError, VerificationError) as e:
        raise ServiceError(
            "PROPOSAL_SIGNATURE_INVALID",
            f"the proposal's signature does not verify with key {key.key_id!r} of "
            f"{key.institution}: {e}",
            field="signed.signature",
        ) from None
    if proposal.audience != audience:
        raise ServiceError(
            "INVALID_ARGUMENT",
            f"the proposal is for audience {proposal.audience[:128]!r}, this relay is {audience!r}",
            field="proposal.audience",
        )
    if not MIN_NONCE_BYTES <= len(proposal.nonce) <= MAX_NONCE_BYTES:
        raise ServiceError(
            "INVALID_ARGUMENT", "proposal.nonce must be 16 to 32 bytes", field="proposal.nonce"
        )
    created = proposal.created_at.ToNanoseconds()
    expires = proposal.expires_at.ToNanoseconds()
    if expires <= now_ns:
        raise ServiceError("PROPOSAL_EXPIRED", "the proposal's expires_at has passed",
                           field="proposal.expires_at")  # fmt: skip
    if created > now_ns + MAX_CLOCK_SKEW_NS or expires - created > max_lifetime_ns:
        raise ServiceError(
            "PROPOSAL_EXPIRED",
            "the proposal is created in the future or lives longer than the relay's "
            f"max_proposal_lifetime ({max_lifetime_ns / 1e9:g} s)",
            field="proposal.expires_at",
        )
    return proposal


# ------------------------------------------------------------------------------ records


class AccessRecords:
    """Proposals, decisions, nonces and admin actions in the relay's store (migration 0002),
    through the Store protocol's access methods, so they work on SQLite and PostgreSQL and
    share the store's transactions and durability."""

    def __init__(self, store: Any, *, clock: Callable[[], int] = time.time_ns) -> None:
        if not hasattr(store, "insert_proposal") or not hasattr(store, "record_admin_action"):
            raise TypeError("onboarding records need a store with access records (0002)")
        self._store = store
        self._clock = clock

    async def record_action(
        self, ident: Identity | None, action: str, target: str, outcome: str, detail: str
    ) -> None:
        now = self._clock()
        actor = ident.principal if ident is not None else "unauthenticated"
        role = ident.role.value if ident is not None else ""
        await self._store.record_admin_action(
            at_ns=now, actor=actor, role=role, action=action, target=target[:256],
            outcome=outcome[:256], detail=detail[:2000],
        )  # fmt: skip

    async def actions(self) -> list[tuple[int, str, str, str, str, str, str]]:
        return [
            (a.at_ns, a.actor, a.role, a.action, a.target, a.outcome, a.detail)
            for a in await self._store.admin_actions()
        ]

    async def insert_proposal(
        self,
        *,
        pid: str,
        proposal: admin_pb2.ChainProposal,
        kind: str,
        chain_id: str,
        signed: bytes,
        submitted_by: str,
    ) -> int:
        now = self._clock()
        try:
            await self._store.insert_proposal(
                proposal_id=pid, institution=proposal.institution, nonce=proposal.nonce,
                kind=kind, chain_id=chain_id, signed=signed, submitted_by=submitted_by,
                submitted_at_ns=now, expires_at_ns=proposal.expires_at.ToNanoseconds(),
            )  # fmt: skip
        except NonceReplayedError as exc:
            raise ServiceError("PROPOSAL_REPLAYED", exc.message, field="proposal.nonce") from None
        return now

    async def decide(
        self, *, pid: str, operator: str, decision: str, comment: str, required: int
    ) -> tuple[str, int]:
        """Record one decision; returns (state to move to, approvals so far). Refuses a
        closed or unknown proposal and a second decision by the same operator."""
        try:
            result: tuple[str, int] = await self._store.decide_proposal(
                proposal_id=pid, operator_id=operator, decision=decision, comment=comment,
                now_ns=self._clock(), required=required,
            )  # fmt: skip
        except ProposalNotFoundError as exc:
            raise ServiceError("NOT_FOUND", exc.message, field="proposal_id") from None
        except ProposalClosedError as exc:
            raise ServiceError("PROPOSAL_CLOSED", exc.message, field="proposal_id") from None
        return result

    async def finish(self, pid: str, *, state: str, message: str) -> None:
        await self._store.finish_proposal(
            pid, state=state, message=message[:2000], now_ns=self._clock()
        )

    async def load(
        self, *, pid: str | None = None, institution: str | None = None, state: str | None = None
    ) -> list[admin_pb2.ProposalInfo]:
        records = await self._store.list_proposals(
            proposal_id=pid, institution=institution, state=state, limit=MAX_LISTED
        )
        infos = []
        for rec in records:
            info = admin_pb2.ProposalInfo(
                proposal_id=rec.proposal_id,
                institution=rec.institution,
                kind=_KIND[rec.kind],
                chain_id=rec.chain_id,
                state=_STATE[rec.state],
                status_message=rec.status_message,
                submitted_by=rec.submitted_by,
                submitted_at=_ts(rec.submitted_at_ns),
                expires_at=_ts(rec.expires_at_ns),
            )
            info.signed.ParseFromString(rec.signed)
            digest = bytes.fromhex(rec.proposal_id)
            for d in rec.decisions:
                info.decisions.add(
                    proposal_digest=digest,
                    decision=(
                        admin_pb2.PROPOSAL_DECISION_APPROVE
                        if d.decision == "approve"
                        else admin_pb2.PROPOSAL_DECISION_REJECT
                    ),
                    operator_id=d.operator_id,
                    decided_at=_ts(d.decided_at_ns),
                    comment=d.comment,
                )
            infos.append(info)
        return infos


# ------------------------------------------------------------------------------ service


class Onboarding:
    """The AdminService's proposal RPCs (the servicers' ``onboarding`` backend). The caller
    is the identity the AccessInterceptor put in context; the AccessGuard already checked
    its role."""

    def __init__(
        self,
        *,
        engine: Any,
        records: AccessRecords,
        config: AccessConfig,
        clock: Callable[[], int] = time.time_ns,
    ) -> None:
        self._engine = engine
        self._records = records
        self._config = config
        self._clock = clock
        self._lock = asyncio.Lock()

    @property
    def approvals_required(self) -> int:
        return self._config.approvals_required

    async def _info(self, pid: str) -> admin_pb2.ProposalInfo:
        info = (await self._records.load(pid=pid))[0]
        info.approvals_required = self._config.approvals_required
        return info

    async def _propose(
        self, signed: admin_pb2.SignedChainProposal, *, kind: str
    ) -> admin_pb2.ProposalInfo:
        ident = require_identity()
        if ident.role is not Role.PARTNER:
            raise ServiceError("ROLE_FORBIDDEN", "only partners propose")
        now = self._clock()
        proposal = verify_signed_proposal(
            signed,
            keys=self._config.institution_keys,
            audience=self._config.audience,
            now_ns=now,
            max_lifetime_ns=int(self._config.max_proposal_lifetime * 1e9),
        )
        if proposal.institution != ident.code:
            raise ServiceError(
                "NOT_OWNER",
                f"{ident.principal} acts for institution {ident.code}, not for "
                f"{proposal.institution[:64]!r}",
                field="proposal.institution",
            )
        action = proposal.WhichOneof("action")
        if action != kind:
            raise ServiceError(
                "INVALID_ARGUMENT",
                f"this RPC takes a proposal whose action is {kind}, not {action}",
                field="proposal.action",
            )
        if kind == "register":
            d = proposal.register
            if d.institution != proposal.institution:
                raise ServiceError(
                    "NOT_OWNER",
                    f"the descriptor's institution {d.institution[:64]!r} is not the "
                    f"proposer {proposal.institution}",
                    field="proposal.register.institution",
                )
            validate_descriptor(d)
            if d.chain_id in self._engine.registry:
                raise ServiceError(
                    "ALREADY_EXISTS", f"chain {d.chain_id!r} is already registered",
                    chain_id=d.chain_id,
                )  # fmt: skip
            chain_id = d.chain_id
        else:
            chain_id = (
                proposal.update_endpoint.chain_id
                if kind == "update_endpoint"
                else proposal.recover.chain_id
            )
            if chain_id not in self._engine.registry:
                raise ServiceError("NOT_FOUND", f"no chain {chain_id[:128]!r}", chain_id=chain_id)
            owner = self._engine.registry.get(chain_id).descriptor.institution
            if owner != proposal.institution:
                raise ServiceError(
                    "NOT_OWNER",
                    f"chain {chain_id} belongs to institution {owner}, not to "
                    f"{proposal.institution}",
                    chain_id=chain_id,
                )
            if kind == "update_endpoint":
                validate_endpoint(proposal.update_endpoint.endpoint,
                                  field="proposal.update_endpoint.endpoint",
                                  chain_id=chain_id)  # fmt: skip
            else:
                r = proposal.recover
                if r.new_anchor.WhichOneof("anchor") is None:
                    raise ServiceError(
                        "INVALID_ARGUMENT", "a recovery proposal needs the new trust anchor",
                        field="proposal.recover.new_anchor", chain_id=chain_id,
                    )  # fmt: skip
                if len(r.reason) > MAX_COMMENT_CHARS:
                    raise ServiceError(
                        "INVALID_ARGUMENT", "reason is too long",
                        field="proposal.recover.reason", chain_id=chain_id,
                    )  # fmt: skip
        pid = proposal_id(signed.proposal)
        await self._records.insert_proposal(
            pid=pid,
            proposal=proposal,
            kind=kind,
            chain_id=chain_id,
            signed=signed.SerializeToString(deterministic=True),
            submitted_by=ident.principal,
        )
        await self._records.record_action(ident, f"propose_{kind}", chain_id, "pending", pid)
        log.info("proposal %s by %s: %s %s", pid[:16], ident.principal, kind, chain_id)
        return await self._info(pid)

    async def propose_chain(
        self, req: admin_pb2.ProposeChainRequest
    ) -> admin_pb2.ProposeChainResponse:
        return admin_pb2.ProposeChainResponse(
            proposal=await self._propose(req.signed, kind="register")
        )

    async def propose_endpoint_update(
        self, req: admin_pb2.ProposeEndpointUpdateRequest
    ) -> admin_pb2.ProposeEndpointUpdateResponse:
        return admin_pb2.ProposeEndpointUpdateResponse(
            proposal=await self._propose(req.signed, kind="update_endpoint")
        )

    async def propose_recovery(
        self, req: admin_pb2.ProposeRecoveryRequest
    ) -> admin_pb2.ProposeRecoveryResponse:
        return admin_pb2.ProposeRecoveryResponse(
            proposal=await self._propose(req.signed, kind="recover")
        )

    def _operator(self) -> Identity:
        ident = require_identity()
        if ident.role is not Role.OPERATOR:
            raise ServiceError("ROLE_FORBIDDEN", "only operators decide on proposals")
        if self._config.operators and ident.name not in self._config.operators:
            raise ServiceError(
                "ROLE_FORBIDDEN",
                f"operator {ident.name!r} is not one of access.operators",
            )
        return ident

    async def _decide(self, pid: str, comment: str, *, approve: bool) -> Any:
        ident = self._operator()
        if len(comment) > MAX_COMMENT_CHARS:
            raise ServiceError("INVALID_ARGUMENT", "comment is too long", field="comment")
        async with self._lock:
            state, _approvals = await self._records.decide(
                pid=pid,
                # One vote per configured operator name (the certificate CN), whatever the
                # certificate's O: two certificates of one operator must not count twice.
                operator=ident.name,
                decision="approve" if approve else "reject",
                comment=comment,
                required=self._config.approvals_required,
            )
            await self._records.record_action(
                ident, "approve" if approve else "reject", pid, state, comment
            )
            if state == "expired":
                raise ServiceError(
                    "PROPOSAL_EXPIRED", f"proposal {pid[:16]}... expired before approval",
                    field="proposal_id",
                )  # fmt: skip
            chain = None
            if state == "apply":
                chain = await self._apply(pid, ident)
        info = await self._info(pid)
        return info, chain

    async def _apply(self, pid: str, ident: Identity) -> types_pb2.ChainInfo | None:
        info = await self._info(pid)
        proposal = admin_pb2.ChainProposal.FromString(info.signed.proposal)
        try:
            if info.kind == admin_pb2.PROPOSAL_KIND_REGISTER:
                reply = await self._engine.register_chain(
                    admin_pb2.RegisterChainRequest(descriptor=proposal.register)
                )
            elif info.kind == admin_pb2.PROPOSAL_KIND_RECOVER:
                r = proposal.recover
                reply = await self._engine.recover_chain(
                    admin_pb2.RecoverChainRequest(
                        chain_id=r.chain_id,
                        new_anchor=r.new_anchor,
                        reason=f"{r.reason} (proposal {pid[:16]}... of institution "
                        f"{proposal.institution}, approved by "
                        f"{self._config.approvals_required} operators)",
                    )
                )
            else:
                reply = await self._engine.update_adapter_endpoint(
                    admin_pb2.UpdateAdapterEndpointRequest(
                        chain_id=proposal.update_endpoint.chain_id,
                        endpoint=proposal.update_endpoint.endpoint,
                    )
                )
        except RelayError as e:
            await self._records.finish(pid, state="failed", message=f"{e.reason}: {e.message}")
            await self._records.record_action(ident, "apply", info.chain_id, "failed", e.reason)
            return None
        await self._records.finish(pid, state="applied", message=f"applied by {ident.principal}")
        await self._records.record_action(ident, "apply", info.chain_id, "applied", pid)
        log.info("proposal %s applied: chain %s", pid[:16], info.chain_id)
        chain: types_pb2.ChainInfo = reply.chain
        return chain

    async def approve_proposal(
        self, req: admin_pb2.ApproveProposalRequest
    ) -> admin_pb2.ApproveProposalResponse:
        info, chain = await self._decide(req.proposal_id, req.comment, approve=True)
        out = admin_pb2.ApproveProposalResponse(proposal=info)
        if chain is not None:
            out.chain.CopyFrom(chain)
        return out

    async def reject_proposal(
        self, req: admin_pb2.RejectProposalRequest
    ) -> admin_pb2.RejectProposalResponse:
        info, _ = await self._decide(req.proposal_id, req.comment, approve=False)
        return admin_pb2.RejectProposalResponse(proposal=info)

    async def list_proposals(
        self, req: admin_pb2.ListProposalsRequest
    ) -> admin_pb2.ListProposalsResponse:
        ident = require_identity()
        institution = ident.code if ident.role is Role.PARTNER else None
        state = _STATE_NAME.get(req.state) if req.state else None
        items = await self._records.load(institution=institution, state=state)
        for item in items:
            item.approvals_required = self._config.approvals_required
        return admin_pb2.ListProposalsResponse(proposals=items)
