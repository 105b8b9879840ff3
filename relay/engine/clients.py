"""Per client type, the engine's wrapper around a pure light client
(relay/verify/lightclient/tendermint.py, tlog.py): build the trusted anchor from a chain
descriptor, verify new headers or checkpoints fetched from the (untrusted) adapter, and
serialise what the store keeps.

Stored formats (the store treats both as opaque bytes):

* Client state: canonical JSON (UTF-8, keys sorted, no spaces), version 1::

      {"descriptor_sha256": <hex of the SHA-256 of the descriptor's chain_id and client
       parameters>, "kind": "tendermint"|"tlog", "last_verified_ns": <int>,
       "latest_height": <int>, "v": 1}

  ``descriptor_sha256`` binds the state to the trust parameters it was built under;
  ``last_verified_ns`` is when the relay last verified the chain's head (for logs it is
  what the trusting period runs from: a quiet log stays fresh while witnesses keep
  cosigning its unchanged checkpoint). Decoding refuses anything that is not exactly this
  shape re-encoded.

* Consensus state ``light_block`` ("hop"): ``b"RLYH" || u8 version (1) || i64 verified_at_ns
  || u32 len || header || u8 n || n x (u8 len || hash)``, big-endian, no trailing bytes. The
  header is the light block (protobuf ``tendermint.types.LightBlock``) or signed checkpoint
  note exactly as received; the hashes are the RFC 6962 consistency proof from the parent
  hop (``trusted_from``) for logs; ``verified_at_ns`` is the "now" the relay verified it
  with. This is everything a TrustStep of evidence needs, so evidence is read from the
  store alone.

How new heads are verified, and why trust paths stay short: a CometBFT head is verified
by skipping (bisection, CometBFT ``light/client.go`` verifySkipping) from the OLDEST state
on the latest state's trust path that is younger than ``base_window`` of the trusting
period, not from the latest state; the new state's trust path is then at most that base's
plus the pivots, so it grows by about one hop per ``base_window`` of the trusting period
instead of one per sync round. A log checkpoint is checked for consistency with the latest
trusted checkpoint (split-view detection) and stored as one hop from the anchor (a
consistency proof from the anchor's size), so log trust paths have one hop.

The bisection loop is written here in async form around the pure single-step
``verify_light_block`` (rather than running the pure ``verify_skipping`` in a thread with a
fetch bridged back to the event loop): pivots are fetched with the adapter's own deadline
and cancellation, no worker thread blocks on the network, and each step's CPU work
(signature checks) runs in a worker thread. Trusted blocks are built with
relay/verify/evidence.py ``trusted_block_of``, the same rule the offline verifier replays.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import struct
from abc import ABC, abstractmethod
from collections import OrderedDict
from collections.abc import Callable, Sequence
from concurrent.futures import Executor
from dataclasses import dataclass
from typing import Any, Final

from relay.engine.adapters import AdapterClient
from relay.engine.errors import REASONS, RelayError, from_verification
from relay.engine.settings import EngineSettings
from relay.metrics import RelayMetrics
from relay.pb.relay.v1 import types_pb2 as pb
from relay.store import (
    ClientStateRecord,
    ClientType,
    ConsensusStateRecord,
    Store,
    StoreError,
)
from relay.verify import evidence as rules
from relay.verify.errors import VerificationError
from relay.verify.lightclient import tendermint as tm
from relay.verify.lightclient import tlog
from relay.verify.lightclient.cometbft_proto import decode_light_block_proto
from relay.verify.lightclient.cometbft_types import LightBlock

NS: Final = 1_000_000_000
HOP_MAGIC: Final = b"RLYH"
HOP_VERSION: Final = 1
CLIENT_STATE_VERSION: Final = 1
MAX_CLIENT_STATE_BYTES: Final = 1024
MAX_HOP_HASHES: Final = 64
_CACHE_SIZE: Final = 64
PARALLEL_SIGNATURES_MIN: Final = 32
"""Commits with fewer signatures than this are checked on one thread: handing a few
signature checks to the signature pool costs more (thread wake-ups, GIL hand-offs) than the
checks themselves (about 45 µs each for Ed25519), and a relay following many small chains
pays that on every header (bench/bench_scale.py)."""
INLINE_VERIFY_MAX_SIGNATURES: Final = 16
"""Headers whose commit holds at most this many signatures are verified on the event loop
instead of a worker thread: the work is a fraction of a millisecond and mostly holds the GIL
anyway, so a thread hop adds cost without freeing the loop."""


# ----------------------------------------------------------------------------- formats


class StateFormatError(Exception):
    """Stored engine state does not decode: a bug or outside tampering."""


@dataclass(frozen=True, slots=True)
class Hop:
    """What a consensus state keeps to become a TrustStep (see the module docstring)."""

    header: bytes
    consistency_proof: tuple[bytes, ...]
    verified_at_ns: int


def encode_hop(hop: Hop) -> bytes:
    if len(hop.consistency_proof) > MAX_HOP_HASHES:
        raise ValueError("too many consistency proof hashes")
    out = [
        HOP_MAGIC,
        struct.pack(">Bq", HOP_VERSION, hop.verified_at_ns),
        struct.pack(">I", len(hop.header)),
        hop.header,
        struct.pack(">B", len(hop.consistency_proof)),
    ]
    for h in hop.consistency_proof:
        if not 0 < len(h) <= 64:
            raise ValueError("consistency proof hashes are 1 to 64 bytes")
        out += [struct.pack(">B", len(h)), h]
    return b"".join(out)


def decode_hop(data: bytes) -> Hop:
    """Inverse of :func:`encode_hop`; StateFormatError on anything else."""
    try:
        if data[:4] != HOP_MAGIC:
            raise StateFormatError("stored hop has no RLYH magic")
        version, verified_at = struct.unpack_from(">Bq", data, 4)
        if version != HOP_VERSION:
            raise StateFormatError(f"stored hop has unknown version {version}")
        (length,) = struct.unpack_from(">I", data, 13)
        end = 17 + length
        if end + 1 > len(data):
            raise StateFormatError("stored hop is truncated")
        header = data[17:end]
        count = data[end]
        pos = end + 1
        proof = []
        for _ in range(count):
            size = data[pos]
            item = data[pos + 1 : pos + 1 + size]
            if size == 0 or len(item) != size:
                raise StateFormatError("stored hop proof is truncated")
            proof.append(item)
            pos += 1 + size
    except (struct.error, IndexError) as e:
        raise StateFormatError(f"stored hop does not decode: {e}") from None
    if pos != len(data):
        raise StateFormatError("stored hop has trailing bytes")
    return Hop(bytes(header), tuple(bytes(p) for p in proof), verified_at)


@dataclass(frozen=True, slots=True)
class ClientStateV1:
    """The engine's client state (see the module docstring)."""

    kind: str
    latest_height: int
    last_verified_ns: int
    descriptor_sha256: str

    def encode(self) -> bytes:
        return json.dumps(
            {
                "descriptor_sha256": self.descriptor_sha256,
                "kind": self.kind,
                "last_verified_ns": self.last_verified_ns,
                "latest_height": self.latest_height,
                "v": CLIENT_STATE_VERSION,
            },
            sort_keys=True,
            separators=(",", ":"),
        ).encode("ascii")

    @staticmethod
    def decode(data: bytes) -> ClientStateV1:
        if len(data) > MAX_CLIENT_STATE_BYTES:
            raise StateFormatError("stored client state is too large")
        try:
            obj = json.loads(data.decode("ascii"))
        except (UnicodeDecodeError, ValueError, RecursionError) as e:
            raise StateFormatError(f"stored client state is not JSON: {e}") from None
        keys = {"descriptor_sha256", "kind", "last_verified_ns", "latest_height", "v"}
        if not isinstance(obj, dict) or set(obj) != keys or obj["v"] != CLIENT_STATE_VERSION:
            raise StateFormatError("stored client state has an unknown shape or version")
        ints = (obj["last_verified_ns"], obj["latest_height"])
        if any(type(i) is not int for i in ints) or obj["kind"] not in ("tendermint", "tlog"):
            raise StateFormatError("stored client state has fields of the wrong type")
        if not isinstance(obj["descriptor_sha256"], str):
            raise StateFormatError("stored client state has fields of the wrong type")
        state = ClientStateV1(
            obj["kind"], obj["latest_height"], obj["last_verified_ns"], obj["descriptor_sha256"]
        )
        if state.encode() != data:
            raise StateFormatError("stored client state is not canonically encoded")
        return state


