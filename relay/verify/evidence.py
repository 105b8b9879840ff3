"""Offline checking of a ``relay.v1.Evidence`` bundle, and the pure rules the relay and an
offline verifier must apply identically.

:func:`verify_evidence` performs the seven steps documented on the ``Evidence`` message in
proto/relay/v1/types.proto (version and fields; the chain's registered anchor; the trust
path, hop by hop, each with its own ``verified_at`` as "now"; the state root in the final
header; the state proof under the pinned spec; the record under record schema 1; the relay's
attestation) and returns an :class:`EvidenceReport` listing each check with its result.
An invalid bundle raises nothing: the report says which check failed first. Malformed input
to the checker itself (bytes or JSON that are no Evidence, an anchors entry that is not a
valid chain anchor) raises :class:`~relay.verify.errors.MalformedInputError` and friends.

The helpers here turn a chain descriptor's parameters into verifier configuration
(:func:`tendermint_options`, :func:`tlog_config`, :func:`proof_spec`), build the trusted
block of a CometBFT hop (:func:`trusted_block_of`), verify a state proof
(:func:`verify_state_proof`) and a record against its key (:func:`check_record`), and compute
the attestation input (:func:`attestation_input`). The engine uses the same functions, so
evidence the relay issues is checked offline exactly as the relay checked it.

Pure (no clock, no I/O): every time comes from the bundle.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Final

from google.protobuf import json_format
from google.protobuf.message import DecodeError, Message

from relay.pb.relay.v1 import types_pb2 as pb
from relay.verify import records
from relay.verify.errors import (
    InvalidProofError,
    LimitExceededError,
    MalformedInputError,
    MismatchError,
    ProofShapeError,
    SignatureError,
    UnsupportedError,
    VerificationError,
)
from relay.verify.lightclient import tendermint as tm
from relay.verify.lightclient import tlog
from relay.verify.lightclient.cometbft_proto import decode_light_block_proto
from relay.verify.lightclient.cometbft_types import (
    ED25519_KEY,
    ChainParams,
    KeyType,
    LightBlock,
    secp256k1_key_type,
    sm2_key_type,
)
from relay.verify.merkle import ics23
from relay.verify.merkle.rfc6962 import RFC6962_SHA256, RFC6962_SM3, TreeHasher
from relay.verify.note import SignatureVerifier, parse_verifier_key
from relay.verify.signatures import (
    DEFAULT_SM2_SIGNER_ID,
    ED25519,
    Secp256k1,
    SignatureEncoding,
    Sm2,
)

EVIDENCE_VERSION: Final = 1
ATTESTATION_PREFIX: Final = b"relay.v1.Evidence\n"
MAX_EVIDENCE_BYTES: Final = 32 << 20
"""Largest encoded bundle accepted (a long trust path of big validator sets included)."""
MAX_TRUST_PATH: Final = 4096
"""Most hops a bundle's trust path may hold."""
NS: Final = 1_000_000_000

STEP_NAMES: Final = (
    "format",
    "anchor",
    "trust_path",
    "state_root",
    "proof",
    "record",
    "attestation",
)
"""The names of the seven checks, in the order of the Evidence documentation."""


class KeyAbsentError(InvalidProofError):
    """A value was claimed but the proof shows the key absent."""

    reason = "KEY_ABSENT"


class KeyPresentError(InvalidProofError):
    """Absence was claimed but the proof shows the key present."""

    reason = "KEY_PRESENT"


class RecordInvalidError(MismatchError):
    """A proven value describes a different asset or party than its key names."""

    reason = "RECORD_INVALID"


# --- descriptor parameters -> verifier configuration ----------------------------------------


def duration_ns(d: Message, *, what: str) -> int:
    """A ``google.protobuf.Duration`` in nanoseconds (must be a valid duration)."""
    seconds: int = getattr(d, "seconds")  # noqa: B009 - Duration is untyped here
    nanos: int = getattr(d, "nanos")  # noqa: B009
    if not -999_999_999 <= nanos <= 999_999_999 or (seconds > 0 > nanos or seconds < 0 < nanos):
        raise MalformedInputError(f"{what} is not a valid duration", seconds=seconds, nanos=nanos)
    return seconds * NS + nanos


