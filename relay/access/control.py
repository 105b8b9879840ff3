"""Access control of the court-facing API (issue 5): who may call which RPC, which court may
query what, per-identity rate and concurrency limits, and the record of admin calls.

Two pieces plug into relay/service/server.py:

* :class:`AccessInterceptor` (a grpc.aio server interceptor) runs first on every
  ``relay.v1.*`` call: it maps the TLS peer certificate to an :class:`Identity`
  (relay/access/identity.py), applies the identity's token bucket and in-flight cap
  (``RESOURCE_EXHAUSTED``/``RATE_LIMITED`` with a ``google.rpc.RetryInfo``), makes the
  identity available to the servicers (:func:`current_identity`) and records every
  AdminService call with who made it and how it ended.
* :class:`AccessGuard` (the servicers' ``CallGuard``) then checks the request: the role may
  call the method (``ROLE_FORBIDDEN``), a case-bound query carries a well-formed CaseRef of
  the caller's own court (``CASE_REQUIRED``/``CASE_INVALID``), and the court's grants cover
  the query kind and the domain of every chain it could reach (``GRANT_MISSING``). Every
  refusal is logged (logger ``relay.access``) and changes nothing.

Roles and methods:

============ ===================================================================
court        QueryService: every query (case-bound, within its grants), ListChains, GetChain
partner      AdminService: ProposeChain, ProposeEndpointUpdate, ListProposals (own only);
             QueryService: ListChains, GetChain
operator     AdminService: everything except the two Propose RPCs;
             QueryService: ListChains, GetChain
public       QueryService: ListChains, GetChain
============ ===================================================================

Every role may call AuditService GetCheckpoint and GetConsistencyProof; only courts call
GetInclusionProof and ListMyEntries, for their own entries (issue 7).
"""

from __future__ import annotations

import contextvars
import logging
import re
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

import grpc
from google.protobuf.message import Message

from relay.access.identity import Identity, Role, identity_from_context
from relay.config import AccessConfig
from relay.interceptors import PerMethodInterceptor
from relay.pb.relay.v1 import query_pb2, types_pb2
from relay.service.errors import ServiceError, abort, facts_of, status_for_facts
from relay.service.servicers import ADMIN_SERVICE, QUERY_SERVICE, check_case

log = logging.getLogger("relay.access")

_CURRENT: contextvars.ContextVar[Identity | None] = contextvars.ContextVar(
    "relay_access_identity", default=None
)
#: The context variable :func:`current_identity` reads (set per call by the interceptor or
#: by relay/service/pipeline.py).
IDENTITY_VAR = _CURRENT


def current_identity() -> Identity | None:
    """The identity of the call being served (set by AccessInterceptor), if any."""
    return _CURRENT.get()


def require_identity() -> Identity:
    ident = _CURRENT.get()
    if ident is None:
        raise ServiceError("UNAUTHENTICATED", "the call carries no authenticated identity")
    return ident


# ------------------------------------------------------------------------------ policy

_Q = f"/{QUERY_SERVICE}/"
_A = f"/{ADMIN_SERVICE}/"
_AU = "/relay.v1.AuditService/"  # issue 7, relay/audit/service.py
_ALL = frozenset(Role)

# Query RPC -> grant query kind.
QUERY_KINDS = {
    _Q + "GetOwnership": "ownership",
    _Q + "ListHoldings": "holdings",
    _Q + "GetCreditStatus": "credit",
    _Q + "GetAccount": "account",
    _Q + "GetHistory": "history",
    _Q + "GetState": "state",
}

METHOD_ROLES: dict[str, frozenset[Role]] = {
    **{m: frozenset({Role.COURT}) for m in QUERY_KINDS},
    _Q + "ListChains": _ALL,
    _Q + "GetChain": _ALL,
    **{
        _A + name: frozenset({Role.OPERATOR})
        for name in (
            "RegisterChain",
            "FreezeChain",
            "RecoverChain",
            "UpdateAdapterEndpoint",
            "ListChains",
            "ApproveProposal",
            "RejectProposal",
        )
    },
    _A + "ProposeChain": frozenset({Role.PARTNER}),
    _A + "ProposeEndpointUpdate": frozenset({Role.PARTNER}),
    _A + "ProposeRecovery": frozenset({Role.PARTNER}),
    _A + "ListProposals": frozenset({Role.PARTNER, Role.OPERATOR}),
    # Audit log (issue 7): checkpoints and consistency proofs for anyone; a court's own
    # entries and their inclusion proofs for that court only (checked by the servicer).
    _AU + "GetCheckpoint": _ALL,
    _AU + "GetConsistencyProof": _ALL,
    _AU + "GetInclusionProof": frozenset({Role.COURT}),
    _AU + "ListMyEntries": frozenset({Role.COURT}),
}

