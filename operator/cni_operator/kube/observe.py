"""Read everything one reconcile needs into one frozen `Snapshot`, before anything is decided.

Reads per reconcile: one LIST of ClusterNetworks, the server version, one LIST of nodes, one LIST of agent
reports, per node *in flight* (at most a wave) one LIST of its pods, and one LIST per managed kind (by owner label),
which also gives every managed object's resourceVersion (so applying needs no GET first) and the workloads'
readiness. The CLI's live commands read the cluster through the same functions.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from typing import Any

from kubernetes import client, dynamic
from kubernetes.client import ApiClient, ApiException
from pydantic import ValidationError

from cni_operator.api import nodestate
from cni_operator.api import v1alpha1 as api
from cni_operator.api import vocabulary as L
from cni_operator.api.nodestate import NodeNetworkStateStatus
from cni_operator.decide.snapshot import LiveObject, NetworkObject, PodFacts, Snapshot, listed_kinds
from cni_operator.kube.apply import Applier
from cni_operator.plan.rollout import Move, NodeView
from cni_operator.plan.skew import LINUX, ClusterFacts, NodeFacts
from cni_operator.status.conditions import read_status

log = logging.getLogger(__name__)

CRASH_RESTARTS = 3  # a CNI pod that restarted this often without becoming Ready is crash-looping
CRASH_REASONS = ("CrashLoopBackOff", "CreateContainerConfigError", "ErrImagePull")
MIRROR_POD = "kubernetes.io/config.mirror"


class NotFound(LookupError):
    """The ClusterNetwork asked for does not exist (any more)."""


class Observer:
    """Holds the clients; every method reads, none writes."""

    def __init__(self, api_client: ApiClient, applier: Applier | None = None) -> None:
        self.api_client = api_client
        self.applier = applier or Applier(api_client)
        # the typed client marks every field Optional; this I/O layer reads them as the API documents them
        self.core: Any = client.CoreV1Api(api_client)
        self.custom: Any = client.CustomObjectsApi(api_client)

    # -- the whole snapshot ------------------------------------------------------------------------------------

    def snapshot(self, name: str, *, eviction_blocked: Mapping[str, str] | None = None) -> Snapshot:
        networks = self.networks()
        body = next((n for n in networks if n["metadata"]["name"] == name), None)
        if body is None:
            raise NotFound(name)
        network = network_object(body)
        node_list = self.node_list()
        nodes = tuple(node_view(n) for n in node_list)
        in_flight = [n.name for n in nodes if n.move is not None]
        kinds = listed_kinds(network.status.inventory_kinds)
        return Snapshot(
            network=network,
            active=active_name(networks),
            server_version=self.server_version(),
            nodes=nodes,
            node_facts=tuple(node_facts(n) for n in node_list),
            pods={node: self.pods_on(node) for node in in_flight},
            reports=self.agent_reports(),
            objects=tuple(self.managed_objects(name, kinds)),
            listed_kinds=tuple(kinds),
            eviction_blocked=dict(eviction_blocked or {}),
        )

    # -- parts -------------------------------------------------------------------------------------------------

    def networks(self) -> list[dict[str, Any]]:
        try:
            items: list[dict[str, Any]] = self.custom.list_cluster_custom_object(api.GROUP, api.VERSION, api.PLURAL)[
                "items"
            ]
        except ApiException as err:
            if err.status == 404:  # the CRD is not installed: no ClusterNetwork
                return []
            raise
        return items

    def server_version(self) -> str:
        return str(client.VersionApi(self.api_client).get_code().git_version)

    def node_list(self) -> list[Any]:
        return list(self.core.list_node().items)

    def cluster_facts(self) -> ClusterFacts:
        """The API server's version and every node's nodeInfo (for `cni-operator skew`)."""
        return ClusterFacts(self.server_version(), tuple(node_facts(n) for n in self.node_list()))

    def pods_on(self, node: str) -> tuple[PodFacts, ...]:
        pods = self.core.list_pod_for_all_namespaces(field_selector=f"spec.nodeName={node}").items
        return tuple(pod_facts(p) for p in pods)

    def agent_reports(self) -> dict[str, NodeNetworkStateStatus]:
        """Every node agent's report by node; none where no agent (or no agent CRD) runs."""
        try:
            items = self.custom.list_cluster_custom_object(nodestate.GROUP, nodestate.VERSION, nodestate.PLURAL)[
                "items"
            ]
        except ApiException as err:
            if err.status == 404:
                return {}
            raise
        reports = {}
        for item in items:
            try:
                reports[item["metadata"]["name"]] = NodeNetworkStateStatus.model_validate(item.get("status") or {})
            except ValidationError as err:
                log.warning(
                    "agent report %s does not fit the NodeNetworkState schema: %s", item["metadata"]["name"], err
                )
        return reports

    def managed_objects(self, owner: str, kinds: Iterable[tuple[str, str]]) -> Iterable[LiveObject]:
        """Every object of `kinds` labelled as managed for `owner` (kinds the API does not serve are skipped)."""
        selector = f"{L.MANAGED_BY}={L.MANAGER},{L.OWNER}={owner}"
        for api_version, kind in kinds:
            try:
                resource = self.applier.resource(api_version, kind)
            except dynamic.exceptions.ResourceNotFoundError:
                continue  # e.g. a plugin's CRD is gone, and with it every object of its kinds
            for item in resource.get(label_selector=selector).items:
                yield live_object(api_version, kind, item.to_dict())


