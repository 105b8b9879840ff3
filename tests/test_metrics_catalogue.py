"""The metric catalogue of relay/metrics.py: every metric issue 8 names exists with its type
and labels, is pre-initialised for a registered chain, moves when recorded, and can never
carry an unbounded label (a height, hash, party or case)."""

from __future__ import annotations

import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from prometheus_client.parser import text_string_to_metric_families

from relay import metrics as m
from relay.verify.errors import RootMismatchError, SignatureError

CHAIN = "bj-realestate-1"
PER_CHAIN = ("chain", "domain")

# name -> (type, label names). The README's metrics table is this catalogue.
CATALOGUE: dict[str, tuple[str, tuple[str, ...]]] = {
    "relay_build_info": ("gauge", ("version",)),
    "relay_metrics_dropped_samples": ("counter", ()),
    "relay_chain_info": ("gauge", ("chain", "domain", "client_type", "adapter")),
    "relay_chain_status": ("gauge", (*PER_CHAIN, "status")),
    "relay_chain_trusted_height": ("gauge", PER_CHAIN),
    "relay_chain_trusted_time_seconds": ("gauge", PER_CHAIN),
    "relay_chain_trusting_period_remaining_seconds": ("gauge", PER_CHAIN),
    "relay_chain_partner_head_height": ("gauge", PER_CHAIN),
    "relay_chain_lag_blocks": ("gauge", PER_CHAIN),
    "relay_chain_lag_seconds": ("gauge", PER_CHAIN),
    "relay_header_verifications": ("counter", PER_CHAIN),
    "relay_header_verification_failures": ("counter", (*PER_CHAIN, "reason")),
    "relay_proof_verifications": ("counter", PER_CHAIN),
    "relay_proof_verification_failures": ("counter", (*PER_CHAIN, "reason")),
    "relay_misbehaviour_detected": ("counter", PER_CHAIN),
    "relay_sync_lease_held": ("gauge", PER_CHAIN),
    "relay_sync_leases_lost": ("counter", PER_CHAIN),
    "relay_adapter_up": ("gauge", PER_CHAIN),
    "relay_adapter_request_duration_seconds": ("histogram", (*PER_CHAIN, "method")),
    "relay_adapter_request_errors": ("counter", (*PER_CHAIN, "method", "reason")),
    "relay_query_duration_seconds": ("histogram", ("method",)),
    "relay_query_errors": ("counter", ("method", "reason")),
    "relay_audit_log_entries": ("gauge", ()),
    "relay_audit_log_size_bytes": ("gauge", ()),
    "relay_audit_last_checkpoint_time_seconds": ("gauge", ()),
    "relay_audit_checkpoint_age_seconds": ("gauge", ()),
    "grpc_server_started": ("counter", ("grpc_type", "grpc_service", "grpc_method")),
    "grpc_server_handled": (
        "counter",
        ("grpc_type", "grpc_service", "grpc_method", "grpc_code"),
    ),
    "grpc_server_msg_received": ("counter", ("grpc_type", "grpc_service", "grpc_method")),
    "grpc_server_msg_sent": ("counter", ("grpc_type", "grpc_service", "grpc_method")),
    "grpc_server_handling_seconds": ("histogram", ("grpc_type", "grpc_service", "grpc_method")),
}
# Issue 8's list, each mapped to the metric that carries it.
ISSUE_8 = {
    "trusted height": "relay_chain_trusted_height",
    "trusted time": "relay_chain_trusted_time_seconds",
    "partner head height": "relay_chain_partner_head_height",
    "lag in seconds": "relay_chain_lag_seconds",
    "lag in blocks": "relay_chain_lag_blocks",
    "header verifications": "relay_header_verifications",
    "header failures by reason": "relay_header_verification_failures",
    "proof verifications": "relay_proof_verifications",
    "proof failures by reason": "relay_proof_verification_failures",
    "client status": "relay_chain_status",
    "seconds until trusting period expiry": "relay_chain_trusting_period_remaining_seconds",
    "misbehaviour detected": "relay_misbehaviour_detected",
    "adapter request duration": "relay_adapter_request_duration_seconds",
    "adapter errors": "relay_adapter_request_errors",
    "query duration by method": "relay_query_duration_seconds",
    "audit log size": "relay_audit_log_entries",
    "audit checkpoint age": "relay_audit_checkpoint_age_seconds",
    "grpc handled": "grpc_server_handled",
    "grpc handling seconds": "grpc_server_handling_seconds",
}


