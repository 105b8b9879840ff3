"""The Helm chart (charts/relay) rendered offline with helm-python-sdk, no cluster and no helm
binary: default values and each mode render, pass the SDK's strict lint, every core object
validates with kubernetes-validate in strict mode (CRDs are checked here by structure), the
objects fit together (selectors, named ports, mounts), the pods are locked down, bad values
are refused by values.schema.json, and impossible combinations fail with a clear message."""

from __future__ import annotations

import copy
import re
import typing
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import helm_python as helm
import kubernetes_validate
import pytest
import yaml
from kubernetes_validate.utils import latest_version
from test_config_serve import is_duration

from relay import config as relay_config

CHART = Path(__file__).resolve().parent.parent / "charts" / "relay"
RELEASE, NAMESPACE = "relay", "courts"
# The chart's kubeVersion floor and the newest schemas kubernetes-validate ships.
KUBE_VERSIONS = ("1.27.0", latest_version())
CRDS = {
    ("monitoring.coreos.com/v1", "ServiceMonitor"),
    ("monitoring.coreos.com/v1", "PrometheusRule"),
}

DESCRIPTOR = {
    "chainId": "bj-realestate-1",
    "institution": "12110000MB0000000X",
    "domain": "DOMAIN_REAL_ESTATE",
    "proofSpec": "PROOF_SPEC_ICS23_SMT",
    "adapter": {"grpcAddress": "adapter.bj-realestate.example:9443"},
}
# What every install must set (README, Access): the CA of client certificates (mutual TLS)
# and the access section; the chart refuses to render without them unless tls.insecureDev.
ACCESS: dict[str, Any] = {
    "grants": {"京0105": {"domains": ["real-estate", "bank"], "queries": ["ownership"]}},
    "operators": ["ops-alice", "ops-bob"],
    "approvals_required": 2,
}
MINIMAL: dict[str, Any] = {
    "tls": {"clientCA": {"existingSecret": "court-ca"}},
    "relay": {"access": ACCESS},
}
EVERYTHING_ON: dict[str, Any] = {
    "web": {"enabled": True},
    "tls": {
        "clientCA": {"existingSecret": "court-ca"},
        "requireClientCert": True,
        "adapterClient": {"existingSecret": "relay-adapter-client"},
        "auditSink": {"existingSecret": "judicial-sink"},
    },
    "relay": {
        "access": ACCESS,
        "audit": {"checkpoint_interval": "30s", "sink": {"endpoint": "judicial.courts.svc:7443"}},
        "chains": {"bj-realestate-1": DESCRIPTOR},
        "sync": {"interval": "2s", "max_light_blocks_per_fetch": 32},
        "adapters": {"deadline": "5s", "retries": 2},
        "limits": {"query_deadline": "10s", "max_request_bytes": "1MiB"},
    },
    "metrics": {
        "serviceMonitor": {
            "enabled": True,
            "labels": {"release": "kube-prometheus-stack"},
            "tlsConfig": {"caSecret": "relay-ca"},
        },
        "prometheusRule": {"enabled": True},
        "grafanaDashboard": {"enabled": True},
    },
    "podDisruptionBudget": {"enabled": True},
    "networkPolicy": {
        "enabled": True,
        "grpcFrom": [{"namespaceSelector": {"matchLabels": {"relay-client": "court"}}}],
        "opsFrom": [{"namespaceSelector": {"matchLabels": {"name": "monitoring"}}}],
        "egress": {
            "enabled": True,
            "rules": [{"to": [{"ipBlock": {"cidr": "10.20.0.0/16"}}], "ports": [{"port": 9443}]}],
        },
    },
}
POSTGRES = {
    **MINIMAL,
    "storage": {"backend": "postgres", "postgres": {"existingSecret": "relay-postgres"}},
    "replicaCount": 3,
}


