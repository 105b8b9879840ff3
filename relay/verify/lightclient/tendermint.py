"""The CometBFT (Tendermint) light client: trust a header because validators the client
already trusts signed it.

Implements the light-client verification of CometBFT ``light/verifier.go`` (``VerifyAdjacent``,
``VerifyNonAdjacent``), the commit checks of ``types/validation.go`` (``VerifyCommitLight``,
``VerifyCommitLightTrusting``), skipping verification with the bisection pivot of
``light/client.go`` (``verifySkipping``), and the client and consensus states, misbehaviour
handling and recovery of ibc-go ``modules/light-clients/07-tendermint``.

Everything here is pure: time is the keyword-only ``now`` (nanoseconds since the Unix epoch),
light blocks come from a caller-supplied ``fetch``, and parallel signature checking uses a
caller-supplied ``map``-like callable (for example ``ThreadPoolExecutor.map``). States are
frozen values; every function returns new ones.

Thresholds are strict, as upstream: a commit is trusted only when the signing power is
*more than* ``trust_level`` of the trusted validators' power (exactly 1/3 is not enough) and
*more than* 2/3 of the new validators' power (exactly 2/3 is not enough).

A failure raises :class:`NotEnoughTrust` when the trusted validators are too few among the
signers (skipping verification then tries a closer height); every other failure means the
block is invalid or trust has expired, and raises another
:class:`~relay.verify.errors.VerificationError` (never a bare ``False``).

Two deliberate choices where upstream implementations differ: the commit's shape (one
signature slot per validator, each slot's address equal to that validator's, no validator
twice, at least one signature) is checked before any trust is counted, as tendermint-rs does
(CometBFT finds the same faults later, in ``VerifyCommitLight``); and the signing power is
counted before signatures are checked, as CometBFT's batch path does for Ed25519, so the
sequential and the parallel paths give the same verdict. Duplicates are caught in the whole
commit, also past the point where counting stops early.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, replace
from typing import Any, Literal

from relay.verify.errors import (
    LimitExceededError,
    MalformedInputError,
    MismatchError,
    SignatureError,
    VerificationError,
)
from relay.verify.lightclient.cometbft_encoding import VoteSignBytes
from relay.verify.lightclient.cometbft_types import (
    BLOCK_ID_FLAG_ABSENT,
    BLOCK_ID_FLAG_COMMIT,
    BLOCK_ID_FLAG_NIL,
    DEFAULT_PARAMS,
    ChainParams,
    Commit,
    Header,
    LightBlock,
    SignedHeader,
    Validator,
    ValidatorSet,
)
from relay.verify.signatures import SignatureScheme

SigMap = Callable[[Callable[[Any], Any], Iterable[Any]], Iterable[Any]]
"""A ``map``-like callable, e.g. ``ThreadPoolExecutor(2).map``, created by the caller."""

MAX_SKIPPING_VERIFICATIONS = 10_000
"""Upper bound on verification attempts of one skipping walk. Upstream restarts from the
target after every hop, so a chain whose validators change almost every block costs about
hops x log2(gap) attempts; attempts that lack trust stop before any signature is checked."""

_MIN_PARALLEL_SIGNATURES = 8


# --- errors ----------------------------------------------------------------------------------


class HeaderInvalid(VerificationError):
    """The light block is invalid: malformed for its chain, inconsistent with itself, not
    newer than the trusted block, or not signed by more than 2/3 of its own validators."""

    reason = "HEADER_INVALID"


class HeaderMismatch(MismatchError, HeaderInvalid):
    """A value in the light block differs from the one it must equal (validators hash, block
    id, chain id, commit height...)."""

    reason = "HEADER_MISMATCH"


class NonMonotonic(HeaderInvalid):
    """The new header's height or time is not after the trusted header's."""

    reason = "NON_MONOTONIC"

    def __init__(self, message: str, *, expected: object, calculated: object, **context: object):
        self.expected = expected
        self.calculated = calculated
        super().__init__(message, expected=expected, calculated=calculated, **context)


class HeaderFromFuture(HeaderInvalid):
    """The new header's time is not before ``now`` plus the allowed clock drift."""

    reason = "HEADER_FROM_FUTURE"


class InsufficientVotingPower(HeaderInvalid):
    """Not more than 2/3 of the block's own validator set signed its commit. ``expected`` is
    the power that had to be exceeded, ``calculated`` the power that signed."""

    reason = "INSUFFICIENT_VOTING_POWER"

    def __init__(self, message: str, *, needed: int, tallied: int, total: int, **context: object):
        self.needed = self.expected = needed
        self.tallied = self.calculated = tallied
        self.total = total
        super().__init__(message, needed=needed, tallied=tallied, total=total, **context)


class DuplicateVote(HeaderInvalid):
    """The same validator appears twice among a commit's signatures."""

    reason = "DUPLICATE_VOTE"


class CommitSignatureInvalid(SignatureError):
    """A precommit signature in the commit does not verify under its validator's key."""

    reason = "COMMIT_SIGNATURE_INVALID"