def timestamp_ns(t: Message, *, what: str) -> int:
    """A ``google.protobuf.Timestamp`` in nanoseconds since the Unix epoch."""
    seconds: int = getattr(t, "seconds")  # noqa: B009
    nanos: int = getattr(t, "nanos")  # noqa: B009
    if not 0 <= nanos < NS:
        raise MalformedInputError(f"{what} has nanos out of range", nanos=nanos)
    return seconds * NS + nanos


def tree_hasher(algorithm: int, *, what: str) -> TreeHasher:
    """The RFC 6962 tree hasher of a HashAlgorithm (SHA-256 or SM3)."""
    if algorithm == pb.HASH_ALGORITHM_SHA256:
        return RFC6962_SHA256
    if algorithm == pb.HASH_ALGORITHM_SM3:
        return RFC6962_SM3
    raise UnsupportedError(f"{what}: hash algorithm must be SHA256 or SM3", algorithm=algorithm)


def validator_key_type(params: pb.TendermintClientParams) -> KeyType:
    """The validator key type a chain's ``signature_algorithm`` names. SM2 signatures are DER
    with the chain's signer ID and key field 16 (cometbft_types.SM2_PROTO_FIELD);
    secp256k1 ones ``r || s`` low-S over SHA-256, as CometBFT signs."""
    alg = params.signature_algorithm
    if params.sm2_signer_id and alg != pb.SIGNATURE_ALGORITHM_SM2:
        raise MalformedInputError("sm2_signer_id is only for SM2 chains")
    if alg == pb.SIGNATURE_ALGORITHM_ED25519:
        return ED25519_KEY
    if alg == pb.SIGNATURE_ALGORITHM_SECP256K1:
        return secp256k1_key_type(
            Secp256k1(encoding=SignatureEncoding.RAW, hash="sha256", low_s=True)
        )
    if alg == pb.SIGNATURE_ALGORITHM_SM2:
        signer_id = params.sm2_signer_id.encode("utf-8") or DEFAULT_SM2_SIGNER_ID
        return sm2_key_type(Sm2(encoding=SignatureEncoding.DER, signer_id=signer_id))
    raise UnsupportedError(
        "validator signature algorithm must be ED25519, SECP256K1 or SM2", algorithm=alg
    )


def chain_params(params: pb.TendermintClientParams) -> ChainParams:
    """The CometBFT ChainParams (hashing, validator key type) of a chain's descriptor."""
    hasher = tree_hasher(params.hash_algorithm, what="tendermint client")
    return ChainParams(hasher=hasher, key_types=(validator_key_type(params),))


def tendermint_options(
    params: pb.TendermintClientParams, *, chain_id: str
) -> tuple[tm.TrustOptions, int]:
    """TrustOptions and the unbonding period (ns) of a CometBFT chain's descriptor. The
    trust level defaults to 1/3 when unset."""
    trusting = duration_ns(params.trusting_period, what="trusting_period")
    unbonding = duration_ns(params.unbonding_period, what="unbonding_period")
    drift = duration_ns(params.max_clock_drift, what="max_clock_drift")
    if trusting <= 0:
        raise MalformedInputError("trusting_period must be positive")
    if unbonding <= trusting:
        raise MalformedInputError(
            "unbonding_period must be longer than trusting_period",
            expected=f"> {trusting}",
            calculated=unbonding,
        )
    if drift < 0:
        raise MalformedInputError("max_clock_drift must not be negative")
    level = tm.ONE_THIRD
    if params.HasField("trust_level"):
        try:
            level = tm.TrustLevel(params.trust_level.numerator, params.trust_level.denominator)
        except ValueError as e:
            raise MalformedInputError(str(e)) from None
    options = tm.TrustOptions(
        chain_id=chain_id,
        trusting_period_ns=trusting,
        max_clock_drift_ns=drift,
        trust_level=level,
        params=chain_params(params),
    )
    return options, unbonding