# Chain changes that k of n operators approve through proposals when approvals_required > 1.
K_OF_N_METHODS = frozenset(
    _A + name for name in ("RegisterChain", "UpdateAdapterEndpoint", "RecoverChain")
)

DOMAIN_NAMES = {
    "real-estate": types_pb2.DOMAIN_REAL_ESTATE,
    "ip": types_pb2.DOMAIN_IP,
    "credit": types_pb2.DOMAIN_CREDIT,
    "bank": types_pb2.DOMAIN_BANK,
    "judicial": types_pb2.DOMAIN_JUDICIAL,
}
_DOMAIN_LABEL: dict[int, str] = {int(v): k for k, v in DOMAIN_NAMES.items()}

# Court code (法院代字): a province abbreviation or other CJK characters, then digits, e.g.
# 京0105, 沪02, 最高法.
COURT_CODE = re.compile(r"^[\u4e00-\u9fff]{1,4}[0-9]{0,6}$")
# Case number (案号) after "(year)" and the court code: case-type characters, serial, 号.
_CASE_TAIL = re.compile(r"^[\u4e00-\u9fff]{1,6}[1-9][0-9]{0,7}号$")
_CASE_YEAR = re.compile(r"^[(（](19[89][0-9]|2[01][0-9]{2})[)）]")


def check_case_number(*, court: str, case_number: str) -> None:
    """Refuse (CASE_INVALID) a court code or case number not in the national format, or a
    case number whose court code is not ``court``. Example: ``(2026)京0105执1234号``."""
    if not COURT_CODE.match(court):
        raise ServiceError(
            "CASE_INVALID",
            f"case_ref.court {court[:40]!r} is not a court code like 京0105",
            field="case_ref.court",
        )
    year = _CASE_YEAR.match(case_number)
    if year is None:
        raise ServiceError(
            "CASE_INVALID",
            "case_ref.case_number must start with the year in parentheses, e.g. "
            "(2026)京0105执1234号",
            field="case_ref.case_number",
        )
    rest = case_number[year.end() :]
    if not rest.startswith(court) or not _CASE_TAIL.match(rest[len(court) :]):
        raise ServiceError(
            "CASE_INVALID",
            f"case_ref.case_number {case_number[:60]!r} is not (year){court}<case type><serial>号",
            field="case_ref.case_number",
        )


@dataclass(frozen=True, slots=True)
class Grant:
    domains: frozenset[int]
    queries: frozenset[str]


def grants_from_config(config: AccessConfig) -> dict[str, Grant]:
    return {
        court: Grant(
            frozenset(DOMAIN_NAMES[d] for d in g.domains),
            frozenset(g.queries),
        )
        for court, g in config.grants.items()
    }


# Which chain domains a query can reach: resolved by the engine's registry, so the grant
# check uses exactly the routing the engine will use.
DomainResolver = Callable[[str, Message], Iterable[int]]


def engine_domain_resolver(engine: Any) -> DomainResolver:
    """Domains of the chains a query would reach, from the engine's chain registry."""

    def domains_of_chain(chain_id: str) -> list[int]:
        try:
            return [engine.registry.get(chain_id).descriptor.domain]
        except Exception:  # an unknown chain: the engine answers NOT_FOUND itself
            return []

    def by_registry(registry: str) -> list[int]:
        owner = engine.registry.owner_of(registry)
        return [] if owner is None else domains_of_chain(owner)

    def resolve(method: str, request: Message) -> Iterable[int]:
        kind = QUERY_KINDS.get(method)
        if kind == "credit":
            return [types_pb2.DOMAIN_CREDIT]
        if kind == "account":
            return [types_pb2.DOMAIN_BANK, *by_registry(request.account.registry)]  # type: ignore[attr-defined]
        if kind in ("ownership", "history"):
            return by_registry(request.asset.registry)  # type: ignore[attr-defined]
        if kind == "state":
            return domains_of_chain(request.chain_id)  # type: ignore[attr-defined]
        if kind == "holdings":
            wanted = set(request.kinds)  # type: ignore[attr-defined]
            out = []
            for runtime in engine.registry:
                kinds = set(runtime.descriptor.asset_kinds)
                if not wanted or not kinds or wanted & kinds:
                    out.append(runtime.descriptor.domain)
            return out
        return []

    return resolve


# ------------------------------------------------------------------------------ limits


@dataclass
class _Bucket:
    tokens: float
    updated: float
    in_flight: int = 0


