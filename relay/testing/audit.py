"""Sample audit log entries for tests and benchmarks (relay/audit/entry.py): canonical
entries of one court's ownership queries, numbered so each is distinct."""

from __future__ import annotations

from relay.audit.entry import make_entry, request_digest

SAMPLE_SALT = b"s" * 32


def sample_entry(i: int, *, court: str = "京0105") -> bytes:
    """The canonical bytes of query number ``i`` of ``court``'s clerk (case number
    ``(2026)<court>执<i + 1>号``)."""
    return make_entry(
        time_ns=1_700_000_000_000_000_000 + i,
        kind="query",
        method="/relay.v1.QueryService/GetOwnership",
        actor=f"court:{court}/clerk",
        role="court",
        actor_code=court,
        actor_fingerprint="ab" * 32,
        court=court,
        case_court=court,
        case_number=f"(2026){court}执{i + 1}号",
        case_purpose=1,
        request_digest=request_digest(salt=SAMPLE_SALT, method="m", request=str(i).encode()),
        outcome="OK",
        result_digest="00" * 32,
        evidence_digests=["11" * 32],
    )