def tlog_config(params: pb.TlogClientParams) -> tuple[tlog.TlogTrustConfig, int]:
    """The log client's trust configuration and the witness threshold of a descriptor.

    The client itself runs with quorum 0: a checkpoint the log signed is accepted, and the
    threshold decides only the assurance (ASSURANCE_FULL when at least ``threshold``
    witnesses cosigned, else ASSURANCE_WITNESS_QUORUM_UNMET), as TlogClientParams says."""
    log_key = parse_verifier_key(params.log_verifier_key)
    if not isinstance(log_key, SignatureVerifier):
        raise MalformedInputError("log_verifier_key must be a note signing key, not a witness key")
    witnesses = tuple(parse_verifier_key(k) for k in params.witness_verifier_keys)
    if params.witness_threshold > len(witnesses):
        raise MalformedInputError(
            "witness_threshold is larger than the number of witnesses",
            expected=f"<= {len(witnesses)}",
            calculated=params.witness_threshold,
        )
    config = tlog.TlogTrustConfig(
        origin=params.origin,
        log_key=log_key,
        hasher=tree_hasher(params.hash_algorithm, what="tlog client"),
        witnesses=witnesses,
        quorum=0,
    )
    return config, params.witness_threshold


_ICS23_SPECS: Final[Mapping[int, ics23.ProofSpec]] = {
    pb.PROOF_SPEC_ICS23_IAVL: ics23.IAVL_SPEC,
    pb.PROOF_SPEC_ICS23_TENDERMINT: ics23.TENDERMINT_SPEC,
    pb.PROOF_SPEC_ICS23_SMT: ics23.SMT_SPEC,
    pb.PROOF_SPEC_ICS23_SMT_SM3: ics23.SMT_SM3_SPEC,
}


def proof_spec(spec: int) -> ics23.ProofSpec:
    """The pinned ICS-23 spec of a ProofSpec value. Other proof specs (RFC 6962 inclusion,
    MPT) are not served by schema-1 state queries yet: UnsupportedError."""
    found = _ICS23_SPECS.get(spec)
    if found is None:
        raise UnsupportedError("proof spec is not supported for state proofs", proof_spec=spec)
    return found


def can_prove_absence(spec: int) -> bool:
    """Whether proofs under ``spec`` can show a key absent (every ICS-23 spec can)."""
    return spec in _ICS23_SPECS


# --- CometBFT hops ---------------------------------------------------------------------------


def trusted_block_of(block: LightBlock) -> tm.TrustedBlock:
    """The trusted block a verified light block becomes, as CometBFT's light client uses it
    (``light/client.go`` verifySkipping passes the trusted block's own validator set as
    ``trustedVals``): an adjacent next hop must carry the validators the header committed to
    as next (``next_validators_hash``); a non-adjacent one must be signed by more than the
    trust level of the validators that signed this block. The protobuf light block carries
    no next validator set, so this is what an offline verifier can replay from evidence."""
    header = block.header
    return tm.TrustedBlock(
        chain_id=header.chain_id,
        height=header.height,
        time_ns=header.time_ns,
        next_validators_hash=header.next_validators_hash,
        next_validators=block.validator_set,
        header_hash=header.hash,
        app_hash=header.app_hash,
    )


def decode_anchor_block(
    anchor: pb.TendermintAnchor, *, options: tm.TrustOptions, max_bytes: int = MAX_EVIDENCE_BYTES
) -> LightBlock:
    """Decode a registered CometBFT anchor and check it is what it claims: its height and
    header hash, its chain, and its commit by more than 2/3 of its own validators. (Whether
    it was fresh when registered is the relay's check; an offline verifier trusts it by the
    anchors file.)"""
    block = decode_light_block_proto(anchor.light_block, params=options.params, max_bytes=max_bytes)
    if anchor.height != block.height:
        raise MismatchError(
            "anchor height does not match its light block",
            expected=anchor.height,
            calculated=block.height,
        )
    if anchor.header_hash and anchor.header_hash != block.header.hash:
        raise MismatchError(
            "anchor header_hash does not match its light block",
            expected=anchor.header_hash,
            calculated=block.header.hash,
        )
    tm.validate_light_block(block, chain_id=options.chain_id, params=options.params)
    tm.verify_commit_light(block.signed_header, block.validator_set)
    return block


# --- state proofs and records ----------------------------------------------------------------