def trust_digest(descriptor: pb.ChainDescriptor) -> str:
    """SHA-256 (hex) of what trust rests on: chain id and client parameters with anchor."""
    which = descriptor.WhichOneof("client")
    params = (
        b"" if which is None else getattr(descriptor, which).SerializeToString(deterministic=True)
    )
    h = hashlib.sha256(b"relay.engine.trust\x00")
    h.update(descriptor.chain_id.encode("utf-8") + b"\x00" + str(which).encode() + b"\x00")
    h.update(params)
    return h.hexdigest()


# ----------------------------------------------------------------------------- errors


class MisbehaviourFound(Exception):
    """Verification produced evidence of misbehaviour; the runtime records it and freezes
    the chain. ``evidence`` is what the store keeps (canonical JSON)."""

    def __init__(self, *, kind: str, height: int, message: str, evidence: bytes) -> None:
        self.kind = kind
        self.height = height
        self.message = message
        self.evidence = evidence
        super().__init__(message)


def misbehaviour_evidence(kind: str, height: int, **headers: bytes | Sequence[bytes]) -> bytes:
    """Canonical JSON: kind, height and the conflicting headers (hex)."""
    obj: dict[str, Any] = {"kind": kind, "height": height}
    for name, value in headers.items():
        obj[name] = value.hex() if isinstance(value, bytes) else [v.hex() for v in value]
    return json.dumps(obj, sort_keys=True, separators=(",", ":")).encode("ascii")


