"""A tiny pure model of a cluster for testing `decide`: it builds snapshots and carries decisions out on them.

This is a fake of *our own* I/O layer only (kube.observe + kube.reconcile), for unit tests of the pure decision;
the sandbox tests run the real one against a real API server.
"""

from __future__ import annotations

import copy
from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from typing import Any

import yaml

from cni_operator.api import vocabulary as L
from cni_operator.api.v1alpha1 import ClusterNetworkStatus
from cni_operator.catalog.loader import Catalog
from cni_operator.decide.decision import Decision
from cni_operator.decide.pipeline import decide
from cni_operator.decide.snapshot import LiveObject, NetworkObject, PodFacts, Snapshot, listed_kinds, object_key
from cni_operator.plan.rollout import NodeView, Phase
from cni_operator.plan.skew import NodeFacts

SERVER = "v1.34.2"
NOW = 1_700_000_000.0


@dataclass
class FakeCluster:
    """Nodes, managed objects, pods and the ClusterNetwork's status, changed only by `carry_out`."""

    catalog: Catalog
    spec: dict[str, Any]
    nodes: dict[str, NodeView]
    kubelet: str = SERVER
    server: str = SERVER
    status: ClusterNetworkStatus = field(default_factory=ClusterNetworkStatus)
    generation: int = 1
    objects: dict[Any, LiveObject] = field(default_factory=dict)
    broken: set[str] = field(default_factory=set)  # revisions whose CNI pods crash-loop
    workloads: dict[str, list[PodFacts]] = field(default_factory=dict)  # node -> evictable pods
    unready_components: set[str] = field(default_factory=set)  # names of Deployments reported not Ready
    now: float = NOW
    decisions: list[Decision] = field(default_factory=list)

    @classmethod
    def with_nodes(cls, catalog: Catalog, spec: dict[str, Any], count: int) -> FakeCluster:
        nodes = {f"node-{i:02d}": NodeView(f"node-{i:02d}", None) for i in range(count)}
        return cls(catalog, copy.deepcopy(spec), nodes)

    def edit(self, **fields: Any) -> None:
        self.spec = {**self.spec, **fields}
        self.generation += 1

    def snapshot(self) -> Snapshot:
        network = NetworkObject("default", self.generation, copy.deepcopy(self.spec), self.status, uid="u-1")
        facts = tuple(
            NodeFacts(n, f"{self.kubelet}", "containerd://2.1.4", revision=v.revision or "")
            for n, v in self.nodes.items()
        )
        return Snapshot(
            network=network,
            active="default",
            server_version=self.server,
            nodes=tuple(self.nodes.values()),
            node_facts=facts,
            pods={n: self._pods(v) for n, v in self.nodes.items() if v.move is not None},
            objects=tuple(self.objects.values()),
            listed_kinds=tuple(listed_kinds(self.status.inventory_kinds)),
        )

    def _pods(self, node: NodeView) -> tuple[PodFacts, ...]:
        pods: list[PodFacts] = list(self.workloads.get(node.name, []))
        if node.revision:
            crash = "cni CrashLoopBackOff" if node.revision in self.broken else ""
            for obj in self.objects.values():
                if obj.kind == "DaemonSet" and obj.labels.get(L.REVISION) == node.revision:
                    pods.append(PodFacts("kube-system", f"{obj.name}-{node.name}", node.revision, not crash, crash))
        return tuple(pods)

    def step(self, seconds: float = 5.0) -> Decision:
        decision = decide(self.snapshot(), self.catalog, self.now)
        self.carry_out(decision)
        self.now += seconds
        self.decisions.append(decision)
        return decision

    def carry_out(self, decision: Decision) -> None:
        for patch in (*decision.adopt, *decision.node_patches):
            self.nodes[patch.node] = patch.applied_to(self.nodes[patch.node])
        for obj in (*decision.apply_now, *decision.apply_after):
            self._apply(obj)
        for eviction in decision.evictions:
            self.workloads[eviction.node] = [p for p in self.workloads.get(eviction.node, []) if p.name != eviction.pod]
        for ref in decision.delete:
            self.objects.pop(ref.key, None)
        self.status = decision.status

    def _apply(self, obj: dict[str, Any]) -> None:
        key = object_key(obj)
        labels = obj["metadata"].get("labels", {})
        before = self.objects.get(key)
        version = str(int(before.resource_version) + 1 if before else 1)
        ready = desired = None
        if obj["kind"] == "DaemonSet":
            revision = labels.get(L.REVISION)
            desired = sum(1 for n in self.nodes.values() if n.revision == revision)
            ready = 0 if revision in self.broken else desired
        elif obj["kind"] == "Deployment":
            desired = int(obj.get("spec", {}).get("replicas", 1))
            ready = 0 if obj["metadata"]["name"] in self.unready_components else desired
        rolled_out = ready is None or ready >= (desired or 0)
        self.objects[key] = LiveObject(
            obj["apiVersion"], obj["kind"], key[2], key[3], version, dict(labels), ready, desired, rolled_out
        )

    def refresh_daemonsets(self) -> None:
        """DaemonSet status as the controller would report it for the nodes' labels now."""
        for key, obj in list(self.objects.items()):
            if obj.kind == "DaemonSet":
                revision = obj.labels.get(L.REVISION)
                desired = sum(1 for n in self.nodes.values() if n.revision == revision or n.revision is None)
                self.objects[key] = replace(obj, ready=0 if revision in self.broken else desired, desired=desired)

    def run(self, limit: int = 60) -> list[Decision]:
        """Reconcile until nothing changes any more (or `limit` reconciles)."""
        taken = []
        for _ in range(limit):
            decision = self.step()
            self.refresh_daemonsets()
            taken.append(decision)
            if self.status.phase in ("Ready", "Failed", "Paused") and not decision.node_patches:
                break
        return taken

    def revisions(self) -> dict[str, str | None]:
        return {n: v.revision for n, v in self.nodes.items()}

    def in_flight(self) -> list[str]:
        return [n for n, v in self.nodes.items() if v.move is not None]

    def draining(self) -> list[str]:
        return [n for n, v in self.nodes.items() if v.move is not None and v.move.phase is Phase.DRAINING]


def dump(decision: Decision) -> str:
    """The golden form of a decision: readable YAML, stable across runs."""
    summary = decision.summary()
    for record in summary["status"].get("revisionHistory", []):
        record.pop("spec", None)
    return yaml.safe_dump(summary, sort_keys=False, width=120)


def names(objects: Iterable[dict[str, Any]]) -> list[str]:
    return [f"{o['kind']} {o['metadata']['name']}" for o in objects]