class NotEnoughTrust(VerificationError):
    """The block may be valid, but not more than ``trust_level`` of the trusted validators
    signed it: the client cannot trust it from here (``ErrNewValSetCantBeTrusted``).
    ``expected`` is the trusted power that had to be exceeded, ``calculated`` what signed."""

    reason = "NOT_ENOUGH_TRUST"

    def __init__(self, message: str, *, needed: int, tallied: int, total: int, **context: object):
        self.needed = self.expected = needed
        self.tallied = self.calculated = tallied
        self.total = total
        super().__init__(message, needed=needed, tallied=tallied, total=total, **context)


class TrustExpired(VerificationError):
    """The trusted block is older than the trusting period (``ErrOldHeaderExpired``)."""

    reason = "TRUST_EXPIRED"


class ClientFrozen(VerificationError):
    """The client saw misbehaviour and refuses updates until recovered with a new anchor."""

    reason = "CLIENT_FROZEN"


class MisbehaviourInvalid(VerificationError):
    """Submitted misbehaviour evidence does not prove misbehaviour."""

    reason = "MISBEHAVIOUR_INVALID"


class RecoveryRefused(VerificationError):
    """A recovery was asked for a client that is neither frozen nor expired, or with an
    anchor that cannot serve."""

    reason = "RECOVERY_REFUSED"


# --- options and trusted state ---------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class TrustLevel:
    """A fraction in [1/3, 1] (``light.ValidateTrustLevel``)."""

    numerator: int
    denominator: int

    def __post_init__(self) -> None:
        n, d = self.numerator, self.denominator
        if not (0 < d < 2**63 and 0 <= n < 2**63) or n * 3 < d or n > d:
            raise ValueError(f"trust level {n}/{d} is not within [1/3, 1]")

    def needed(self, total: int) -> int:
        """The power that must be *exceeded*: ``total * numerator // denominator``."""
        return total * self.numerator // self.denominator


ONE_THIRD = TrustLevel(1, 3)
TWO_THIRDS = TrustLevel(2, 3)


@dataclass(frozen=True, slots=True)
class TrustOptions:
    """What verification needs to know about a chain, fixed by its descriptor."""

    chain_id: str
    trusting_period_ns: int
    max_clock_drift_ns: int
    trust_level: TrustLevel = ONE_THIRD
    params: ChainParams = DEFAULT_PARAMS

    def __post_init__(self) -> None:
        if self.trusting_period_ns <= 0:
            raise ValueError("trusting period must be positive")
        if self.max_clock_drift_ns < 0:
            raise ValueError("max clock drift must not be negative")


@dataclass(frozen=True, slots=True)
class TrustedBlock:
    """What the client trusts at one height: enough of the header to check the next one, and
    the next validator set (whose hash the header committed to)."""

    chain_id: str
    height: int
    time_ns: int
    next_validators_hash: bytes
    next_validators: ValidatorSet
    header_hash: bytes = b""
    app_hash: bytes = b""

    @staticmethod
    def of(header: Header, next_validators: ValidatorSet | None) -> TrustedBlock:
        """Trust ``header`` with ``next_validators``, which must hash to the header's
        ``next_validators_hash``."""
        if next_validators is None:
            raise MalformedInputError(
                "a trusted block needs its next validator set", height=header.height
            )
        if next_validators.hash != header.next_validators_hash:
            raise HeaderMismatch(
                "next validator set does not hash to the header's next_validators_hash",
                expected=header.next_validators_hash,
                calculated=next_validators.hash,
                height=header.height,
            )
        return TrustedBlock(
            chain_id=header.chain_id,
            height=header.height,
            time_ns=header.time_ns,
            next_validators_hash=header.next_validators_hash,
            next_validators=next_validators,
            header_hash=header.hash,
            app_hash=header.app_hash,
        )

    @staticmethod
    def from_light_block(block: LightBlock) -> TrustedBlock:
        return TrustedBlock.of(block.header, block.next_validator_set)

    @staticmethod
    def from_genesis(
        *, chain_id: str, genesis_time_ns: int, validators: ValidatorSet, initial_height: int = 1
    ) -> TrustedBlock:
        """Trust a chain from its genesis: the genesis validators sign ``initial_height``.

        There is no header below the first block, so this stands for one at
        ``initial_height - 1``, a nanosecond before genesis time (CometBFT gives the first
        block the genesis time itself, and a verified header must be strictly later).
        """
        if initial_height < 1:
            raise MalformedInputError("initial height must be positive", height=initial_height)
        return TrustedBlock(
            chain_id=chain_id,
            height=initial_height - 1,
            time_ns=genesis_time_ns - 1,
            next_validators_hash=validators.hash,
            next_validators=validators,
        )


@dataclass(frozen=True, slots=True)
class Tally:
    """Voting power counted for one threshold: signing power ``tallied`` exceeded ``needed``
    out of ``total``."""

    tallied: int
    needed: int
    total: int


