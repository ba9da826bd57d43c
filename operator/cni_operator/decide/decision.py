"""What one reconcile decided: one value, carried out by `kube.reconcile` in a fixed order.

The order, and why:
1. `failure`: the failed revision is recorded in status before any node moves back, so a restarted operator never
   resumes a target that failed.
2. `adopt`: nodes without a revision label get the revision they run, before the target's DaemonSets (which
   adopt unlabelled nodes) are applied.
3. `apply_now`: the target's objects (and those of revisions nodes still run), server-side applied.
4. `node_patches`, then `evictions`: the rollout's step.
5. `apply_after`: cluster components the release upgrades after its node workloads, once every node moved.
6. `delete`: what no revision in use renders any more.
7. `status`, then `events`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from cni_operator.api.v1alpha1 import ClusterNetworkStatus, FailedNode
from cni_operator.decide.snapshot import ObjectKey
from cni_operator.plan.rollout import NodePatch


@dataclass(frozen=True)
class Event:
    type: str  # Normal | Warning
    reason: str
    message: str


@dataclass(frozen=True)
class Eviction:
    node: str
    namespace: str
    pod: str


@dataclass(frozen=True)
class FailureRecord:
    revision: str
    nodes: tuple[FailedNode, ...] = ()


@dataclass(frozen=True)
class ObjectRef:
    """An object to delete; `kind` and `api_version` let the I/O layer find its resource."""

    api_version: str
    kind: str
    namespace: str
    name: str

    @property
    def key(self) -> ObjectKey:
        return self.api_version.rpartition("/")[0], self.kind, self.namespace, self.name

    def __str__(self) -> str:
        return f"{self.kind} {self.name}"


@dataclass(frozen=True)
class Decision:
    network: str
    status: ClusterNetworkStatus
    events: tuple[Event, ...] = ()
    failure: FailureRecord | None = None
    adopt: tuple[NodePatch, ...] = ()
    apply_now: tuple[dict[str, Any], ...] = ()
    node_patches: tuple[NodePatch, ...] = ()
    evictions: tuple[Eviction, ...] = ()
    drained: tuple[str, ...] = ()  # nodes whose evictions are in `evictions` (their blocked reasons are refreshed)
    apply_after: tuple[dict[str, Any], ...] = ()
    delete: tuple[ObjectRef, ...] = ()
    retry_after: float | None = None
    nodes_per_revision: Mapping[str, int] = field(default_factory=dict)  # after the patches, for metrics
    resource_versions: Mapping[ObjectKey, str] = field(default_factory=dict)  # of the objects to apply, as observed
    listed_kinds: frozenset[tuple[str, str]] = frozenset()  # (apiVersion, kind) the snapshot listed every object of

    def summary(self) -> dict[str, Any]:
        """A stable, readable dump of the decision (golden files of `decide`, `cni-operator plan`)."""
        status = self.status.model_dump(by_alias=True, mode="json", exclude_defaults=True)
        for condition in status.get("conditions", []):
            condition.pop("lastTransitionTime", None)
        for record in status.get("revisionHistory", []):
            record.pop("created", None)
        return {
            "network": self.network,
            "failure": None
            if self.failure is None
            else {"revision": self.failure.revision, "nodes": [n.name for n in self.failure.nodes]},
            "adopt": [f"{p.node} -> {p.revision}" for p in self.adopt],
            "applyNow": [_describe(o) for o in self.apply_now],
            "nodePatches": [_describe_patch(p) for p in self.node_patches],
            "evictions": [f"{e.node}: {e.namespace}/{e.pod}" for e in self.evictions],
            "applyAfter": [_describe(o) for o in self.apply_after],
            "delete": [str(r) for r in self.delete],
            "events": [f"{e.type} {e.reason}: {e.message}" for e in self.events],
            "retryAfter": self.retry_after,
            "status": status,
        }


def _describe(obj: dict[str, Any]) -> str:
    meta = obj["metadata"]
    where = f"{meta['namespace']}/" if meta.get("namespace") else ""
    return f"{obj['kind']} {where}{meta['name']}"


def _describe_patch(patch: NodePatch) -> str:
    parts = [patch.node + ":"]
    if patch.revision is not None:
        parts.append(f"revision={patch.revision}")
    if patch.move is not None:
        move = patch.move
        parts.append(f"move={move.phase.value}->{move.to}" + (" (rollback)" if move.rollback else ""))
    if patch.clear_move:
        parts.append("move cleared")
    if patch.unschedulable is not None:
        parts.append("cordon" if patch.unschedulable else "uncordon")
    return " ".join(parts) + (f" ({patch.why})" if patch.why else "")
