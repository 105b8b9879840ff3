"""The gRPC servicers of ``relay.v1.QueryService`` and ``relay.v1.AdminService``: thin
adapters from RPCs to the engine's facade (relay/engine/engine.py). Each call passes a
guard first (today: the case reference every court query must carry; issue 5 swaps in the
identity, role and grant checks), runs under the relay's query deadline, and maps every
failure through :mod:`relay.service.errors` so a client only ever sees a documented status.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, Protocol, TypeAlias, TypeVar

from google.protobuf.message import Message

from relay.pb.relay.v1 import (
    admin_pb2,
    admin_pb2_grpc,
    query_pb2,
    query_pb2_grpc,
    types_pb2,
)
from relay.service.errors import ServiceError, abort, status_for_exception

Req = TypeVar("Req", bound=Message)
Resp = TypeVar("Resp", bound=Message)
# grpc.aio.ServicerContext; grpc ships no type stubs, so for the checker it is Any.
Context: TypeAlias = Any


class QueryBackend(Protocol):
    """What the QueryService needs of the engine."""

    async def get_ownership(
        self, req: query_pb2.GetOwnershipRequest
    ) -> query_pb2.OwnershipAnswer: ...
    def list_holdings(
        self, req: query_pb2.ListHoldingsRequest
    ) -> AsyncIterator[query_pb2.HoldingsAnswer]: ...
    async def get_credit_status(
        self, req: query_pb2.GetCreditStatusRequest
    ) -> query_pb2.CreditAnswer: ...
    async def get_account(self, req: query_pb2.GetAccountRequest) -> query_pb2.AccountAnswer: ...
    async def get_history(self, req: query_pb2.GetHistoryRequest) -> query_pb2.HistoryAnswer: ...
    async def get_state(self, req: query_pb2.GetStateRequest) -> query_pb2.StateAnswer: ...
    async def list_chains(
        self, req: query_pb2.ListChainsRequest
    ) -> query_pb2.ListChainsResponse: ...
    async def get_chain(self, req: query_pb2.GetChainRequest) -> query_pb2.GetChainResponse: ...


class AdminBackend(Protocol):
    """What the AdminService needs of the engine."""

    async def register_chain(
        self, req: admin_pb2.RegisterChainRequest
    ) -> admin_pb2.RegisterChainResponse: ...
    async def freeze_chain(
        self, req: admin_pb2.FreezeChainRequest
    ) -> admin_pb2.FreezeChainResponse: ...
    async def recover_chain(
        self, req: admin_pb2.RecoverChainRequest
    ) -> admin_pb2.RecoverChainResponse: ...
    async def update_adapter_endpoint(
        self, req: admin_pb2.UpdateAdapterEndpointRequest
    ) -> admin_pb2.UpdateAdapterEndpointResponse: ...
    async def admin_list_chains(
        self, req: admin_pb2.AdminListChainsRequest
    ) -> admin_pb2.AdminListChainsResponse: ...


class OnboardingBackend(Protocol):
    """The proposal RPCs of AdminService (issue 5, relay/access/proposals.py: Onboarding).
    The caller's identity comes from the access layer's context, not from arguments."""

    async def propose_chain(
        self, req: admin_pb2.ProposeChainRequest
    ) -> admin_pb2.ProposeChainResponse: ...
    async def propose_endpoint_update(
        self, req: admin_pb2.ProposeEndpointUpdateRequest
    ) -> admin_pb2.ProposeEndpointUpdateResponse: ...
    async def propose_recovery(
        self, req: admin_pb2.ProposeRecoveryRequest
    ) -> admin_pb2.ProposeRecoveryResponse: ...
    async def approve_proposal(
        self, req: admin_pb2.ApproveProposalRequest
    ) -> admin_pb2.ApproveProposalResponse: ...
    async def reject_proposal(
        self, req: admin_pb2.RejectProposalRequest
    ) -> admin_pb2.RejectProposalResponse: ...
    async def list_proposals(
        self, req: admin_pb2.ListProposalsRequest
    ) -> admin_pb2.ListProposalsResponse: ...


async def _no_onboarding(req: Message) -> Any:
    raise ServiceError(
        "UNSUPPORTED",
        "partner proposals need the relay's access: section (identities and institution keys)",
    )


class CallGuard(Protocol):
    """Decides whether a call may proceed; raises a ServiceError (or the engine's
    RelayError) to refuse it. ``method`` is the full RPC name, e.g.
    ``/relay.v1.QueryService/GetOwnership``. Issue 5's identity and grant checks are one."""

    async def __call__(self, *, method: str, request: Message, context: Context) -> None: ...


QUERY_SERVICE = "relay.v1.QueryService"
ADMIN_SERVICE = "relay.v1.AdminService"

# Query RPCs that read records must cite a case (CaseRef docs in types.proto).
CASE_BOUND_METHODS = frozenset(
    f"/{QUERY_SERVICE}/{name}"
    for name in (
        "GetOwnership",
        "ListHoldings",
        "GetCreditStatus",
        "GetAccount",
        "GetHistory",
        "GetState",
    )
)


