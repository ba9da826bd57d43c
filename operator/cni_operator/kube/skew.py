"""Version skew against the live cluster: observe the facts, evaluate them (plan.skew), write them into status.

The reconcile calls `check` after validation and before rendering; a refused target returns a Degraded outcome
without applying anything. `merge_into` adds status.skew, the Compatible condition and an Event when they change.
"""

from __future__ import annotations

from typing import Any, Protocol

from kubernetes import client
from kubernetes.client import ApiClient

from cni_operator.api import vocabulary as L
from cni_operator.catalog.loader import Catalog
from cni_operator.plan import skew as S
from cni_operator.plan.validate import ValidatedSpec
from cni_operator.status import conditions as C

EVENT_REASON = "VersionSkew"


def observe(api_client: ApiClient, *, server: str | None = None, nodes: list[Any] | None = None) -> S.ClusterFacts:
    """The API server's version and every node's nodeInfo, in one LIST of nodes (or from the reconcile's own)."""
    if server is None:
        server = client.VersionApi(api_client).get_code().git_version
    if nodes is None:
        core: Any = client.CoreV1Api(api_client)
        nodes = core.list_node().items
    facts = []
    for node in nodes:
        info = node.status.node_info if node.status else None
        facts.append(
            S.NodeFacts(
                name=node.metadata.name,
                kubelet_version=(info.kubelet_version if info else "") or "",
                container_runtime_version=(info.container_runtime_version if info else "") or "",
                os=(info.operating_system if info else "") or S.LINUX,
                arch=(info.architecture if info else "") or "",
                revision=(node.metadata.labels or {}).get(L.NODE_REVISION, ""),
            )
        )
    return S.ClusterFacts(server_version=str(server), nodes=tuple(facts))


def check(
    api_client: ApiClient,
    catalog: Catalog,
    status: dict[str, Any],
    validated: ValidatedSpec,
    *,
    server: str | None = None,
    nodes: list[Any] | None = None,
) -> S.SkewReport:
    """Observe the cluster (unless the caller already did) and evaluate the target (primary and overlays) and the
    releases in use."""
    facts = observe(api_client, server=server, nodes=nodes)
    running = S.releases_in_use(status, catalog, (n.revision for n in facts.nodes))
    return S.evaluate(
        facts,
        catalog,
        (validated.release, *validated.overlays),
        running,
        allow_unsupported=validated.spec.version_policy.allow_unsupported,
    )


def refusal(report: S.SkewReport, generation: int) -> C.Observation:
    """Degraded, nothing applied: the status a refused target gets (status.skew says what does not fit)."""
    return C.degraded(generation, "UnsupportedRelease", report.message)


class _Outcome(Protocol):
    status: dict[str, Any]
    events: list[tuple[str, str, str]]


def merge_into(outcome: _Outcome, previous: dict[str, Any], report: S.SkewReport, generation: int) -> None:
    """status.skew and the Compatible condition onto the outcome's status; an Event when either changed."""
    findings = report.status_findings()
    outcome.status["skew"] = findings
    outcome.status["conditions"] = C.merge_conditions(
        outcome.status.get("conditions") or previous.get("conditions") or [], [report.condition], generation
    )
    before: dict[str, Any] = next((c for c in previous.get("conditions") or [] if c.get("type") == C.COMPATIBLE), {})
    after = report.condition
    status_text = "True" if after.status else "False"
    changed = (
        previous.get("skew") != findings or before.get("status") != status_text or before.get("reason") != after.reason
    )
    if changed:
        event_type = "Normal" if after.status and not findings else "Warning"
        outcome.events.append((event_type, EVENT_REASON if event_type == "Warning" else C.COMPATIBLE, after.message))
