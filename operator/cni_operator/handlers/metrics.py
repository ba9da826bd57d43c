"""Prometheus metrics of the operator (served on --metrics-port)."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

from cni_operator.status.conditions import COMPATIBLE

RECONCILES = Counter("cni_operator_reconciles_total", "Reconciles of ClusterNetworks", ["clusternetwork", "phase"])
RECONCILE_ERRORS = Counter(
    "cni_operator_reconcile_errors_total", "Reconciles that raised an error", ["clusternetwork", "error"]
)
RECONCILE_SECONDS = Histogram("cni_operator_reconcile_duration_seconds", "Time one reconcile takes")
NODES = Gauge("cni_operator_nodes", "Nodes by rollout state of the target revision", ["clusternetwork", "state"])
NODES_PER_REVISION = Gauge(
    "cni_operator_nodes_per_revision", "Nodes labelled with each revision", ["clusternetwork", "revision"]
)
ROLLOUT_PROGRESS = Gauge(
    "cni_operator_rollout_progress_ratio", "Share of nodes ready on the target revision (0 to 1)", ["clusternetwork"]
)
CONDITION = Gauge(
    "cni_operator_condition", "1 when the condition is True, 0 otherwise", ["clusternetwork", "condition"]
)
SKEW_FINDINGS = Gauge(
    "cni_operator_skew_findings",
    "Version-skew findings in status.skew by kind and severity (Unsupported, Warning); 0 once resolved",
    ["clusternetwork", "kind", "severity"],
)
SKEW_COMPATIBLE = Gauge(
    "cni_operator_skew_compatible",
    "1 when the running and target plugin releases suit the cluster (condition Compatible), 0 otherwise",
    ["clusternetwork"],
)
_skew_seen: dict[str, set[tuple[str, str]]] = {}  # (kind, severity) published per ClusterNetwork, to zero later


def record(name: str, status: dict[str, object], nodes_per_revision: dict[str, int]) -> None:
    """Publish what one reconcile wrote to status and saw of the nodes."""
    NODES_PER_REVISION.clear()  # revisions no node runs any more must disappear, not stay at their last value
    for revision, count in nodes_per_revision.items():
        NODES_PER_REVISION.labels(name, revision).set(count)
    nodes = status.get("nodes") or {}
    assert isinstance(nodes, dict)
    for state in ("total", "updated", "ready"):
        NODES.labels(name, state).set(float(nodes.get(state, 0)))
    total = float(nodes.get("total", 0))
    ROLLOUT_PROGRESS.labels(name).set(float(nodes.get("ready", 0)) / total if total else 0.0)
    for condition in status.get("conditions") or []:  # type: ignore[attr-defined]
        CONDITION.labels(name, condition["type"]).set(1.0 if condition["status"] == "True" else 0.0)
    RECONCILES.labels(name, str(status.get("phase", ""))).inc()
    record_skew(name, status)


def record_skew(name: str, status: dict[str, object]) -> None:
    """Findings per kind and the Compatible condition, when this reconcile evaluated skew (status.skew written)."""
    findings = status.get("skew")
    if not isinstance(findings, list):
        return
    counts: dict[tuple[str, str], int] = {}
    for finding in findings:
        key = (str(finding.get("kind", "")), str(finding.get("severity", "Unsupported")))
        counts[key] = counts.get(key, 0) + 1
    seen = _skew_seen.setdefault(name, set())
    for key in seen - counts.keys():
        SKEW_FINDINGS.labels(name, *key).set(0.0)
    for key, count in counts.items():
        SKEW_FINDINGS.labels(name, *key).set(float(count))
    seen.update(counts)
    conditions = status.get("conditions") or []
    assert isinstance(conditions, list)
    compatible = next((c for c in conditions if c.get("type") == COMPATIBLE), None)
    if compatible is not None:
        SKEW_COMPATIBLE.labels(name).set(1.0 if compatible.get("status") == "True" else 0.0)