class Clock:
    def __init__(self, now: float = 1_800_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def scrape(metrics: m.RelayMetrics) -> dict[str, object]:
    body, content_type = metrics.exposition()
    assert content_type.startswith("text/plain")
    return {f.name: f for f in text_string_to_metric_families(body.decode())}


def samples(metrics: m.RelayMetrics, name: str) -> dict[tuple[tuple[str, str], ...], float]:
    body, _ = metrics.exposition()
    out = {}
    for family in text_string_to_metric_families(body.decode()):
        for s in family.samples:
            if s.name == name:
                out[tuple(sorted(s.labels.items()))] = s.value
    return out


def snapshot(metrics: m.RelayMetrics) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    body, _ = metrics.exposition()
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(body.decode())
        for s in family.samples
    }


def value(metrics: m.RelayMetrics, name: str, **labels: str) -> float:
    found = samples(metrics, name).get(tuple(sorted(labels.items())))
    assert found is not None, f"no sample {name}{labels}"
    return found


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def metrics(clock: Clock) -> m.RelayMetrics:
    r = m.RelayMetrics(clock=clock)
    r.register_chain(CHAIN, "DOMAIN_REAL_ESTATE", client_type=1, adapter="grpc")
    return r


def test_every_issue_8_metric_is_in_the_catalogue() -> None:
    assert set(ISSUE_8.values()) <= set(CATALOGUE)


def test_catalogue_types_and_labels(metrics: m.RelayMetrics) -> None:
    families = scrape(metrics)
    ours = {n for n in families if n.startswith(("relay_", "grpc_"))}
    # Both directions: nothing missing, nothing undocumented.
    assert ours == set(CATALOGUE)
    for name, (kind, labels) in CATALOGUE.items():
        family = families[name]
        assert family.type == kind, name  # type: ignore[attr-defined]
        assert family.documentation, f"{name} has no help text"  # type: ignore[attr-defined]
        if kind == "histogram":
            # Series exist for pre-initialised label sets; check the declared names.
            declared = getattr(metrics, _attr_of(metrics, name))._labelnames
            assert tuple(declared) == labels, name
        else:
            for s in family.samples:  # type: ignore[attr-defined]
                assert tuple(sorted(s.labels)) == tuple(sorted(labels)), (name, s.labels)


def _attr_of(metrics: m.RelayMetrics, name: str) -> str:
    for attr, obj in vars(metrics).items():
        if getattr(obj, "_name", None) == name:
            return attr
    raise AssertionError(f"no attribute declares {name}")


def test_names_follow_the_conventions(metrics: m.RelayMetrics) -> None:
    for name, (kind, _) in CATALOGUE.items():
        attr = getattr(metrics, _attr_of(metrics, name))
        assert re.fullmatch(r"(relay|grpc_server)_[a-z0-9_]+", name)
        if kind == "histogram":
            assert name.endswith("_seconds"), name
        assert not re.search(r"_(ms|milliseconds|minutes|hours|kb|mb)(_|$)", name), name
        assert attr._documentation, name


def test_label_names_are_on_the_allow_list(metrics: m.RelayMetrics) -> None:
    for family in metrics.registry.collect():
        if not family.name.startswith(("relay_", "grpc_")):
            continue
        for s in family.samples:
            extra = set(s.labels) - m.ALLOWED_LABELS - {"le"}
            assert not extra, (family.name, extra)
    # The allow-list itself holds nothing that could carry a height, hash, party or case.
    for forbidden in ("height", "hash", "party", "case", "id", "key", "court", "value"):
        assert forbidden not in m.ALLOWED_LABELS


def test_a_registered_chain_has_every_series_at_zero(metrics: m.RelayMetrics) -> None:
    chain = {"chain": CHAIN, "domain": "real_estate"}
    scraped = snapshot(metrics)

    def value(metrics: m.RelayMetrics, name: str, **labels: str) -> float:
        found = scraped.get((name, tuple(sorted(labels.items()))))
        assert found is not None, f"no sample {name}{labels}"
        return found

    for name in (
        "relay_chain_trusted_height",
        "relay_chain_trusted_time_seconds",
        "relay_chain_trusting_period_remaining_seconds",
        "relay_chain_partner_head_height",
        "relay_chain_lag_blocks",
        "relay_chain_lag_seconds",
        "relay_header_verifications_total",
        "relay_proof_verifications_total",
        "relay_misbehaviour_detected_total",
        "relay_adapter_up",
    ):
        assert value(metrics, name, **chain) == 0, name
    for reason in m.REASONS:
        assert (
            value(metrics, "relay_header_verification_failures_total", **chain, reason=reason) == 0
        )
        assert (
            value(metrics, "relay_proof_verification_failures_total", **chain, reason=reason) == 0
        )
    for method in m.ADAPTER_METHODS:
        count = value(
            metrics, "relay_adapter_request_duration_seconds_count", **chain, method=method
        )
        assert count == 0
        for reason in m.ADAPTER_ERROR_REASONS:
            errors = value(
                metrics, "relay_adapter_request_errors_total", **chain, method=method, reason=reason
            )
            assert errors == 0
    statuses = {
        s: value(metrics, "relay_chain_status", **chain, status=s) for s in m.CHAIN_STATUSES
    }
    assert statuses == {"pending": 1, "active": 0, "frozen": 0, "expired": 0}
    info = {"chain": CHAIN, "domain": "real_estate", "client_type": "tendermint"}
    assert value(metrics, "relay_chain_info", **info, adapter="grpc") == 1
    for method in m.QUERY_METHODS:
        assert value(metrics, "relay_query_duration_seconds_count", method=method) == 0


