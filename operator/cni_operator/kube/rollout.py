"""The rollout's I/O: read nodes and the health of the nodes in flight, then patch nodes and evict pods.

The decisions are `plan.rollout`'s; this module only observes and carries them out. Reads are bounded: one LIST of
nodes per reconcile, and per node *in flight* (at most a wave) one LIST of its pods and one GET of its agent report.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable, Mapping
from typing import Any

from kubernetes import client
from kubernetes.client import ApiClient, ApiException

from cni_operator.api import vocabulary as L
from cni_operator.plan.rollout import MOVE_ANNOTATION, Move, NodeHealth, NodePatch, NodeView, Phase

log = logging.getLogger(__name__)

AGENT_REPORT = ("cni-operator.dev", "v1alpha1", "nodenetworkstates")  # written by `cni-operator agent`
CRASH_RESTARTS = 3  # a CNI pod that restarted this often without becoming Ready is crash-looping
MIRROR_POD = "kubernetes.io/config.mirror"


def node_view(node: Any) -> NodeView:
    meta = node.metadata
    labels = dict(meta.labels or {})
    return NodeView(
        name=meta.name,
        revision=labels.get(L.NODE_REVISION),
        unschedulable=bool(node.spec.unschedulable),
        labels=labels,
        move=Move.decode((meta.annotations or {}).get(MOVE_ANNOTATION)),
    )


class NodeMover:
    """Observes and changes nodes for the rollout engine."""

    def __init__(self, api_client: ApiClient) -> None:
        self.core: Any = client.CoreV1Api(api_client)
        self.custom: Any = client.CustomObjectsApi(api_client)
        self.eviction_blocked: dict[str, str] = {}  # node -> why its last eviction was refused (for status only)

    # -- observe -----------------------------------------------------------------------------------------------

    def list_nodes(self) -> list[Any]:
        return list(self.core.list_node().items)

    def nodes(self) -> list[NodeView]:
        return [node_view(n) for n in self.list_nodes()]

    def health(self, nodes: Iterable[NodeView], expected_pods: Mapping[str, int]) -> dict[str, NodeHealth]:
        """Health-gate inputs for every node in flight, about the revision it moves to."""
        result = {}
        for node in nodes:
            move = node.move
            if move is None:
                continue
            pods = self.core.list_pod_for_all_namespaces(field_selector=f"spec.nodeName={node.name}").items
            if move.phase is Phase.DRAINING:
                result[node.name] = NodeHealth(
                    evictable=sum(1 for p in pods if _must_leave(p)),
                    eviction_blocked=self.eviction_blocked.get(node.name, ""),
                )
                continue
            cni = [p for p in pods if (p.metadata.labels or {}).get(L.REVISION) == move.to]
            datapath, message = self._datapath(node.name, move.to)
            result[node.name] = NodeHealth(
                ready_pods=sum(1 for p in cni if _ready(p)),
                expected_pods=expected_pods.get(move.to, 1),
                crashlooping=tuple(
                    f"{p.metadata.namespace}/{p.metadata.name}: {why}" for p in cni if (why := _crash(p))
                ),
                datapath=datapath,
                datapath_message=message,
            )
        return result

    def _datapath(self, node: str, revision: str) -> tuple[bool | None, str]:
        """The node agent's datapath verdict for `revision`; None when no agent reports for the node."""
        try:
            report = self.custom.get_cluster_custom_object(*AGENT_REPORT, node)
        except ApiException as err:
            if err.status == 404:  # no report for this node, or no agent CRD in the cluster at all
                return None, ""
            raise
        datapath = (report.get("status") or {}).get("datapath") or {}
        if datapath.get("revision") != revision:
            return False, f"the agent has not checked revision {revision} yet"
        return bool(datapath.get("passed")), str(datapath.get("message") or datapath.get("reason") or "")

    def agent_reports(self) -> list[dict[str, Any]]:
        """Every node agent's report; none where no agent (or no agent CRD) runs."""
        try:
            items: list[dict[str, Any]] = self.custom.list_cluster_custom_object(*AGENT_REPORT)["items"]
        except ApiException as err:
            if err.status == 404:
                return []
            raise
        return items

    # -- act ---------------------------------------------------------------------------------------------------

    def patch(self, patch: NodePatch) -> None:
        log.info("node %s: %s", patch.node, patch.why)
        self.core.patch_node(patch.node, patch.body())

    def label(self, node: str, revision: str) -> None:
        self.core.patch_node(node, {"metadata": {"labels": {L.NODE_REVISION: revision}}})

    def release(self, *, remove_labels: bool) -> int:
        """When the ClusterNetwork goes: uncordon what the operator cordoned, forget moves, and (when the network is
        removed too) drop the revision labels. Kept networks keep their labels: their DaemonSets select by them."""
        count = 0
        for node in self.nodes():
            patch: dict[str, Any] = {}
            if node.move:
                patch["metadata"] = {"annotations": {MOVE_ANNOTATION: None}}
                if node.move.cordoned:
                    patch["spec"] = {"unschedulable": False}
            if remove_labels and node.revision is not None:
                patch.setdefault("metadata", {})["labels"] = {L.NODE_REVISION: None}
            if patch:
                self.core.patch_node(node.name, patch)
                count += 1
        return count

    def drain(self, node: str) -> None:
        """Evict (never delete) every pod that must leave the node; PodDisruptionBudgets may refuse some."""
        pods = self.core.list_pod_for_all_namespaces(field_selector=f"spec.nodeName={node}").items
        blocked = []
        for pod in pods:
            if not _must_leave(pod) or pod.metadata.deletion_timestamp:
                continue  # a terminating pod was evicted already: never twice
            body = client.V1Eviction(
                metadata=client.V1ObjectMeta(name=pod.metadata.name, namespace=pod.metadata.namespace)
            )
            try:
                self.core.create_namespaced_pod_eviction(pod.metadata.name, pod.metadata.namespace, body)
                log.info("node %s: evicted pod %s/%s", node, pod.metadata.namespace, pod.metadata.name)
            except ApiException as err:
                if err.status == 404:
                    continue
                if err.status == 429:
                    blocked.append(f"{pod.metadata.namespace}/{pod.metadata.name}: {_refusal(err)}")
                    continue
                raise
        if blocked:
            self.eviction_blocked[node] = "; ".join(blocked[:3]) + (" ..." if len(blocked) > 3 else "")
        else:
            self.eviction_blocked.pop(node, None)


