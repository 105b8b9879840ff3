"""The chart's Prometheus alert rules and Grafana dashboard against the metric catalogue:

- every metric an alert or a dashboard panel queries is declared in relay/metrics.py (names
  parsed out of the PromQL);
- ``promtool check rules`` accepts the rendered rules (syntax, durations, templates);
- ``promtool test rules`` replays series scraped from a real :class:`RelayMetrics` through
  a scenario (a frozen chain, a lagging chain, a dead adapter, forged proofs, a trusting
  period running out, a stale audit checkpoint, INTERNAL errors) and checks exactly which
  alerts fire.

promtool comes from Debian's ``prometheus`` package (scripts/ensure-system-deps.sh). Without
it the promtool tests skip, except under CI=true, where they fail.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import helm_python as helm
import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families
from test_chart_render import MINIMAL, merged

from relay.metrics import RelayMetrics

CHART = Path(__file__).resolve().parent.parent / "charts" / "relay"
RELEASE, NAMESPACE = "relay", "courts"
SELECTOR = {"job": f"{RELEASE}-ops", "namespace": NAMESPACE, "instance": "10.1.2.3:9090"}

# ------------------------------------------------------------------ PromQL metric names

_KEYWORDS = {
    "by", "without", "on", "ignoring", "group_left", "group_right", "and", "or", "unless",
    "bool", "offset", "inf", "nan", "atan2",
}  # fmt: skip


def metric_names(expr: str) -> set[str]:
    """Metric names an expression selects: identifiers that are not functions, keywords,
    label names (inside {...} or a by/on/... list) or numbers. Grafana's $variables and
    durations are removed first."""
    text = re.sub(r'"(?:[^"\\]|\\.)*"', '""', expr)  # string literals (label values)
    text = re.sub(r"\{[^{}]*\}", " ", text)  # label matchers
    text = re.sub(r"\[[^\]]*\]", " ", text)  # range and subquery durations
    # Grouping clauses go entirely, so "sum by (x) (" reads as a call of sum.
    text = re.sub(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", " ", text)
    text = re.sub(r"\$\w+", " ", text)
    names = set()
    for m in re.finditer(r"(?<![\w.])([A-Za-z_:][A-Za-z0-9_:]*)(\s*\()?", text):
        word, call = m.group(1), m.group(2)
        if call or word.lower() in _KEYWORDS:
            continue
        names.add(word)
    return names


def declared_series() -> set[str]:
    """Every series name relay/metrics.py can expose (counters with _total, histograms
    with _bucket/_sum/_count, the process collectors)."""
    suffixes = {"counter": ("_total",), "histogram": ("_bucket", "_sum", "_count")}
    names = set()
    for family in RelayMetrics().registry.collect():
        # Families are listed even when no labelled child exists yet.
        names.update(family.name + s for s in suffixes.get(family.type, ("",)))
        names.update(s.name for s in family.samples)
    return names


def test_metric_name_parser_finds_names_and_ignores_the_rest() -> None:
    expr = (
        'sum by (chain, reason) (rate(relay_a_total{chain=~"$chain",x="y"}[5m])) '
        "+ on (chain) group_left (domain) relay_b > 3 and time() - relay_c offset 5m "
        "or histogram_quantile(0.99, sum by (le) "
        '(rate(relay_d_bucket{le="+Inf"}[$__rate_interval])))'
    )
    assert metric_names(expr) == {"relay_a_total", "relay_b", "relay_c", "relay_d_bucket"}


def test_metric_name_check_catches_an_undeclared_metric() -> None:
    missing = metric_names("rate(relay_made_up_total[5m]) > 0") - declared_series()
    assert missing == {"relay_made_up_total"}


def render_rules(values: dict[str, Any] | None = None) -> dict[str, Any]:
    settings = merged(MINIMAL, {"metrics": {"prometheusRule": {"enabled": True}}})
    if values:
        settings["metrics"]["prometheusRule"].update(values)
    with helm.Chart.load(CHART) as chart:
        text = chart.render(settings, name=RELEASE, namespace=NAMESPACE)[
            "relay/templates/prometheusrule.yaml"
        ]
    rule = yaml.safe_load(text)
    return {"groups": rule["spec"]["groups"]}


def alerts(rules: dict[str, Any]) -> list[dict[str, Any]]:
    return [r for g in rules["groups"] for r in g["rules"]]


ISSUE_8_ALERTS = {
    "RelayChainFrozen",
    "RelayChainLagging",
    "RelayAdapterDown",
    "RelayVerificationFailuresRising",
    "RelayTrustingPeriodExpiring",
    "RelayAuditCheckpointStale",
}


def test_the_issue_8_alerts_exist() -> None:
    names = {a["alert"] for a in alerts(render_rules())}
    assert names >= ISSUE_8_ALERTS


def test_every_alert_queries_only_declared_metrics() -> None:
    declared = declared_series()
    for rule in alerts(render_rules()):
        used = metric_names(rule["expr"])
        assert used, rule["alert"]
        assert used <= declared, (rule["alert"], used - declared)


def test_every_dashboard_panel_queries_only_declared_metrics() -> None:
    dashboard = json.loads((CHART / "dashboards" / "relay.json").read_text())
    declared = declared_series()
    ids, exprs = set(), 0
    for panel in dashboard["panels"]:
        assert panel["id"] not in ids
        ids.add(panel["id"])
        assert panel["title"]
        for target in panel.get("targets", []):
            used = metric_names(target["expr"])
            assert used and used <= declared, (panel["title"], used - declared)
            exprs += 1
    assert exprs >= 20
    for variable in dashboard["templating"]["list"]:
        if variable["type"] == "query":
            query = variable["query"]["query"]
            inner = re.fullmatch(r"label_values\((.*),\s*\w+\)", query)
            assert inner is not None, query
            assert metric_names(inner.group(1)) <= declared
    assert dashboard["uid"] and dashboard["title"]


# ---------------------------------------------------------------------------- promtool


def promtool() -> str:
    path = shutil.which("promtool")
    if path is None:
        message = "promtool is missing: run scripts/ensure-system-deps.sh"
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(message + " (required under CI=true)")
        pytest.skip(message)
    return path


def run_promtool(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [promtool(), *args], cwd=cwd, capture_output=True, text=True, timeout=60, check=False
    )


def test_promtool_accepts_the_rendered_rules(tmp_path: Path) -> None:
    rules = render_rules({"runbookBaseUrl": "https://runbooks.example/relay"})
    (tmp_path / "rules.yaml").write_text(yaml.safe_dump(rules, sort_keys=False))
    result = run_promtool("check", "rules", "rules.yaml", cwd=tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"SUCCESS: {len(alerts(rules))} rules found" in result.stdout + result.stderr


def test_promtool_refuses_a_broken_rule(tmp_path: Path) -> None:
    rules = render_rules()
    alerts(rules)[0]["expr"] = "max by (chain (relay_chain_status)"
    (tmp_path / "rules.yaml").write_text(yaml.safe_dump(rules, sort_keys=False))
    result = run_promtool("check", "rules", "rules.yaml", cwd=tmp_path)
    assert result.returncode != 0


T0 = 1_800_000_000.0
MINUTES = 41


class Clock:
    now = T0

    def __call__(self) -> float:
        return self.now


def scenario_series(used: set[str]) -> dict[str, list[float | None]]:
    """Scrape a real RelayMetrics once a minute while things go wrong; return each series
    the rules use as promtool input (None where the series is absent)."""
    clock = Clock()
    m = RelayMetrics(clock=clock, process_collectors=False)
    m.register_chain("bj-re-1", "real_estate", client_type="tendermint", adapter="grpc")
    m.register_chain("bj-ip-1", "ip", client_type="tlog", adapter="grpc")
    m.register_chain("bank-1", "bank", client_type="tendermint", adapter="entry_point")
    for chain in ("bj-re-1", "bj-ip-1", "bank-1"):
        m.record_chain_status(chain, "CHAIN_STATUS_ACTIVE")
    # bj-re-1 trails its partner by 20 minutes and its trusting period is running out.
    trusted = T0 - 1200
    m.record_trusted_state("bj-re-1", height=1000, time_s=trusted, trusting_period_s=4200)
    # bank-1 is healthy: at the head, a long trusting period, a working adapter.
    m.record_trusted_state("bank-1", height=50, time_s=T0, trusting_period_s=14 * 86400)
    m.record_audit_checkpoint(time_s=T0 - 3600)
    series: dict[str, list[float | None]] = {}
    for minute in range(MINUTES):
        clock.now = T0 + 60 * minute
        m.record_partner_head("bj-re-1", height=1200, time_s=trusted + 1200)
        m.record_partner_head("bank-1", height=50, time_s=clock.now)
        m.record_trusted_state("bank-1", height=50 + minute, time_s=clock.now)
        m.record_adapter_request("bank-1", method="GetLatestHeight", seconds=0.01)
        m.record_adapter_request("bj-ip-1", method="GetCheckpoint", seconds=0.01)
        if minute < 10:
            m.record_adapter_request("bj-re-1", method="GetLatestHeight", seconds=0.01)
        else:
            m.record_adapter_request(
                "bj-re-1", method="GetLatestHeight", seconds=5.0, reason="ADAPTER_UNAVAILABLE"
            )
        if minute >= 20:
            m.record_proof_verification("bj-re-1", ok=False, reason="ROOT_MISMATCH")
            m.record_proof_verification("bj-re-1", ok=False, reason="PROOF_INVALID")
        m.record_proof_verification("bank-1", ok=True)
        if minute == 30:
            m.record_misbehaviour("bj-ip-1")
            m.record_chain_status("bj-ip-1", "CHAIN_STATUS_FROZEN")
        m.grpc_handled.labels("unary", "relay.v1.QueryService", "GetOwnership", "Internal").inc()
        m.grpc_handled.labels("unary", "relay.v1.QueryService", "GetOwnership", "OK").inc(5)
        for family in text_string_to_metric_families(m.exposition()[0].decode()):
            for s in family.samples:
                if s.name not in used:
                    continue
                labels = {**s.labels, **SELECTOR}
                key = s.name + "{" + ",".join(f'{k}="{v}"' for k, v in sorted(labels.items())) + "}"
                series.setdefault(key, [None] * MINUTES)[minute] = float(s.value)
    return series


def _values(points: list[float | None]) -> str:
    return " ".join("_" if v is None else repr(v) for v in points)


EXPECTED_AT_40M = {
    "RelayChainFrozen": [{"chain": "bj-ip-1", "domain": "ip", "severity": "critical"}],
    "RelayChainExpired": [],
    "RelayMisbehaviourDetected": [{"chain": "bj-ip-1", "domain": "ip", "severity": "critical"}],
    "RelayChainLagging": [{"chain": "bj-re-1", "domain": "real_estate", "severity": "warning"}],
    "RelayTrustingPeriodExpiring": [
        {"chain": "bj-re-1", "domain": "real_estate", "severity": "warning"}
    ],
    "RelayTrustingPeriodExpiringCritical": [
        {"chain": "bj-re-1", "domain": "real_estate", "severity": "critical"}
    ],
    "RelayVerificationFailuresRising": [
        {"chain": "bj-re-1", "domain": "real_estate", "severity": "warning"}
    ],
    "RelayAdapterDown": [{"chain": "bj-re-1", "domain": "real_estate", "severity": "warning"}],
    "RelayAuditCheckpointStale": [{"severity": "warning"}],
    "RelayInternalErrors": [{"severity": "warning"}],
}


def test_alerts_fire_exactly_as_expected_on_scraped_series(tmp_path: Path) -> None:
    tool = promtool()
    rules = render_rules()
    assert {a["alert"] for a in alerts(rules)} == set(EXPECTED_AT_40M)
    for rule in alerts(rules):
        rule.pop("annotations")  # their text is checked by `promtool check rules`
    (tmp_path / "rules.yaml").write_text(yaml.safe_dump(rules, sort_keys=False))
    used = set().union(*(metric_names(a["expr"]) for a in alerts(rules)))
    series = scenario_series(used)
    assert {k.split("{")[0] for k in series} == used
    tests = {
        "rule_files": ["rules.yaml"],
        "evaluation_interval": "1m",
        "tests": [
            {
                "interval": "1m",
                "input_series": [{"series": k, "values": _values(v)} for k, v in series.items()],
                "alert_rule_test": [
                    {
                        "eval_time": "40m",
                        "alertname": name,
                        "exp_alerts": [{"exp_labels": labels} for labels in expected],
                    }
                    for name, expected in EXPECTED_AT_40M.items()
                ]
                + [
                    # Down since minute 10, but `for: 5m` has not passed at minute 12.
                    {"eval_time": "12m", "alertname": "RelayAdapterDown", "exp_alerts": []},
                    # Before the fork nothing is frozen.
                    {"eval_time": "29m", "alertname": "RelayChainFrozen", "exp_alerts": []},
                ],
            }
        ],
    }
    (tmp_path / "tests.yaml").write_text(yaml.safe_dump(tests, sort_keys=False))
    result = subprocess.run(
        [tool, "test", "rules", "tests.yaml"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