# -- conversions (pure, from API objects) --------------------------------------------------------------------------


def network_object(body: Mapping[str, Any]) -> NetworkObject:
    meta = body["metadata"]
    return NetworkObject(
        name=meta["name"],
        generation=int(meta.get("generation") or 0),
        spec=body.get("spec"),
        status=read_status(body.get("status")),
        created=str(meta.get("creationTimestamp") or ""),
        deleting=bool(meta.get("deletionTimestamp")),
        uid=str(meta.get("uid") or ""),
        annotations=dict(meta.get("annotations") or {}),
    )


def active_name(networks: Iterable[Mapping[str, Any]]) -> str:
    """The cluster's one network: the oldest ClusterNetwork that is not being deleted ('' when there is none)."""
    items = list(networks)
    alive = [i for i in items if not i["metadata"].get("deletionTimestamp")] or items
    if not alive:
        return ""
    oldest = min(alive, key=lambda i: (str(i["metadata"]["creationTimestamp"]), i["metadata"]["name"]))
    return str(oldest["metadata"]["name"])


def node_view(node: Any) -> NodeView:
    meta = node.metadata
    labels = dict(meta.labels or {})
    return NodeView(
        name=meta.name,
        revision=labels.get(L.NODE_REVISION),
        unschedulable=bool(node.spec.unschedulable),
        labels=labels,
        move=Move.decode((meta.annotations or {}).get(L.MOVE_ANNOTATION)),
        ready=_node_ready(node),
    )


def _node_ready(node: Any) -> bool:
    """The kubelet says Ready (Unknown, a kubelet gone silent, is not Ready)."""
    conditions = (node.status and node.status.conditions) or []
    return any(c.type == "Ready" and c.status == "True" for c in conditions)


def node_facts(node: Any) -> NodeFacts:
    info = node.status.node_info if node.status else None
    return NodeFacts(
        name=node.metadata.name,
        kubelet_version=(info.kubelet_version if info else "") or "",
        container_runtime_version=(info.container_runtime_version if info else "") or "",
        os=(info.operating_system if info else "") or LINUX,
        arch=(info.architecture if info else "") or "",
        revision=(node.metadata.labels or {}).get(L.NODE_REVISION, ""),
    )


def pod_facts(pod: Any) -> PodFacts:
    meta = pod.metadata
    return PodFacts(
        namespace=meta.namespace,
        name=meta.name,
        revision=(meta.labels or {}).get(L.REVISION, ""),
        ready=_ready(pod),
        crash=_crash(pod),
        must_leave=_must_leave(pod),
        terminating=bool(meta.deletion_timestamp),
    )


def live_object(api_version: str, kind: str, obj: Mapping[str, Any]) -> LiveObject:
    meta = obj.get("metadata") or {}
    status = obj.get("status") or {}
    ready = desired = None
    rolled_out = True
    seen = int(status.get("observedGeneration") or 0) >= int(meta.get("generation") or 0)
    if kind == "DaemonSet":
        ready, desired = int(status.get("numberReady") or 0), int(status.get("desiredNumberScheduled") or 0)
        rolled_out = seen and ready >= desired
    elif kind == "Deployment":
        replicas = (obj.get("spec") or {}).get("replicas")
        ready, desired = int(status.get("readyReplicas") or 0), int(1 if replicas is None else replicas)
        updated = int(status.get("updatedReplicas") or 0)
        rolled_out = seen and updated >= desired and ready >= desired
    return LiveObject(
        api_version=api_version,
        kind=kind,
        namespace=str(meta.get("namespace") or ""),
        name=str(meta["name"]),
        resource_version=str(meta.get("resourceVersion") or ""),
        labels=dict(meta.get("labels") or {}),
        ready=ready,
        desired=desired,
        rolled_out=rolled_out,
    )


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
        if waiting and waiting.reason in CRASH_REASONS:
            return f"{status.name} {waiting.reason}"
        if not status.ready and (status.restart_count or 0) >= CRASH_RESTARTS:
            return f"{status.name} restarted {status.restart_count} times"
    return ""