def verify_state_proof(
    *, spec: int, proof_format: int, root: bytes, key: bytes, value: bytes | None, proof: bytes
) -> None:
    """Verify ``proof`` (format ``proof_format``) of ``key -> value`` (membership) or of
    ``key`` absent (``value`` None) under ``root`` with the pinned ``spec``.

    Raises UnsupportedError / ProofShapeError for a spec or format that does not fit,
    MalformedInputError for undecodable proofs, :class:`KeyAbsentError` when a value was
    claimed but the proof validly shows absence, :class:`KeyPresentError` for the reverse,
    and the ICS-23 verifier's errors (VALUE_MISMATCH, ROOT_MISMATCH, PROOF_INVALID...).
    """
    pinned = proof_spec(spec)
    if proof_format != pb.PROOF_FORMAT_ICS23:
        raise ProofShapeError(
            "proof format does not fit the chain's pinned ICS-23 spec",
            check="proof_format",
            expected=pb.PROOF_FORMAT_ICS23,
            calculated=proof_format,
        )
    decoded = ics23.decode_commitment_proof(proof)
    if value is not None:
        if isinstance(decoded, ics23.NonExistenceProof):
            ics23.verify_non_membership(spec=pinned, root=root, proof=decoded, key=key)
            raise KeyAbsentError("a value was claimed but the proof shows the key absent")
        ics23.verify_membership(spec=pinned, root=root, proof=decoded, key=key, value=value)
        return
    if isinstance(decoded, ics23.ExistenceProof):
        try:
            ics23.verify_membership(
                spec=pinned, root=root, proof=decoded, key=key, value=decoded.value
            )
        except VerificationError:
            pass
        else:
            raise KeyPresentError("absence was claimed but the proof shows the key present")
    ics23.verify_non_membership(spec=pinned, root=root, proof=decoded, key=key)


EVIDENCE_RECORD_FIELDS: Final[Mapping[str, str]] = {
    "ownership": "ownership",
    "credit_party_key": "credit",
    "account": "account",
    "history": "history",
    "holdings_party_key": "holdings",
}
"""RecordKey field -> the Evidence ``record`` oneof field that carries that record."""


def check_record(record_key: pb.RecordKey, record: Message) -> None:
    """The record describes exactly what its key names (RecordInvalidError otherwise)."""
    field = record_key.WhichOneof("record")
    named: Message | bytes
    got: Message | bytes
    if isinstance(record, pb.OwnershipRecord) and field == "ownership":
        named, got = record_key.ownership, record.asset
    elif isinstance(record, pb.AccountRecord) and field == "account":
        named, got = record_key.account, record.account
    elif isinstance(record, pb.AssetHistory) and field == "history":
        named, got = record_key.history, record.asset
    elif isinstance(record, pb.CreditRecord) and field == "credit_party_key":
        named, got = record_key.credit_party_key, record.party.party_key
    elif isinstance(record, pb.PartyHoldings) and field == "holdings_party_key":
        named, got = record_key.holdings_party_key, record.party_key
    else:
        raise RecordInvalidError(
            "record type does not fit its key",
            expected=field,
            calculated=type(record).__name__,
        )
    if named != got:
        raise RecordInvalidError(
            f"the {field} record describes something other than its key names",
            expected=_show(named),
            calculated=_show(got),
        )


def _show(value: Message | bytes) -> str:
    if isinstance(value, bytes):
        return value.hex()
    return json_format.MessageToJson(value, indent=None, sort_keys=True)


# --- attestation -----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class RelayKey:
    """A relay's public signing key as an anchors file lists it."""

    key_id: str
    algorithm: int
    public_key: bytes
    sm2_signer_id: bytes = b""


def attestation_input(evidence: pb.Evidence) -> bytes:
    """``"relay.v1.Evidence\\n"`` || the deterministic encoding of ``evidence`` without
    ``relay_attestation`` (what the relay signs)."""
    unsigned = pb.Evidence()
    unsigned.CopyFrom(evidence)
    unsigned.ClearField("relay_attestation")
    return ATTESTATION_PREFIX + unsigned.SerializeToString(deterministic=True)