def merged(*layers: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for layer in layers:
        _merge(out, copy.deepcopy(layer))
    return out


def _merge(into: dict[str, Any], layer: dict[str, Any]) -> None:
    for key, value in layer.items():
        if isinstance(value, dict) and isinstance(into.get(key), dict):
            _merge(into[key], value)
        else:
            into[key] = value


MODES: dict[str, dict[str, Any]] = {
    "minimal": MINIMAL,
    "sqlite-everything": EVERYTHING_ON,
    "postgres": POSTGRES,
    "postgres-everything-autoscaled": merged(
        POSTGRES, EVERYTHING_ON, {"autoscaling": {"enabled": True}}
    ),
    "plaintext-dev": {"tls": {"enabled": False, "insecureDev": True}},
}


@pytest.fixture(scope="module")
def chart() -> Iterator[helm.Chart]:
    with helm.Chart.load(CHART) as c:
        yield c


def render(chart: helm.Chart, values: dict[str, Any]) -> dict[str, str]:
    return chart.render(values, name=RELEASE, namespace=NAMESPACE, is_install=True)


def objects(manifests: dict[str, str]) -> list[dict[str, Any]]:
    out = []
    for path, text in manifests.items():
        if not path.endswith(".yaml"):
            continue
        out.extend(doc for doc in yaml.safe_load_all(text) if doc)
    return out


def by_kind(objs: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [o for o in objs if o["kind"] == kind]


def one(objs: list[dict[str, Any]], kind: str, name: str | None = None) -> dict[str, Any]:
    found = [o for o in by_kind(objs, kind) if name is None or o["metadata"]["name"] == name]
    assert len(found) == 1, (kind, name, [o["metadata"]["name"] for o in by_kind(objs, kind)])
    return found[0]


def workload(objs: list[dict[str, Any]]) -> dict[str, Any]:
    found = by_kind(objs, "StatefulSet") + by_kind(objs, "Deployment")
    assert len(found) == 1
    return found[0]


@pytest.fixture(scope="module", params=sorted(MODES))
def rendered(request: pytest.FixtureRequest, chart: helm.Chart) -> tuple[str, list[dict[str, Any]]]:
    mode = request.param
    return mode, objects(render(chart, MODES[mode]))


# --------------------------------------------------------------------------- validity


def test_every_object_is_valid_kubernetes(rendered: tuple[str, list[dict[str, Any]]]) -> None:
    mode, objs = rendered
    assert objs
    seen = set()
    for obj in objs:
        key = (obj["kind"], obj["metadata"]["name"])
        assert key not in seen, f"{mode}: {key} rendered twice"
        seen.add(key)
        assert obj["metadata"].get("namespace") == NAMESPACE, key
        labels = obj["metadata"].get("labels", {})
        assert labels.get("app.kubernetes.io/instance") == RELEASE, key
        if (obj["apiVersion"], obj["kind"]) in CRDS:
            continue  # checked by structure below
        for version in KUBE_VERSIONS:
            kubernetes_validate.validate(obj, version, strict=True)


def test_strict_validation_catches_a_stray_field(chart: helm.Chart) -> None:
    statefulset = workload(objects(render(chart, MINIMAL)))
    statefulset["spec"]["template"]["spec"]["containers"][0]["readOnlyRootFs"] = True
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(statefulset, KUBE_VERSIONS[0], strict=True)


def test_crds_have_the_structure_prometheus_operator_expects(chart: helm.Chart) -> None:
    objs = objects(render(chart, EVERYTHING_ON))
    monitor = one(objs, "ServiceMonitor")
    assert monitor["apiVersion"] == "monitoring.coreos.com/v1"
    spec = monitor["spec"]
    assert set(spec) == {"namespaceSelector", "selector", "endpoints"}
    assert spec["namespaceSelector"] == {"matchNames": [NAMESPACE]}
    assert monitor["metadata"]["labels"]["release"] == "kube-prometheus-stack"
    # It selects exactly the ops Service, by labels, and scrapes its named port.
    selected = [
        s
        for s in by_kind(objs, "Service")
        if spec["selector"]["matchLabels"].items() <= s["metadata"]["labels"].items()
    ]
    assert [s["metadata"]["name"] for s in selected] == [f"{RELEASE}-ops"]
    (endpoint,) = spec["endpoints"]
    assert set(endpoint) <= {"port", "path", "scheme", "tlsConfig", "interval", "scrapeTimeout"}
    assert endpoint["port"] in {p["name"] for p in selected[0]["spec"]["ports"]}
    assert endpoint["path"] == "/metrics"
    # The ops port serves the relay's certificate: scraped over https, checked against the
    # CA from values under the API Service's name (Prometheus dials pod IPs).
    assert endpoint["scheme"] == "https"
    assert endpoint["tlsConfig"] == {
        "serverName": f"{RELEASE}.{NAMESPACE}.svc",
        "ca": {"secret": {"name": "relay-ca", "key": "ca.crt"}},
    }

    rule = one(objs, "PrometheusRule")
    assert rule["apiVersion"] == "monitoring.coreos.com/v1"
    assert set(rule["spec"]) == {"groups"}
    names = set()
    for group in rule["spec"]["groups"]:
        assert set(group) == {"name", "rules"} and group["rules"]
        for r in group["rules"]:
            assert set(r) <= {"alert", "expr", "for", "labels", "annotations"}
            assert isinstance(r["alert"], str) and r["alert"] not in names
            names.add(r["alert"])
            assert isinstance(r["expr"], str) and r["expr"].strip()
            assert r["labels"]["severity"] in {"warning", "critical"}
            assert {"summary", "description"} <= set(r["annotations"])
            assert all(isinstance(v, str) for v in r["annotations"].values())


def test_strict_lint_passes_for_every_mode() -> None:
    for mode, values in MODES.items():
        report = helm.lint(CHART, values, strict=True, namespace=NAMESPACE)
        assert report["errors"] == [], (mode, report)
        # Severity 1 is informational ("icon is recommended"); warnings and errors fail.
        serious = [m for m in report["messages"] if m["severity"] >= 2]
        assert serious == [], (mode, serious)
        assert report["total_charts_linted"] == 1


def test_chart_has_no_dependencies(chart: helm.Chart) -> None:
    assert not chart.metadata.get("dependencies")
    assert chart.dependencies == []
    assert chart.metadata["apiVersion"] == "v2"


# ----------------------------------------------------------------------------- modes


def test_sqlite_mode_is_one_statefulset_with_a_volume(chart: helm.Chart) -> None:
    objs = objects(render(chart, MINIMAL))
    assert by_kind(objs, "Deployment") == []
    assert by_kind(objs, "HorizontalPodAutoscaler") == []
    sts = one(objs, "StatefulSet")
    assert sts["spec"]["replicas"] == 1
    assert sts["spec"]["serviceName"] == f"{RELEASE}-headless"
    one(objs, "Service", f"{RELEASE}-headless")
    (claim,) = sts["spec"]["volumeClaimTemplates"]
    assert claim["metadata"]["name"] == "data"
    assert claim["spec"]["resources"]["requests"]["storage"] == "10Gi"
    mounts = sts["spec"]["template"]["spec"]["containers"][0]["volumeMounts"]
    assert {"name": "data", "mountPath": "/var/lib/relay"} in mounts


def test_postgres_mode_is_a_deployment_with_replicas(chart: helm.Chart) -> None:
    objs = objects(render(chart, POSTGRES))
    assert by_kind(objs, "StatefulSet") == []
    deployment = one(objs, "Deployment")
    assert deployment["spec"]["replicas"] == 3
    pod = deployment["spec"]["template"]["spec"]
    assert "volumeClaimTemplates" not in deployment["spec"]
    assert all(v["name"] != "data" for v in pod["volumes"])
    env = {e["name"]: e for e in pod["containers"][0]["env"]}
    ref = env["RELAY_STORE_DSN"]["valueFrom"]["secretKeyRef"]
    assert ref == {"name": "relay-postgres", "key": "dsn"}

    scaled = objects(render(chart, merged(POSTGRES, {"autoscaling": {"enabled": True}})))
    hpa = one(scaled, "HorizontalPodAutoscaler")
    assert hpa["spec"]["scaleTargetRef"] == {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "name": RELEASE,
    }
    assert "replicas" not in one(scaled, "Deployment")["spec"]  # the HPA owns it


def test_sqlite_with_two_replicas_fails_with_a_clear_message(chart: helm.Chart) -> None:
    with pytest.raises(helm.HelmRenderError) as caught:
        render(chart, merged(MINIMAL, {"replicaCount": 2}))
    message = str(caught.value)
    assert "storage.backend=sqlite" in message
    assert "replicaCount is 2" in message
    assert "storage.backend=postgres" in message  # says what to do


@pytest.mark.parametrize(
    ("values", "expected"),
    [
        ({"autoscaling": {"enabled": True}}, "autoscaling.enabled needs storage.backend=postgres"),
        ({"storage": {"backend": "postgres"}}, "needs storage.postgres.existingSecret"),
        ({"tls": {"enabled": False}}, "set tls.insecureDev=true"),
        ({"tls": {"clientCA": {"existingSecret": ""}}}, "tls.clientCA.existingSecret is required"),
        ({"tls": {"requireClientCert": False}}, "set tls.insecureDev=true as well"),
        ({"relay": {"access": None}}, "relay.access is required"),
        (
            {"relay": {"signing": {"sm2SignerId": "1234567812345678"}}},
            "sm2SignerId applies only",
        ),
        ({"podDisruptionBudget": {"enabled": True, "minAvailable": 1}}, "not both"),
        (
            {"relay": {"audit": {"sink": {"endpoint": "judicial.courts.svc:7443"}}}},
            "relay.audit.sink needs tls.auditSink.existingSecret",
        ),
        (
            {"tls": {"auditSink": {"existingSecret": "judicial-sink"}}},
            "relay.audit.sink is not",
        ),
        (
            {"metrics": {"serviceMonitor": {"enabled": True}}},
            "set metrics.serviceMonitor.tlsConfig.caSecret",
        ),
        (
            merged(
                POSTGRES, {"autoscaling": {"enabled": True, "minReplicas": 5, "maxReplicas": 2}}
            ),
            "minReplicas is larger",
        ),
    ],
)
def test_impossible_combinations_fail_to_render(
    chart: helm.Chart, values: dict[str, Any], expected: str
) -> None:
    with pytest.raises(helm.HelmRenderError, match=expected):
        render(chart, merged(MINIMAL, values))


# -------------------------------------------------------------------- wiring, security


def _pod(objs: list[dict[str, Any]]) -> dict[str, Any]:
    template = workload(objs)["spec"]["template"]
    return template


def test_objects_fit_together(rendered: tuple[str, list[dict[str, Any]]]) -> None:
    mode, objs = rendered
    template = _pod(objs)
    pod_labels = template["metadata"]["labels"]
    spec = template["spec"]
    (container,) = spec["containers"]
    port_names = {p["name"]: p["containerPort"] for p in container["ports"]}
    assert workload(objs)["spec"]["selector"]["matchLabels"].items() <= pod_labels.items()

    for service in by_kind(objs, "Service"):
        assert service["spec"]["selector"].items() <= pod_labels.items(), service
        for port in service["spec"]["ports"]:
            assert port["targetPort"] in port_names, (mode, service["metadata"]["name"])
    services = {s["metadata"]["name"] for s in by_kind(objs, "Service")}
    assert {RELEASE, f"{RELEASE}-ops"} <= services
    assert (f"{RELEASE}-web" in services) == ("web" in port_names)
    # The health port is for the kubelet only: no Service exposes it.
    for service in by_kind(objs, "Service"):
        assert all(p["targetPort"] != "health" for p in service["spec"]["ports"])

    # Probes use gRPC health on the health port.
    for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
        assert container[probe]["grpc"] == {"port": port_names["health"]}, probe

    # Every volume mount has a volume (or a claim template), and every volume is mounted.
    volumes = {v["name"] for v in spec["volumes"]}
    claims = {c["metadata"]["name"] for c in workload(objs)["spec"].get("volumeClaimTemplates", [])}
    mounted = {m["name"] for m in container["volumeMounts"]}
    assert mounted <= volumes | claims
    assert volumes <= mounted

    # The config map the pod mounts exists and holds every key the pod asks for.
    config_maps = {c["metadata"]["name"]: c for c in by_kind(objs, "ConfigMap")}
    for volume in spec["volumes"]:
        if "configMap" in volume:
            data = config_maps[volume["configMap"]["name"]]["data"]
            for item in volume["configMap"]["items"]:
                assert item["key"] in data, item

    for kind in ("PodDisruptionBudget", "NetworkPolicy"):
        for obj in by_kind(objs, kind):
            selector = obj["spec"].get("selector") or obj["spec"]["podSelector"]
            assert selector["matchLabels"].items() <= pod_labels.items(), kind
    for policy in by_kind(objs, "NetworkPolicy"):
        for rule in policy["spec"]["ingress"]:
            for port in rule["ports"]:
                assert port["port"] in port_names, port

    account = spec["serviceAccountName"]
    assert account in {a["metadata"]["name"] for a in by_kind(objs, "ServiceAccount")}
    assert spec["automountServiceAccountToken"] is False


def test_pods_are_locked_down(rendered: tuple[str, list[dict[str, Any]]]) -> None:
    _, objs = rendered
    spec = _pod(objs)["spec"]
    pod_security = spec["securityContext"]
    assert pod_security["runAsNonRoot"] is True
    assert pod_security["runAsUser"] > 0
    assert pod_security["seccompProfile"] == {"type": "RuntimeDefault"}
    for container in spec["containers"] + spec.get("initContainers", []):
        sc = container["securityContext"]
        assert sc["runAsNonRoot"] is True
        assert sc["readOnlyRootFilesystem"] is True
        assert sc["allowPrivilegeEscalation"] is False
        assert sc["privileged"] is False
        assert sc["capabilities"]["drop"] == ["ALL"]
        assert "add" not in sc["capabilities"]
        assert sc["seccompProfile"] == {"type": "RuntimeDefault"}
        # With a read-only root, the writable places are volumes.
        writable = {m["mountPath"] for m in container["volumeMounts"] if not m.get("readOnly")}
        assert "/tmp" in writable
        assert writable <= {"/tmp", "/var/lib/relay"}
        assert container["args"][:3] == ["serve", "--config", "/etc/relay/relay.yaml"]


def test_tls_and_keys_come_from_existing_secrets(chart: helm.Chart) -> None:
    objs = objects(render(chart, EVERYTHING_ON))
    assert by_kind(objs, "Secret") == []  # the chart never creates or holds key material
    volumes = {v["name"]: v for v in _pod(objs)["spec"]["volumes"]}
    assert volumes["tls"]["secret"]["secretName"] == f"{RELEASE}-tls"
    assert volumes["signing"]["secret"]["secretName"] == f"{RELEASE}-signing-key"
    assert volumes["client-ca"]["secret"]["secretName"] == "court-ca"
    assert volumes["adapter-client"]["secret"]["secretName"] == "relay-adapter-client"
    for name in ("tls", "signing", "client-ca", "adapter-client"):
        assert volumes[name]["secret"]["defaultMode"] == 0o440

    named = objects(
        render(
            chart,
            merged(
                MINIMAL,
                {
                    "tls": {"existingSecret": "api-cert"},
                    "relay": {"signing": {"existingSecret": "k"}},
                },
            ),
        )
    )
    volumes = {v["name"]: v for v in _pod(named)["spec"]["volumes"]}
    assert volumes["tls"]["secret"]["secretName"] == "api-cert"
    assert volumes["signing"]["secret"]["secretName"] == "k"


def _scrape_endpoint(chart: helm.Chart, *layers: dict[str, Any]) -> dict[str, Any]:
    monitor = one(
        objects(
            render(
                chart, merged(MINIMAL, {"metrics": {"serviceMonitor": {"enabled": True}}}, *layers)
            )
        ),
        "ServiceMonitor",
    )
    (endpoint,) = monitor["spec"]["endpoints"]
    return endpoint


def test_scrape_tls_follows_the_relay(chart: helm.Chart) -> None:
    # Skipping the certificate check takes its own explicit flag; the name can be set.
    skip = {"tlsConfig": {"insecureSkipVerify": True, "serverName": "relay.example"}}
    endpoint = _scrape_endpoint(chart, {"metrics": {"serviceMonitor": skip}})
    assert endpoint["scheme"] == "https"
    assert endpoint["tlsConfig"] == {"serverName": "relay.example", "insecureSkipVerify": True}
    # A plaintext development relay is scraped over plain http.
    endpoint = _scrape_endpoint(chart, MODES["plaintext-dev"])
    assert endpoint["scheme"] == "http" and "tlsConfig" not in endpoint


def test_plaintext_needs_the_explicit_dev_flag(chart: helm.Chart) -> None:
    objs = objects(render(chart, MODES["plaintext-dev"]))
    container = _pod(objs)["spec"]["containers"][0]
    assert container["args"] == ["serve", "--config", "/etc/relay/relay.yaml", "--insecure-dev"]
    assert all(v["name"] != "tls" for v in _pod(objs)["spec"]["volumes"])


def test_config_change_rolls_the_pods(chart: helm.Chart) -> None:
    a = _pod(objects(render(chart, MINIMAL)))["metadata"]["annotations"]["checksum/config"]
    b = _pod(objects(render(chart, merged(MINIMAL, {"relay": {"logLevel": "DEBUG"}}))))["metadata"][
        "annotations"
    ]
    assert a != b["checksum/config"]


def test_dashboard_configmap_carries_the_json(chart: helm.Chart) -> None:
    objs = objects(render(chart, EVERYTHING_ON))
    dashboard = one(objs, "ConfigMap", f"{RELEASE}-dashboard")
    assert dashboard["metadata"]["labels"]["grafana_dashboard"] == "1"
    assert dashboard["data"]["relay.json"] == (CHART / "dashboards" / "relay.json").read_text()


# ---------------------------------------------------------------------------- schema


def test_default_values_pass_the_schema(chart: helm.Chart) -> None:
    chart.validate_schema(chart.values)
    for values in MODES.values():
        chart.validate_schema(chart.merge_values(values))


BAD_VALUES = {
    "unknown top-level key": {"replicas": 2},
    "unknown backend": {"storage": {"backend": "mysql"}},
    "zero replicas": {"replicaCount": 0},
    "replicas as text": {"replicaCount": "2"},
    "writable root": {"securityContext": {"readOnlyRootFilesystem": False}},
    "privilege escalation": {"securityContext": {"allowPrivilegeEscalation": True}},
    "capabilities kept": {"securityContext": {"capabilities": {"drop": ["NET_RAW"]}}},
    "capability added": {"securityContext": {"capabilities": {"add": ["NET_ADMIN"]}}},
    "root pod": {"podSecurityContext": {"runAsNonRoot": False}},
    "unconfined seccomp": {"podSecurityContext": {"seccompProfile": {"type": "Unconfined"}}},
    "typo in sync": {"relay": {"sync": {"intervall": "5s"}}},
    "bad duration": {"relay": {"adapters": {"deadline": "five seconds"}}},
    # The relay refuses these at start (a crash loop): the schema refuses them first.
    "bad proposal lifetime": {"relay": {"access": {"max_proposal_lifetime": "a week"}}},
    "week unit": {"relay": {"access": {"max_proposal_lifetime": "1w"}}},
    "bad sync prune interval": {"relay": {"sync": {"prune_interval": "daily"}}},
    "bad size": {"relay": {"limits": {"max_request_bytes": "1MB"}}},
    "bad log level": {"relay": {"logLevel": "verbose"}},
    "bad signing algorithm": {"relay": {"signing": {"algorithm": "rsa"}}},
    "bad key id": {"relay": {"signing": {"keyId": "relay key 1"}}},
    "port out of range": {"ports": {"grpc": 70000}},
    "bad digest": {"image": {"digest": "md5:abc"}},
    "bad prometheus duration": {"metrics": {"prometheusRule": {"lagFor": "ten minutes"}}},
    "bad chain name": {"relay": {"chains": {"Bad_Name": DESCRIPTOR}}},
    "descriptor without chain id": {"relay": {"chains": {"ok": {"domain": "DOMAIN_IP"}}}},
    "pdb percentage typo": {"podDisruptionBudget": {"maxUnavailable": "50 percent"}},
    "scrape tls typo": {"metrics": {"serviceMonitor": {"tlsConfig": {"insecure": True}}}},
    "scrape skip as text": {
        "metrics": {"serviceMonitor": {"tlsConfig": {"insecureSkipVerify": "yes"}}}
    },
}


@pytest.mark.parametrize("case", sorted(BAD_VALUES))
def test_bad_values_are_refused_by_the_schema(chart: helm.Chart, case: str) -> None:
    values = BAD_VALUES[case]
    with pytest.raises(helm.HelmValuesError):
        chart.validate_schema(chart.merge_values(values))
    with pytest.raises(helm.HelmValuesError):
        render(chart, values)


def _relay_config(objs: list[dict[str, Any]]) -> dict[str, Any]:
    maps = [o for o in by_kind(objs, "ConfigMap") if "relay.yaml" in o.get("data", {})]
    assert len(maps) == 1
    data: dict[str, Any] = yaml.safe_load(maps[0]["data"]["relay.yaml"])
    return data


def test_day_durations_render_into_a_config_the_relay_accepts(chart: helm.Chart) -> None:
    """The README's ``max_proposal_lifetime: 7d`` passes the schema, renders, and is a
    duration relay/config.py accepts (a week, its limit)."""
    values = merged(
        MINIMAL,
        {
            "relay": {
                "access": {"max_proposal_lifetime": "7d"},
                "sync": {"prune_interval": "1d"},
                "shutdownGrace": "30s",
            }
        },
    )
    chart.validate_schema(chart.merge_values(values))
    rendered = _relay_config(objects(render(chart, values)))
    assert rendered["access"]["max_proposal_lifetime"] == "7d"
    config = relay_config.parse_config(rendered)
    assert config.access is not None and config.access.max_proposal_lifetime == 7 * 86400
    assert config.sync.prune_interval == 86400 and config.shutdown_grace == 30


def _string_patterns(spec: dict[str, Any]) -> list[str | None]:
    return [s.get("pattern") for s in spec.get("oneOf", []) if s.get("type") == "string"]


def test_every_duration_in_the_schema_is_the_relays_duration(chart: helm.Chart) -> None:
    """Each duration field of relay/config.py the schema passes on (relay.sync, adapters,
    limits, access, shutdownGrace) takes a number or a string whose pattern accepts
    exactly the forms the relay's duration parser accepts (no free string left where a
    duration is expected)."""
    schema = chart.schema
    assert schema is not None
    relay_props = schema["properties"]["relay"]["properties"]
    sections = {
        "sync": relay_config.SyncConfig,
        "adapters": relay_config.AdaptersConfig,
        "limits": relay_config.LimitsConfig,
        "access": relay_config.AccessConfig,
    }
    patterns = {"shutdownGrace": _string_patterns(relay_props["shutdownGrace"])}
    for section, model in sections.items():
        hints = typing.get_type_hints(model, include_extras=True)
        props = relay_props[section]["properties"]
        for name in model.model_fields:
            if is_duration(hints[name]):
                patterns[f"{section}.{name}"] = _string_patterns(props[name])
    assert "access.max_proposal_lifetime" in patterns and "sync.interval" in patterns
    for where, found in patterns.items():
        assert len(found) == 1 and found[0] is not None, (where, found)
        for sample in DURATION_SAMPLES:
            relay_accepts = relay_config._DURATION.match(sample) is not None
            assert (re.search(found[0], sample) is not None) == relay_accepts, (where, sample)


DURATION_SAMPLES = (
    *("7d", "1.5d", " 2 d ", "250ms", "3", "2m", "1h", "10s", "0.5s"),
    *("1w", "7days", "d", "", "1e3", "-1s", "1.s", ".5s", "5 sec", "1h30m", "P7D"),
)