def _invalid_descriptor(chain_id: str, field: str, e: Exception) -> RelayError:
    detail = str(e)
    return RelayError(
        "INVALID_ARGUMENT",
        f"chain descriptor {chain_id!r}: {field} is invalid: {detail}",
        chain_id=chain_id,
        field=field,
        check=getattr(e, "reason", type(e).__name__),
    )


# ----------------------------------------------------------------------------- views


@dataclass(frozen=True, slots=True)
class TrustedView:
    """The chain's trusted state as read from the store at one revision."""

    client_state: ClientStateRecord
    state: ClientStateV1
    latest: ConsensusStateRecord
    anchor_height: int


@dataclass(frozen=True, slots=True)
class Advance:
    """Result of polling a chain: newly verified states to commit (in trust order), the
    partner's reported head, and whether the head was re-verified (refreshing trust)."""

    candidates: tuple[ConsensusStateRecord, ...]
    partner_head: int
    refreshed: bool = False


# ----------------------------------------------------------------------------- clients


class ChainClient(ABC):
    """One chain's light client, as the engine drives it."""

    kind: str
    store_client_type: ClientType
    client_type_enum: int
    header_format: int
    metrics: RelayMetrics | None = None
    """Where header verifications are counted (the engine sets it; None: not counted)."""

    def __init__(
        self,
        descriptor: pb.ChainDescriptor,
        *,
        settings: EngineSettings,
        sig_pool: Executor | None = None,
    ) -> None:
        self.descriptor = descriptor
        self.chain_id = descriptor.chain_id
        self.settings = settings
        self.digest = trust_digest(descriptor)
        self._sig_pool = sig_pool
        # The last client state parsed, by its stored bytes: sync reads the same state
        # several times a round, and a state's bytes fully determine what it parses to.
        self._parsed: tuple[bytes, ClientStateV1] | None = None

    @property
    @abstractmethod
    def trusting_period_ns(self) -> int: ...

    @abstractmethod
    def anchor_record(self, *, now_ns: int) -> ConsensusStateRecord:
        """Verify the descriptor's anchor on its own (INVALID_ARGUMENT if it fails) and
        return it as the chain's first consensus state."""

    @abstractmethod
    def state_root(self, state: ConsensusStateRecord) -> bytes | None:
        """The root state proofs are checked against at this state (None: none)."""

    @abstractmethod
    def header_time_ns(self, state: ConsensusStateRecord) -> int | None: ...

    @abstractmethod
    def assurance(self, state: ConsensusStateRecord) -> int: ...

    @abstractmethod
    def trust_expires_at_ns(self, view: TrustedView) -> int: ...

    @abstractmethod
    async def advance(
        self, *, adapter: AdapterClient, store: Store, view: TrustedView, now_ns: int
    ) -> Advance:
        """Poll the adapter's head and verify it (nothing stored here)."""

    @abstractmethod
    async def verify_height(
        self,
        *,
        adapter: AdapterClient,
        store: Store,
        view: TrustedView,
        height: int,
        now_ns: int,
    ) -> tuple[ConsensusStateRecord, ...]:
        """Verify the header at ``height`` (not stored yet) from the nearest trusted state;
        the states to commit, the one at ``height`` last."""

    def client_state(self, *, latest_height: int, last_verified_ns: int) -> bytes:
        return ClientStateV1(self.kind, latest_height, last_verified_ns, self.digest).encode()

    def parse_client_state(self, data: bytes) -> ClientStateV1:
        parsed = self._parsed
        if parsed is not None and parsed[0] == data:
            return parsed[1]
        state = ClientStateV1.decode(data)
        if state.kind != self.kind:
            raise StateFormatError(
                f"chain {self.chain_id!r}: stored client state is for a {state.kind} client"
            )
        if state.descriptor_sha256 != self.digest:
            raise StateFormatError(
                f"chain {self.chain_id!r}: stored client state was built under other trust "
                "parameters than the registered descriptor"
            )
        self._parsed = (bytes(data), state)
        return state

    def is_expired(self, view: TrustedView, *, now_ns: int) -> bool:
        return self.trust_expires_at_ns(view) <= now_ns

    def checked(
        self, error: RelayError | None = None, cause: VerificationError | None = None
    ) -> None:
        """Count one header (checkpoint) verification, failed when ``error`` is given: the
        reason is the verifier's own where it is an ErrorReason (SIGNATURE_INVALID ...),
        else the error's."""
        m = self.metrics
        if m is not None:
            if error is None:
                m.record_header_verification(self.chain_id, ok=True)
            else:
                own = cause.reason if cause is not None else ""
                reason = own if own in REASONS else error.reason
                m.record_header_verification(self.chain_id, ok=False, reason=reason)

    def _hop(self, state: ConsensusStateRecord) -> Hop:
        try:
            return decode_hop(state.light_block)
        except StateFormatError as e:
            raise RelayError(
                "INTERNAL",
                f"stored state of chain {self.chain_id!r} at height {state.height} is damaged: {e}",
                chain_id=self.chain_id,
                height=state.height,
            ) from e