def verify_attestation(evidence: pb.Evidence, *, key: RelayKey) -> None:
    """Check the bundle's relay signature under ``key`` (SignatureError otherwise)."""
    att = evidence.relay_attestation
    if att.key_id != key.key_id:
        raise MismatchError(
            "attestation key id differs", expected=key.key_id, calculated=att.key_id
        )
    if att.algorithm != key.algorithm:
        raise SignatureError(
            "attestation algorithm differs from the relay key's",
            expected=key.algorithm,
            calculated=att.algorithm,
        )
    message = attestation_input(evidence)
    if key.algorithm == pb.SIGNATURE_ALGORITHM_ED25519:
        if att.sm2_signer_id:
            raise SignatureError("an Ed25519 attestation carries no SM2 signer id")
        ED25519.verify(public_key=key.public_key, message=message, signature=att.signature)
        return
    if key.algorithm == pb.SIGNATURE_ALGORITHM_SM2:
        signer_id = key.sm2_signer_id or DEFAULT_SM2_SIGNER_ID
        claimed = att.sm2_signer_id.encode("utf-8") or DEFAULT_SM2_SIGNER_ID
        if claimed != signer_id:
            raise SignatureError(
                "attestation SM2 signer id differs from the relay key's",
                expected=signer_id,
                calculated=claimed,
            )
        scheme = Sm2(encoding=SignatureEncoding.DER, signer_id=signer_id)
        scheme.verify(public_key=key.public_key, message=message, signature=att.signature)
        return
    raise UnsupportedError("relay attestations are Ed25519 or SM2", algorithm=key.algorithm)


# --- anchors ---------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ChainAnchor:
    """What an anchors file holds for one chain: the descriptor without its adapter endpoint
    and party-key salt (client type, parameters and registered anchor, proof spec, record
    schema)."""

    chain_id: str
    client_type: int
    tendermint: pb.TendermintClientParams | None
    tlog: pb.TlogClientParams | None
    proof_spec: int
    record_schema_version: int

    @staticmethod
    def from_descriptor(descriptor: pb.ChainDescriptor) -> ChainAnchor:
        which = descriptor.WhichOneof("client")
        if which == "tendermint":
            return ChainAnchor(
                chain_id=descriptor.chain_id,
                client_type=pb.CLIENT_TYPE_TENDERMINT,
                tendermint=descriptor.tendermint,
                tlog=None,
                proof_spec=descriptor.proof_spec,
                record_schema_version=descriptor.record_schema_version,
            )
        if which == "tlog":
            return ChainAnchor(
                chain_id=descriptor.chain_id,
                client_type=pb.CLIENT_TYPE_TLOG,
                tendermint=None,
                tlog=descriptor.tlog,
                proof_spec=descriptor.proof_spec,
                record_schema_version=descriptor.record_schema_version,
            )
        raise MalformedInputError("chain descriptor names no client", chain_id=descriptor.chain_id)


# --- the report ------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Check:
    """One check of the evidence: its name (one of STEP_NAMES), result and explanation;
    ``reason`` is the verifier's reason code when a verifier refused something (e.g.
    ``ROOT_MISMATCH``), else empty."""

    name: str
    passed: bool
    detail: str
    reason: str = ""


@dataclass(frozen=True, slots=True)
class EvidenceReport:
    """The outcome of :func:`verify_evidence`. Steps 1-6 stop at the first failure (each
    needs the previous); the attestation (step 7) is always checked. ``ok`` only when all
    seven checks ran and passed."""

    checks: tuple[Check, ...]
    chain_id: str
    height: int
    assurance: int
    record_kind: str | None

    @property
    def ok(self) -> bool:
        return len(self.checks) == len(STEP_NAMES) and all(c.passed for c in self.checks)

    @property
    def first_failure(self) -> Check | None:
        return next((c for c in self.checks if not c.passed), None)

    @property
    def chain_verified(self) -> bool:
        """Steps 1-6 passed: the record is proven from the anchor without trusting the
        relay (step 7 only says which relay issued it)."""
        return len(self.checks) == len(STEP_NAMES) and all(c.passed for c in self.checks[:-1])


class _Failed(Exception):
    def __init__(self, detail: str, reason: str = "") -> None:
        self.detail = detail
        self.reason = reason
        super().__init__(detail)


def _fail(what: str, e: VerificationError) -> _Failed:
    return _Failed(f"{what}: {e.reason}: {e}", e.reason)


@dataclass(frozen=True, slots=True)
class _Hop:
    height: int
    format: int
    header: bytes
    consistency_proof: tuple[bytes, ...]
    verified_at: Message | None


@dataclass(slots=True)
class _Walk:
    state_root: bytes | None = None
    header_time_ns: int | None = None
    assurance: int = pb.ASSURANCE_UNSPECIFIED


def _hops(evidence: pb.Evidence) -> list[_Hop]:
    hops = [
        _Hop(
            s.height,
            s.format,
            s.header,
            tuple(s.consistency_proof),
            s.verified_at if s.HasField("verified_at") else None,
        )
        for s in evidence.trust_path
    ]
    hops.append(
        _Hop(
            evidence.height,
            evidence.header_format,
            evidence.header,
            tuple(evidence.header_consistency_proof),
            evidence.header_verified_at if evidence.HasField("header_verified_at") else None,
        )
    )
    return hops