def test_forget_chain_removes_every_series(metrics: m.RelayMetrics) -> None:
    metrics.register_chain("other-1", "ip")
    metrics.forget_chain(CHAIN)
    body = metrics.exposition()[0].decode()
    assert CHAIN not in body
    assert 'chain="other-1"' in body
    assert metrics.chains == ("other-1",)


def test_reregistering_with_another_domain_moves_the_series(metrics: m.RelayMetrics) -> None:
    metrics.register_chain(CHAIN, "bank")
    body = metrics.exposition()[0].decode()
    assert f'chain="{CHAIN}",domain="bank"' in body
    assert f'chain="{CHAIN}",domain="real_estate"' not in body


def test_recording_helpers_move_their_metrics(metrics: m.RelayMetrics, clock: Clock) -> None:
    chain = {"chain": CHAIN, "domain": "real_estate"}
    metrics.record_chain_status(CHAIN, "CHAIN_STATUS_ACTIVE")
    assert value(metrics, "relay_chain_status", **chain, status="active") == 1
    assert value(metrics, "relay_chain_status", **chain, status="pending") == 0
    metrics.record_chain_status(CHAIN, 3)  # ChainStatus.FROZEN
    assert value(metrics, "relay_chain_status", **chain, status="frozen") == 1
    assert value(metrics, "relay_chain_status", **chain, status="active") == 0

    metrics.record_trusted_state(CHAIN, height=120, time_s=clock.now - 30, trusting_period_s=3600)
    metrics.record_partner_head(CHAIN, height=125, time_s=clock.now - 5)
    assert value(metrics, "relay_chain_trusted_height", **chain) == 120
    assert value(metrics, "relay_chain_trusted_time_seconds", **chain) == clock.now - 30
    assert value(metrics, "relay_chain_partner_head_height", **chain) == 125
    assert value(metrics, "relay_chain_lag_blocks", **chain) == 5
    assert value(metrics, "relay_chain_lag_seconds", **chain) == 25
    assert value(metrics, "relay_chain_trusting_period_remaining_seconds", **chain) == 3570
    clock.now += 600  # computed when scraped
    assert value(metrics, "relay_chain_trusting_period_remaining_seconds", **chain) == 2970
    metrics.record_partner_head(CHAIN, height=125)  # no time reported: lag against now
    assert value(metrics, "relay_chain_lag_seconds", **chain) == 630
    clock.now += 10_000
    assert value(metrics, "relay_chain_trusting_period_remaining_seconds", **chain) == 0

    metrics.record_header_verification(CHAIN, ok=True)
    metrics.record_header_verification(CHAIN, ok=False, reason=SignatureError("bad sig"))
    metrics.record_header_verification(CHAIN, ok=False, reason="HEADER_UNVERIFIED")
    assert value(metrics, "relay_header_verifications_total", **chain) == 3
    failures = "relay_header_verification_failures_total"
    assert value(metrics, failures, **chain, reason="SIGNATURE_INVALID") == 1
    assert value(metrics, failures, **chain, reason="HEADER_UNVERIFIED") == 1

    forged = RootMismatchError("root", expected=b"\x01" * 32, calculated=b"\x02" * 32)
    metrics.record_proof_verification(CHAIN, ok=False, reason=forged)
    metrics.record_proof_verification(CHAIN, ok=True)
    assert value(metrics, "relay_proof_verifications_total", **chain) == 2
    proof_failures = "relay_proof_verification_failures_total"
    assert value(metrics, proof_failures, **chain, reason="ROOT_MISMATCH") == 1

    metrics.record_misbehaviour(CHAIN)
    assert value(metrics, "relay_misbehaviour_detected_total", **chain) == 1

    metrics.record_adapter_request(CHAIN, method="GetLightBlocks", seconds=0.02)
    assert value(metrics, "relay_adapter_up", **chain) == 1
    metrics.record_adapter_request(
        CHAIN, method="GetLightBlocks", seconds=5.0, reason="ADAPTER_UNAVAILABLE"
    )
    assert value(metrics, "relay_adapter_up", **chain) == 0
    metrics.record_adapter_request(CHAIN, method="Query", seconds=0.1, reason="MALFORMED_INPUT")
    assert value(metrics, "relay_adapter_up", **chain) == 0  # an answer, not a transport fault
    metrics.set_adapter_up(CHAIN, True)
    assert value(metrics, "relay_adapter_up", **chain) == 1
    count = "relay_adapter_request_duration_seconds_count"
    assert value(metrics, count, **chain, method="GetLightBlocks") == 2
    errors = "relay_adapter_request_errors_total"
    assert (
        value(metrics, errors, **chain, method="GetLightBlocks", reason="ADAPTER_UNAVAILABLE") == 1
    )
    assert value(metrics, errors, **chain, method="Query", reason="MALFORMED_INPUT") == 1

    metrics.observe_query("GetOwnership", seconds=0.004)
    metrics.observe_query("/relay.v1.QueryService/GetOwnership", seconds=0.2, reason="CHAIN_FROZEN")
    assert value(metrics, "relay_query_duration_seconds_count", method="GetOwnership") == 2
    bucket = value(
        metrics, "relay_query_duration_seconds_bucket", method="GetOwnership", le="0.005"
    )
    assert bucket == 1
    qerrors = "relay_query_errors_total"
    assert value(metrics, qerrors, method="GetOwnership", reason="CHAIN_FROZEN") == 1

    metrics.record_audit_log(entries=42, size_bytes=4096)
    assert value(metrics, "relay_audit_log_entries") == 42
    assert value(metrics, "relay_audit_log_size_bytes") == 4096
    metrics.record_audit_checkpoint(time_s=clock.now - 90)
    assert value(metrics, "relay_audit_last_checkpoint_time_seconds") == clock.now - 90
    assert value(metrics, "relay_audit_checkpoint_age_seconds") == 90