def check_case(method: str, request: Message) -> None:
    """Refuse a case-bound query without a usable CaseRef: CASE_REQUIRED when absent,
    CASE_INVALID when court, case number or purpose is missing. The case number's format
    and the court's grants are checked by issue 5's guard."""
    if method not in CASE_BOUND_METHODS:
        return
    if not request.HasField("case_ref"):
        raise ServiceError(
            "CASE_REQUIRED", "every query must cite its case (case_ref)", field="case_ref"
        )
    case = request.case_ref  # type: ignore[attr-defined]
    for name in ("court", "case_number"):
        value = getattr(case, name)
        if not value.strip():
            raise ServiceError(
                "CASE_INVALID", f"case_ref.{name} is empty", field=f"case_ref.{name}"
            )
        if len(value) > 128:
            raise ServiceError(
                "CASE_INVALID",
                f"case_ref.{name} is longer than 128 characters",
                field=f"case_ref.{name}",
            )
    purposes = types_pb2.CasePurpose.DESCRIPTOR.values_by_number
    if case.purpose == types_pb2.CASE_PURPOSE_UNSPECIFIED or case.purpose not in purposes:
        raise ServiceError("CASE_INVALID", "case_ref.purpose must be set", field="case_ref.purpose")


async def default_guard(*, method: str, request: Message, context: Context) -> None:
    """The guard until issue 5: only the case-reference check."""
    check_case(method, request)


class _Base:
    def __init__(self, *, guard: CallGuard, deadline_s: float | None) -> None:
        self._guard = guard
        self._deadline_s = deadline_s

    def _timeout_error(self) -> ServiceError:
        return ServiceError(
            "ADAPTER_UNAVAILABLE",
            f"the query did not finish within the relay's query deadline of "
            f"{self._deadline_s:g} s; a partner adapter is slow or unreachable, retry later",
        )

    async def _unary(
        self,
        method: str,
        call: Callable[[Req], Awaitable[Resp]],
        request: Req,
        context: Context,
    ) -> Resp:
        try:
            await self._guard(method=method, request=request, context=context)
            if self._deadline_s is None:
                return await call(request)
            try:
                async with asyncio.timeout(self._deadline_s):
                    return await call(request)
            except TimeoutError:
                raise self._timeout_error() from None
        except asyncio.CancelledError:
            raise
        except Exception as e:
            await abort(context, status_for_exception(e, method=method))

    async def _stream(
        self,
        method: str,
        call: Callable[[Req], AsyncIterator[Resp]],
        request: Req,
        context: Context,
    ) -> AsyncIterator[Resp]:
        try:
            await self._guard(method=method, request=request, context=context)
            loop = asyncio.get_running_loop()
            end = None if self._deadline_s is None else loop.time() + self._deadline_s
            iterator = call(request).__aiter__()
            while True:
                try:
                    if end is None:
                        item = await iterator.__anext__()
                    else:
                        async with asyncio.timeout_at(end):
                            item = await iterator.__anext__()
                except StopAsyncIteration:
                    return
                except TimeoutError:
                    raise self._timeout_error() from None
                yield item
        except asyncio.CancelledError:
            raise
        except Exception as e:
            await abort(context, status_for_exception(e, method=method))


class QueryServicer(_Base, query_pb2_grpc.QueryServiceServicer):
    """relay.v1.QueryService over the engine."""

    def __init__(
        self,
        backend: QueryBackend,
        *,
        guard: CallGuard = default_guard,
        deadline_s: float | None = None,
    ) -> None:
        super().__init__(guard=guard, deadline_s=deadline_s)
        self._b = backend

    async def GetOwnership(
        self, request: query_pb2.GetOwnershipRequest, context: Context
    ) -> query_pb2.OwnershipAnswer:
        return await self._unary(
            f"/{QUERY_SERVICE}/GetOwnership", self._b.get_ownership, request, context
        )

    async def ListHoldings(
        self, request: query_pb2.ListHoldingsRequest, context: Context
    ) -> AsyncIterator[query_pb2.HoldingsAnswer]:
        async for answer in self._stream(
            f"/{QUERY_SERVICE}/ListHoldings", self._b.list_holdings, request, context
        ):
            yield answer

    async def GetCreditStatus(
        self, request: query_pb2.GetCreditStatusRequest, context: Context
    ) -> query_pb2.CreditAnswer:
        return await self._unary(
            f"/{QUERY_SERVICE}/GetCreditStatus", self._b.get_credit_status, request, context
        )

    async def GetAccount(
        self, request: query_pb2.GetAccountRequest, context: Context
    ) -> query_pb2.AccountAnswer:
        return await self._unary(
            f"/{QUERY_SERVICE}/GetAccount", self._b.get_account, request, context
        )

    async def GetHistory(
        self, request: query_pb2.GetHistoryRequest, context: Context
    ) -> query_pb2.HistoryAnswer:
        return await self._unary(
            f"/{QUERY_SERVICE}/GetHistory", self._b.get_history, request, context
        )

    async def GetState(
        self, request: query_pb2.GetStateRequest, context: Context
    ) -> query_pb2.StateAnswer:
        return await self._unary(f"/{QUERY_SERVICE}/GetState", self._b.get_state, request, context)

    async def ListChains(
        self, request: query_pb2.ListChainsRequest, context: Context
    ) -> query_pb2.ListChainsResponse:
        return await self._unary(
            f"/{QUERY_SERVICE}/ListChains", self._b.list_chains, request, context
        )

    async def GetChain(
        self, request: query_pb2.GetChainRequest, context: Context
    ) -> query_pb2.GetChainResponse:
        return await self._unary(f"/{QUERY_SERVICE}/GetChain", self._b.get_chain, request, context)