def _now(hop: _Hop) -> int:
    if hop.verified_at is None:
        raise _Failed(f"hop at height {hop.height} has no verified_at")
    try:
        return timestamp_ns(hop.verified_at, what="verified_at")
    except VerificationError as e:
        raise _fail(f"hop at height {hop.height}", e) from None


def _walk_tendermint(evidence: pb.Evidence, anchor: ChainAnchor, hops: list[_Hop]) -> _Walk:
    assert anchor.tendermint is not None
    options, _ = tendermint_options(anchor.tendermint, chain_id=anchor.chain_id)
    anchor_block = decode_anchor_block(anchor.tendermint.anchor, options=options)
    last = anchor_block
    if evidence.height == anchor_block.height:
        if len(hops) != 1:
            raise _Failed("evidence at the anchor height must have an empty trust path")
        if evidence.header != anchor.tendermint.anchor.light_block:
            raise _Failed("header at the anchor height is not the registered anchor")
    else:
        trusted = trusted_block_of(anchor_block)
        for hop in hops:
            if hop.format != pb.HEADER_FORMAT_COMETBFT_LIGHT_BLOCK:
                raise _Failed(f"hop at height {hop.height} is not a CometBFT light block")
            if hop.consistency_proof:
                raise _Failed(f"hop at height {hop.height} carries a consistency proof")
            if hop.height <= trusted.height:
                raise _Failed(
                    f"heights must increase along the trust path: {hop.height} follows "
                    f"{trusted.height}"
                )
            now = _now(hop)
            try:
                block = decode_light_block_proto(hop.header, params=options.params)
                if block.height != hop.height:
                    raise MismatchError(
                        "hop height differs from its light block",
                        expected=hop.height,
                        calculated=block.height,
                    )
                tm.verify_light_block(trusted=trusted, untrusted=block, options=options, now=now)
            except VerificationError as e:
                raise _fail(f"hop at height {hop.height} (from {trusted.height})", e) from None
            trusted = trusted_block_of(block)
            last = block
    return _Walk(last.header.app_hash, last.header.time_ns, pb.ASSURANCE_FULL)