def test_checkpoint_age_counts_from_start_up_before_the_first(clock: Clock) -> None:
    metrics = m.RelayMetrics(clock=clock, process_collectors=False)
    clock.now += 300
    assert value(metrics, "relay_audit_checkpoint_age_seconds") == 300
    assert value(metrics, "relay_audit_last_checkpoint_time_seconds") == 0


def test_unregistered_chain_samples_are_dropped_and_counted(metrics: m.RelayMetrics) -> None:
    metrics.record_header_verification("never-registered", ok=False, reason="PROOF_INVALID")
    metrics.record_proof_verification("never-registered", ok=True)
    metrics.record_trusted_state("never-registered", height=5, time_s=1.0)
    assert "never-registered" not in metrics.exposition()[0].decode()
    assert value(metrics, "relay_metrics_dropped_samples_total") == 3


def test_reason_label_is_bounded_to_error_reason_names() -> None:
    assert m.reason_label("PROOF_INVALID") == "PROOF_INVALID"
    assert m.reason_label(24) == "PROOF_INVALID"  # ErrorReason number
    assert m.reason_label(RootMismatchError("r", expected=1, calculated=2)) == "ROOT_MISMATCH"
    for junk in (
        "proof_invalid",
        "PROOF_INVALID ",
        "",
        None,
        0,
        9999,
        True,
        "ERROR_REASON_UNSPECIFIED",
    ):
        assert m.reason_label(junk) == "OTHER", junk
    assert "OTHER" in m.REASONS
    assert "ERROR_REASON_UNSPECIFIED" not in m.REASONS


@pytest.mark.parametrize(
    "chain_id",
    [
        "",
        "x" * 51,
        "a b",
        "(2026)京0105执1234号",
        "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08",
        "chain-9f86d081884c7d659a2feaa0c55ad015",
        123,
    ],
)
def test_chain_ids_that_could_leak_are_refused(chain_id: object) -> None:
    metrics = m.RelayMetrics(process_collectors=False)
    with pytest.raises(m.UnboundedLabelError):
        metrics.register_chain(chain_id, "ip")  # type: ignore[arg-type]
    assert metrics.chains == ()


def test_the_number_of_chains_is_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(m, "MAX_CHAINS", 3)
    metrics = m.RelayMetrics(process_collectors=False)
    for i in range(3):
        metrics.register_chain(f"c{i}", "ip")
    with pytest.raises(m.UnboundedLabelError):
        metrics.register_chain("c3", "ip")
    metrics.register_chain("c0", "ip")  # already registered: fine


