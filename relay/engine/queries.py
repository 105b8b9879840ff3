"""Query planning and verification: from a court's uniform question to verified records
with evidence (proto/relay/v1/query.proto).

Planning: GetOwnership, GetAccount and GetHistory go to the chain whose descriptor lists the
asset's registry code; GetState to the named chain; ListHoldings to every chain holding a
requested asset kind and GetCreditStatus to every credit chain, one answer per chain, a
failing chain reported with its reason while the others still answer. Every record query
must carry a well-formed CaseRef.

Checking an adapter's answer (``QueryResult``), in this order: the key is exactly the
RecordKey the relay derived from the question (KEY_MISMATCH); the value decodes canonically
under record schema 1 (MALFORMED_INPUT) and describes what the key names (RECORD_INVALID);
the height is the one asked, or not below the relay's trusted height (STALE_HEIGHT); the
header at that height is verified, on demand if needed (HEADER_UNVERIFIED ...); the proof
verifies against that header's state root under the chain's pinned spec: membership when a
value is claimed, non-membership otherwise (PROOF_INVALID, ROOT_MISMATCH, VALUE_MISMATCH,
KEY_ABSENT, KEY_PRESENT ...). "No record" is only answered with a verified non-membership
proof (OUTCOME_NONE_PROVEN); a chain whose spec cannot prove absence answers
OUTCOME_UNPROVEN. Every proven answer carries signed evidence.

When a query names no height, the adapter answers at its newest height; a height above the
relay's trusted one is verified on demand (if enabled), one below it is STALE_HEIGHT. A
requested ``at_height`` outside [anchor, partner head] is HEIGHT_OUT_OF_RANGE.
"""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Final, TypeVar

from google.protobuf.message import Message

from relay.engine.errors import RelayError, from_verification
from relay.engine.evidence import EvidenceBuilder
from relay.engine.settings import EngineSettings
from relay.engine.sync import ChainRegistry, ChainRuntime
from relay.logs import chain_var
from relay.pb.relay.adapter.v1 import adapter_pb2 as apb
from relay.pb.relay.v1 import query_pb2 as q
from relay.pb.relay.v1 import types_pb2 as pb
from relay.verify import evidence as rules
from relay.verify import records
from relay.verify.errors import VerificationError
from relay.verify.hashing import SHA256, SM3, Hasher

log = logging.getLogger("relay.engine.queries")

T = TypeVar("T")

ACCOUNT_KINDS: Final = frozenset({pb.ASSET_KIND_BANK_ACCOUNT, pb.ASSET_KIND_SECURITIES_ACCOUNT})
MAX_REGISTRY_CHARS: Final = 64
MAX_ASSET_ID_CHARS: Final = 256
MAX_RAW_KEY_BYTES: Final = 4096
_CASE_NUMBER: Final = re.compile(r"[(（](\d{4})[)）](.+)号")
_CASE_TAIL: Final = re.compile(r"[^\d\s()（）号]{1,8}\d{1,12}")
_COURT: Final = re.compile(r"[^\s()（）]{1,16}")
# Defined values without UNSPECIFIED, resolved once (EnumTypeWrapper.values() builds a list).
_PURPOSES: Final = frozenset(pb.CasePurpose.values()) - {pb.CASE_PURPOSE_UNSPECIFIED}
_ASSET_KINDS: Final = frozenset(pb.AssetKind.values()) - {pb.ASSET_KIND_UNSPECIFIED}
_ID_TYPES: Final = frozenset(pb.IdType.values()) - {pb.ID_TYPE_UNSPECIFIED}


# ------------------------------------------------------------------------------ requests


def check_case(request: Message, *, field: str = "case_ref") -> pb.CaseRef:
    """The request's CaseRef, well-formed (CASE_REQUIRED / CASE_INVALID otherwise)."""
    if not request.HasField(field):
        raise RelayError(
            "CASE_REQUIRED",
            "every query must cite the case it is made for (case_ref is missing)",
            field=field,
        )
    case: pb.CaseRef = getattr(request, field)

    def invalid(what: str, sub: str) -> RelayError:
        return RelayError("CASE_INVALID", f"case_ref: {what}", field=f"{field}.{sub}")

    if _COURT.fullmatch(case.court) is None:
        raise invalid("court must be the court code, e.g. 京0105", "court")
    m = _CASE_NUMBER.fullmatch(case.case_number.strip())
    if m is None:
        raise invalid("case_number must look like (2026)京0105执1234号", "case_number")
    rest = m.group(2)
    if not rest.startswith(case.court) or _CASE_TAIL.fullmatch(rest[len(case.court) :]) is None:
        raise invalid(
            f"case_number {case.case_number!r} must carry the court code {case.court!r}, then "
            "the case type and serial number",
            "case_number",
        )
    if case.purpose not in _PURPOSES:
        raise invalid("purpose must be set", "purpose")
    if len(case.officer) > 64:
        raise invalid("officer is longer than 64 characters", "officer")
    return case