def _walk_tlog(evidence: pb.Evidence, anchor: ChainAnchor, hops: list[_Hop]) -> _Walk:
    assert anchor.tlog is not None
    config, threshold = tlog_config(anchor.tlog)
    anchor_note = anchor.tlog.anchor.checkpoint
    state = tlog.initialize(config=config, anchor_note=anchor_note, now=_now(hops[0]) // NS)
    if evidence.height == state.trusted.size:
        if len(hops) != 1:
            raise _Failed("evidence at the anchor size must have an empty trust path")
        if evidence.header != anchor_note:
            raise _Failed("checkpoint at the anchor size is not the registered anchor")
        if evidence.header_consistency_proof:
            raise _Failed("evidence at the anchor size carries a consistency proof")
    else:
        for hop in hops:
            if hop.format != pb.HEADER_FORMAT_C2SP_CHECKPOINT:
                raise _Failed(f"hop at size {hop.height} is not a C2SP checkpoint")
            previous = state.trusted.size
            if hop.height <= previous:
                raise _Failed(
                    f"tree sizes must increase along the trust path: {hop.height} follows "
                    f"{previous}"
                )
            now = _now(hop) // NS
            try:
                state = tlog.update(state, hop.header, hop.consistency_proof, now=now)
            except VerificationError as e:
                raise _fail(f"hop at size {hop.height} (from {previous})", e) from None
            if state.trusted.size != hop.height:
                raise _Failed(
                    f"hop labelled size {hop.height} holds a checkpoint of size "
                    f"{state.trusted.size}"
                )
    trusted = state.trusted
    counted = len(trusted.cosignatures)
    assurance = pb.ASSURANCE_FULL if counted >= threshold else pb.ASSURANCE_WITNESS_QUORUM_UNMET
    newest = max((ts for _, ts in trusted.cosignatures), default=None)
    return _Walk(
        trusted.checkpoint.map_root,
        None if newest is None else newest * NS,
        assurance,
    )


def _has_unknown_fields(message: pb.Evidence) -> bool:
    known = pb.Evidence()
    known.CopyFrom(message)
    known.DiscardUnknownFields()
    return known.SerializeToString(deterministic=True) != message.SerializeToString(
        deterministic=True
    )


def _step_format(evidence: pb.Evidence) -> str:
    if evidence.version != EVIDENCE_VERSION:
        raise _Failed(f"evidence version {evidence.version} is not known (this checker: 1)")
    if _has_unknown_fields(evidence):
        raise _Failed("evidence has fields this checker does not know (a newer format?)")
    if len(evidence.trust_path) > MAX_TRUST_PATH:
        raise _Failed(f"trust path has {len(evidence.trust_path)} hops (at most {MAX_TRUST_PATH})")
    if not evidence.header:
        raise _Failed("evidence has no header")
    return f"version {evidence.version}"


def _step_anchor(evidence: pb.Evidence, anchors: Mapping[str, ChainAnchor]) -> ChainAnchor:
    anchor = anchors.get(evidence.chain_id)
    if anchor is None:
        raise _Failed(f"chain {evidence.chain_id!r} is not in the anchors file")
    if anchor.client_type != evidence.client_type:
        raise _Failed(
            f"client type {evidence.client_type} differs from the anchors file's "
            f"{anchor.client_type}"
        )
    if anchor.proof_spec != evidence.proof_spec:
        raise _Failed(
            f"proof spec {evidence.proof_spec} differs from the anchors file's {anchor.proof_spec}"
        )
    if anchor.record_schema_version != records.SCHEMA_VERSION:
        raise _Failed(f"record schema {anchor.record_schema_version} is not supported")
    return anchor


def _step_state_root(evidence: pb.Evidence, walk: _Walk) -> str:
    if walk.state_root is None:
        raise _Failed("the final checkpoint carries no map-root state root")
    if walk.state_root != evidence.state_root:
        raise _Failed(
            f"state_root {evidence.state_root.hex()} is not the header's {walk.state_root.hex()}"
        )
    try:
        claimed = (
            timestamp_ns(evidence.header_time, what="header_time")
            if evidence.HasField("header_time")
            else None
        )
    except VerificationError as e:  # a bundle field, so this check fails rather than raising
        raise _fail("header_time", e) from None
    if claimed != walk.header_time_ns:
        raise _Failed(f"header_time {claimed} is not the header's {walk.header_time_ns}")
    return f"state root {walk.state_root.hex()}"


def _step_proof(evidence: pb.Evidence, anchor: ChainAnchor, walk: _Walk) -> str:
    assert walk.state_root is not None
    value = evidence.value if evidence.HasField("value") else None
    try:
        verify_state_proof(
            spec=anchor.proof_spec,
            proof_format=evidence.proof_format,
            root=walk.state_root,
            key=evidence.key,
            value=value,
            proof=evidence.proof,
        )
    except VerificationError as e:
        raise _fail("state proof", e) from None
    return "membership of key and value" if value is not None else "absence of key"


def _step_record(evidence: pb.Evidence) -> tuple[str, str | None]:
    carried = evidence.WhichOneof("record")
    if not evidence.HasField("value"):
        if carried is not None:
            raise _Failed("a non-membership bundle carries a record")
        return "no record (absence proven)", None
    if carried is None:
        # A raw GetState answer: the value is proven, no record is claimed.
        return "no record claimed (raw state value)", None
    try:
        record_key, record = records.decode_for_key(evidence.key, evidence.value)
        check_record(record_key, record)
    except VerificationError as e:
        raise _fail("record", e) from None
    field = record_key.WhichOneof("record")
    assert field is not None
    expected_field = EVIDENCE_RECORD_FIELDS[field]
    if carried != expected_field:
        raise _Failed(f"bundle carries a {carried} record but its key names a {expected_field}")
    if getattr(evidence, carried) != record:
        raise _Failed(f"the {carried} record differs from the proven value")
    return f"{carried} record matches the proven value", carried


def _step_attestation(evidence: pb.Evidence, relay_keys: Mapping[str, RelayKey]) -> str:
    if not evidence.HasField("relay_attestation"):
        raise _Failed("bundle is not signed by a relay")
    key_id = evidence.relay_attestation.key_id
    key = relay_keys.get(key_id)
    if key is None:
        raise _Failed(f"relay key {key_id!r} is not in the anchors file")
    try:
        verify_attestation(evidence, key=key)
    except VerificationError as e:
        raise _fail("relay attestation", e) from None
    return f"signed by relay key {key_id!r}"


def verify_evidence(
    evidence: pb.Evidence,
    *,
    anchors: Mapping[str, ChainAnchor],
    relay_keys: Mapping[str, RelayKey],
) -> EvidenceReport:
    """Check ``evidence`` against the chain anchors and relay keys of an anchors file, as
    the Evidence message documents (seven steps); see :class:`EvidenceReport`.

    Raises MalformedInputError (or another VerificationError) only for a broken anchors
    entry: an anchor whose parameters or registered anchor do not decode or verify is the
    checker's configuration, not the bundle's fault.
    """
    if not isinstance(evidence, pb.Evidence):
        raise MalformedInputError("evidence must be a relay.v1.Evidence message")
    found: dict[str, ChainAnchor] = {}
    walk = _Walk()
    record_kind: str | None = None

    def step_anchor() -> str:
        found["anchor"] = _step_anchor(evidence, anchors)
        return f"chain {evidence.chain_id!r} found in the anchors file"

    def step_trust_path() -> str:
        nonlocal walk
        anchor = found["anchor"]
        hops = _hops(evidence)
        if anchor.client_type == pb.CLIENT_TYPE_TENDERMINT:
            walk = _walk_tendermint(evidence, anchor, hops)
        elif anchor.client_type == pb.CLIENT_TYPE_TLOG:
            walk = _walk_tlog(evidence, anchor, hops)
        else:
            raise _Failed(f"client type {anchor.client_type} is not supported")
        if walk.assurance != evidence.assurance:
            raise _Failed(
                f"assurance {evidence.assurance} is claimed but the path gives {walk.assurance}"
            )
        return f"{len(hops)} hop(s) from the registered anchor verified"

    def step_record() -> str:
        nonlocal record_kind
        detail, record_kind = _step_record(evidence)
        return detail

    steps: tuple[Callable[[], str], ...] = (
        lambda: _step_format(evidence),
        step_anchor,
        step_trust_path,
        lambda: _step_state_root(evidence, walk),
        lambda: _step_proof(evidence, found["anchor"], walk),
        step_record,
    )
    checks: list[Check] = []
    for name, step in zip(STEP_NAMES, steps, strict=False):
        try:
            checks.append(Check(name, True, step()))
        except _Failed as f:
            checks.append(Check(name, False, f.detail, f.reason))
            break
    try:
        checks.append(Check("attestation", True, _step_attestation(evidence, relay_keys)))
    except _Failed as f:
        checks.append(Check("attestation", False, f.detail, f.reason))
    return EvidenceReport(
        checks=tuple(checks),
        chain_id=evidence.chain_id,
        height=evidence.height,
        assurance=walk.assurance,
        record_kind=record_kind,
    )


# --- decoding bundles ------------------------------------------------------------------------


def evidence_from_bytes(data: bytes, *, max_bytes: int = MAX_EVIDENCE_BYTES) -> pb.Evidence:
    """Parse a binary Evidence (MalformedInputError / LimitExceededError)."""
    if len(data) > max_bytes:
        raise LimitExceededError("evidence is too large", length=len(data), limit=max_bytes)
    message = pb.Evidence()
    try:
        message.ParseFromString(data)
    except (DecodeError, RecursionError, ValueError) as e:
        raise MalformedInputError("bytes are not a relay.v1.Evidence", detail=str(e)) from None
    return message


def evidence_from_json(text: str | bytes, *, max_bytes: int = MAX_EVIDENCE_BYTES) -> pb.Evidence:
    """Parse the proto3 JSON form of an Evidence. Unknown fields (a newer format) are
    refused with MalformedInputError, as step 1 requires."""
    if len(text) > max_bytes:
        raise LimitExceededError("evidence is too large", length=len(text), limit=max_bytes)
    message = pb.Evidence()
    try:
        json_format.Parse(text, message, ignore_unknown_fields=False, max_recursion_depth=64)
    except (json_format.ParseError, RecursionError, ValueError, UnicodeDecodeError) as e:
        raise MalformedInputError(
            "not the JSON form of a relay.v1.Evidence (or it has fields this checker does not "
            "know)",
            detail=str(e)[:300],
        ) from None
    return message