class AdminServicer(_Base, admin_pb2_grpc.AdminServiceServicer):
    """relay.v1.AdminService over the engine. Who may call it is issue 5's guard."""

    def __init__(
        self,
        backend: AdminBackend,
        *,
        guard: CallGuard = default_guard,
        deadline_s: float | None = None,
        onboarding: OnboardingBackend | None = None,
    ) -> None:
        super().__init__(guard=guard, deadline_s=deadline_s)
        self._b = backend
        self._o = onboarding

    def _onboarding(self, name: str) -> Any:
        return _no_onboarding if self._o is None else getattr(self._o, name)

    async def ProposeChain(
        self, request: admin_pb2.ProposeChainRequest, context: Context
    ) -> admin_pb2.ProposeChainResponse:
        return await self._unary(
            f"/{ADMIN_SERVICE}/ProposeChain", self._onboarding("propose_chain"), request, context
        )

    async def ProposeEndpointUpdate(
        self, request: admin_pb2.ProposeEndpointUpdateRequest, context: Context
    ) -> admin_pb2.ProposeEndpointUpdateResponse:
        return await self._unary(
            f"/{ADMIN_SERVICE}/ProposeEndpointUpdate",
            self._onboarding("propose_endpoint_update"),
            request,
            context,
        )

    async def ProposeRecovery(
        self, request: admin_pb2.ProposeRecoveryRequest, context: Context
    ) -> admin_pb2.ProposeRecoveryResponse:
        return await self._unary(
            f"/{ADMIN_SERVICE}/ProposeRecovery",
            self._onboarding("propose_recovery"),
            request,
            context,
        )

    async def ApproveProposal(
        self, request: admin_pb2.ApproveProposalRequest, context: Context
    ) -> admin_pb2.ApproveProposalResponse:
        return await self._unary(
            f"/{ADMIN_SERVICE}/ApproveProposal",
            self._onboarding("approve_proposal"),
            request,
            context,
        )

    async def RejectProposal(
        self, request: admin_pb2.RejectProposalRequest, context: Context
    ) -> admin_pb2.RejectProposalResponse:
        return await self._unary(
            f"/{ADMIN_SERVICE}/RejectProposal",
            self._onboarding("reject_proposal"),
            request,
            context,
        )

    async def ListProposals(
        self, request: admin_pb2.ListProposalsRequest, context: Context
    ) -> admin_pb2.ListProposalsResponse:
        return await self._unary(
            f"/{ADMIN_SERVICE}/ListProposals", self._onboarding("list_proposals"), request, context
        )

    async def RegisterChain(
        self, request: admin_pb2.RegisterChainRequest, context: Context
    ) -> admin_pb2.RegisterChainResponse:
        return await self._unary(
            f"/{ADMIN_SERVICE}/RegisterChain", self._b.register_chain, request, context
        )

    async def FreezeChain(
        self, request: admin_pb2.FreezeChainRequest, context: Context
    ) -> admin_pb2.FreezeChainResponse:
        return await self._unary(
            f"/{ADMIN_SERVICE}/FreezeChain", self._b.freeze_chain, request, context
        )

    async def RecoverChain(
        self, request: admin_pb2.RecoverChainRequest, context: Context
    ) -> admin_pb2.RecoverChainResponse:
        return await self._unary(
            f"/{ADMIN_SERVICE}/RecoverChain", self._b.recover_chain, request, context
        )

    async def UpdateAdapterEndpoint(
        self, request: admin_pb2.UpdateAdapterEndpointRequest, context: Context
    ) -> admin_pb2.UpdateAdapterEndpointResponse:
        return await self._unary(
            f"/{ADMIN_SERVICE}/UpdateAdapterEndpoint",
            self._b.update_adapter_endpoint,
            request,
            context,
        )

    async def ListChains(
        self, request: admin_pb2.AdminListChainsRequest, context: Context
    ) -> admin_pb2.AdminListChainsResponse:
        return await self._unary(
            f"/{ADMIN_SERVICE}/ListChains", self._b.admin_list_chains, request, context
        )