@dataclass(frozen=True, slots=True)
class Verified:
    """What a successful verification established, for logs and evidence."""

    height: int
    adjacent: bool
    signatures_checked: int
    trusting: Tally | None
    signing: Tally


# --- commit checks ---------------------------------------------------------------------------


def check_commit_shape(commit: Commit, validators: ValidatorSet) -> None:
    """The commit has one slot per validator of ``validators`` (canonical order), every
    non-absent slot names that validator, no validator signs twice, and at least one
    validator signed (``verifyBasicValsAndCommit``; tendermint-rs ``validate_full``)."""
    sigs = commit.signatures
    seen: set[bytes] = set()
    present = 0
    for i, s in enumerate(sigs):
        if s.block_id_flag == BLOCK_ID_FLAG_ABSENT:
            continue
        present += 1
        if s.validator_address in seen:
            raise DuplicateVote(
                "validator signed the commit twice", address=s.validator_address, index=i
            )
        seen.add(s.validator_address)
    if len(sigs) != len(validators):
        raise HeaderMismatch(
            "commit must have one signature slot per validator",
            expected=len(validators),
            calculated=len(sigs),
        )
    if not present:
        raise HeaderInvalid("commit has no signatures, only absent slots")
    vals = validators.validators
    for i, s in enumerate(sigs):
        if s.block_id_flag != BLOCK_ID_FLAG_ABSENT and s.validator_address != vals[i].address:
            raise HeaderMismatch(
                "commit signature slot is not the validator at that index",
                expected=vals[i].address,
                calculated=s.validator_address,
                index=i,
            )


_Check = tuple[int, SignatureScheme, bytes, bytes, bytes]


def _first_bad(chunk: Sequence[_Check]) -> int | None:
    for index, scheme, key, message, signature in chunk:
        try:
            scheme.verify(public_key=key, message=message, signature=signature)
        except SignatureError:
            return index
    return None


