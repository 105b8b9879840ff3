"""Test partner chains and their adapters: the model a partner institution copies for its own.

Two kinds of partner chain hold record-schema-1 state (:mod:`relay.verify.records`) in a
sparse Merkle tree with ICS-23 proofs (:mod:`relay.testing.smt`):

* :class:`BftPartnerChain`, a CometBFT chain: every :meth:`~BftPartnerChain.commit` makes a
  block with really signed light blocks (:class:`relay.testing.tendermint.TestChain`) whose
  ``app_hash`` is the state root after the previous block, as in CometBFT (header H commits to
  the state after block H-1, so a write committed in block H is provable from height H+1);
* :class:`TlogPartnerRegistry`, a registry publishing a transparency log: every write is a
  log entry, every :meth:`~TlogPartnerRegistry.commit` a C2SP checkpoint signed by the log key
  and cosigned by witnesses, carrying the state map's root in a ``map-root`` extension line;
  its "height" is the tree size.

Both derive a party's holdings index (``PartyHoldings``) from the ownership and account
records written, as a registry's state machine would, so one proof shows a holdings list is
complete. :class:`PartnerAdapter` serves either kind as a ``relay.adapter.v1.AdapterService``
(in process, or over gRPC with :mod:`relay.testing.partner_server`); :class:`LyingAdapter`
wraps one and tells a chosen lie (:class:`Fault`), for tests that the relay catches each.
:func:`sample_data` fills a chain with realistic synthetic records (:mod:`relay.testing.samples`).

Test code: keys come from seed strings and are not secrets.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import enum
import hashlib
import json
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar, Protocol

from google.protobuf.duration_pb2 import Duration
from google.protobuf.message import Message

from relay.pb.relay.adapter.v1 import adapter_pb2 as apb
from relay.pb.relay.v1 import types_pb2 as pb
from relay.sdk.adapter import (
    CheckpointSource,
    HeaderSource,
    StateSource,
    optional_field,
    schema1_key,
    timestamp,
)
from relay.sdk.errors import (
    FailedPrecondition,
    InvalidArgument,
    NotFound,
    Unimplemented,
)
from relay.testing import samples
from relay.testing.smt import SparseMerkleTree
from relay.testing.tendermint import (
    SECOND,
    TestChain,
    TestValidator,
    ed25519_key,
    light_block_json,
    make_validators,
    sm2_chain_params,
    sm2_key,
)
from relay.testing.tlog import NoteSigner, SimulatedLog, ed25519_signer, sm2_signer
from relay.verify import note as note_mod
from relay.verify import records
from relay.verify.errors import VerificationError
from relay.verify.hashing import SHA256, SM3, Hasher
from relay.verify.lightclient.cometbft_encoding import uvarint
from relay.verify.lightclient.cometbft_proto import encode_light_block_proto
from relay.verify.lightclient.cometbft_types import (
    DEFAULT_PARAMS,
    BlockID,
    ChainParams,
    Header,
    LightBlock,
)
from relay.verify.lightclient.tlog import MAP_ROOT_KEYWORD, TlogTrustConfig
from relay.verify.merkle import ics23
from relay.verify.merkle.rfc6962 import RFC6962_SHA256, RFC6962_SM3
from relay.verify.signatures import DEFAULT_SM2_SIGNER_ID

DAY_S = 86_400
ADAPTER_VERSION = "relay-testing-partner/1.0"

# Refusals (PartnerError, NotFound, InvalidArgument, Unimplemented, FailedPrecondition) are
# relay.sdk.errors, imported above and re-exported here for tests written against this module.

# --- who a chain is --------------------------------------------------------------------------


@dataclass(frozen=True)
class ChainProfile:
    """What a partner institution says about its chain in its descriptor."""

    domain: int
    display_name_zh: str
    display_name_en: str
    institution: str
    registry_codes: tuple[str, ...]
    asset_kinds: tuple[int, ...]


PROFILES: dict[int, ChainProfile] = {
    pb.DOMAIN_REAL_ESTATE: ChainProfile(
        pb.DOMAIN_REAL_ESTATE,
        "北京市朝阳区不动产登记链",
        "Beijing Chaoyang District Real Estate Registry Chain",
        samples.uscc("110105", 11_010_501, authority="1", category="1"),
        ("110105",),
        (pb.ASSET_KIND_REAL_ESTATE,),
    ),
    pb.DOMAIN_IP: ChainProfile(
        pb.DOMAIN_IP,
        "国家知识产权登记簿（专利、商标、著作权）",
        "National IP Register Log (patents, trademarks, copyrights)",
        samples.uscc("110108", 11_000_002, authority="1", category="1"),
        (samples.IP_REGISTRY, samples.COPYRIGHT_REGISTRY),
        (pb.ASSET_KIND_PATENT, pb.ASSET_KIND_TRADEMARK, pb.ASSET_KIND_COPYRIGHT),
    ),
    pb.DOMAIN_CREDIT: ChainProfile(
        pb.DOMAIN_CREDIT,
        "全国失信被执行人名单信息链",
        "National Dishonest Judgment Debtors Chain",
        samples.uscc("110101", 11_000_003, authority="1", category="1"),
        (),
        (),
    ),
    pb.DOMAIN_BANK: ChainProfile(
        pb.DOMAIN_BANK,
        "中国工商银行北京分行账户链",
        "ICBC Beijing Account Chain",
        samples.BANKS[0].uscc,
        (samples.BANKS[0].code,),
        (pb.ASSET_KIND_BANK_ACCOUNT,),
    ),
    pb.DOMAIN_JUDICIAL: ChainProfile(
        pb.DOMAIN_JUDICIAL,
        "人民法院司法区块链（中继审计检查点）",
        "Judicial Blockchain of the People's Courts (relay audit checkpoints)",
        samples.uscc("110000", 11_000_009, authority="1", category="1"),
        (),
        (),
    ),
}
"""Default descriptor contents per business domain (fictitious institutions)."""

_QUERY_CAPABILITIES: dict[int, tuple[int, ...]] = {
    pb.DOMAIN_REAL_ESTATE: (apb.CAPABILITY_QUERY_OWNERSHIP, apb.CAPABILITY_QUERY_HISTORY),
    pb.DOMAIN_IP: (apb.CAPABILITY_QUERY_OWNERSHIP, apb.CAPABILITY_QUERY_HISTORY),
    pb.DOMAIN_CREDIT: (apb.CAPABILITY_QUERY_CREDIT,),
    pb.DOMAIN_BANK: (apb.CAPABILITY_QUERY_ACCOUNT,),
}

_ACCOUNT_KINDS = frozenset({pb.ASSET_KIND_BANK_ACCOUNT, pb.ASSET_KIND_SECURITIES_ACCOUNT})

Write = tuple[bytes, bytes | None]
"""A primary state write: (key, value), value ``None`` for a deletion."""


def _hash_choice(name: str) -> tuple[Hasher, int, ics23.ProofSpec, int]:
    if name == "sha256":
        return SHA256, pb.HASH_ALGORITHM_SHA256, ics23.SMT_SPEC, pb.PROOF_SPEC_ICS23_SMT
    if name == "sm3":
        return SM3, pb.HASH_ALGORITHM_SM3, ics23.SMT_SM3_SPEC, pb.PROOF_SPEC_ICS23_SMT_SM3
    raise ValueError(f"hash must be 'sha256' or 'sm3', not {name!r}")


def _asset_key(asset: pb.AssetRef) -> bytes:
    if asset.kind in _ACCOUNT_KINDS:
        return records.account_key(asset)
    return records.ownership_key(asset)


# --- the state every partner chain keeps -----------------------------------------------------


class PartnerChain:
    """What both kinds of partner chain share: identity, party keys, record-schema-1 state
    with its derived holdings index, versions of that state by height, and queries.

    Subclasses define :attr:`height` (the newest height, or tree size), :meth:`state_at`
    (the state whose root the header or checkpoint at a height commits to) and
    :meth:`commit`. Writes (:meth:`put_record`, :meth:`put_raw`, :meth:`delete`) go to a
    working state and become part of the chain at the next :meth:`commit`.
    """

    client_type: ClassVar[int] = pb.CLIENT_TYPE_UNSPECIFIED

    def __init__(
        self,
        chain_id: str,
        *,
        domain: int,
        hash: str,
        party_salt: bytes | None,
        profile: ChainProfile | None,
        registry_codes: Sequence[str] | None,
        asset_kinds: Sequence[int] | None,
    ) -> None:
        if not 1 <= len(chain_id.encode()) <= 50:
            raise ValueError("chain id must be 1 to 50 bytes")
        self.chain_id = chain_id
        self.domain = domain
        self.profile = profile or PROFILES[domain]
        self.registry_codes = tuple(
            self.profile.registry_codes if registry_codes is None else registry_codes
        )
        self.asset_kinds = tuple(self.profile.asset_kinds if asset_kinds is None else asset_kinds)
        self.hash_name = hash
        self.hasher, self.hash_algorithm, self.proof_spec, self.proof_spec_enum = _hash_choice(hash)
        self.party_salt = (
            party_salt
            if party_salt is not None
            else hashlib.sha256(b"relay.testing party salt\n" + chain_id.encode()).digest()
        )
        self._working = SparseMerkleTree(self.proof_spec)
        self._pending: list[Write] = []
        # Derived holdings index of the working state: asset key -> holders, party -> assets.
        self._holders: dict[bytes, tuple[bytes, ...]] = {}
        self._holdings: dict[bytes, list[pb.AssetRef]] = {}
        self.listeners: list[Callable[[int, int, list[Write]], None]] = []
        """Called after each commit with (height, time, primary writes); used to persist."""
        self.stalled = False
        """Fault switch: :meth:`commit` makes nothing and the head stays where it is."""
        self.bad_proofs = False
        """Fault switch: every proof the chain answers with has one byte changed."""

    # --- identity ---

    def party_key(self, id_type: int, party_id: str) -> bytes:
        """This chain's key of a party (``PartyKeySpec`` derivation with the chain's salt)."""
        return records.party_key(
            hasher=self.hasher, salt=self.party_salt, id_type=id_type, party_id=party_id
        )

    def party_key_of(self, party: samples.Party | pb.PartyRef) -> bytes:
        return self.party_key(int(party.id_type), party.id)

    def party_key_spec(self) -> pb.PartyKeySpec:
        return pb.PartyKeySpec(hash_algorithm=self.hash_algorithm, salt=self.party_salt)  # type: ignore[arg-type]

    # --- writes ---

    def put_record(self, key: pb.RecordKey, record: Message) -> None:
        """Write a schema-1 record under its RecordKey (canonical encodings of both)."""
        self.put_raw(records.encode_key(key), record.SerializeToString(deterministic=True))

    def put_raw(self, key: bytes, value: bytes) -> None:
        """Write raw bytes. Ownership and account records also update the holders'
        holdings indexes; holdings keys are maintained by the chain and cannot be written."""
        self._apply(bytes(key), bytes(value))
        self._pending.append((bytes(key), bytes(value)))

    def delete(self, key: bytes) -> None:
        """Remove a key (and the asset from its holders' indexes)."""
        self._apply(bytes(key), None)
        self._pending.append((bytes(key), None))

    def _apply(self, key: bytes, value: bytes | None) -> None:
        if not key or value == b"":
            raise ValueError("state keys and values must not be empty (ICS-23 proves neither)")
        record_key: pb.RecordKey | None = None
        try:
            record_key = records.decode(pb.RecordKey, key, what="record key", max_bytes=4096)
        except VerificationError:
            record_key = None  # a raw, non-schema key (GetState)
        field = record_key.WhichOneof("record") if record_key is not None else None
        if field == "holdings_party_key":
            raise ValueError("holdings indexes are derived from records, not written")
        if field in ("ownership", "account") and record_key is not None:
            asset = getattr(record_key, field)
            holders: tuple[bytes, ...] = ()
            record: Message | None = None
            if value is not None:
                try:
                    _, record = records.decode_for_key(key, value)
                except VerificationError:
                    record = None  # a malformed record (for relay tests) holds nothing
                if isinstance(record, pb.OwnershipRecord):
                    holders = tuple(o.party.party_key for o in record.owners if o.party.party_key)
                elif isinstance(record, pb.AccountRecord) and record.holder.party_key:
                    holders = (record.holder.party_key,)
            self._reindex(key, asset, holders)
        if value is None:
            self._working.delete(key)
        else:
            self._working.set(key, value)

    def _reindex(self, key: bytes, asset: pb.AssetRef, holders: tuple[bytes, ...]) -> None:
        before = self._holders.get(key, ())
        changed: list[bytes] = []
        for party in before:
            if party not in holders:
                self._holdings[party] = [a for a in self._holdings.get(party, []) if a != asset]
                changed.append(party)
        for party in dict.fromkeys(holders):
            if party not in before:
                held = pb.AssetRef()
                held.CopyFrom(asset)
                self._holdings.setdefault(party, []).append(held)
                changed.append(party)
        if holders:
            self._holders[key] = holders
        else:
            self._holders.pop(key, None)
        for party in changed:
            assets = self._holdings.get(party, [])
            hkey = records.holdings_key(party)
            if assets:
                index = pb.PartyHoldings(party_key=party, assets=assets)
                self._working.set(hkey, index.SerializeToString(deterministic=True))
            else:
                self._holdings.pop(party, None)
                self._working.delete(hkey)

    def _take_pending(self) -> list[Write]:
        writes, self._pending = self._pending, []
        return writes

    def _notify(self, height: int, time_value: int, writes: list[Write]) -> None:
        for listener in self.listeners:
            listener(height, time_value, writes)

    # --- versions (subclasses) ---

    @property
    def height(self) -> int:
        raise NotImplementedError

    @property
    def latest_time_ns(self) -> int:
        raise NotImplementedError

    def state_at(self, height: int) -> SparseMerkleTree:
        """The state whose root the header (checkpoint) at ``height`` commits to."""
        raise NotImplementedError

    def commit(self) -> int:
        raise NotImplementedError

    def heights(self) -> Sequence[int]:
        """Heights (tree sizes) the chain can answer queries at, ascending."""
        raise NotImplementedError

    @property
    def working_state(self) -> SparseMerkleTree:
        """The state including writes not yet committed (a copy)."""
        return self._working.copy()

    # --- queries ---

    def _height_for(self, height: int | None) -> int:
        if height is None:
            if self.height < 1:
                raise NotFound(f"chain {self.chain_id} has no block yet")
            return self.height
        if height < 1 or height > self.height:
            raise NotFound(f"chain {self.chain_id} has no height {height} (head {self.height})")
        return height

    def query(self, key: bytes, height: int | None = None) -> apb.QueryResult:
        """Look ``key`` up at ``height`` (default: the head): its value, if any, and its
        membership or non-membership proof against the root committed at that height."""
        h = self._height_for(height)
        state = self.state_at(h)
        if len(state) == 0:
            raise FailedPrecondition(
                f"state of {self.chain_id} at height {h} is empty: ICS-23 cannot prove absence"
            )
        value, proof = state.lookup(key)
        if self.bad_proofs:
            proof = proof[:-1] + bytes([proof[-1] ^ 0x01])
        result = apb.QueryResult(key=key, proof=proof, proof_format=pb.PROOF_FORMAT_ICS23, height=h)
        if value is not None:
            result.value = value
        return result

    def domain_key(self, query: apb.DomainQuery) -> bytes:
        """The state key a uniform question names (record schema 1)."""
        return schema1_key(query)

    def list_by_party(
        self, party_key: bytes, kinds: Iterable[int] = (), height: int | None = None
    ) -> list[apb.QueryResult]:
        """The party's holdings index (present or proven absent), then one result per listed
        asset of the requested ``kinds`` (all when empty), all at one height."""
        if not party_key:
            raise InvalidArgument("party_key is empty")
        h = self._height_for(height)
        index = self.query(records.holdings_key(party_key), h)
        out = [index]
        if index.HasField("value"):
            wanted = set(kinds)
            holdings = pb.PartyHoldings()
            holdings.ParseFromString(index.value)
            for asset in holdings.assets:
                if not wanted or asset.kind in wanted:
                    out.append(self.query(_asset_key(asset), h))
        return out

    def capabilities(self) -> list[int]:
        caps = list(_QUERY_CAPABILITIES.get(self.domain, ()))
        return [*caps, apb.CAPABILITY_QUERY_RAW, apb.CAPABILITY_LIST_BY_PARTY]

    # --- descriptor ---

    def _descriptor(self, adapter: pb.AdapterEndpoint | None) -> pb.ChainDescriptor:
        d = pb.ChainDescriptor(
            chain_id=self.chain_id,
            institution=self.profile.institution,
            domain=self.domain,  # type: ignore[arg-type]
            display_name_zh=self.profile.display_name_zh,
            display_name_en=self.profile.display_name_en,
            proof_spec=self.proof_spec_enum,  # type: ignore[arg-type]
            record_schema_version=records.SCHEMA_VERSION,
            party_key=self.party_key_spec(),
            registry_codes=self.registry_codes,
            asset_kinds=self.asset_kinds,  # type: ignore[arg-type]
        )
        if adapter is not None:
            d.adapter.CopyFrom(adapter)
        return d


# --- a CometBFT partner chain ----------------------------------------------------------------


class _SignedChain(TestChain):
    """A :class:`TestChain` whose app hashes, block times and (optionally) parent of one height
    come from callbacks, so headers carry real state roots and real times."""

    __test__ = False

    def __init__(
        self,
        *,
        app_hash: Callable[[int], bytes],
        block_time: Callable[[int], int],
        parent: Callable[[int], BlockID | None] = lambda h: None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self._app_hash = app_hash
        self._block_time = block_time
        self._parent = parent

    def time_at(self, height: int) -> int:
        return self._block_time(height)

    def header(self, height: int, **overrides: Any) -> Header:
        if not overrides and height in self._headers:
            return self._headers[height]
        args: dict[str, Any] = {"app_hash": self._app_hash(height)}
        parent = self._parent(height)
        if parent is not None:
            args["last_block_id"] = parent
        args.update(overrides)
        header = super().header(height, **args)
        if not overrides:
            self._headers[height] = header
        return header


def _chain_params(hash: str, sig: str, sm2_signer_id: bytes) -> ChainParams:
    hasher = RFC6962_SM3 if hash == "sm3" else RFC6962_SHA256
    if sig == "sm2":
        return sm2_chain_params(signer_id=sm2_signer_id, hasher=hasher)
    if sig != "ed25519":
        raise ValueError(f"sig must be 'ed25519' or 'sm2', not {sig!r}")
    return DEFAULT_PARAMS if hash == "sha256" else ChainParams(hasher=hasher)


class BftPartnerChain(PartnerChain):
    """A CometBFT partner chain with real signed light blocks over real state roots.

    ``validators`` is a count (equal power, keys derived from the chain id) or explicit
    :class:`TestValidator` values; ``hash`` the header/Merkle hash (``"sha256"`` or
    ``"sm3"``, which also selects the SMT proof spec and the party-key hash) and ``sig`` the
    validator keys (``"ed25519"`` or ``"sm2"`` with ``sm2_signer_id``). Block times come from
    ``clock`` (ns since the epoch), strictly increasing, so a relay checking them against its
    own clock sees a live chain.

    Fault switches: :attr:`stalled`, :attr:`bad_proofs`, :meth:`equivocate`.
    """

    client_type = pb.CLIENT_TYPE_TENDERMINT

    def __init__(
        self,
        chain_id: str = "cn-bj-chaoyang-realestate",
        *,
        validators: int | Sequence[TestValidator] = 4,
        hash: str = "sha256",
        sig: str = "ed25519",
        sm2_signer_id: bytes = DEFAULT_SM2_SIGNER_ID,
        domain: int = pb.DOMAIN_REAL_ESTATE,
        party_salt: bytes | None = None,
        profile: ChainProfile | None = None,
        registry_codes: Sequence[str] | None = None,
        asset_kinds: Sequence[int] | None = None,
        clock: Callable[[], int] = time.time_ns,
        trusting_period_s: int = 14 * DAY_S,
        unbonding_period_s: int = 21 * DAY_S,
        max_clock_drift_s: int = 10,
    ) -> None:
        super().__init__(
            chain_id,
            domain=domain,
            hash=hash,
            party_salt=party_salt,
            profile=profile,
            registry_codes=registry_codes,
            asset_kinds=asset_kinds,
        )
        self.sig = sig
        self.sm2_signer_id = sm2_signer_id
        self.params = _chain_params(hash, sig, sm2_signer_id)
        self.clock = clock
        self.trusting_period_s = trusting_period_s
        self.unbonding_period_s = unbonding_period_s
        self.max_clock_drift_s = max_clock_drift_s
        if isinstance(validators, int):
            validators = self.make_validators(validators)
        self._states: list[SparseMerkleTree] = [self._working.copy()]  # [h] = after block h
        self._times: list[int] = [0]  # [h] = time of block h
        self._blocks: dict[int, LightBlock] = {}
        self._encoded: dict[int, bytes] = {}
        self._forks: dict[int, LightBlock] = {}
        self.chain = _SignedChain(
            app_hash=self._app_hash,
            block_time=self._time_of,
            validators=validators,
            chain_id=chain_id,
            params=self.params,
        )

    def make_validators(self, n: int, *, prefix: str | None = None) -> list[TestValidator]:
        """``n`` validators of power 10 with this chain's key type, keys from ``prefix``."""
        if self.sig == "sm2":
            kt = self.params.key_types[0]
            return make_validators(
                n, key=lambda s: sm2_key(s, key_type=kt), prefix=prefix or f"{self.chain_id}/val"
            )
        return make_validators(n, key=ed25519_key, prefix=prefix or f"{self.chain_id}/val")

    def _app_hash(self, height: int) -> bytes:
        return self._states[height - 1].root

    def _time_of(self, height: int) -> int:
        if 1 <= height < len(self._times):
            return self._times[height]
        # Heights not produced yet (only the next-validators lookup reaches them).
        return self._times[-1] + (height - len(self._times) + 1) * SECOND

    # --- blocks ---

    @property
    def height(self) -> int:
        return len(self._states) - 1

    @property
    def latest_time_ns(self) -> int:
        return self._times[-1]

    def time_at(self, height: int) -> int:
        self._check_height(height)
        return self._times[height]

    def heights(self) -> Sequence[int]:
        return range(1, self.height + 1)

    def commit(self, *, time_ns: int | None = None) -> int:
        """Make the next block holding the pending writes; return its height.

        Its header commits to the state *before* these writes (``app_hash`` of block H is the
        state after H-1); the writes are provable from height H+1 on. Writes made before the
        first block are the genesis state, provable from height 1. A stalled chain makes
        nothing and returns the current head.
        """
        if self.stalled:
            return self.height
        previous = self._times[-1]
        now = self.clock() if time_ns is None else time_ns
        block_time = max(now, previous + 1_000_000) if previous else now
        writes = self._take_pending()
        if not self.height:
            # Writes before the first block are the genesis state (CometBFT InitChain): the
            # first header's app hash already commits to them.
            self._states[0] = self._working.copy()
        self._states.append(self._working.copy())
        self._times.append(block_time)
        height = self.height
        self._notify(height, block_time, writes)
        return height

    def advance(self, blocks: int = 1) -> int:
        """Commit ``blocks`` blocks; return the new head."""
        for _ in range(blocks):
            self.commit()
        return self.height

    def _check_height(self, height: int) -> None:
        if not 1 <= height <= self.height:
            raise NotFound(f"chain {self.chain_id} has no height {height} (head {self.height})")

    def state_at(self, height: int) -> SparseMerkleTree:
        self._check_height(height)
        return self._states[height - 1]

    def header(self, height: int) -> Header:
        self._check_height(height)
        return self.chain.header(height)

    def light_block(self, height: int) -> LightBlock:
        """The light block served at ``height`` (a fork's, after :meth:`equivocate`)."""
        self._check_height(height)
        fork = self._forks.get(height)
        if fork is not None:
            return fork
        block = self._blocks.get(height)
        if block is None:
            block = self.chain.light_block(height)
            self._blocks[height] = block
        return block

    def light_block_bytes(self, height: int) -> bytes:
        """The protobuf ``tendermint.types.LightBlock`` of :meth:`light_block`."""
        if height in self._forks:
            return encode_light_block_proto(self.light_block(height))
        data = self._encoded.get(height)
        if data is None:
            data = encode_light_block_proto(self.light_block(height))
            self._encoded[height] = data
        return data

    def light_block_json(self, height: int) -> bytes:
        """The CometBFT RPC JSON of :meth:`light_block` (UTF-8)."""
        return json.dumps(light_block_json(self.light_block(height))).encode()

    def schedule_rotation(self, validators: int | Sequence[TestValidator]) -> int:
        """Replace the validator set from the earliest height whose predecessor's header is
        not yet made (head + 2); return that height. An int makes that many new validators."""
        at = self.height + 2
        if isinstance(validators, int):
            validators = self.make_validators(validators, prefix=f"{self.chain_id}/val@{at}")
        self.chain.rotate(at_height=at, validators=validators)
        return at

    def equivocate(
        self, height: int, *, signers: Iterable[bytes] | None = None, serve: bool = True
    ) -> LightBlock:
        """A second header at ``height`` (another app hash), signed by ``signers`` (default:
        every validator, so it is valid on its own): the evidence of a fork. With ``serve``
        the chain serves it at that height from now on (until :meth:`heal`)."""
        self._check_height(height)
        fork = self.chain.equivocation(height, signers=None if signers is None else list(signers))
        if serve:
            self._forks[height] = fork
        return fork

    def heal(self) -> None:
        """Serve honest light blocks again."""
        self._forks.clear()

    # --- descriptor ---

    def trust_options_params(self) -> dict[str, int]:
        return {
            "trusting_period_ns": self.trusting_period_s * SECOND,
            "max_clock_drift_ns": self.max_clock_drift_s * SECOND,
        }

    def descriptor(
        self, adapter: pb.AdapterEndpoint | None = None, *, anchor_height: int | None = None
    ) -> pb.ChainDescriptor:
        """The chain descriptor a partner proposes: identity, CometBFT client parameters with
        the light block at ``anchor_height`` (default: the head) as trust anchor, the SMT proof
        spec, record schema 1, the party-key spec and ``adapter``."""
        h = self.height if anchor_height is None else anchor_height
        self._check_height(h)
        d = self._descriptor(adapter)
        d.tendermint.CopyFrom(
            pb.TendermintClientParams(
                anchor=pb.TendermintAnchor(
                    light_block=self.light_block_bytes(h),
                    height=h,
                    header_hash=self.light_block(h).header.hash,
                ),
                trust_level=pb.Fraction(numerator=1, denominator=3),
                trusting_period=Duration(seconds=self.trusting_period_s),
                unbonding_period=Duration(seconds=self.unbonding_period_s),
                max_clock_drift=Duration(seconds=self.max_clock_drift_s),
                hash_algorithm=self.hash_algorithm,  # type: ignore[arg-type]
                signature_algorithm=(
                    pb.SIGNATURE_ALGORITHM_SM2
                    if self.sig == "sm2"
                    else pb.SIGNATURE_ALGORITHM_ED25519
                ),
                sm2_signer_id=self.sm2_signer_id.decode() if self.sig == "sm2" else "",
            )
        )
        return d

    def capabilities(self) -> list[int]:
        return [apb.CAPABILITY_LIGHT_BLOCKS, *super().capabilities()]


# --- a transparency-log registry -------------------------------------------------------------

_ENTRY_HEADER = b"relay.testing.map-write/v1\n"


def encode_entry(key: bytes, value: bytes | None) -> bytes:
    """A registry log entry recording one state write: ``"relay.testing.map-write/v1\\n"``,
    uvarint key length, key, then ``01`` uvarint value length, value (a write) or ``00`` (a
    deletion)."""
    body = _ENTRY_HEADER + uvarint(len(key)) + key
    if value is None:
        return body + b"\x00"
    return body + b"\x01" + uvarint(len(value)) + value


class RemoteWitness(Protocol):
    """A witness in another process (e.g. :class:`relay.sdk.witness.WitnessClient`)."""

    @property
    def name(self) -> str: ...

    @property
    def vkey(self) -> str: ...

    def verifier(self) -> note_mod.NoteVerifier: ...

    def cosign(
        self, checkpoint: bytes, *, size: int, proof: Callable[[int], list[bytes]]
    ) -> note_mod.NoteSignature | None: ...


class TlogPartnerRegistry(PartnerChain):
    """A registry that publishes its history as a transparency log and its current state as
    a map whose root each checkpoint carries (``map-root <base64>`` extension line).

    Every write is appended as a log entry (:func:`encode_entry`); :meth:`commit` publishes a
    checkpoint of the new tree size signed by the log key (``sig``: ``"ed25519"`` or
    ``"sm2"``) and cosigned by ``witnesses`` witness keys at ``clock()`` seconds. A relay
    trusting it needs ``quorum`` cosignatures. Heights are tree sizes; only published sizes
    answer queries and checkpoints.

    Fault switches: :attr:`stalled`, :attr:`bad_proofs`, :meth:`equivocate` (a split view).
    """

    client_type = pb.CLIENT_TYPE_TLOG

    def __init__(
        self,
        origin: str = "cnipa.example.cn/patent-register",
        *,
        chain_id: str = "cn-cnipa-patents",
        witnesses: int = 3,
        quorum: int = 2,
        hash: str = "sha256",
        sig: str = "ed25519",
        domain: int = pb.DOMAIN_IP,
        party_salt: bytes | None = None,
        profile: ChainProfile | None = None,
        registry_codes: Sequence[str] | None = None,
        asset_kinds: Sequence[int] | None = None,
        clock: Callable[[], float] = time.time,
        trusting_period_s: int = 14 * DAY_S,
        remote_witnesses: Sequence[RemoteWitness] = (),
    ) -> None:
        super().__init__(
            chain_id,
            domain=domain,
            hash=hash,
            party_salt=party_salt,
            profile=profile,
            registry_codes=registry_codes,
            asset_kinds=asset_kinds,
        )
        if sig not in ("ed25519", "sm2"):
            raise ValueError(f"sig must be 'ed25519' or 'sm2', not {sig!r}")
        if remote_witnesses:
            witnesses = 0  # the witnesses are other processes holding their own keys
        if not 0 <= quorum <= witnesses + len(remote_witnesses):
            raise ValueError("quorum must be between 0 and the number of witnesses")
        self.remote_witnesses = tuple(remote_witnesses)
        self.origin = origin
        self.sig = sig
        self.quorum = quorum
        self.clock = clock
        self.trusting_period_s = trusting_period_s
        make = sm2_signer if sig == "sm2" else ed25519_signer
        self.log_signer: NoteSigner = make(origin, seed=f"{origin}/log")
        self.witness_signers: tuple[NoteSigner, ...] = tuple(
            make(f"witness-{i + 1}.example.cn", seed=f"{origin}/witness-{i + 1}", cosigner=True)
            for i in range(witnesses)
        )
        self.log = SimulatedLog(
            origin,
            self.log_signer,
            self.witness_signers,
            RFC6962_SM3 if hash == "sm3" else RFC6962_SHA256,
        )
        self.witness_keys: tuple[RemoteWitness | NoteSigner, ...] = (
            self.remote_witnesses or self.witness_signers
        )
        """The witnesses a relay trusts: local signers, or the remote witnesses."""
        self._published: dict[int, tuple[bytes, SparseMerkleTree, int]] = {}
        self._sizes: list[int] = []
        self._split: dict[int, bytes] = {}

    @property
    def height(self) -> int:
        """The newest published tree size (0 before the first checkpoint)."""
        return self._sizes[-1] if self._sizes else 0

    @property
    def latest_time_ns(self) -> int:
        return self._published[self.height][2] * SECOND if self._sizes else 0

    def heights(self) -> Sequence[int]:
        return tuple(self._sizes)

    def _check_size(self, size: int) -> None:
        if size not in self._published:
            raise NotFound(f"log {self.origin} has no checkpoint of size {size}")

    def _height_for(self, height: int | None) -> int:
        h = super()._height_for(height)
        self._check_size(h)
        return h

    def state_at(self, height: int) -> SparseMerkleTree:
        self._check_size(height)
        return self._published[height][1]

    def map_root_line(self, root: bytes) -> str:
        return f"{MAP_ROOT_KEYWORD} {base64.b64encode(root).decode()}"

    def commit(self, *, timestamp: int | None = None, note: bytes | None = None) -> int:
        """Append the pending writes as log entries and publish a checkpoint of the new size
        (cosigned at ``timestamp``, default ``clock()``); return the size. Without pending
        writes (or when stalled) nothing is published and the current size is returned.

        With remote witnesses each is asked to cosign (those that do not answer are left
        out); ``note`` replays a checkpoint published before (a restart), verbatim."""
        if self.stalled or not self._pending:
            return self.height
        writes = self._take_pending()
        self.log.append(*(encode_entry(k, v) for k, v in writes))
        stamp = int(self.clock()) if timestamp is None else timestamp
        stamp = max(stamp, self._published[self.height][2]) if self._sizes else stamp
        state = self._working.copy()
        size = self.log.size
        if note is None:
            note = self.log.checkpoint(
                size, timestamp=stamp, extensions=[self.map_root_line(state.root)]
            )
            note = self._cosign_remote(note, size)
        self._published[size] = (note, state, stamp)
        self._sizes.append(size)
        self._notify(size, stamp, writes)
        return size

    def _cosign_remote(self, signed: bytes, size: int) -> bytes:
        lines = []
        for witness in self.remote_witnesses:
            sig = witness.cosign(
                signed, size=size, proof=lambda old: self.log.consistency_proof(old, size)
            )
            if sig is not None:
                lines.append(sig.line())
        return signed + b"".join(lines)

    def checkpoint(self, size: int | None = None) -> bytes:
        """The signed checkpoint of ``size`` (default: the newest), as published."""
        s = self.height if size is None else size
        self._check_size(s)
        return self._split.get(s) or self._published[s][0]

    def consistency_proof(self, size1: int, size2: int) -> list[bytes]:
        """RFC 6962 consistency proof between two tree sizes (``size1 <= size2 <= head``)."""
        if not 0 <= size1 <= size2:
            raise InvalidArgument(f"need 0 <= size1 <= size2, got {size1}, {size2}")
        if size2 > self.log.size:
            raise NotFound(f"log {self.origin} has no tree of size {size2}")
        return self.log.consistency_proof(size1, size2)

    def inclusion_proof(self, index: int, size: int | None = None) -> list[bytes]:
        """RFC 6962 inclusion proof of entry ``index`` in the tree of ``size``."""
        return self.log.inclusion_proof(index, size)

    def equivocate(self, size: int | None = None, *, serve: bool = True) -> bytes:
        """A second checkpoint for ``size`` (default: the newest) over a different last entry,
        signed by the log key and cosigned by every witness: a split view. With ``serve`` the
        registry answers it for that size from now on (until :meth:`heal`)."""
        s = self.height if size is None else size
        self._check_size(s)
        if s == 0:
            raise ValueError("an empty log has no other version")
        fork = self.log.fork(s - 1)
        fork.append(encode_entry(b"split-view", self.chain_id.encode()))
        stamp = self._published[s][2]
        note = fork.checkpoint(
            s, timestamp=stamp, extensions=[self.map_root_line(self._published[s][1].root)]
        )
        if serve:
            self._split[s] = note
        return note

    def heal(self) -> None:
        self._split.clear()

    def trust_config(self, *, max_clock_drift: int = 300) -> TlogTrustConfig:
        """The light-client trust configuration a relay derives from the descriptor."""
        return TlogTrustConfig(
            origin=self.origin,
            log_key=self.log_signer.verifier(),
            hasher=self.log.hasher,
            witnesses=tuple(w.verifier() for w in self.witness_keys),
            quorum=self.quorum,
            max_clock_drift=max_clock_drift,
        )

    def descriptor(
        self, adapter: pb.AdapterEndpoint | None = None, *, anchor_size: int | None = None
    ) -> pb.ChainDescriptor:
        """The chain descriptor: identity, log parameters (origin, log and witness verifier
        keys, k-of-n quorum, the checkpoint of ``anchor_size`` — default the newest — as
        anchor), the SMT proof spec of the state map, schema 1, party-key spec, ``adapter``."""
        size = self.height if anchor_size is None else anchor_size
        self._check_size(size)
        d = self._descriptor(adapter)
        d.tlog.CopyFrom(
            pb.TlogClientParams(
                origin=self.origin,
                log_verifier_key=self.log_signer.vkey,
                hash_algorithm=self.hash_algorithm,  # type: ignore[arg-type]
                witness_verifier_keys=[w.vkey for w in self.witness_keys],
                witness_threshold=self.quorum,
                anchor=pb.TlogAnchor(checkpoint=self._published[size][0]),
                trusting_period=Duration(seconds=self.trusting_period_s),
            )
        )
        return d

    def capabilities(self) -> list[int]:
        return [
            apb.CAPABILITY_CHECKPOINTS,
            apb.CAPABILITY_CONSISTENCY_PROOFS,
            *super().capabilities(),
        ]


# --- sample data -----------------------------------------------------------------------------


def sample_data(
    chain: PartnerChain,
    *,
    people: samples.Population | None = None,
    scale: int = 1,
    commit: bool = True,
) -> samples.SampleSet:
    """Fill ``chain`` with realistic records for its domain and registry codes (see
    :mod:`relay.testing.samples`), keyed with the chain's party keys. With ``commit`` the
    records are committed in two batches so that the chain's head proves them all and an
    older height proves the first half (a BFT chain makes one more block, whose app hash
    covers the second batch)."""
    generated = samples.generate(
        domain=chain.domain,
        registry_codes=chain.registry_codes or ("CREDIT",),
        party_key=chain.party_key,
        people=people,
        scale=scale,
    )
    half = len(generated.records) // 2
    for i, (key, record) in enumerate(generated.records):
        assert isinstance(record, Message)
        chain.put_record(key, record)
        if commit and i + 1 == half:
            chain.commit()  # two batches: a history to prove older heights against
    if commit:
        chain.commit()
        if isinstance(chain, BftPartnerChain):
            chain.commit()
    return generated


# --- adapters --------------------------------------------------------------------------------


class PartnerAdapter(HeaderSource, CheckpointSource, StateSource):
    """The ``relay.adapter.v1.AdapterService`` of one partner chain (either kind).

    Built on :mod:`relay.sdk.adapter` (the worked example of a partner adapter): the RPC
    glue is the SDK's, each RPC delegates to a plain method returning the answer
    (:meth:`describe`, :meth:`light_blocks`, :meth:`query`...), which is what
    :class:`LyingAdapter` alters. Refusals follow the adapter contract: NOT_FOUND for
    heights the chain does not have, UNIMPLEMENTED for the other kind's calls,
    INVALID_ARGUMENT for malformed requests.
    """

    def __init__(self, chain: BftPartnerChain | TlogPartnerRegistry) -> None:
        self.chain = chain

    # --- answers ---

    def describe(self) -> apb.DescribeResponse:
        return apb.DescribeResponse(
            chain_id=self.chain.chain_id,
            client_type=self.chain.client_type,
            capabilities=self.chain.capabilities(),  # type: ignore[arg-type]
            adapter_version=ADAPTER_VERSION,
            record_schema_version=records.SCHEMA_VERSION,
        )

    def latest_height(self) -> apb.GetLatestHeightResponse:
        return apb.GetLatestHeightResponse(
            height=self.chain.height, time=timestamp(self.chain.latest_time_ns)
        )

    def _bft(self) -> BftPartnerChain:
        if not isinstance(self.chain, BftPartnerChain):
            raise Unimplemented(f"{self.chain.chain_id} is a log: it has no light blocks")
        return self.chain

    def _tlog(self) -> TlogPartnerRegistry:
        if not isinstance(self.chain, TlogPartnerRegistry):
            raise Unimplemented(f"{self.chain.chain_id} is a BFT chain: it has no checkpoints")
        return self.chain

    def check_range(self, request: apb.GetLightBlocksRequest) -> tuple[int, int, int]:
        """(from, to, encoding) of a valid request within the chain's head."""
        chain = self._bft()
        return self.light_block_range(request, chain.height)

    def light_block(self, height: int, encoding: int) -> apb.LightBlock:
        chain = self._bft()
        data = (
            chain.light_block_json(height)
            if encoding == apb.LIGHT_BLOCK_ENCODING_COMETBFT_JSON
            else chain.light_block_bytes(height)
        )
        return apb.LightBlock(height=height, light_block=data, encoding=encoding)  # type: ignore[arg-type]

    def checkpoint(self, size: int | None) -> apb.GetCheckpointResponse:
        return apb.GetCheckpointResponse(signed_note=self._tlog().checkpoint(size))

    def consistency(self, size1: int, size2: int) -> apb.GetConsistencyProofResponse:
        return apb.GetConsistencyProofResponse(hashes=self._tlog().consistency_proof(size1, size2))

    def query(self, request: apb.QueryRequest) -> apb.QueryResult:
        if not request.HasField("query"):
            raise InvalidArgument("query is missing")
        key = self.chain.domain_key(request.query)
        return self.chain.query(key, optional_field(request, "height"))

    def list_by_party(self, request: apb.ListByPartyRequest) -> list[apb.QueryResult]:
        return self.chain.list_by_party(
            request.party_key, [int(k) for k in request.kinds], optional_field(request, "height")
        )

    def head(self) -> int:
        return self._bft().height


# --- lying adapters --------------------------------------------------------------------------


class Fault(enum.Enum):
    """The lies :class:`LyingAdapter` tells. Each one is what a broken or malicious adapter
    could really send; the relay must catch each with its own reason."""

    WRONG_VALUE = "wrong-value"
    """Query / ListByParty: the value is changed (a seizure hidden, a listing removed, a
    freeze dropped...) but the proof is the original value's."""
    PROOF_FOR_OTHER_KEY = "proof-for-other-key"
    """Query / ListByParty: the answer (key, value, proof) is that of another record."""
    UNVERIFIED_HEIGHT = "unverified-height"
    """The adapter claims a head far above the chain's real one and answers newest-state
    queries there, with a correct proof against a forged root; the forged header at that
    height is signed by validators (or a log key) the relay never trusted."""
    FORKED_HEADER = "forked-header"
    """The adapter follows a fork from the next height on: light blocks (checkpoints) signed
    by another validator set (log key), or by less than 1/3 of the trusted power
    (``minority_fork=True``); newest-state queries are answered on the fork."""
    STALE_HEIGHT = "stale-height"
    """Query / ListByParty: the answer is at an older height than asked (the oldest provable
    one when no height is asked), with an honest proof for that height."""
    TRUNCATED_STREAM = "truncated-stream"
    """GetLightBlocks / ListByParty: the stream ends one message early."""
    GARBAGE_BYTES = "garbage-bytes"
    """Every proof, light block, checkpoint and consistency-proof hash is bytes that do not
    decode."""
    HANG = "hang"
    """Every call but Describe waits forever (until the caller's deadline cancels it)."""


GARBAGE = b"\x07\xff\xfe relay-testing garbage \x00\x01"
"""Bytes that are not protobuf (field number 0), not UTF-8 and not JSON."""

_FORGERY_DISTANCE = 1000


def tamper(key: bytes, value: bytes) -> bytes:
    """A plausible lie about a record: the same record with something that matters to a
    court changed (restrictions hidden, a listing removed, a freeze dropped, a holding left
    out), canonically re-encoded so it still decodes."""
    try:
        _, record = records.decode_for_key(key, value)
    except VerificationError:
        return value[:-1] + bytes([value[-1] ^ 0x01]) if value else b"\x00"
    if isinstance(record, pb.OwnershipRecord):
        if record.encumbrances:
            del record.encumbrances[:]
        elif record.owners:
            record.owners[0].party.party_key = hashlib.sha256(b"forged owner").digest()
            record.owners[0].party.name = "伪造"
        else:
            record.description += "（变更）"
    elif isinstance(record, pb.CreditRecord):
        if record.listings:
            del record.listings[:]
        else:
            record.party.name += "（变更）"
    elif isinstance(record, pb.AccountRecord):
        if record.freezes:
            del record.freezes[:]
        else:
            record.balance.minor_units += 100_000_000
    elif isinstance(record, pb.AssetHistory):
        if len(record.entries) > 1:
            del record.entries[-1]
        else:
            record.entries.add(kind=pb.HISTORY_EVENT_KIND_CANCELLATION)
    elif isinstance(record, pb.PartyHoldings):
        if record.assets:
            del record.assets[-1]
        else:
            record.assets.add(kind=pb.ASSET_KIND_REAL_ESTATE, registry="000000", id="forged")
    out = record.SerializeToString(deterministic=True)
    return out if out != value else value + b"\x00"


def fabricate(key: bytes) -> bytes:
    """A record that does not exist, for a key the chain proves absent."""
    try:
        rk = records.decode(pb.RecordKey, key, what="record key", max_bytes=4096)
    except VerificationError:
        return b"forged"
    which = rk.WhichOneof("record")
    forged_party = pb.RecordParty(party_key=b"\x01" * 32, kind=pb.PARTY_KIND_PERSON, name="伪造")
    made: Message
    if which == "ownership":
        made = pb.OwnershipRecord(
            asset=rk.ownership,
            owners=[pb.Owner(party=forged_party)],
            status=1,  # type: ignore[arg-type]
        )
    elif which == "account":
        made = pb.AccountRecord(account=rk.account, holder=forged_party)
    elif which == "history":
        made = pb.AssetHistory(asset=rk.history)
    elif which == "credit_party_key":
        made = pb.CreditRecord(party=pb.RecordParty(party_key=rk.credit_party_key))
    else:
        made = pb.PartyHoldings(party_key=rk.holdings_party_key)
    return made.SerializeToString(deterministic=True)


def _forge_value(key: bytes, value: bytes | None) -> bytes:
    return fabricate(key) if value is None else tamper(key, value)


def _fork_state(chain: PartnerChain, *, fork: bool) -> SparseMerkleTree:
    # The state a forger starts from: the honest newest state, plus, on a fork, one entry
    # the honest chain never wrote, so the fork's roots differ from the honest ones.
    state = chain.working_state
    if fork:
        state.set(b"relay.testing/fork", chain.chain_id.encode())
    return state


class _BftForger:
    """Blocks of heights the honest chain never made, or of a fork: another validator set's
    (or the honest set's minority's) signatures over headers committing to forged roots."""

    def __init__(self, chain: BftPartnerChain, *, fork_from: int | None, minority: bool) -> None:
        self.honest = chain
        self.fork_from = fork_from
        self.minority = minority
        self.base = _fork_state(chain, fork=fork_from is not None)
        self.roots: dict[int, bytes] = {}
        self.states: dict[int, SparseMerkleTree] = {}
        honest_set = chain.chain.validators_at(chain.height + 1)
        validators = (
            honest_set
            if minority
            else chain.make_validators(len(honest_set), prefix=f"{chain.chain_id}/forger")
        )
        self.validators = validators
        self.shadow = _SignedChain(
            app_hash=self._root,
            block_time=self._time,
            parent=self._parent,
            validators=validators,
            chain_id=chain.chain_id,
            params=chain.params,
        )
        self._blocks: dict[int, LightBlock] = {}

    def _time(self, height: int) -> int:
        base = self.fork_from - 1 if self.fork_from is not None else self.honest.height
        base = max(1, min(base, self.honest.height))
        if height <= base:
            return self.honest.time_at(height)
        # Just after the honest base block: in the past for any relay clock, so the
        # signatures, not the times, are what fails.
        return self.honest.time_at(base) + (height - base) * 1_000_000

    def _root(self, height: int) -> bytes:
        return self.roots.get(height) or self.base.root

    def _parent(self, height: int) -> BlockID | None:
        if self.fork_from is not None and height == self.fork_from and height > 1:
            return self.honest.light_block(height - 1).commit.block_id
        return None

    def forges(self, height: int) -> bool:
        if self.fork_from is not None:
            return height >= self.fork_from
        return height > self.honest.height

    def light_block(self, height: int) -> LightBlock:
        block = self._blocks.get(height)
        if block is None:
            if self.minority:
                vals = self.shadow.validators_at(height)
                power = sum(v.power for v in vals)
                signers: list[bytes] = []
                signed = 0
                for v in sorted(vals, key=lambda v: v.power):
                    if (signed + v.power) * 3 >= power:
                        break
                    signers.append(v.address)
                    signed += v.power
                block = self.shadow.light_block(height, signers=signers or [vals[0].address])
            else:
                block = self.shadow.light_block(height)
            self._blocks[height] = block
        return block

    def state(self, height: int) -> SparseMerkleTree:
        return self.states.get(height) or self.base

    def forged_state(self, height: int, key: bytes) -> SparseMerkleTree:
        """A state at ``height`` in which ``key`` holds a lie; the header at ``height`` (a
        height no header was made for yet) commits to its root."""
        state = self.base.copy()
        state.set(key, _forge_value(key, state.get(key)))
        self.states[height] = state
        self.roots[height] = state.root
        self._blocks.pop(height, None)
        self.shadow._headers = {h: v for h, v in self.shadow._headers.items() if h < height}
        return state


class _TlogForger:
    """Checkpoints the honest log key never signed: a forged log key and forged witnesses
    with the real names, over a log that extends (or forks) the honest one."""

    def __init__(self, registry: TlogPartnerRegistry, *, fork_from: int | None) -> None:
        self.honest = registry
        self.fork_from = fork_from
        make = sm2_signer if registry.sig == "sm2" else ed25519_signer
        self.log_signer = make(registry.log_signer.name, seed=f"{registry.origin}/forger")
        self.witnesses = tuple(
            make(w.name, seed=f"{w.name}/forger", cosigner=True) for w in registry.witness_keys
        )
        base = registry.height if fork_from is None else max(0, fork_from - 1)
        self.base = _fork_state(registry, fork=fork_from is not None)
        self.log = registry.log.fork(min(base, registry.log.size))
        self.log.log_signer = self.log_signer
        self.log.witnesses = self.witnesses
        self.notes: dict[int, bytes] = {}
        self.states: dict[int, SparseMerkleTree] = {}

    def forges(self, size: int) -> bool:
        if self.fork_from is not None:
            return size >= self.fork_from
        return size > self.honest.height

    def _publish(self, size: int, state: SparseMerkleTree) -> None:
        while self.log.size < size:
            self.log.append(encode_entry(b"forged", self.log.size.to_bytes(8, "big")))
        stamp = int(self.honest.clock())
        self.notes[size] = self.log.checkpoint(
            size, timestamp=stamp, extensions=[self.honest.map_root_line(state.root)]
        )
        self.states[size] = state

    def state(self, size: int) -> SparseMerkleTree:
        if size not in self.states:
            self._publish(size, self.base)
        return self.states[size]

    def forged_state(self, size: int, key: bytes) -> SparseMerkleTree:
        state = self.base.copy()
        state.set(key, _forge_value(key, state.get(key)))
        self._publish(size, state)
        return state

    def checkpoint(self, size: int) -> bytes:
        self.state(size)
        return self.notes[size]

    def consistency(self, size1: int, size2: int) -> list[bytes]:
        self.state(size2)
        return self.log.consistency_proof(min(size1, size2), size2)


class LyingAdapter(PartnerAdapter):
    """An adapter that tells one lie (:class:`Fault`) about an honest partner's chain.

    ``fault`` can be changed at any time (``None`` answers honestly). ``fork_from`` is the
    first height (tree size) of a FORKED_HEADER fork; by default the honest head + 1 when the
    fault is first used. ``minority_fork`` signs the fork with the honest validators' keys,
    but by fewer than 1/3 of their power, instead of by another validator set.
    """

    def __init__(
        self,
        honest: PartnerAdapter,
        fault: Fault | None,
        *,
        fork_from: int | None = None,
        minority_fork: bool = False,
    ) -> None:
        super().__init__(honest.chain)
        self.honest = honest
        self.fault = fault
        self.fork_from = fork_from
        self.minority_fork = minority_fork
        self._forger: _BftForger | _TlogForger | None = None
        self._forger_kind: Fault | None = None
        self._next_forged = 0
        self.calls: list[str] = []
        """RPC names called, in order (so tests can see the lie was asked for)."""

    # --- forgery machinery ---

    def forger(self) -> _BftForger | _TlogForger:
        if self._forger is None or self._forger_kind is not self.fault:
            fork_from = None
            if self.fault is Fault.FORKED_HEADER:
                fork_from = self.fork_from or self.chain.height + 1
            if isinstance(self.chain, BftPartnerChain):
                self._forger = _BftForger(
                    self.chain, fork_from=fork_from, minority=self.minority_fork
                )
            else:
                self._forger = _TlogForger(self.chain, fork_from=fork_from)
            self._forger_kind = self.fault
        return self._forger

    def claimed_head(self) -> int:
        """The head this adapter claims."""
        head = self.chain.height
        if self.fault is Fault.FORKED_HEADER:
            return max(head, self.forger().fork_from or head + 1) + 2
        if self.fault is Fault.UNVERIFIED_HEIGHT:
            return head + _FORGERY_DISTANCE + self._next_forged
        return head

    def _stale_height(self, asked: int | None) -> int:
        heights = [h for h in self.chain.heights() if len(self.chain.state_at(h))]
        if not heights:
            raise FailedPrecondition(f"{self.chain.chain_id} has no provable state yet")
        if asked is None:
            return heights[0]
        older = [h for h in heights if h < asked]
        if older:
            return older[-1]
        newer = [h for h in heights if h > asked]
        return newer[0] if newer else heights[0]

    def _forged_result(self, key: bytes, state: SparseMerkleTree, height: int) -> apb.QueryResult:
        result = apb.QueryResult(
            key=key, proof=state.prove(key), proof_format=pb.PROOF_FORMAT_ICS23, height=height
        )
        value = state.get(key)
        if value is not None:
            result.value = value
        return result

    def _other_key(self, key: bytes, state: SparseMerkleTree) -> bytes:
        want = None
        with contextlib.suppress(VerificationError):
            want = records.decode(pb.RecordKey, key, what="key", max_bytes=4096).WhichOneof(
                "record"
            )
        fallback = None
        for other, _ in state.items():
            if other == key:
                continue
            fallback = fallback or other
            try:
                field = records.decode(pb.RecordKey, other, what="key", max_bytes=4096)
            except VerificationError:
                continue
            if field.WhichOneof("record") == want:
                return other
        if fallback is None:
            raise FailedPrecondition("no other key to answer with")
        return fallback

    def _lie(
        self, key: bytes, asked: int | None, honest: Callable[[int | None], apb.QueryResult]
    ) -> apb.QueryResult:
        fault = self.fault
        if fault is Fault.WRONG_VALUE:
            result = honest(asked)
            result.value = _forge_value(key, result.value if result.HasField("value") else None)
            return result
        if fault is Fault.PROOF_FOR_OTHER_KEY:
            result = honest(asked)
            state = self.chain.state_at(result.height)
            return self.chain.query(self._other_key(key, state), result.height)
        if fault is Fault.STALE_HEIGHT:
            return honest(self._stale_height(asked))
        if fault is Fault.GARBAGE_BYTES:
            result = honest(asked)
            result.proof = GARBAGE
            return result
        if fault is Fault.UNVERIFIED_HEIGHT:
            forger = self.forger()
            height = self.chain.height + _FORGERY_DISTANCE + self._next_forged
            self._next_forged += 1
            return self._forged_result(key, forger.forged_state(height, key), height)
        if fault is Fault.FORKED_HEADER:
            forger = self.forger()
            if asked is not None and not forger.forges(asked):
                return honest(asked)
            height = asked if asked is not None else self.claimed_head()
            return self._forged_result(key, forger.state(height), height)
        return honest(asked)

    # --- answers ---

    def latest_height(self) -> apb.GetLatestHeightResponse:
        response = self.honest.latest_height()
        response.height = self.claimed_head()
        return response

    def check_range(self, request: apb.GetLightBlocksRequest) -> tuple[int, int, int]:
        self._bft()
        return self.light_block_range(request, self.claimed_head())

    def light_block(self, height: int, encoding: int) -> apb.LightBlock:
        if self.fault is Fault.GARBAGE_BYTES:
            return apb.LightBlock(height=height, light_block=GARBAGE, encoding=encoding)  # type: ignore[arg-type]
        if self.fault in (Fault.FORKED_HEADER, Fault.UNVERIFIED_HEIGHT):
            forger = self.forger()
            assert isinstance(forger, _BftForger)
            if forger.forges(height):
                block = forger.light_block(height)
                data = (
                    json.dumps(light_block_json(block)).encode()
                    if encoding == apb.LIGHT_BLOCK_ENCODING_COMETBFT_JSON
                    else encode_light_block_proto(block)
                )
                return apb.LightBlock(height=height, light_block=data, encoding=encoding)  # type: ignore[arg-type]
        return self.honest.light_block(height, encoding)

    def stream_light_blocks(self, request: apb.GetLightBlocksRequest) -> Iterator[apb.LightBlock]:
        items = list(self.light_blocks(request))
        if self.fault is Fault.TRUNCATED_STREAM:
            items = items[:-1]
        return iter(items)

    def checkpoint(self, size: int | None) -> apb.GetCheckpointResponse:
        if self.fault is Fault.GARBAGE_BYTES:
            self._tlog()
            return apb.GetCheckpointResponse(signed_note=GARBAGE)
        if self.fault in (Fault.FORKED_HEADER, Fault.UNVERIFIED_HEIGHT):
            forger = self.forger()
            assert isinstance(forger, _TlogForger)
            s = self.claimed_head() if size is None else size
            if forger.forges(s) and s <= self.claimed_head():
                return apb.GetCheckpointResponse(signed_note=forger.checkpoint(s))
        return self.honest.checkpoint(size)

    def consistency(self, size1: int, size2: int) -> apb.GetConsistencyProofResponse:
        if self.fault is Fault.GARBAGE_BYTES:
            self._tlog()
            return apb.GetConsistencyProofResponse(hashes=[GARBAGE])
        if self.fault in (Fault.FORKED_HEADER, Fault.UNVERIFIED_HEIGHT):
            forger = self.forger()
            assert isinstance(forger, _TlogForger)
            if forger.forges(size2) and size2 <= self.claimed_head():
                return apb.GetConsistencyProofResponse(hashes=forger.consistency(size1, size2))
        return self.honest.consistency(size1, size2)

    def query(self, request: apb.QueryRequest) -> apb.QueryResult:
        if not request.HasField("query"):
            raise InvalidArgument("query is missing")
        key = self.chain.domain_key(request.query)
        return self._lie(key, optional_field(request, "height"), lambda h: self.chain.query(key, h))

    def list_by_party(self, request: apb.ListByPartyRequest) -> list[apb.QueryResult]:
        fault = self.fault
        asked = optional_field(request, "height")
        kinds = [int(k) for k in request.kinds]
        party = request.party_key
        if fault is Fault.STALE_HEIGHT:
            return self.chain.list_by_party(party, kinds, self._stale_height(asked))
        if fault in (Fault.UNVERIFIED_HEIGHT, Fault.FORKED_HEADER):
            hkey = records.holdings_key(party)
            index = self._lie(hkey, asked, lambda h: self.chain.query(hkey, h))
            if index.height <= self.chain.height and not self.forger().forges(index.height):
                return self.chain.list_by_party(party, kinds, index.height)
            return self._forged_listing(index, kinds)
        results = self.chain.list_by_party(party, kinds, asked)
        if fault is Fault.WRONG_VALUE:
            first = results[0]
            first.value = _forge_value(first.key, first.value if first.HasField("value") else None)
        elif fault is Fault.PROOF_FOR_OTHER_KEY:
            state = self.chain.state_at(results[0].height)
            results[0] = self.chain.query(self._other_key(results[0].key, state), results[0].height)
        elif fault is Fault.GARBAGE_BYTES:
            for r in results:
                r.proof = GARBAGE
        return results

    def _forged_listing(self, index: apb.QueryResult, kinds: list[int]) -> list[apb.QueryResult]:
        # The rest of the answer comes from the same forged state as the index.
        forger = self.forger()
        state = forger.states.get(index.height) or forger.state(index.height)
        out = [index]
        if index.HasField("value"):
            holdings = pb.PartyHoldings()
            holdings.ParseFromString(index.value)
            for asset in holdings.assets:
                if not kinds or asset.kind in kinds:
                    out.append(self._forged_result(_asset_key(asset), state, index.height))
        return out

    def stream_by_party(self, request: apb.ListByPartyRequest) -> list[apb.QueryResult]:
        items = self.list_by_party(request)
        if self.fault is Fault.TRUNCATED_STREAM:
            items = items[:-1]
        return items

    async def before_call(self, method: str) -> None:
        self.calls.append(method)
        if self.fault is Fault.HANG and method != "Describe":
            await asyncio.Event().wait()