def _internal(chain_id: str, what: str, e: Exception) -> RelayError:
    return RelayError("INTERNAL", f"chain {chain_id!r}: {what}: {e}", chain_id=chain_id)


class TendermintClient(ChainClient):
    """CometBFT chains (CLIENT_TYPE_TENDERMINT)."""

    kind = "tendermint"
    store_client_type = ClientType.TENDERMINT
    client_type_enum = pb.CLIENT_TYPE_TENDERMINT
    header_format = pb.HEADER_FORMAT_COMETBFT_LIGHT_BLOCK

    def __init__(
        self,
        descriptor: pb.ChainDescriptor,
        *,
        settings: EngineSettings,
        sig_pool: Executor | None = None,
    ) -> None:
        super().__init__(descriptor, settings=settings, sig_pool=sig_pool)
        params = descriptor.tendermint
        try:
            self.options, self.unbonding_ns = rules.tendermint_options(
                params, chain_id=descriptor.chain_id
            )
        except (VerificationError, ValueError) as e:
            raise _invalid_descriptor(self.chain_id, "tendermint", e) from e
        self._blocks: OrderedDict[bytes, LightBlock] = OrderedDict()

    @property
    def trusting_period_ns(self) -> int:
        return self.options.trusting_period_ns

    # -- decoding

    def decode(self, raw: bytes, *, height: int | None) -> LightBlock:
        """Decode adapter bytes (MALFORMED_INPUT / LIMIT_EXCEEDED on failure)."""
        try:
            block = decode_light_block_proto(
                raw, params=self.options.params, max_bytes=self.settings.max_message_bytes
            )
        except VerificationError as e:
            error = from_verification(
                e, chain_id=self.chain_id, height=height, header=True, what="light block"
            )
            self.checked(error, e)
            raise error from e
        if height is not None and block.height != height:
            raise RelayError(
                "MALFORMED_INPUT",
                f"chain {self.chain_id!r}: the light block sent for height {height} is for "
                f"height {block.height}",
                chain_id=self.chain_id,
                height=height,
                expected=str(height),
                calculated=str(block.height),
            )
        return block

    def stored_block(self, state: ConsensusStateRecord) -> LightBlock:
        """The decoded light block of a stored state (cached)."""
        cached = self._blocks.get(state.header_hash)
        if cached is not None:
            self._blocks.move_to_end(state.header_hash)
            return cached
        try:
            block = decode_light_block_proto(
                self._hop(state).header, params=self.options.params, max_bytes=1 << 30
            )
        except VerificationError as e:
            raise _internal(self.chain_id, f"stored light block {state.height}", e) from e
        self._blocks[state.header_hash] = block
        if len(self._blocks) > _CACHE_SIZE:
            self._blocks.popitem(last=False)
        return block

    def record(
        self, block: LightBlock, raw: bytes, *, trusted_from: int | None, now_ns: int
    ) -> ConsensusStateRecord:
        header = block.header
        return ConsensusStateRecord(
            height=header.height,
            time_ns=header.time_ns,
            root=header.app_hash,
            header_hash=header.hash,
            light_block=encode_hop(Hop(raw, (), now_ns)),
            next_validators_hash=header.next_validators_hash,
            trusted_from=trusted_from,
        )

    # -- anchor

    def anchor_record(self, *, now_ns: int) -> ConsensusStateRecord:
        anchor = self.descriptor.tendermint.anchor
        field = "tendermint.anchor"
        try:
            block = rules.decode_anchor_block(
                anchor, options=self.options, max_bytes=self.settings.max_message_bytes
            )
        except VerificationError as e:
            raise _invalid_descriptor(self.chain_id, field, e) from e
        header = block.header
        # The checks of ibc-go's CreateClient that the pure create_client applies, without
        # its need for the next validator set (a protobuf light block has none).
        if header.time_ns + self.options.trusting_period_ns <= now_ns:
            raise RelayError(
                "INVALID_ARGUMENT",
                f"chain descriptor {self.chain_id!r}: the anchor at height {header.height} is "
                "already older than the trusting period; obtain a recent anchor",
                chain_id=self.chain_id,
                field=field,
                check="TRUST_EXPIRED",
            )
        if header.time_ns >= now_ns + self.options.max_clock_drift_ns:
            raise RelayError(
                "INVALID_ARGUMENT",
                f"chain descriptor {self.chain_id!r}: the anchor's time is in the future "
                "(beyond the allowed clock drift); check the relay's clock",
                chain_id=self.chain_id,
                field=field,
                check="HEADER_FROM_FUTURE",
            )
        return self.record(block, bytes(anchor.light_block), trusted_from=None, now_ns=now_ns)

    # -- reads

    def state_root(self, state: ConsensusStateRecord) -> bytes | None:
        return state.root

    def header_time_ns(self, state: ConsensusStateRecord) -> int | None:
        return state.time_ns

    def assurance(self, state: ConsensusStateRecord) -> int:
        return pb.ASSURANCE_FULL

    def trust_expires_at_ns(self, view: TrustedView) -> int:
        return view.latest.time_ns + self.options.trusting_period_ns

    # -- verification

    async def _fetch(self, adapter: AdapterClient, height: int) -> tuple[LightBlock, bytes]:
        (raw,) = await adapter.light_blocks(height, height)
        return self.decode(raw, height=height), raw

    def _verify_step(self, trusted: tm.TrustedBlock, block: LightBlock, now_ns: int) -> None:
        pool = self._sig_pool
        threads = self.settings.verify_threads
        parallel = (
            pool is not None
            and threads > 1
            and len(block.signed_header.commit.signatures) >= PARALLEL_SIGNATURES_MIN
        )
        tm.verify_light_block(
            trusted=trusted,
            untrusted=block,
            options=self.options,
            now=now_ns,
            sig_map=pool.map if parallel and pool is not None else None,
            sig_batches=threads,
        )

    async def skip(
        self,
        *,
        adapter: AdapterClient,
        base: ConsensusStateRecord,
        target: tuple[LightBlock, bytes],
        now_ns: int,
    ) -> tuple[ConsensusStateRecord, ...]:
        """Bisection from ``base`` to ``target``: the verified states, in trust order."""
        trusted = rules.trusted_block_of(self.stored_block(base))
        cache = [target]
        depth = 0
        out: list[ConsensusStateRecord] = []
        steps = 0
        while True:
            if steps >= self.settings.max_skipping_verifications:
                raise RelayError(
                    "HEADER_UNVERIFIED",
                    f"chain {self.chain_id!r}: verifying height {target[0].height} from "
                    f"{base.height} needs more than {steps} steps",
                    chain_id=self.chain_id,
                    height=target[0].height,
                    check="LIMIT_EXCEEDED",
                )
            steps += 1
            block, raw = cache[depth]
            try:
                if len(block.signed_header.commit.signatures) <= INLINE_VERIFY_MAX_SIGNATURES:
                    self._verify_step(trusted, block, now_ns)
                else:
                    await asyncio.to_thread(self._verify_step, trusted, block, now_ns)
            except tm.NotEnoughTrust as e:
                if depth == len(cache) - 1:
                    pivot = trusted.height + (block.height - trusted.height) // 2
                    if not trusted.height < pivot < block.height:
                        error = from_verification(
                            e, chain_id=self.chain_id, height=block.height, header=True
                        )
                        self.checked(error, e)
                        raise error from e
                    cache.append(await self._fetch(adapter, pivot))
                depth += 1
                continue
            except VerificationError as e:
                error = from_verification(
                    e,
                    chain_id=self.chain_id,
                    height=block.height,
                    header=True,
                    what=f"light block {block.height} (verified from {trusted.height})",
                    extra={"trusted_height": str(trusted.height)},
                )
                self.checked(error, e)
                raise error from e
            self.checked()
            out.append(self.record(block, raw, trusted_from=trusted.height, now_ns=now_ns))
            trusted = rules.trusted_block_of(block)
            if depth == 0:
                return tuple(out)
            del cache[depth:]
            depth = 0

    async def choose_base(
        self, *, store: Store, view: TrustedView, now_ns: int
    ) -> ConsensusStateRecord:
        """The oldest state on the latest state's trust path that is younger than
        ``base_window`` of the trusting period (the latest itself if none is)."""
        try:
            path = await store.trust_path(
                self.chain_id, view.latest.height, max_length=self.settings.max_trust_path
            )
        except StoreError as e:
            raise _internal(self.chain_id, "reading the trust path", e) from e
        cutoff = now_ns - int(self.options.trusting_period_ns * self.settings.base_window)
        for state in path:
            if state.time_ns > cutoff:
                return state
        return view.latest

    async def advance(
        self, *, adapter: AdapterClient, store: Store, view: TrustedView, now_ns: int
    ) -> Advance:
        head = await adapter.latest_height()
        latest = view.latest
        if head < latest.height:
            return Advance((), head)
        target = await self._fetch(adapter, head)
        if head == latest.height:
            if target[0].header.hash == latest.header_hash:
                return Advance((), head, refreshed=True)
            # A different header at the trusted height: verify it from below; if it
            # verifies, the runtime sees two valid headers at one height (misbehaviour).
            below = await store.nearest_consensus_state(self.chain_id, head - 1, below=True)
            if below is None:
                raise RelayError(
                    "HEADER_UNVERIFIED",
                    f"chain {self.chain_id!r}: the adapter serves a header at the anchor height "
                    f"{head} that differs from the registered anchor",
                    chain_id=self.chain_id,
                    height=head,
                    check="ANCHOR_MISMATCH",
                )
            return Advance(
                await self.skip(adapter=adapter, base=below, target=target, now_ns=now_ns), head
            )
        base = await self.choose_base(store=store, view=view, now_ns=now_ns)
        return Advance(
            await self.skip(adapter=adapter, base=base, target=target, now_ns=now_ns), head
        )

    async def verify_height(
        self,
        *,
        adapter: AdapterClient,
        store: Store,
        view: TrustedView,
        height: int,
        now_ns: int,
    ) -> tuple[ConsensusStateRecord, ...]:
        if height > view.latest.height:
            base = await self.choose_base(store=store, view=view, now_ns=now_ns)
        else:
            below = await store.nearest_consensus_state(self.chain_id, height, below=True)
            if below is None or below.time_ns + self.trusting_period_ns <= now_ns:
                raise RelayError(
                    "STALE_HEIGHT",
                    f"chain {self.chain_id!r}: height {height} is older than the relay can "
                    "still verify (no trusted state below it within the trusting period)",
                    chain_id=self.chain_id,
                    height=height,
                )
            base = below
        target = await self._fetch(adapter, height)
        return await self.skip(adapter=adapter, base=base, target=target, now_ns=now_ns)


