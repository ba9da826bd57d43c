"""What one reconcile knows about the cluster: a frozen value the I/O layer fills and `decide` reads.

Everything here is plain data (no Kubernetes client objects), so a decision can be computed, tested and dumped
without a cluster, and a test can write a snapshot by hand. `kube.observe` is the one place that fills it.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

from cni_operator.api.nodestate import NodeNetworkStateStatus
from cni_operator.api.v1alpha1 import ClusterNetworkStatus
from cni_operator.plan.rollout import NodeView
from cni_operator.plan.skew import ClusterFacts, NodeFacts

ObjectKey = tuple[str, str, str, str]  # (API group, kind, namespace, name): one object whatever its version

# Kinds the catalog's templates render, in the order deletion is safe (workloads before what they use). Objects of
# other kinds a revision renders (a plugin's own custom resources) are listed too, before these, once recorded in
# status.inventoryKinds.
MANAGED_KINDS: tuple[tuple[str, str], ...] = (
    ("apps/v1", "DaemonSet"),
    ("apps/v1", "Deployment"),
    ("policy/v1", "PodDisruptionBudget"),
    ("v1", "Service"),
    ("v1", "ConfigMap"),
    ("rbac.authorization.k8s.io/v1", "RoleBinding"),
    ("rbac.authorization.k8s.io/v1", "Role"),
    ("rbac.authorization.k8s.io/v1", "ClusterRoleBinding"),
    ("rbac.authorization.k8s.io/v1", "ClusterRole"),
    ("v1", "ServiceAccount"),
    ("apiextensions.k8s.io/v1", "CustomResourceDefinition"),
    ("v1", "Namespace"),
)
# Deleting these takes data or whole namespaces with them: only when the plugin itself goes away.
DESTRUCTIVE_KINDS = frozenset({"CustomResourceDefinition", "Namespace"})


def object_key(obj: Mapping[str, Any]) -> ObjectKey:
    """The key of a rendered manifest."""
    meta = obj["metadata"]
    return str(obj["apiVersion"]).rpartition("/")[0], str(obj["kind"]), meta.get("namespace") or "", meta["name"]


def listed_kinds(recorded: Iterable[str] = ()) -> list[tuple[str, str]]:
    """MANAGED_KINDS, and before them the plugin-specific kinds recorded in status ("apiVersion/Kind"), so that
    custom objects go before the CRDs that define them."""
    kinds = list(MANAGED_KINDS)
    for text in recorded:
        api_version, _, kind = text.rpartition("/")
        if (api_version, kind) not in kinds:
            kinds.insert(0, (api_version, kind))
    return kinds


@dataclass(frozen=True)
class NetworkObject:
    """A ClusterNetwork as it is now: its raw spec (validated by `decide`, not before) and its typed status."""

    name: str
    generation: int
    spec: Any
    status: ClusterNetworkStatus
    created: str = ""  # creationTimestamp
    deleting: bool = False
    uid: str = ""
    annotations: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class PodFacts:
    """A pod on a node in flight: enough for the health gate and for the drain."""

    namespace: str
    name: str
    revision: str  # its cni-operator.dev/revision label ('' for the cluster's own workloads)
    ready: bool
    crash: str = ""  # why it counts as crash-looping, or ''
    must_leave: bool = False  # a drain evicts it (not a DaemonSet, static or finished pod)
    terminating: bool = False


@dataclass(frozen=True)
class LiveObject:
    """An object the operator manages, as listed (by its owner label)."""

    api_version: str
    kind: str
    namespace: str
    name: str
    resource_version: str
    labels: Mapping[str, str] = field(default_factory=dict)
    ready: int | None = None  # Ready replicas / pods, for workloads
    desired: int | None = None  # wanted replicas / scheduled pods, for workloads
    rolled_out: bool = True  # workloads: the controller saw the latest spec and every replica runs it, Ready

    @property
    def key(self) -> ObjectKey:
        return self.api_version.rpartition("/")[0], self.kind, self.namespace, self.name


@dataclass(frozen=True)
class Snapshot:
    """Everything one reconcile of one ClusterNetwork reads, read once, before anything is decided."""

    network: NetworkObject
    active: str  # the cluster's one network: the oldest ClusterNetwork that is not being deleted
    server_version: str
    nodes: tuple[NodeView, ...] = ()
    node_facts: tuple[NodeFacts, ...] = ()
    pods: Mapping[str, tuple[PodFacts, ...]] = field(default_factory=dict)  # node in flight -> its pods
    reports: Mapping[str, NodeNetworkStateStatus] = field(default_factory=dict)  # node -> its agent's report
    objects: tuple[LiveObject, ...] = ()  # managed objects of every kind in `listed_kinds`, in deletion order
    listed_kinds: tuple[tuple[str, str], ...] = ()  # (apiVersion, kind) whose objects `objects` holds
    eviction_blocked: Mapping[str, str] = field(default_factory=dict)  # node -> why its last eviction was refused

    @property
    def cluster(self) -> ClusterFacts:
        return ClusterFacts(server_version=self.server_version, nodes=self.node_facts)

    @cached_property
    def _by_key(self) -> dict[ObjectKey, LiveObject]:
        return {o.key: o for o in self.objects}

    def live(self, key: ObjectKey) -> LiveObject | None:
        return self._by_key.get(key)