def check_asset(asset: pb.AssetRef, *, field: str, accounts: bool) -> None:
    """An AssetRef with a kind (an account kind iff ``accounts``), registry and id."""
    kind_ok = asset.kind in _ASSET_KINDS
    if not kind_ok or (asset.kind in ACCOUNT_KINDS) != accounts:
        want = "an account kind" if accounts else "an asset kind other than accounts"
        raise RelayError("INVALID_ARGUMENT", f"{field}.kind must be {want}", field=f"{field}.kind")
    if not asset.registry or len(asset.registry) > MAX_REGISTRY_CHARS:
        raise RelayError(
            "INVALID_ARGUMENT",
            f"{field}.registry must be 1 to {MAX_REGISTRY_CHARS} characters",
            field=f"{field}.registry",
        )
    if not asset.id or len(asset.id) > MAX_ASSET_ID_CHARS:
        raise RelayError(
            "INVALID_ARGUMENT",
            f"{field}.id must be 1 to {MAX_ASSET_ID_CHARS} characters",
            field=f"{field}.id",
        )


def check_party(party: pb.PartyRef, *, field: str = "party") -> None:
    if party.kind not in (pb.PARTY_KIND_PERSON, pb.PARTY_KIND_ORG):
        raise RelayError("INVALID_ARGUMENT", f"{field}.kind must be set", field=f"{field}.kind")
    if party.id_type not in _ID_TYPES:
        raise RelayError(
            "INVALID_ARGUMENT", f"{field}.id_type must be set", field=f"{field}.id_type"
        )
    normalised = records.normalise_id(party.id)
    if not normalised or len(normalised) > records.MAX_ID_LENGTH:
        raise RelayError(
            "INVALID_ARGUMENT",
            f"{field}.id must be 1 to {records.MAX_ID_LENGTH} characters",
            field=f"{field}.id",
        )


def party_hasher(spec: pb.PartyKeySpec) -> Hasher:
    if spec.hash_algorithm == pb.HASH_ALGORITHM_SHA256:
        return SHA256
    if spec.hash_algorithm == pb.HASH_ALGORITHM_SM3:
        return SM3
    raise ValueError("party key hash must be SHA256 or SM3")


def party_key_for(runtime: ChainRuntime, party: pb.PartyRef) -> bytes:
    """The party's key on this chain (PartyKeySpec)."""
    spec = runtime.descriptor.party_key
    try:
        return records.party_key(
            hasher=party_hasher(spec), salt=spec.salt, id_type=party.id_type, party_id=party.id
        )
    except (VerificationError, ValueError) as e:
        raise RelayError(
            "INVALID_ARGUMENT",
            f"cannot derive the party key on chain {runtime.chain_id!r}: {e}",
            chain_id=runtime.chain_id,
            field="party",
        ) from e


# ------------------------------------------------------------------------------ results


@dataclass(frozen=True, slots=True)
class Proven:
    """A verified answer of one chain to one lookup."""

    outcome: int
    record: Message | None
    value: bytes | None
    evidence: pb.Evidence | None
    height: int
    detail: str = ""


@dataclass
class QueryStats:
    """Counters by query kind and outcome, and failures by reason (metrics-ready)."""

    answers: dict[tuple[str, str], int] = field(default_factory=dict)
    errors: dict[tuple[str, str], int] = field(default_factory=dict)

    def answered(self, kind: str, outcome: int) -> None:
        key = (kind, pb.Outcome.Name(pb.Outcome.ValueType(outcome)))
        self.answers[key] = self.answers.get(key, 0) + 1

    def failed(self, kind: str, reason: str) -> None:
        key = (kind, reason)
        self.errors[key] = self.errors.get(key, 0) + 1