def _run_checks(checks: list[_Check], sig_map: SigMap | None, sig_batches: int) -> int | None:
    """Verify ``checks`` (in commit order); return the smallest index that fails, if any."""
    if sig_map is None or sig_batches < 2 or len(checks) < _MIN_PARALLEL_SIGNATURES:
        return _first_bad(checks)
    size = -(-len(checks) // sig_batches)
    chunks = [checks[i : i + size] for i in range(0, len(checks), size)]
    bad = [i for i in sig_map(_first_bad, chunks) if i is not None]
    return min(bad) if bad else None


def _count_and_verify(
    commit: Commit,
    vote_sign_bytes: VoteSignBytes,
    validators: ValidatorSet,
    *,
    needed: int,
    by_index: bool,
    verified: dict[int, bytes],
    sig_map: SigMap | None,
    sig_batches: int,
) -> tuple[int, int]:
    """Count the power of commit-flagged signatures of ``validators`` in commit order until it
    exceeds ``needed`` (CometBFT's early exit), then verify exactly those signatures.

    ``by_index``: the commit belongs to ``validators`` (slot i is validator i); otherwise
    validators are looked up by address and strangers skipped (``VerifyCommitLightTrusting``).
    ``verified`` maps commit indexes already verified to the key they verified under.
    Returns ``(tallied, signatures_checked)``; the caller raises if ``tallied <= needed``.
    """
    sigs = commit.signatures
    vals = validators.validators
    seen: set[bytes] = set()
    chosen: list[tuple[int, Validator]] = []
    tallied = 0
    for i, s in enumerate(sigs):
        if s.block_id_flag != BLOCK_ID_FLAG_COMMIT:
            continue
        if s.validator_address in seen:
            raise DuplicateVote(
                "validator signed the commit twice", address=s.validator_address, index=i
            )
        seen.add(s.validator_address)
        v = vals[i] if by_index else validators.get(s.validator_address)
        if v is None:
            continue
        chosen.append((i, v))
        tallied += v.voting_power
        if tallied > needed:
            break
    if tallied <= needed:
        # Power first, as CometBFT's batch path: no signature work when power cannot suffice.
        return tallied, 0
    # Duplicates past the early-exit point must still be caught.
    for i in range(chosen[-1][0] + 1, len(sigs)):
        s = sigs[i]
        if s.block_id_flag == BLOCK_ID_FLAG_COMMIT:
            if s.validator_address in seen:
                raise DuplicateVote(
                    "validator signed the commit twice", address=s.validator_address, index=i
                )
            seen.add(s.validator_address)
    checks: list[_Check] = []
    for i, v in chosen:
        key = v.pub_key.data
        if verified.get(i) == key:
            continue
        s = sigs[i]
        message = (
            vote_sign_bytes.for_nil(s.timestamp_ns)
            if s.block_id_flag == BLOCK_ID_FLAG_NIL
            else vote_sign_bytes.for_commit(s.timestamp_ns)
        )
        checks.append((i, v.pub_key.key_type.scheme, key, message, s.signature))
    bad = _run_checks(checks, sig_map, sig_batches)
    if bad is not None:
        raise CommitSignatureInvalid(
            "commit signature does not verify",
            index=bad,
            address=sigs[bad].validator_address,
            height=commit.height,
        )
    for i, _scheme, key, _msg, _sig in checks:
        verified[i] = key
    return tallied, len(checks)


def verify_commit_light(
    signed_header: SignedHeader,
    validators: ValidatorSet,
    *,
    verified: dict[int, bytes] | None = None,
    sig_map: SigMap | None = None,
    sig_batches: int = 2,
) -> tuple[Tally, int]:
    """More than 2/3 of ``validators`` (the block's own set) signed the commit for this
    block (``VerifyCommitLight``), after :func:`check_commit_shape`. Returns the tally and
    the number of signatures checked; raises :class:`InsufficientVotingPower`,
    :class:`CommitSignatureInvalid` or the shape check's error."""
    check_commit_shape(signed_header.commit, validators)
    return _verify_commit_light(
        signed_header.commit,
        signed_header.vote_sign_bytes,
        validators,
        verified=verified,
        sig_map=sig_map,
        sig_batches=sig_batches,
    )


def verify_commit(
    commit: Commit,
    validators: ValidatorSet,
    *,
    chain_id: str,
    sig_map: SigMap | None = None,
    sig_batches: int = 2,
) -> tuple[Tally, int]:
    """:func:`verify_commit_light` for a commit whose header is not at hand (a block's
    ``last_commit``): the sign bytes need only the chain id and the commit's block id."""
    bid = commit.block_id
    vote_sign_bytes = VoteSignBytes(
        chain_id=chain_id.encode(),
        height=commit.height,
        round_=commit.round,
        block_hash=bid.hash,
        part_total=bid.part_set_total,
        part_hash=bid.part_set_hash,
    )
    check_commit_shape(commit, validators)
    return _verify_commit_light(
        commit,
        vote_sign_bytes,
        validators,
        verified=None,
        sig_map=sig_map,
        sig_batches=sig_batches,
    )


def _verify_commit_light(
    commit: Commit,
    vote_sign_bytes: VoteSignBytes,
    validators: ValidatorSet,
    *,
    verified: dict[int, bytes] | None,
    sig_map: SigMap | None,
    sig_batches: int,
) -> tuple[Tally, int]:
    total = validators.total_voting_power
    needed = TWO_THIRDS.needed(total)
    tallied, checked = _count_and_verify(
        commit,
        vote_sign_bytes,
        validators,
        needed=needed,
        by_index=True,
        verified={} if verified is None else verified,
        sig_map=sig_map,
        sig_batches=sig_batches,
    )
    if tallied <= needed:
        raise InsufficientVotingPower(
            "not more than 2/3 of the validator set signed the commit",
            needed=needed,
            tallied=tallied,
            total=total,
            height=commit.height,
        )
    return Tally(tallied, needed, total), checked


def verify_commit_trusting(
    signed_header: SignedHeader,
    trusted_validators: ValidatorSet,
    *,
    trust_level: TrustLevel,
    verified: dict[int, bytes] | None = None,
    sig_map: SigMap | None = None,
    sig_batches: int = 2,
) -> tuple[Tally, int]:
    """More than ``trust_level`` of ``trusted_validators`` (looked up by address) signed the
    commit (``VerifyCommitLightTrusting``). Raises :class:`NotEnoughTrust`,
    :class:`DuplicateVote` or :class:`CommitSignatureInvalid`."""
    total = trusted_validators.total_voting_power
    needed = trust_level.needed(total)
    tallied, checked = _count_and_verify(
        signed_header.commit,
        signed_header.vote_sign_bytes,
        trusted_validators,
        needed=needed,
        by_index=False,
        verified={} if verified is None else verified,
        sig_map=sig_map,
        sig_batches=sig_batches,
    )
    if tallied <= needed:
        raise NotEnoughTrust(
            "not more than the trust level of the trusted validators signed the commit",
            needed=needed,
            tallied=tallied,
            total=total,
            trust_level=f"{trust_level.numerator}/{trust_level.denominator}",
            height=signed_header.header.height,
        )
    return Tally(tallied, needed, total), checked


# --- light block checks ----------------------------------------------------------------------


def validate_light_block(block: LightBlock, *, chain_id: str, params: ChainParams) -> None:
    """Everything that makes a light block consistent with itself and with its chain, without
    trust (``SignedHeader.ValidateBasic``, ``LightBlock.ValidateBasic``): chain id and block
    protocol, the commit is for this header (height and hash), the validator sets hash to the
    header's hashes, and the commit's shape fits the validator set."""
    header = block.header
    commit = block.commit
    if header.chain_id != chain_id:
        raise HeaderMismatch(
            "header belongs to another chain", expected=chain_id, calculated=header.chain_id
        )
    if header.version_block != params.block_protocol:
        raise HeaderMismatch(
            "header block protocol version differs from the chain's",
            expected=params.block_protocol,
            calculated=header.version_block,
        )
    if commit.height != header.height:
        raise HeaderMismatch(
            "commit is for another height", expected=header.height, calculated=commit.height
        )
    if commit.block_id.hash != header.hash:
        raise HeaderMismatch(
            "commit signs another block than this header",
            expected=header.hash,
            calculated=commit.block_id.hash,
            height=header.height,
        )
    if not block.validator_set.validators:
        raise HeaderInvalid("light block has an empty validator set", height=header.height)
    if block.validator_set.hash != header.validators_hash:
        raise HeaderMismatch(
            "validator set does not hash to the header's validators_hash",
            expected=header.validators_hash,
            calculated=block.validator_set.hash,
            height=header.height,
        )
    nxt = block.next_validator_set
    if nxt is not None and nxt.hash != header.next_validators_hash:
        raise HeaderMismatch(
            "next validator set does not hash to the header's next_validators_hash",
            expected=header.next_validators_hash,
            calculated=nxt.hash,
            height=header.height,
        )
    check_commit_shape(commit, block.validator_set)


def _check_not_expired(trusted: TrustedBlock, *, trusting_period_ns: int, now: int) -> None:
    expires = trusted.time_ns + trusting_period_ns
    if expires <= now:
        raise TrustExpired(
            "trusted block is older than the trusting period; re-anchor the chain",
            trusted_height=trusted.height,
            expires_at_ns=expires,
            now_ns=now,
        )


def _check_newer(header: Header, trusted: TrustedBlock, *, options: TrustOptions, now: int) -> None:
    if header.height <= trusted.height:
        raise NonMonotonic(
            "header height is not above the trusted height",
            expected=f"> {trusted.height}",
            calculated=header.height,
        )
    if header.time_ns <= trusted.time_ns:
        raise NonMonotonic(
            "header time is not after the trusted header's time",
            expected=f"> {trusted.time_ns}",
            calculated=header.time_ns,
            height=header.height,
        )
    if header.time_ns >= now + options.max_clock_drift_ns:
        raise HeaderFromFuture(
            "header time is beyond now plus the allowed clock drift",
            header_time_ns=header.time_ns,
            now_ns=now,
            max_clock_drift_ns=options.max_clock_drift_ns,
            height=header.height,
        )


def verify_light_block(
    *,
    trusted: TrustedBlock,
    untrusted: LightBlock,
    options: TrustOptions,
    now: int,
    sig_map: SigMap | None = None,
    sig_batches: int = 2,
) -> Verified:
    """Verify ``untrusted`` from ``trusted`` (``light.Verify``): adjacent when it is the next
    height (its validators must be the trusted next validators), non-adjacent otherwise (more
    than ``trust_level`` of the trusted next validators must have signed it). Either way more
    than 2/3 of its own validators must have signed it.

    Raises :class:`TrustExpired`, :class:`NotEnoughTrust` or a :class:`HeaderInvalid` (or
    signature/decoding error); returns what was verified.
    """
    if trusted.chain_id != options.chain_id:
        raise HeaderMismatch(
            "trusted block belongs to another chain",
            expected=options.chain_id,
            calculated=trusted.chain_id,
        )
    _check_not_expired(trusted, trusting_period_ns=options.trusting_period_ns, now=now)
    header = untrusted.header
    validate_light_block(untrusted, chain_id=options.chain_id, params=options.params)
    _check_newer(header, trusted, options=options, now=now)
    adjacent = header.height == trusted.height + 1
    verified: dict[int, bytes] = {}
    trusting: Tally | None = None
    checked = 0
    if adjacent:
        if header.validators_hash != trusted.next_validators_hash:
            raise HeaderMismatch(
                "adjacent header's validators are not the trusted next validators",
                expected=trusted.next_validators_hash,
                calculated=header.validators_hash,
                height=header.height,
            )
    else:
        trusting, checked = verify_commit_trusting(
            untrusted.signed_header,
            trusted.next_validators,
            trust_level=options.trust_level,
            verified=verified,
            sig_map=sig_map,
            sig_batches=sig_batches,
        )
    signing, more = _verify_commit_light(
        untrusted.commit,
        untrusted.signed_header.vote_sign_bytes,
        untrusted.validator_set,
        verified=verified,
        sig_map=sig_map,
        sig_batches=sig_batches,
    )
    return Verified(
        height=header.height,
        adjacent=adjacent,
        signatures_checked=checked + more,
        trusting=trusting,
        signing=signing,
    )


# --- skipping verification -------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class SkippingResult:
    """The outcome of skipping verification: the new trusted block, the verified light blocks
    from the first hop to the target (the trust path evidence carries), and the work done."""

    trusted: TrustedBlock
    trace: tuple[LightBlock, ...]
    verifications: int
    signatures_checked: int


def verify_skipping(
    *,
    trusted: TrustedBlock,
    target: LightBlock | int,
    fetch: Callable[[int], LightBlock],
    options: TrustOptions,
    now: int,
    sig_map: SigMap | None = None,
    sig_batches: int = 2,
    max_verifications: int = MAX_SKIPPING_VERIFICATIONS,
) -> SkippingResult:
    """Verify ``target`` from ``trusted`` by bisection (``light/client.go`` verifySkipping):
    try the target; whenever the trusted validators are too few among a block's signers
    (:class:`NotEnoughTrust`), try the next lower block already fetched, or fetch the block
    halfway between the trusted height and the failed one; each block verified becomes the
    new trusted block and the walk restarts from the target. Any other failure stops the
    walk and is raised with the heights involved.

    ``fetch(height)`` returns the light block at ``height`` (with its next validator set);
    it is called only for pivots, and for ``target`` when given as a height.
    """

    def get(height: int) -> LightBlock:
        block = fetch(height)
        if block.height != height:
            raise HeaderMismatch(
                "fetched light block is for another height",
                expected=height,
                calculated=block.height,
            )
        return block

    target_block = get(target) if isinstance(target, int) else target
    if target_block.height <= trusted.height:
        raise NonMonotonic(
            "target height is not above the trusted height",
            expected=f"> {trusted.height}",
            calculated=target_block.height,
        )
    # As upstream: ``cache`` holds the blocks still to verify, highest (the target) first;
    # ``depth`` is the one to try. After every success the walk restarts from the target.
    cache = [target_block]
    depth = 0
    current = trusted
    trace: list[LightBlock] = []
    verifications = 0
    signatures = 0
    while True:
        if verifications >= max_verifications:
            raise LimitExceededError(
                "skipping verification needs too many steps",
                limit=max_verifications,
                trusted_height=current.height,
                target_height=target_block.height,
            )
        candidate = cache[depth]
        verifications += 1
        try:
            result = verify_light_block(
                trusted=current,
                untrusted=candidate,
                options=options,
                now=now,
                sig_map=sig_map,
                sig_batches=sig_batches,
            )
        except NotEnoughTrust as e:
            e.context.setdefault("trusted_height", current.height)
            if depth == len(cache) - 1:
                # The pivot of verifySkipping: numerator 1, denominator 2.
                pivot = current.height + (candidate.height - current.height) // 2
                if not current.height < pivot < candidate.height:
                    raise  # only a gap of one is left, and adjacent steps never lack trust
                cache.append(get(pivot))
            depth += 1
            continue
        except VerificationError as e:
            e.context.setdefault("trusted_height", current.height)
            e.context.setdefault("target_height", target_block.height)
            raise
        signatures += result.signatures_checked
        trace.append(candidate)
        current = TrustedBlock.from_light_block(candidate)
        if depth == 0:
            break
        del cache[depth:]
        depth = 0
    return SkippingResult(
        trusted=current,
        trace=tuple(trace),
        verifications=verifications,
        signatures_checked=signatures,
    )


# --- client and consensus states (ibc-go 07-tendermint) --------------------------------------


@dataclass(frozen=True, slots=True)
class ConsensusState:
    """What the client keeps per verified height (ibc ``ConsensusState``), plus the header
    hash, which pins the exact header so a conflicting one at that height is caught."""

    timestamp_ns: int
    root: bytes
    next_validators_hash: bytes
    header_hash: bytes

    @staticmethod
    def of(header: Header) -> ConsensusState:
        return ConsensusState(
            timestamp_ns=header.time_ns,
            root=header.app_hash,
            next_validators_hash=header.next_validators_hash,
            header_hash=header.hash,
        )


MisbehaviourKind = Literal["DUPLICATE_HEIGHT", "BFT_TIME_VIOLATION"]


@dataclass(frozen=True, slots=True)
class Frozen:
    """Why and where a client froze."""

    height: int
    kind: MisbehaviourKind


@dataclass(frozen=True, slots=True)
class ClientState:
    """One chain's light client (ibc ``ClientState``): its options, the unbonding period the
    trusting period must stay below, the latest verified height, and whether it is frozen."""

    options: TrustOptions
    unbonding_period_ns: int
    latest_height: int
    frozen: Frozen | None = None

    def __post_init__(self) -> None:
        if self.options.trusting_period_ns >= self.unbonding_period_ns:
            raise ValueError("trusting period must be shorter than the unbonding period")
        if self.latest_height <= 0:
            raise ValueError("latest height must be positive")

    @property
    def chain_id(self) -> str:
        return self.options.chain_id

    @property
    def params(self) -> ChainParams:
        return self.options.params

    def is_expired(self, latest: ConsensusState, *, now: int) -> bool:
        return latest.timestamp_ns + self.options.trusting_period_ns <= now


@dataclass(frozen=True, slots=True)
class Misbehaviour:
    """Evidence of a fork or a time violation: two light blocks, ``block1`` at a height not
    below ``block2``'s. Same height and different headers is a fork (DUPLICATE_HEIGHT);
    ``block1`` higher but not later in time is a BFT time violation."""

    kind: MisbehaviourKind
    block1: LightBlock
    block2: LightBlock


@dataclass(frozen=True, slots=True)
class ClientUpdate:
    """The result of :func:`update_client`: the new client state, and either the consensus
    state to store for the block's height or (client now frozen) the misbehaviour found."""

    client_state: ClientState
    consensus_state: ConsensusState | None
    misbehaviour: Misbehaviour | None
    verified: Verified | None


def _check_anchor(
    anchor: LightBlock,
    *,
    options: TrustOptions,
    now: int,
    sig_map: SigMap | None,
    sig_batches: int,
) -> None:
    validate_light_block(anchor, chain_id=options.chain_id, params=options.params)
    if anchor.next_validator_set is None:
        raise MalformedInputError("a trust anchor needs its next validator set")
    header = anchor.header
    if header.time_ns + options.trusting_period_ns <= now:
        raise TrustExpired(
            "trust anchor is already older than the trusting period",
            height=header.height,
            now_ns=now,
        )
    if header.time_ns >= now + options.max_clock_drift_ns:
        raise HeaderFromFuture(
            "trust anchor time is beyond now plus the allowed clock drift",
            header_time_ns=header.time_ns,
            now_ns=now,
        )
    verify_commit_light(
        anchor.signed_header, anchor.validator_set, sig_map=sig_map, sig_batches=sig_batches
    )


def create_client(
    *,
    options: TrustOptions,
    unbonding_period_ns: int,
    anchor: LightBlock,
    now: int,
    sig_map: SigMap | None = None,
    sig_batches: int = 2,
) -> tuple[ClientState, ConsensusState]:
    """Start a client from an operator-chosen trust anchor (a light block with its next
    validator set). The anchor is trusted by decision, but it must still be consistent,
    signed by more than 2/3 of its validators, within the trusting period and not from the
    future."""
    _check_anchor(anchor, options=options, now=now, sig_map=sig_map, sig_batches=sig_batches)
    client = ClientState(
        options=options, unbonding_period_ns=unbonding_period_ns, latest_height=anchor.height
    )
    return client, ConsensusState.of(anchor.header)


def trusted_block(
    client: ClientState, *, height: int, consensus: ConsensusState, next_validators: ValidatorSet
) -> TrustedBlock:
    """The trusted block at ``height`` from a stored consensus state and the next validator
    set an adapter supplied (it must hash to the stored ``next_validators_hash``, as ibc-go
    ``checkTrustedHeader`` requires)."""
    if next_validators.hash != consensus.next_validators_hash:
        raise HeaderMismatch(
            "trusted validators do not hash to the stored next_validators_hash",
            expected=consensus.next_validators_hash,
            calculated=next_validators.hash,
            height=height,
        )
    return TrustedBlock(
        chain_id=client.chain_id,
        height=height,
        time_ns=consensus.timestamp_ns,
        next_validators_hash=consensus.next_validators_hash,
        next_validators=next_validators,
        header_hash=consensus.header_hash,
        app_hash=consensus.root,
    )


def _frozen(client: ClientState, misbehaviour: Misbehaviour) -> ClientState:
    return replace(client, frozen=Frozen(misbehaviour.block1.height, misbehaviour.kind))


def update_client(
    client: ClientState,
    *,
    trusted: TrustedBlock,
    block: LightBlock,
    now: int,
    existing: LightBlock | None = None,
    previous: LightBlock | None = None,
    following: LightBlock | None = None,
    sig_map: SigMap | None = None,
    sig_batches: int = 2,
) -> ClientUpdate:
    """Verify ``block`` from ``trusted`` and advance the client, or freeze it on misbehaviour
    (ibc-go ``VerifyClientMessage``, ``CheckForMisbehaviour``, ``UpdateState``).

    ``existing`` is the block the client already verified at ``block``'s height, if any;
    ``previous``/``following`` the closest verified blocks below/above it. A different header
    at the same height, or a time not strictly between its neighbours', freezes the client
    and returns the two blocks as :class:`Misbehaviour`.
    """
    if client.frozen is not None:
        raise ClientFrozen(
            "client is frozen after misbehaviour; recover it with a new trust anchor",
            chain_id=client.chain_id,
            frozen_height=client.frozen.height,
            kind=client.frozen.kind,
        )
    verified = verify_light_block(
        trusted=trusted,
        untrusted=block,
        options=client.options,
        now=now,
        sig_map=sig_map,
        sig_batches=sig_batches,
    )
    header = block.header
    found: Misbehaviour | None = None
    if existing is not None:
        if existing.height != header.height:
            raise ValueError("existing block must be at the updated height")
        if existing.header.hash == header.hash:
            return ClientUpdate(client, ConsensusState.of(header), None, verified)
        found = Misbehaviour("DUPLICATE_HEIGHT", block, existing)
    elif previous is not None and previous.header.time_ns >= header.time_ns:
        if previous.height >= header.height:
            raise ValueError("previous block must be below the updated height")
        found = Misbehaviour("BFT_TIME_VIOLATION", block, previous)
    elif following is not None and following.header.time_ns <= header.time_ns:
        if following.height <= header.height:
            raise ValueError("following block must be above the updated height")
        found = Misbehaviour("BFT_TIME_VIOLATION", following, block)
    if found is not None:
        return ClientUpdate(_frozen(client, found), None, found, verified)
    new_client = replace(client, latest_height=max(client.latest_height, header.height))
    return ClientUpdate(new_client, ConsensusState.of(header), None, verified)


def check_misbehaviour(
    client: ClientState,
    misbehaviour: Misbehaviour,
    *,
    trusted1: TrustedBlock,
    trusted2: TrustedBlock,
    now: int,
    sig_map: SigMap | None = None,
    sig_batches: int = 2,
) -> None:
    """Check that ``misbehaviour`` proves a fork or a time violation that the client would
    have accepted (ibc-go ``verifyMisbehaviour``, ``Misbehaviour.ValidateBasic``): both blocks
    consistent and signed by more than 2/3 of their validators, each signed by more than the
    trust level of the validators trusted at ``trusted1``/``trusted2`` (below them, within the
    trusting period). Raises :class:`MisbehaviourInvalid` (or the failing check's error)."""
    b1, b2 = misbehaviour.block1, misbehaviour.block2
    h1, h2 = b1.header, b2.header
    if h1.height < h2.height:
        raise MisbehaviourInvalid(
            "block1 must not be below block2", height1=h1.height, height2=h2.height
        )
    if h1.height == h2.height:
        if h1.hash == h2.hash:
            raise MisbehaviourInvalid("the two headers are the same", height=h1.height)
        kind: MisbehaviourKind = "DUPLICATE_HEIGHT"
    elif h1.time_ns <= h2.time_ns:
        kind = "BFT_TIME_VIOLATION"
    else:
        raise MisbehaviourInvalid(
            "headers at different heights with increasing time are no misbehaviour",
            height1=h1.height,
            height2=h2.height,
        )
    if kind != misbehaviour.kind:
        raise MisbehaviourInvalid(
            "misbehaviour kind does not match the headers",
            expected=kind,
            calculated=misbehaviour.kind,
        )
    for block, trusted in ((b1, trusted1), (b2, trusted2)):
        if trusted.chain_id != client.chain_id:
            raise HeaderMismatch(
                "trusted block belongs to another chain",
                expected=client.chain_id,
                calculated=trusted.chain_id,
            )
        _check_not_expired(trusted, trusting_period_ns=client.options.trusting_period_ns, now=now)
        validate_light_block(block, chain_id=client.chain_id, params=client.params)
        if block.height <= trusted.height:
            raise MisbehaviourInvalid(
                "misbehaving header is not above its trusted height",
                height=block.height,
                trusted_height=trusted.height,
            )
        # A header from the future is still evidence of misbehaviour (ibc skips that check).
        shared: dict[int, bytes] = {}
        verify_commit_light(
            block.signed_header,
            block.validator_set,
            verified=shared,
            sig_map=sig_map,
            sig_batches=sig_batches,
        )
        verify_commit_trusting(
            block.signed_header,
            trusted.next_validators,
            trust_level=client.options.trust_level,
            verified=shared,
            sig_map=sig_map,
            sig_batches=sig_batches,
        )


def submit_misbehaviour(
    client: ClientState,
    misbehaviour: Misbehaviour,
    *,
    trusted1: TrustedBlock,
    trusted2: TrustedBlock,
    now: int,
    sig_map: SigMap | None = None,
    sig_batches: int = 2,
) -> ClientState:
    """Freeze ``client`` on valid misbehaviour evidence; raise if the evidence is invalid."""
    if client.frozen is not None:
        raise ClientFrozen(
            "client is already frozen", chain_id=client.chain_id, frozen_height=client.frozen.height
        )
    check_misbehaviour(
        client,
        misbehaviour,
        trusted1=trusted1,
        trusted2=trusted2,
        now=now,
        sig_map=sig_map,
        sig_batches=sig_batches,
    )
    return _frozen(client, misbehaviour)


def recover(
    client: ClientState,
    *,
    anchor: LightBlock,
    latest: ConsensusState,
    now: int,
    sig_map: SigMap | None = None,
    sig_batches: int = 2,
) -> tuple[ClientState, ConsensusState]:
    """Re-anchor a frozen or expired client on an operator-supplied light block (ibc-go
    ``RecoverClient``): the anchor must be above the client's latest height, consistent,
    signed by more than 2/3 of its validators and within the trusting period. ``latest`` is
    the consensus state at the client's latest height (to judge expiry). An active client is
    never re-anchored."""
    if client.frozen is None and not client.is_expired(latest, now=now):
        raise RecoveryRefused(
            "client is active; only a frozen or expired client is recovered",
            chain_id=client.chain_id,
        )
    if anchor.height <= client.latest_height:
        raise RecoveryRefused(
            "recovery anchor must be above the client's latest height",
            expected=f"> {client.latest_height}",
            calculated=anchor.height,
        )
    _check_anchor(anchor, options=client.options, now=now, sig_map=sig_map, sig_batches=sig_batches)
    recovered = replace(client, latest_height=anchor.height, frozen=None)
    return recovered, ConsensusState.of(anchor.header)