def test_bad_status_is_refused(metrics: m.RelayMetrics) -> None:
    with pytest.raises(m.UnboundedLabelError):
        metrics.record_chain_status(CHAIN, "CHAIN_STATUS_UNSPECIFIED")
    with pytest.raises(m.UnboundedLabelError):
        metrics.record_chain_status(CHAIN, "height 12")


SECRETS = (
    "1234567",  # a height
    "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08",  # a hash
    "110101199003071234",  # a resident ID (party)
    "(2026)京0105执1234号",  # a case number
)


@settings(max_examples=200, deadline=None)
@given(
    text=st.one_of(st.sampled_from(SECRETS), st.text(max_size=80)),
    number=st.integers(min_value=-(2**63), max_value=2**64),
)
def test_no_recording_helper_lets_an_unbounded_value_into_a_label(text: str, number: int) -> None:
    metrics = m.RelayMetrics(process_collectors=False)
    metrics.register_chain(CHAIN, text)  # an unknown domain becomes "unspecified"
    metrics.record_header_verification(CHAIN, ok=False, reason=text)
    metrics.record_header_verification(CHAIN, ok=False, reason=number)
    metrics.record_proof_verification(CHAIN, ok=False, reason=text)
    metrics.record_adapter_request(CHAIN, method=text, seconds=0.1, reason=text)
    metrics.record_trusted_state(CHAIN, height=abs(number), time_s=1.0)
    metrics.record_partner_head(CHAIN, height=abs(number))
    metrics.observe_query(text, seconds=0.1, reason=text)
    metrics.record_header_verification(text, ok=False, reason=text)  # unregistered: dropped
    allowed = {
        "chain": {CHAIN},
        "domain": set(m.DOMAINS),
        "client_type": set(m.CLIENT_TYPES),
        "adapter": set(m.ADAPTER_KINDS),
        "status": set(m.CHAIN_STATUSES),
        "reason": set(m.REASONS),
        "method": set(m.QUERY_METHODS) | set(m.ADAPTER_METHODS),
        "version": {m.__version__},
    }
    for family in metrics.registry.collect():
        for s in family.samples:
            for label, got in s.labels.items():
                if label == "le":
                    continue
                assert got in allowed[label], (family.name, label, got)


def test_exposition_negotiates_openmetrics(metrics: m.RelayMetrics) -> None:
    body, content_type = metrics.exposition("application/openmetrics-text; version=1.0.0")
    assert content_type.startswith("application/openmetrics-text")
    assert body.rstrip().endswith(b"# EOF")


def test_default_metrics_is_one_shared_instance() -> None:
    assert m.default_metrics() is m.default_metrics()


def test_labels_accept_the_proto_and_store_spellings() -> None:
    from relay.pb.relay.v1 import types_pb2
    from relay.store.base import ChainStatus, ClientType

    assert m.status_label(ChainStatus.FROZEN) == "frozen"
    assert m.status_label(types_pb2.CHAIN_STATUS_EXPIRED) == "expired"
    assert m.status_label("CHAIN_STATUS_ACTIVE") == "active"
    assert m.client_type_label(ClientType.TLOG) == "tlog"
    assert m.client_type_label(types_pb2.CLIENT_TYPE_TENDERMINT) == "tendermint"
    assert m.domain_label(types_pb2.DOMAIN_REAL_ESTATE) == "real_estate"
    assert m.domain_label("real-estate") == "real_estate"
    assert m.domain_label("DOMAIN_BANK") == "bank"
    assert m.domain_label("court") == "unspecified"
    assert m.query_method_label("/relay.v1.QueryService/ListHoldings") == "ListHoldings"
    assert m.query_method_label("DropTables") == "other"
    assert m.adapter_method_label("GetLightBlocks") == "GetLightBlocks"
    assert m.adapter_kind_label("grpc") == "grpc"
    assert m.adapter_kind_label("10.0.0.1:9443") == "unspecified"


def test_a_new_adapter_kind_updates_the_info_and_keeps_the_counters(
    metrics: m.RelayMetrics,
) -> None:
    metrics.record_header_verification(CHAIN, ok=True)
    metrics.register_chain(CHAIN, "real_estate", client_type="tendermint", adapter="entry_point")
    infos = samples(metrics, "relay_chain_info")
    assert list(infos) == [
        (
            ("adapter", "entry_point"),
            ("chain", CHAIN),
            ("client_type", "tendermint"),
            ("domain", "real_estate"),
        )
    ]
    chain = {"chain": CHAIN, "domain": "real_estate"}
    assert value(metrics, "relay_header_verifications_total", **chain) == 1