class Queries:
    """The QueryService operations of the engine (record queries and GetState)."""

    def __init__(
        self,
        *,
        registry: ChainRegistry,
        evidence: EvidenceBuilder,
        settings: EngineSettings,
        clock: Callable[[], int],
    ) -> None:
        self.registry = registry
        self.evidence = evidence
        self.settings = settings
        self.clock = clock
        self.stats = QueryStats()

    # ---------------------------------------------------------------- checking results

    async def _bounded(self, runtime: ChainRuntime, work: Awaitable[T]) -> T:
        try:
            async with asyncio.timeout(self.settings.query_deadline_s):
                return await work
        except TimeoutError:
            raise RelayError(
                "ADAPTER_UNAVAILABLE",
                f"chain {runtime.chain_id!r} did not answer within the query deadline of "
                f"{self.settings.query_deadline_s:g} s; retry later",
                chain_id=runtime.chain_id,
                check="DEADLINE_EXCEEDED",
            ) from None

    async def _requested_height(self, runtime: ChainRuntime, at: int, *, now_ns: int) -> None:
        """Check a requested height is in [anchor, partner head] and verify its header."""
        view = await runtime.load_view()
        if at < view.anchor_height:
            raise RelayError(
                "HEIGHT_OUT_OF_RANGE",
                f"chain {runtime.chain_id!r}: height {at} is below the oldest state the relay "
                f"keeps (anchor {view.anchor_height})",
                chain_id=runtime.chain_id,
                height=at,
                field="at_height",
            )
        if at > view.latest.height:
            head = runtime.partner_head
            if head is None or at > head:
                head = await runtime.refresh_head()
            if at > head:
                raise RelayError(
                    "HEIGHT_OUT_OF_RANGE",
                    f"chain {runtime.chain_id!r}: height {at} is above the partner's head {head}",
                    chain_id=runtime.chain_id,
                    height=at,
                    field="at_height",
                )
        try:
            await runtime.ensure_verified(at, now_ns=now_ns)
        except RelayError as e:
            if e.reason != "STALE_HEIGHT":
                raise
            raise RelayError(
                "HEIGHT_OUT_OF_RANGE",
                e.message,
                chain_id=runtime.chain_id,
                height=at,
                field="at_height",
            ) from e

    async def check_result(
        self,
        runtime: ChainRuntime,
        result: apb.QueryResult,
        *,
        key: bytes,
        record_key: pb.RecordKey | None,
        asked_height: int | None,
        floor: int | None,
        now_ns: int,
        what: str,
    ) -> Proven:
        """Verify one adapter result (see the module docstring for the order of checks)."""
        chain = runtime.chain_id
        metrics = runtime.metrics
        if result.key != key:
            # A proof for another record is a refused proof too.
            if metrics is not None:
                metrics.record_proof_verification(chain, ok=False, reason="KEY_MISMATCH")
            raise RelayError(
                "KEY_MISMATCH",
                f"chain {chain!r}: the adapter answered the {what} query for another key",
                chain_id=chain,
                height=result.height,
                expected=key.hex(),
                calculated=bytes(result.key).hex(),
            )
        value = bytes(result.value) if result.HasField("value") else None
        record: Message | None = None
        field_name = None if record_key is None else record_key.WhichOneof("record")
        if value is not None and record_key is not None and field_name is not None:
            cls = records.RECORD_TYPES[field_name]
            try:
                record = records.decode(cls, value, what=f"{what} value")
            except VerificationError as e:
                # Whatever the decoder's own reason (a non-canonical encoding is a
                # mismatch to it), to the API these are bytes that do not decode.
                mapped = from_verification(e, chain_id=chain, height=result.height, what=what)
                too_big = mapped.reason == "LIMIT_EXCEEDED"
                error = RelayError(
                    "LIMIT_EXCEEDED" if too_big else "MALFORMED_INPUT",
                    mapped.message,
                    chain_id=chain,
                    height=mapped.height,
                )
                error.metadata.update(mapped.metadata)
                raise error from e
            try:
                rules.check_record(record_key, record)
            except VerificationError as e:
                raise from_verification(e, chain_id=chain, height=result.height, what=what) from e
        height = int(result.height)
        if asked_height is not None and height != asked_height:
            raise RelayError(
                "STALE_HEIGHT",
                f"chain {chain!r}: the adapter answered at height {height}, not at the height "
                f"{asked_height} asked",
                chain_id=chain,
                height=height,
                expected=str(asked_height),
                calculated=str(height),
            )
        if floor is not None and height < floor:
            raise RelayError(
                "STALE_HEIGHT",
                f"chain {chain!r}: the adapter answered at height {height}, older than the "
                f"relay's trusted height {floor}",
                chain_id=chain,
                height=height,
                expected=f">= {floor}",
                calculated=str(height),
            )
        state = await runtime.ensure_verified(height, now_ns=now_ns)
        spec = runtime.descriptor.proof_spec
        if value is None and not rules.can_prove_absence(spec):
            return Proven(
                pb.OUTCOME_UNPROVEN,
                None,
                None,
                None,
                height,
                f"chain {chain!r} cannot prove that no {what} record exists",
            )
        root = runtime.client.state_root(state)
        if root is None:
            raise RelayError(
                "PROOF_INVALID",
                f"chain {chain!r}: the verified header at height {height} carries no state root",
                chain_id=chain,
                height=height,
            )
        try:
            rules.verify_state_proof(
                spec=spec,
                proof_format=result.proof_format,
                root=root,
                key=key,
                value=value,
                proof=bytes(result.proof),
            )
        except VerificationError as e:
            error = from_verification(
                e, chain_id=chain, height=height, what=f"proof of the {what} record"
            )
            if metrics is not None:
                metrics.record_proof_verification(chain, ok=False, reason=error.reason)
            raise error from e
        if metrics is not None:
            metrics.record_proof_verification(chain, ok=True)
        evidence = await self.evidence.build(
            client=runtime.client,
            state=state,
            key=key,
            value=value,
            proof_format=result.proof_format,
            proof=bytes(result.proof),
            record_field=field_name,
            record=record,
            now_ns=now_ns,
        )
        runtime.note_evidence(height, now_ns=now_ns)
        outcome = pb.OUTCOME_FOUND if value is not None else pb.OUTCOME_NONE_PROVEN
        detail = "" if value is not None else f"no {what} record; its absence is proven"
        return Proven(outcome, record, value, evidence, height, detail)

    async def lookup(
        self,
        runtime: ChainRuntime,
        *,
        query: apb.DomainQuery,
        key: bytes,
        record_key: pb.RecordKey | None,
        at_height: int | None,
        what: str,
    ) -> Proven:
        """One verified lookup on one chain, within the query deadline."""
        chain_var.set(runtime.chain_id)  # log lines of this lookup name the chain

        async def work() -> Proven:
            now_ns = self.clock()
            view = await runtime.serving_view(now_ns=now_ns)
            if at_height is not None:
                await self._requested_height(runtime, at_height, now_ns=now_ns)
            result = await runtime.adapter.query(query, at_height)
            return await self.check_result(
                runtime,
                result,
                key=key,
                record_key=record_key,
                asked_height=at_height,
                floor=None if at_height is not None else view.latest.height,
                now_ns=now_ns,
                what=what,
            )

        return await self._bounded(runtime, work())

    async def _counted(self, kind: str, work: Awaitable[T]) -> T:
        try:
            return await work
        except RelayError as e:
            self.stats.failed(kind, e.reason)
            raise

    # ---------------------------------------------------------------- single-chain queries

    async def _asset_lookup(
        self,
        request: Message,
        *,
        field: str,
        accounts: bool,
        key_field: str,
        what: str,
    ) -> tuple[ChainRuntime, Proven]:
        check_case(request)
        asset: pb.AssetRef = getattr(request, field)
        if not request.HasField(field):
            raise RelayError("INVALID_ARGUMENT", f"{field} is required", field=field)
        check_asset(asset, field=field, accounts=accounts)
        runtime = self.registry.by_registry(asset.registry, field=f"{field}.registry")
        record_key = pb.RecordKey()
        getattr(record_key, key_field).CopyFrom(asset)
        domain_query = apb.DomainQuery()
        getattr(domain_query, key_field).CopyFrom(asset)
        at = getattr(request, "at_height") if request.HasField("at_height") else None  # noqa: B009
        proven = await self.lookup(
            runtime,
            query=domain_query,
            key=records.encode_key(record_key),
            record_key=record_key,
            at_height=at,
            what=what,
        )
        return runtime, proven

    async def get_ownership(self, req: q.GetOwnershipRequest) -> q.OwnershipAnswer:
        runtime, p = await self._counted(
            "ownership",
            self._asset_lookup(
                req, field="asset", accounts=False, key_field="ownership", what="ownership"
            ),
        )
        self.stats.answered("ownership", p.outcome)
        answer = q.OwnershipAnswer(
            chain_id=runtime.chain_id, outcome=pb.Outcome.ValueType(p.outcome), detail=p.detail
        )
        if isinstance(p.record, pb.OwnershipRecord):
            answer.record.CopyFrom(p.record)
        if p.evidence is not None:
            answer.evidence.CopyFrom(p.evidence)
        return answer

    async def get_account(self, req: q.GetAccountRequest) -> q.AccountAnswer:
        runtime, p = await self._counted(
            "account",
            self._asset_lookup(
                req, field="account", accounts=True, key_field="account", what="account"
            ),
        )
        self.stats.answered("account", p.outcome)
        answer = q.AccountAnswer(
            chain_id=runtime.chain_id, outcome=pb.Outcome.ValueType(p.outcome), detail=p.detail
        )
        if isinstance(p.record, pb.AccountRecord):
            answer.record.CopyFrom(p.record)
        if p.evidence is not None:
            answer.evidence.CopyFrom(p.evidence)
        return answer

    async def get_history(self, req: q.GetHistoryRequest) -> q.HistoryAnswer:
        accounts = req.HasField("asset") and req.asset.kind in ACCOUNT_KINDS
        runtime, p = await self._counted(
            "history",
            self._asset_lookup(
                req, field="asset", accounts=accounts, key_field="history", what="history"
            ),
        )
        self.stats.answered("history", p.outcome)
        answer = q.HistoryAnswer(
            chain_id=runtime.chain_id, outcome=pb.Outcome.ValueType(p.outcome), detail=p.detail
        )
        if isinstance(p.record, pb.AssetHistory):
            answer.entries.extend(p.record.entries)
        if p.evidence is not None:
            answer.evidence.CopyFrom(p.evidence)
        return answer

    async def get_state(self, req: q.GetStateRequest) -> q.StateAnswer:
        async def work() -> tuple[ChainRuntime, Proven]:
            check_case(req)
            if not req.chain_id:
                raise RelayError("INVALID_ARGUMENT", "chain_id is required", field="chain_id")
            if not 0 < len(req.key) <= MAX_RAW_KEY_BYTES:
                raise RelayError(
                    "INVALID_ARGUMENT",
                    f"key must be 1 to {MAX_RAW_KEY_BYTES} bytes",
                    field="key",
                )
            runtime = self.registry.get(req.chain_id)
            proven = await self.lookup(
                runtime,
                query=apb.DomainQuery(raw_key=req.key),
                key=bytes(req.key),
                record_key=None,
                at_height=req.at_height if req.HasField("at_height") else None,
                what="state",
            )
            return runtime, proven

        runtime, p = await self._counted("state", work())
        self.stats.answered("state", p.outcome)
        answer = q.StateAnswer(
            chain_id=runtime.chain_id, outcome=pb.Outcome.ValueType(p.outcome), detail=p.detail
        )
        if p.value is not None:
            answer.value = p.value
        if p.evidence is not None:
            answer.evidence.CopyFrom(p.evidence)
        return answer

    # ---------------------------------------------------------------- multi-chain queries

    async def get_credit_status(self, req: q.GetCreditStatusRequest) -> q.CreditAnswer:
        check_case(req)
        if not req.HasField("party"):
            raise RelayError("INVALID_ARGUMENT", "party is required", field="party")
        check_party(req.party)
        chains = [r for r in self.registry if r.descriptor.domain == pb.DOMAIN_CREDIT]
        findings = await asyncio.gather(*(self._credit_one(r, req.party) for r in chains))
        return q.CreditAnswer(findings=list(findings))

    async def _credit_one(self, runtime: ChainRuntime, party: pb.PartyRef) -> q.CreditFinding:
        finding = q.CreditFinding(chain_id=runtime.chain_id)
        try:
            pk = party_key_for(runtime, party)
            record_key = pb.RecordKey(credit_party_key=pk)
            p = await self.lookup(
                runtime,
                query=apb.DomainQuery(credit_party_key=pk),
                key=records.encode_key(record_key),
                record_key=record_key,
                at_height=None,
                what="credit",
            )
        except RelayError as e:
            self.stats.failed("credit", e.reason)
            finding.outcome = pb.OUTCOME_FAILED
            finding.failure.CopyFrom(e.to_failure())
            return finding
        except Exception as e:
            return self._internal_finding(finding, runtime, e)
        self.stats.answered("credit", p.outcome)
        finding.outcome = pb.Outcome.ValueType(p.outcome)
        finding.detail = p.detail
        if isinstance(p.record, pb.CreditRecord):
            finding.record.CopyFrom(p.record)
        if p.evidence is not None:
            finding.evidence.CopyFrom(p.evidence)
        return finding

    def _internal_finding(
        self, finding: q.CreditFinding, runtime: ChainRuntime, e: Exception
    ) -> q.CreditFinding:
        log.exception("credit query on chain %s failed unexpectedly", runtime.chain_id)
        finding.outcome = pb.OUTCOME_FAILED
        finding.failure.CopyFrom(
            RelayError(
                "INTERNAL", f"chain {runtime.chain_id!r}: internal error", chain_id=runtime.chain_id
            ).to_failure()
        )
        del e
        return finding

    def list_holdings(self, req: q.ListHoldingsRequest) -> AsyncIterator[q.HoldingsAnswer]:
        return self._list_holdings(req)

    async def _list_holdings(self, req: q.ListHoldingsRequest) -> AsyncIterator[q.HoldingsAnswer]:
        check_case(req)
        if not req.HasField("party"):
            raise RelayError("INVALID_ARGUMENT", "party is required", field="party")
        check_party(req.party)
        kinds = list(dict.fromkeys(req.kinds))
        for i, kind in enumerate(kinds):
            if kind not in _ASSET_KINDS:
                raise RelayError(
                    "INVALID_ARGUMENT", "kinds holds an unknown asset kind", field=f"kinds[{i}]"
                )
        wanted = set(kinds)
        chains = [
            r
            for r in self.registry
            if r.descriptor.asset_kinds and (not wanted or wanted & set(r.descriptor.asset_kinds))
        ]
        tasks = [asyncio.create_task(self._holdings_one(r, req.party, kinds)) for r in chains]
        try:
            for next_done in asyncio.as_completed(tasks):
                yield await next_done
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

    async def _holdings_one(
        self, runtime: ChainRuntime, party: pb.PartyRef, kinds: Sequence[int]
    ) -> q.HoldingsAnswer:
        answer = q.HoldingsAnswer(chain_id=runtime.chain_id, domain=runtime.descriptor.domain)
        chain_var.set(runtime.chain_id)  # this runs as the chain's own task
        try:
            await self._bounded(runtime, self._holdings(runtime, party, kinds, answer))
        except RelayError as e:
            self.stats.failed("holdings", e.reason)
            del answer.holdings[:]
            answer.ClearField("index_evidence")
            answer.outcome = pb.OUTCOME_FAILED
            answer.failure.CopyFrom(e.to_failure())
            answer.detail = e.message
            return answer
        except Exception:
            log.exception("holdings query on chain %s failed unexpectedly", runtime.chain_id)
            del answer.holdings[:]
            answer.ClearField("index_evidence")
            answer.outcome = pb.OUTCOME_FAILED
            answer.failure.CopyFrom(
                RelayError(
                    "INTERNAL",
                    f"chain {runtime.chain_id!r}: internal error",
                    chain_id=runtime.chain_id,
                ).to_failure()
            )
            return answer
        self.stats.answered("holdings", answer.outcome)
        return answer

    async def _holdings(
        self,
        runtime: ChainRuntime,
        party: pb.PartyRef,
        kinds: Sequence[int],
        answer: q.HoldingsAnswer,
    ) -> None:
        chain = runtime.chain_id
        now_ns = self.clock()
        view = await runtime.serving_view(now_ns=now_ns)
        pk = party_key_for(runtime, party)
        results = await runtime.adapter.list_by_party(pk, kinds, None)
        if not results:
            raise RelayError(
                "STREAM_TRUNCATED",
                f"chain {chain!r}: the adapter's ListByParty stream ended before the party's "
                "holdings index",
                chain_id=chain,
            )
        index_key = pb.RecordKey(holdings_party_key=pk)
        index = await self.check_result(
            runtime,
            results[0],
            key=records.encode_key(index_key),
            record_key=index_key,
            asked_height=None,
            floor=view.latest.height,
            now_ns=now_ns,
            what="holdings index",
        )
        if index.evidence is not None:
            answer.index_evidence.CopyFrom(index.evidence)
        if index.outcome != pb.OUTCOME_FOUND:
            if len(results) > 1:
                raise RelayError(
                    "KEY_MISMATCH",
                    f"chain {chain!r}: the adapter streamed assets for a party whose holdings "
                    "index it proves absent",
                    chain_id=chain,
                    height=index.height,
                )
            answer.outcome = pb.Outcome.ValueType(index.outcome)
            answer.detail = index.detail or "the party holds nothing on this chain (proven)"
            return
        assert isinstance(index.record, pb.PartyHoldings)
        # A chain answers only for the registries and asset kinds its descriptor makes it
        # authoritative for: otherwise one partner could assert holdings in another
        # partner's registry that the routing of GetOwnership would never ask it about.
        codes = set(runtime.descriptor.registry_codes)
        chain_kinds = set(runtime.descriptor.asset_kinds)
        for asset in index.record.assets:
            if asset.registry not in codes or (chain_kinds and asset.kind not in chain_kinds):
                raise RelayError(
                    "RECORD_INVALID",
                    f"chain {chain!r}: its holdings index lists {asset.registry}/{asset.id} "
                    f"({pb.AssetKind.Name(asset.kind)}), outside the registries and asset "
                    "kinds it is registered for",
                    chain_id=chain,
                    height=index.height,
                    field="holdings.assets",
                )
        wanted = set(kinds)
        listed = [a for a in index.record.assets if not wanted or a.kind in wanted]
        by_key: dict[bytes, apb.QueryResult] = {}
        for item in results[1:]:
            if bytes(item.key) in by_key:
                raise RelayError(
                    "KEY_MISMATCH",
                    f"chain {chain!r}: the adapter streamed one asset twice",
                    chain_id=chain,
                    calculated=bytes(item.key).hex(),
                )
            by_key[bytes(item.key)] = item
        expected: list[tuple[pb.AssetRef, pb.RecordKey]] = []
        for asset in listed:
            record_key = pb.RecordKey()
            if asset.kind in ACCOUNT_KINDS:
                record_key.account.CopyFrom(asset)
            else:
                record_key.ownership.CopyFrom(asset)
            expected.append((asset, record_key))
        keys = {records.encode_key(k) for _, k in expected}
        for extra in set(by_key) - keys:
            raise RelayError(
                "KEY_MISMATCH",
                f"chain {chain!r}: the adapter streamed an asset the proven holdings index does "
                "not list",
                chain_id=chain,
                height=index.height,
                calculated=extra.hex(),
            )
        for asset, record_key in expected:
            key = records.encode_key(record_key)
            found = by_key.get(key)
            if found is None:
                raise RelayError(
                    "STREAM_TRUNCATED",
                    f"chain {chain!r}: the adapter's ListByParty stream lacks the record of "
                    f"{asset.registry}/{asset.id}, which the proven holdings index lists",
                    chain_id=chain,
                    height=index.height,
                )
            proven = await self.check_result(
                runtime,
                found,
                key=key,
                record_key=record_key,
                asked_height=index.height,
                floor=None,
                now_ns=now_ns,
                what="holding",
            )
            if proven.outcome != pb.OUTCOME_FOUND or proven.evidence is None:
                raise RelayError(
                    "KEY_ABSENT",
                    f"chain {chain!r}: the holdings index lists {asset.registry}/{asset.id} "
                    "but its record is proven absent",
                    chain_id=chain,
                    height=index.height,
                )
            if not _names_party(proven.record, pk):
                raise RelayError(
                    "RECORD_INVALID",
                    f"chain {chain!r}: the holdings index lists {asset.registry}/{asset.id} "
                    "but its proven record does not name the party",
                    chain_id=chain,
                    height=index.height,
                )
            holding = answer.holdings.add(asset=asset, evidence=proven.evidence)
            if isinstance(proven.record, pb.OwnershipRecord):
                holding.ownership.CopyFrom(proven.record)
            elif isinstance(proven.record, pb.AccountRecord):
                holding.account.CopyFrom(proven.record)
        if answer.holdings:
            answer.outcome = pb.OUTCOME_FOUND
        else:
            answer.outcome = pb.OUTCOME_NONE_PROVEN
            answer.detail = "the party's proven holdings index lists no asset of these kinds"


def _names_party(record: object, party_key: bytes) -> bool:
    """Whether a proven ownership or account record names the party (by its chain key)."""
    if isinstance(record, pb.OwnershipRecord):
        return any(bytes(o.party.party_key) == party_key for o in record.owners)
    if isinstance(record, pb.AccountRecord):
        return bytes(record.holder.party_key) == party_key
    return False