class TlogClient(ChainClient):
    """Transparency-log registries (CLIENT_TYPE_TLOG)."""

    kind = "tlog"
    store_client_type = ClientType.TLOG
    client_type_enum = pb.CLIENT_TYPE_TLOG
    header_format = pb.HEADER_FORMAT_C2SP_CHECKPOINT

    def __init__(
        self,
        descriptor: pb.ChainDescriptor,
        *,
        settings: EngineSettings,
        sig_pool: Executor | None = None,
    ) -> None:
        super().__init__(descriptor, settings=settings, sig_pool=sig_pool)
        params = descriptor.tlog
        try:
            self.config, self.threshold = rules.tlog_config(params)
            self._trusting_period_ns = rules.duration_ns(
                params.trusting_period, what="trusting_period"
            )
        except (VerificationError, ValueError) as e:
            raise _invalid_descriptor(self.chain_id, "tlog", e) from e
        if self._trusting_period_ns <= 0:
            raise RelayError(
                "INVALID_ARGUMENT",
                f"chain descriptor {self.chain_id!r}: tlog.trusting_period must be positive",
                chain_id=self.chain_id,
                field="tlog.trusting_period",
            )
        self._checkpoints: OrderedDict[bytes, tlog.VerifiedCheckpoint] = OrderedDict()

    @property
    def trusting_period_ns(self) -> int:
        return self._trusting_period_ns

    def _verify_note(
        self, note: bytes, *, now_ns: int, height: int | None
    ) -> tlog.VerifiedCheckpoint:
        try:
            return tlog.verify_checkpoint(config=self.config, note=note, now=now_ns // NS)
        except VerificationError as e:
            error = from_verification(
                e, chain_id=self.chain_id, height=height, header=True, what="checkpoint"
            )
            self.checked(error, e)
            raise error from e

    def stored_checkpoint(self, state: ConsensusStateRecord) -> tlog.VerifiedCheckpoint:
        """The verified checkpoint of a stored state, re-verified with the time it was
        verified at (so its counted cosignatures are those the evidence replays)."""
        cached = self._checkpoints.get(state.header_hash)
        if cached is not None:
            self._checkpoints.move_to_end(state.header_hash)
            return cached
        hop = self._hop(state)
        try:
            vc = tlog.verify_checkpoint(
                config=self.config, note=hop.header, now=hop.verified_at_ns // NS
            )
        except VerificationError as e:
            raise _internal(self.chain_id, f"stored checkpoint {state.height}", e) from e
        self._checkpoints[state.header_hash] = vc
        if len(self._checkpoints) > _CACHE_SIZE:
            self._checkpoints.popitem(last=False)
        return vc

    def record(
        self,
        vc: tlog.VerifiedCheckpoint,
        *,
        proof: Sequence[bytes],
        trusted_from: int | None,
        now_ns: int,
    ) -> ConsensusStateRecord:
        newest = max((ts for _, ts in vc.cosignatures), default=None)
        return ConsensusStateRecord(
            height=vc.size,
            time_ns=now_ns if newest is None else min(newest * NS, now_ns),
            root=vc.checkpoint.map_root or b"",
            header_hash=hashlib.sha256(vc.checkpoint.text).digest(),
            light_block=encode_hop(Hop(vc.note, tuple(proof), now_ns)),
            trusted_from=trusted_from,
        )

    def anchor_record(self, *, now_ns: int) -> ConsensusStateRecord:
        note = bytes(self.descriptor.tlog.anchor.checkpoint)
        try:
            vc = tlog.verify_checkpoint(config=self.config, note=note, now=now_ns // NS)
        except VerificationError as e:
            raise _invalid_descriptor(self.chain_id, "tlog.anchor", e) from e
        return self.record(vc, proof=(), trusted_from=None, now_ns=now_ns)

    def state_root(self, state: ConsensusStateRecord) -> bytes | None:
        return state.root or None

    def header_time_ns(self, state: ConsensusStateRecord) -> int | None:
        newest = max((ts for _, ts in self.stored_checkpoint(state).cosignatures), default=None)
        return None if newest is None else newest * NS

    def assurance(self, state: ConsensusStateRecord) -> int:
        counted = len(self.stored_checkpoint(state).cosignatures)
        if counted >= self.threshold:
            return pb.ASSURANCE_FULL
        return pb.ASSURANCE_WITNESS_QUORUM_UNMET

    def trust_expires_at_ns(self, view: TrustedView) -> int:
        return view.state.last_verified_ns + self._trusting_period_ns

    def _state_at(self, state: ConsensusStateRecord) -> tlog.TlogClientState:
        return tlog.TlogClientState(self.config, self.stored_checkpoint(state))

    def _update(
        self,
        trusted: ConsensusStateRecord,
        vc: tlog.VerifiedCheckpoint,
        proof: Sequence[bytes],
        *,
        now_ns: int,
    ) -> None:
        """Check ``vc`` against the trusted state (consistency either way); a split view
        raises MisbehaviourFound, other failures HEADER_UNVERIFIED."""
        try:
            tlog.update(self._state_at(trusted), vc.note, proof, now=now_ns // NS)
        except tlog.SplitViewError as e:
            ev = e.evidence
            raise MisbehaviourFound(
                kind=f"SPLIT_VIEW_{ev.kind.upper().replace('-', '_')}",
                height=vc.size,
                message=(
                    f"log {self.config.origin!r} of chain {self.chain_id!r} presented a split "
                    f"view between tree sizes {trusted.height} and {vc.size}: {ev.detail}"
                ),
                evidence=misbehaviour_evidence(
                    "SPLIT_VIEW",
                    vc.size,
                    trusted_note=ev.trusted_note,
                    conflicting_note=ev.conflicting_note,
                    consistency_proof=ev.consistency_proof,
                ),
            ) from e
        except VerificationError as e:
            error = from_verification(
                e,
                chain_id=self.chain_id,
                height=vc.size,
                header=True,
                what=f"consistency of checkpoint {vc.size} with trusted size {trusted.height}",
            )
            self.checked(error, e)
            raise error from e

    async def _consistency(self, adapter: AdapterClient, a: int, b: int) -> list[bytes]:
        if a == 0 or a == b:
            return []
        return await adapter.consistency_proof(a, b)

    async def _extend(
        self,
        *,
        adapter: AdapterClient,
        store: Store,
        view: TrustedView,
        vc: tlog.VerifiedCheckpoint,
        now_ns: int,
    ) -> ConsensusStateRecord:
        """Accept checkpoint ``vc`` not yet stored: consistent with the nearest trusted
        checkpoints below and above it (split-view detection), stored as a hop from the
        anchor."""
        size = vc.size
        below = await store.nearest_consensus_state(self.chain_id, size, below=True)
        above = await store.nearest_consensus_state(self.chain_id, size, below=False)
        if below is None:
            raise RelayError(
                "STALE_HEIGHT",
                f"chain {self.chain_id!r}: tree size {size} is below the registered anchor",
                chain_id=self.chain_id,
                height=size,
            )
        anchor = await store.get_consensus_state(self.chain_id, view.anchor_height)
        if anchor is None:
            raise _internal(self.chain_id, "the anchor state", LookupError("missing"))
        proof = await self._consistency(adapter, anchor.height, size)
        self._update(anchor, vc, proof, now_ns=now_ns)
        for trusted in (below, above):
            if trusted is None or trusted.height == anchor.height:
                continue
            lo, hi = sorted((trusted.height, size))
            self._update(trusted, vc, await self._consistency(adapter, lo, hi), now_ns=now_ns)
        self.checked()
        return self.record(vc, proof=proof, trusted_from=anchor.height, now_ns=now_ns)

    async def advance(
        self, *, adapter: AdapterClient, store: Store, view: TrustedView, now_ns: int
    ) -> Advance:
        note = await adapter.checkpoint(None)
        vc = await asyncio.to_thread(self._verify_note, note, now_ns=now_ns, height=None)
        latest = view.latest
        if vc.size <= latest.height:
            stored = await store.get_consensus_state(self.chain_id, vc.size)
            if stored is None:
                # An older size the relay never stored: check it is consistent, keep nothing.
                proof = await self._consistency(adapter, vc.size, latest.height)
                self._update(latest, vc, proof, now_ns=now_ns)
                return Advance((), vc.size)
            self._update(stored, vc, [], now_ns=now_ns)
            return Advance((), vc.size, refreshed=vc.size == latest.height)
        record = await self._extend(adapter=adapter, store=store, view=view, vc=vc, now_ns=now_ns)
        return Advance((record,), vc.size)

    async def verify_height(
        self,
        *,
        adapter: AdapterClient,
        store: Store,
        view: TrustedView,
        height: int,
        now_ns: int,
    ) -> tuple[ConsensusStateRecord, ...]:
        note = await adapter.checkpoint(height)
        vc = await asyncio.to_thread(self._verify_note, note, now_ns=now_ns, height=height)
        if vc.size != height:
            raise RelayError(
                "MALFORMED_INPUT",
                f"chain {self.chain_id!r}: the checkpoint sent for tree size {height} has size "
                f"{vc.size}",
                chain_id=self.chain_id,
                height=height,
                expected=str(height),
                calculated=str(vc.size),
            )
        record = await self._extend(adapter=adapter, store=store, view=view, vc=vc, now_ns=now_ns)
        return (record,)


def make_client(
    descriptor: pb.ChainDescriptor,
    *,
    settings: EngineSettings,
    sig_pool: Executor | None = None,
) -> ChainClient:
    """The client for a descriptor's client type (INVALID_ARGUMENT when unusable)."""
    which = descriptor.WhichOneof("client")
    factory: Callable[..., ChainClient]
    if which == "tendermint":
        factory = TendermintClient
    elif which == "tlog":
        factory = TlogClient
    else:
        raise RelayError(
            "INVALID_ARGUMENT",
            f"chain descriptor {descriptor.chain_id!r} names no client (tendermint or tlog)",
            chain_id=descriptor.chain_id,
            field="client",
        )
    client: ChainClient = factory(descriptor, settings=settings, sig_pool=sig_pool)
    return client
