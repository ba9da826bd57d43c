"""Prometheus metrics of the operator (served on --metrics-port)."""

from __future__ import annotations

from collections.abc import Mapping

from prometheus_client import Counter, Gauge, Histogram

from cni_operator.api.v1alpha1 import ClusterNetworkStatus
from cni_operator.api.vocabulary import COMPATIBLE

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


def record(name: str, status: ClusterNetworkStatus, nodes_per_revision: Mapping[str, int]) -> None:
    """Publish what one reconcile wrote to status and saw of the nodes."""
    NODES_PER_REVISION.clear()  # revisions no node runs any more must disappear, not stay at their last value
    for revision, count in nodes_per_revision.items():
        NODES_PER_REVISION.labels(name, revision).set(count)
    nodes = status.nodes
    for state, value in (("total", nodes.total), ("updated", nodes.updated), ("ready", nodes.ready)):
        NODES.labels(name, state).set(float(value))
    ROLLOUT_PROGRESS.labels(name).set(nodes.ready / nodes.total if nodes.total else 0.0)
    for condition in status.conditions:
        CONDITION.labels(name, condition.type).set(1.0 if condition.status.value == "True" else 0.0)
    RECONCILES.labels(name, status.phase).inc()
    record_skew(name, status)


def record_skew(name: str, status: ClusterNetworkStatus) -> None:
    """Findings per kind and severity in status.skew (zeroed once resolved), and the Compatible condition."""
    counts: dict[tuple[str, str], int] = {}
    for finding in status.skew:
        key: tuple[str, str] = (finding.kind, str(finding.severity))
        counts[key] = counts.get(key, 0) + 1
    seen = _skew_seen.setdefault(name, set())
    for key in seen - counts.keys():
        SKEW_FINDINGS.labels(name, *key).set(0.0)
    for key, count in counts.items():
        SKEW_FINDINGS.labels(name, *key).set(float(count))
    seen.update(counts)
    compatible = next((c for c in status.conditions if c.type == COMPATIBLE), None)
    if compatible is not None:
        SKEW_COMPATIBLE.labels(name).set(1.0 if compatible.status.value == "True" else 0.0)