@dataclass
class RateLimiter:
    """A token bucket (``per_second``, ``burst``) and an in-flight cap per principal."""

    per_second: float
    burst: int
    max_in_flight: int
    clock: Callable[[], float] = time.monotonic
    max_principals: int = 100_000
    _buckets: dict[str, _Bucket] = field(default_factory=dict)

    def acquire(self, principal: str) -> None:
        """Take a token and an in-flight slot, or raise RATE_LIMITED with a retry hint."""
        now = self.clock()
        b = self._buckets.get(principal)
        if b is None:
            if len(self._buckets) >= self.max_principals:
                self._buckets = {k: v for k, v in self._buckets.items() if v.in_flight}
            b = self._buckets[principal] = _Bucket(float(self.burst), now)
        b.tokens = min(float(self.burst), b.tokens + (now - b.updated) * self.per_second)
        b.updated = now
        if b.in_flight >= self.max_in_flight:
            raise ServiceError(
                "RATE_LIMITED",
                f"{principal} already has {b.in_flight} calls in flight (limit "
                f"{self.max_in_flight}); retry when one finishes",
                retry_after_s=0.1,
            )
        if b.tokens < 1.0:
            wait = (1.0 - b.tokens) / self.per_second
            raise ServiceError(
                "RATE_LIMITED",
                f"{principal} is over its rate limit of {self.per_second:g} calls/s "
                f"(burst {self.burst}); retry in {wait:.3f} s",
                retry_after_s=wait,
            )
        b.tokens -= 1.0
        b.in_flight += 1

    def release(self, principal: str) -> None:
        b = self._buckets.get(principal)
        if b is not None and b.in_flight > 0:
            b.in_flight -= 1


# ------------------------------------------------------------------------------ records

# Records admin actions: (actor, role, action, target, outcome, detail).
ActionRecorder = Callable[[Identity | None, str, str, str, str], Awaitable[None]]


def _target_of(request: Message) -> str:
    for name in ("chain_id", "proposal_id"):
        value = getattr(request, name, None)
        if isinstance(value, str) and value:
            return value
    descriptor: Any = getattr(request, "descriptor", None)
    chain_id = getattr(descriptor, "chain_id", None)
    return chain_id if isinstance(chain_id, str) else ""


# ------------------------------------------------------------------------------ interceptor


class AccessInterceptor(PerMethodInterceptor):
    """Identity, rate limits and the admin record around every relay.v1 call."""

    def __init__(
        self,
        *,
        limiter: RateLimiter,
        insecure_dev: bool = False,
        record: ActionRecorder | None = None,
    ) -> None:
        super().__init__()
        self._limiter = limiter
        self._insecure_dev = insecure_dev
        self._record = record

    def set_recorder(self, record: ActionRecorder | None) -> None:
        self._record = record

    # The steps of one call, also used by relay/service/pipeline.py's single wrapper.

    @staticmethod
    def applies(method: str) -> bool:
        """Whether calls of ``method`` (a full RPC path) go through access control."""
        return method.startswith((_Q, _A, _AU))

    @staticmethod
    def is_admin(method: str) -> bool:
        return method.startswith(_A)

    async def enter(self, method: str, context: Any) -> Identity:
        """Identify the caller and take a rate-limit slot, or abort the call (refusals are
        logged); the caller must :meth:`leave` once the call is over."""
        return (await self._enter(method, context))[1]

    def leave(self, ident: Identity) -> None:
        self._limiter.release(ident.principal)

    async def record_admin(
        self, ident: Identity, method: str, request: Message, context: Any, outcome: str
    ) -> None:
        """Record an AdminService call (``outcome`` "ok" or "error"); never raises."""
        await self._admin_record(ident, method, request, context, outcome)

    def wrap(self, path: str, handler: Any) -> Any:
        return self.wrap_handler(path, handler) if self.applies(path) else handler

    def wrap_handler(self, method: str, handler: Any) -> Any:
        """``handler`` with identity, limits and the admin record (unary and
        server-streaming; other kinds are returned as they are)."""
        admin = method.startswith(_A)
        if handler.unary_unary is not None:
            inner = handler.unary_unary

            async def unary(request: Any, context: Any) -> Any:
                principal, ident = await self._enter(method, context)
                token = _CURRENT.set(ident)
                outcome = "error"
                try:
                    result = await inner(request, context)
                    outcome = "ok"
                    return result
                finally:
                    _CURRENT.reset(token)
                    self._limiter.release(principal)
                    if admin:
                        await self._admin_record(ident, method, request, context, outcome)

            return grpc.unary_unary_rpc_method_handler(
                unary,
                request_deserializer=handler.request_deserializer,
                response_serializer=handler.response_serializer,
            )
        if handler.unary_stream is not None:
            inner_stream = handler.unary_stream

            async def stream(request: Any, context: Any) -> AsyncIterator[Any]:
                principal, ident = await self._enter(method, context)
                token = _CURRENT.set(ident)
                try:
                    async for item in inner_stream(request, context):
                        yield item
                finally:
                    _CURRENT.reset(token)
                    self._limiter.release(principal)

            return grpc.unary_stream_rpc_method_handler(
                stream,
                request_deserializer=handler.request_deserializer,
                response_serializer=handler.response_serializer,
            )
        return handler

    async def _enter(self, method: str, context: Any) -> tuple[str, Identity]:
        who: Identity | None = None
        try:
            who = identity_from_context(context, insecure_dev=self._insecure_dev)
            self._limiter.acquire(who.principal)
        except ServiceError as e:
            log.warning(
                "refused %s for %s: %s: %s",
                method,
                who.principal if who is not None else context.peer(),
                e.reason,
                e.message,
            )
            facts = facts_of(e)
            assert facts is not None
            await abort(context, status_for_facts(facts))
        return who.principal, who

    async def _admin_record(
        self, ident: Identity, method: str, request: Message, context: Any, outcome: str
    ) -> None:
        if self._record is None:
            return
        if outcome != "ok":
            try:
                code = context.code()
            except Exception:  # older grpc: no code() on the aio context
                code = None
            outcome = f"failed: {getattr(code, 'name', code) or 'error'}"
        try:
            await self._record(ident, method.rsplit("/", 1)[1], _target_of(request), outcome, "")
        except Exception:  # recording must never turn an answered call into a failure
            log.exception("could not record admin action %s by %s", method, ident.principal)