def _must_leave(pod: Any) -> bool:
    """What `kubectl drain` evicts: not DaemonSet pods (they stay with the node), not static pods, not finished pods."""
    if pod.status and pod.status.phase in ("Succeeded", "Failed"):
        return False
    if MIRROR_POD in (pod.metadata.annotations or {}):
        return False
    return not any(ref.kind == "DaemonSet" for ref in pod.metadata.owner_references or [])


def _ready(pod: Any) -> bool:
    if pod.metadata.deletion_timestamp:
        return False
    return any(c.type == "Ready" and c.status == "True" for c in (pod.status and pod.status.conditions) or [])


def _crash(pod: Any) -> str:
    """Why a pod counts as crash-looping, or ''."""
    for status in (pod.status and pod.status.container_statuses) or []:
        waiting = status.state and status.state.waiting
        if waiting and waiting.reason in ("CrashLoopBackOff", "CreateContainerConfigError", "ErrImagePull"):
            return f"{status.name} {waiting.reason}"
        if not status.ready and (status.restart_count or 0) >= CRASH_RESTARTS:
            return f"{status.name} restarted {status.restart_count} times"
    return ""


def _refusal(err: ApiException) -> str:
    """The PodDisruptionBudget's own words from a 429 eviction answer (it names the budget)."""
    try:
        status = json.loads(err.body or "{}")
    except ValueError:
        return "refused (429)"
    causes = [c.get("message", "") for c in (status.get("details") or {}).get("causes") or []]
    return "; ".join(c for c in causes if c) or str(status.get("message") or "refused (429)")