# ------------------------------------------------------------------------------ guard


class AccessGuard:
    """The servicers' CallGuard: role, case and grant checks (see the module docstring)."""

    def __init__(
        self,
        *,
        grants: dict[str, Grant],
        resolver: DomainResolver | None = None,
        insecure_dev: bool = False,
        approvals_required: int = 1,
    ) -> None:
        self._grants = grants
        self.resolver = resolver
        self._insecure_dev = insecure_dev
        self._approvals = approvals_required

    async def __call__(self, *, method: str, request: Message, context: Any) -> None:
        ident = _CURRENT.get()
        try:
            if ident is None:  # no interceptor in front (tests): identify here
                ident = identity_from_context(context, insecure_dev=self._insecure_dev)
            self.check(ident, method=method, request=request)
        except ServiceError as e:
            log.warning(
                "refused %s for %s: %s: %s",
                method,
                ident.principal if ident is not None else "unauthenticated caller",
                e.reason,
                e.message,
            )
            raise

    def check(self, ident: Identity, *, method: str, request: Message) -> None:
        allowed = METHOD_ROLES.get(method)
        if allowed is None or ident.role not in allowed:
            roles = ", ".join(sorted(r.value for r in allowed or ())) or "no role"
            raise ServiceError(
                "ROLE_FORBIDDEN",
                f"{ident.principal}: role {ident.role.value} may not call "
                f"{method.rsplit('/', 1)[1]} (allowed: {roles})",
                role=ident.role.value,
                method=method,
            )
        if method in K_OF_N_METHODS and self._approvals > 1:
            # k of n binds every chain change: one operator alone registers, moves or
            # recovers nothing (FreezeChain, which only stops trust, stays one call).
            raise ServiceError(
                "ROLE_FORBIDDEN",
                f"{ident.principal}: with access.approvals_required {self._approvals}, "
                f"{method.rsplit('/', 1)[1]} is not one operator's call: a partner proposes "
                "(ProposeChain, ProposeEndpointUpdate, ProposeRecovery) and "
                f"{self._approvals} operators approve",
                role=ident.role.value,
                method=method,
            )
        kind = QUERY_KINDS.get(method)
        if kind is None:
            return
        check_case(method, request)
        case = request.case_ref  # type: ignore[attr-defined]
        if case.court != ident.code:
            raise ServiceError(
                "CASE_INVALID",
                f"case_ref.court {case.court[:40]!r} is not the caller's court {ident.code!r} "
                "(from its client certificate)",
                field="case_ref.court",
            )
        check_case_number(court=case.court, case_number=case.case_number)
        grant = self._grants.get(ident.code)
        if grant is None:
            raise ServiceError(
                "GRANT_MISSING",
                f"court {ident.code} has no grants configured (access.grants)",
                court=ident.code,
            )
        if kind not in grant.queries:
            raise ServiceError(
                "GRANT_MISSING",
                f"court {ident.code} is not granted {kind} queries",
                court=ident.code,
                query=kind,
            )
        if self.resolver is None:
            return
        for domain in sorted(set(self.resolver(method, request))):
            if domain not in grant.domains:
                label = _DOMAIN_LABEL.get(domain) or f"domain {domain}"
                hint = (
                    " (restrict the query's asset kinds to granted domains)"
                    if isinstance(request, query_pb2.ListHoldingsRequest)
                    else ""
                )
                raise ServiceError(
                    "GRANT_MISSING",
                    f"court {ident.code} is not granted the {label} domain{hint}",
                    court=ident.code,
                    domain=label,
                )
