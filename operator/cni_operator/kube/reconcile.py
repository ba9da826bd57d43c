"""The one level-based reconcile: observe, validate, render, apply, prune, compute status.

Every kopf handler calls `Reconciler.reconcile` with the ClusterNetwork as it is now; the result is the status to
write and the events to post. Nothing is kept in memory between calls: what the operator needs is in the cluster.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from kubernetes import client
from kubernetes.client import ApiClient, ApiException

from cni_operator.api import v1alpha1 as api
from cni_operator.api import vocabulary as L
from cni_operator.catalog.loader import Catalog
from cni_operator.catalog.model import ComponentScope
from cni_operator.kube import skew as kube_skew
from cni_operator.kube.apply import Applier
from cni_operator.kube.inventory import (
    DESTRUCTIVE_KINDS,
    MANAGED_KINDS,
    OWNER,
    delete,
    identity,
    inventory_kinds,
    managed_objects,
    prune,
)
from cni_operator.kube.rollout import NodeMover, node_view
from cni_operator.plan.rollout import NodePatch, NodeView, RolloutPlan, RolloutSettings, plan_rollout
from cni_operator.plan.upgrade import check_step
from cni_operator.plan.validate import SpecError, validate
from cni_operator.render.engine import Renderer, Rendering, canonical_spec
from cni_operator.status import agents
from cni_operator.status import conditions as C

log = logging.getLogger(__name__)
HISTORY_LIMIT = 10
WAVE_NODES_SHOWN = 50  # status stays small on 5,000 nodes; the node labels say where every node is


@dataclass
class Outcome:
    """What a reconcile decided: the status to write, the events to post, and when to look again."""

    status: dict[str, Any]
    events: list[tuple[str, str, str]] = field(default_factory=list)  # (Normal|Warning, reason, message)
    retry_after: float | None = None


class Reconciler:
    """Holds the clients; safe to call from several handler threads (one reconcile at a time)."""

    def __init__(self, api_client: ApiClient, catalog: Catalog, renderer: Renderer | None = None) -> None:
        self.api_client = api_client
        self.catalog = catalog
        self.renderer = renderer or Renderer(catalog)
        self.applier = Applier(api_client)
        # the typed client marks every field Optional; this I/O layer reads them as the API documents them
        self.core: Any = client.CoreV1Api(api_client)
        self.apps: Any = client.AppsV1Api(api_client)
        self.custom: Any = client.CustomObjectsApi(api_client)
        self._lock = threading.Lock()
        self.nodes_per_revision: dict[str, int] = {}  # from the last reconcile, for metrics
        self.mover = NodeMover(api_client)
        # Fault injection for crash tests: slow each apply so a test can kill the operator between two of them.
        self.apply_delay = float(os.environ.get("CNI_OPERATOR_TEST_APPLY_DELAY", "0"))

    # -- the reconcile -----------------------------------------------------------------------------------------

    def reconcile(self, body: dict[str, Any]) -> Outcome:
        with self._lock:
            return self._reconcile(body)

    def _reconcile(self, body: dict[str, Any]) -> Outcome:
        meta, status = body["metadata"], body.get("status") or {}
        name, generation = meta["name"], meta.get("generation", 0)

        active = self.active_name()
        if active != name:
            message = (
                f"ClusterNetwork {active} is the cluster's network; this one changes nothing. "
                f"Delete {name}, or move its settings into {active}"
            )
            return self._outcome(
                status, C.degraded(generation, "AnotherClusterNetworkActive", message, phase="Inactive"), "Warning"
            )

        try:
            validated = validate(body.get("spec"), self.catalog)
        except SpecError as err:
            message = "the spec cannot be rolled out; nothing was changed: " + "; ".join(map(str, err.problems))
            return self._outcome(status, C.degraded(generation, "InvalidSpec", message), "Warning")

        # -- version skew (issue 7): a new target that does not suit the cluster is refused, nothing applied --
        server_version = self.server_version()
        node_list = self.mover.list_nodes()  # the one node LIST of this reconcile
        skew = kube_skew.check(self.api_client, self.catalog, status, validated, server=server_version, nodes=node_list)
        if skew.refused:
            refused = self._outcome(status, kube_skew.refusal(skew, generation), "Warning")
            kube_skew.merge_into(refused, status, skew, generation)
            return refused
        # -- end of version skew --

        rendering = self.renderer.render(validated, kubernetes_version=server_version)
        target = rendering.revision
        nodes = [node_view(n) for n in node_list]
        records = {r["revision"]: r for r in status.get("revisionHistory") or [] if r.get("revision")}
        # Nodes without a revision label run what their DaemonSets adopted them into: the previous target.
        previous_target = str(status.get("targetRevision") or "")
        adopt_as = previous_target if previous_target and previous_target != target else target
        sources = _revisions_in_use(nodes, unlabelled_as=adopt_as) - {target}
        running = [(records[r]["plugin"], records[r]["version"]) for r in sources if r in records]
        refusal = check_step(self.catalog, running, validated.release)
        if refusal:
            return self._outcome(
                status, C.degraded(generation, "UpgradePathRefused", f"nothing was changed: {refusal}"), "Warning"
            )

        events: list[tuple[str, str, str]] = []
        if previous_target != target:
            events.append(
                (
                    "Normal",
                    "Rendering",
                    f"revision {target} of {rendering.release.key}"
                    + "".join(f" with {o.key}" for o in rendering.overlays),
                )
            )
        # Label unlabelled nodes first: the target's DaemonSets would adopt them too once applied.
        for node in nodes:
            if node.revision is None:
                self.mover.label(node.name, adopt_as)
        nodes = [dataclasses.replace(n, revision=n.revision or adopt_as) for n in nodes]
        old = {r: self._render_again(records.get(r), r, server_version) for r in sorted(sources)}
        plugin_of = {r: str(rec["plugin"]) for r, rec in records.items()} | {target: rendering.release.plugin}
        plugin_of |= {r: o.release.plugin for r, o in old.items() if o is not None}

        in_progress = bool(sources)
        to_apply, deferred = _objects_to_apply(rendering, [o for o in old.values() if o], in_progress)
        repaired = self.apply(name, to_apply)

        rollout = validated.spec.rollout
        expected = {r.revision: _node_daemonsets(r) for r in [rendering, *(o for o in old.values() if o)]}
        health = self.mover.health([n for n in nodes if n.move], expected)
        settings = RolloutSettings(
            target=target,
            plugin_of=plugin_of,
            rollout=rollout,
            failed_revision=str(status.get("failedRevision") or ""),
            require_datapath=rollout.health_gate.require_datapath_check,
        )
        plan = plan_rollout(nodes, health, settings, time.time())
        failed_nodes = [{"name": f.name, "reason": f.reason, "message": f.message} for f in plan.failures]
        if plan.failed_revision and status.get("failedRevision") != plan.failed_revision:
            # Recorded before any node moves back, so a restarted operator never resumes the failed target.
            self._write_status(name, {"failedRevision": plan.failed_revision, "failedNodes": failed_nodes})
        for patch in plan.patches:
            self.mover.patch(patch)
        for node_name in plan.drain:
            self.mover.drain(node_name)
        events += _rollout_events(status, plan, failed_nodes, target)

        after = _nodes_after(nodes, plan)
        in_use = _revisions_in_use(after, unlabelled_as=target)
        if in_use == {target} and deferred:
            repaired += self.apply(name, deferred)  # components that upgrade after the nodes, now that all moved
        if repaired:
            events.append(
                (
                    "Normal",
                    "Applied",
                    f"created or repaired {len(repaired)} objects: "
                    + ", ".join(repaired[:10])
                    + (" ..." if len(repaired) > 10 else ""),
                )
            )
        # Prune only what no revision in use renders: an old plugin's objects stay until its last node moved.
        kept = [*rendering.objects, *(obj for r, o in old.items() if o and r in in_use for obj in o.objects)]
        kinds = inventory_kinds(rendering.objects, recorded=status.get("inventoryKinds") or [])
        deleted = prune(self.applier, name, kept, kinds=kinds, keep_revisions=in_use)
        deleted += self._prune_other_plugins(name, {plugin_of.get(r, "") for r in in_use} | _plugins(rendering))
        if deleted:
            events.append(
                (
                    "Normal",
                    "Pruned",
                    "removed objects no revision in use renders: "
                    + ", ".join(deleted[:10])
                    + (" ..." if len(deleted) > 10 else ""),
                )
            )

        self.nodes_per_revision = _count_revisions(after)
        ready = self._target_ready(rendering, len(nodes)) if plan.complete and in_use == {target} else 0
        observation = C.rollout(generation, target, str(status.get("currentRevision") or ""), plan, ready, len(nodes))
        history = self._history(status, rendering, validated.spec)
        recorded = sorted({f"{v}/{k}" for v, k in kinds if (v, k) not in MANAGED_KINDS})
        extra = {
            "revisionHistory": history,
            "inventoryKinds": recorded,
            "waves": [
                {"index": w.index, "size": len(w.nodes), "nodes": list(w.nodes[:WAVE_NODES_SHOWN]), "state": w.state}
                for w in plan.waves
            ],
            "waveCount": plan.wave_count,
            "failedNodes": failed_nodes,
            "failedRevision": plan.failed_revision,
            "agents": agents.summarise(self.mover.agent_reports()),
        }
        observation = dataclasses.replace(observation, extra={**observation.extra, **extra})
        outcome = self._outcome(status, observation, "Warning" if plan.failed_revision else None)
        outcome.events[:0] = events
        kube_skew.merge_into(outcome, status, skew, generation)  # version skew (issue 7): status.skew, condition
        if plan.in_flight:
            outcome.retry_after = 2.0  # timeouts and drains advance with time, not only with events
        elif observation.phase != "Ready":
            outcome.retry_after = 10.0
        return outcome

    def _render_again(self, record: dict[str, Any] | None, revision: str, server_version: str) -> Rendering | None:
        """A revision nodes still run, rendered again from the spec in its history record, without adopting
        unlabelled nodes. None when that is impossible (no record, or the catalog or templates changed so it no
        longer renders the same revision): its live objects are then kept as they are."""
        if not record or not record.get("spec"):
            return None
        try:
            again = self.renderer.render(
                validate(record["spec"], self.catalog), kubernetes_version=server_version, adopt_unlabelled_nodes=False
            )
        except (SpecError, ValueError) as err:
            log.warning(
                "revision %s cannot be rendered again (%s): its live objects are kept as they are", revision, err
            )
            return None
        if again.revision != revision:
            log.warning(
                "revision %s renders as %s now: its live objects are kept as they are", revision, again.revision
            )
            return None
        return again

    def _target_ready(self, rendering: Rendering, total: int) -> int:
        """Nodes whose every target DaemonSet pod is Ready, from the DaemonSets' own status. Not their "updated"
        count: with OnDelete, a pod created while the revision was an old one (without adopting unlabelled nodes)
        runs the same CNI but counts as not updated, and that is as it should be."""
        ready = total
        for ds in (o for o in rendering.objects if o["kind"] == "DaemonSet"):
            live = self.apps.read_namespaced_daemon_set(ds["metadata"]["name"], ds["metadata"]["namespace"]).status
            ready = min(ready, live.number_ready or 0)
        return ready

    def _write_status(self, name: str, fields: dict[str, Any]) -> None:
        self.custom.patch_cluster_custom_object_status(api.GROUP, api.VERSION, api.PLURAL, name, {"status": fields})

    def _outcome(self, status: dict[str, Any], observation: C.Observation, event_type: str | None) -> Outcome:
        events = []
        if event_type and status.get("message") != observation.message:
            reason = next(c.reason for c in observation.conditions if c.type == C.DEGRADED)
            events.append((event_type, reason, observation.message))
        elif status.get("phase") != observation.phase:
            events.append(("Normal", observation.phase, observation.message))
        return Outcome(status=C.status_patch(status, observation), events=events)

    # -- observe -----------------------------------------------------------------------------------------------

    def active_name(self) -> str:
        """The cluster's one network: the oldest ClusterNetwork that is not being deleted."""
        items = self.custom.list_cluster_custom_object(api.GROUP, api.VERSION, api.PLURAL)["items"]
        alive = [i for i in items if not i["metadata"].get("deletionTimestamp")] or items
        oldest = min(alive, key=lambda i: (i["metadata"]["creationTimestamp"], i["metadata"]["name"]))
        return str(oldest["metadata"]["name"])

    def server_version(self) -> str:
        return str(client.VersionApi(self.api_client).get_code().git_version)

    # -- act ---------------------------------------------------------------------------------------------------

    def apply(self, owner: str, objects: list[dict[str, Any]]) -> list[str]:
        """Server-side apply every object (this repairs drift); returns those that were created or changed."""
        changed = []
        for obj in objects:
            obj["metadata"]["labels"][OWNER] = owner
            if self.apply_delay:
                time.sleep(self.apply_delay)
            before = self._resource_version(obj)
            after = self.applier.apply(obj).metadata.resourceVersion
            if before != after:
                changed.append(f"{obj['kind']} {obj['metadata']['name']}")
        return changed

    def _resource_version(self, obj: dict[str, Any]) -> str | None:
        resource = self.applier.resource(obj["apiVersion"], obj["kind"])
        meta = obj["metadata"]
        try:
            live = resource.get(name=meta["name"], namespace=meta.get("namespace") if resource.namespaced else None)
        except ApiException as err:
            if err.status == 404:
                return None
            raise
        return str(live.metadata.resourceVersion)

    def _prune_other_plugins(self, owner: str, plugins: set[str]) -> list[str]:
        """CRDs and Namespaces go only when no revision in use is of the plugin that brought them."""
        deleted = []
        kinds = [kind for kind in MANAGED_KINDS if kind[1] in DESTRUCTIVE_KINDS]
        for obj in managed_objects(self.applier, owner, kinds):
            if obj["metadata"].get("labels", {}).get(L.PLUGIN) in plugins:
                continue
            if delete(self.applier, obj):
                deleted.append(f"{obj['kind']} {obj['metadata']['name']}")
        return deleted

    @staticmethod
    def _history(status: dict[str, Any], rendering: Rendering, spec: api.ClusterNetworkSpec) -> list[dict[str, Any]]:
        """Revisions rolled out, newest last, each with the spec that renders it again (for nodes still on it)."""
        history: list[dict[str, Any]] = [
            r for r in status.get("revisionHistory") or [] if r.get("revision") != rendering.revision
        ]
        previous: dict[str, Any] = next(
            (r for r in status.get("revisionHistory") or [] if r.get("revision") == rendering.revision), {}
        )
        history.append(
            {
                "revision": rendering.revision,
                "plugin": spec.plugin.value,
                "version": spec.version,
                "created": previous.get("created") or C.now(),
                "spec": canonical_spec(spec),
            }
        )
        return history[-HISTORY_LIMIT:]

    # -- deletion ----------------------------------------------------------------------------------------------

    def finalize(self, body: dict[str, Any]) -> list[tuple[str, str, str]]:
        """On deletion: with nodeCleanup Remove, delete everything this ClusterNetwork created; with Keep (the
        default) leave the running network in place, unmanaged, so nodes keep their pods' connectivity."""
        name = body["metadata"]["name"]
        if self.active_name() != name and not self._owns_anything(name):
            return []
        cleanup = ((body.get("spec") or {}).get("nodeCleanup")) or api.NodeCleanup.KEEP.value
        kinds = inventory_kinds(recorded=(body.get("status") or {}).get("inventoryKinds") or [])
        if cleanup == api.NodeCleanup.REMOVE.value:
            deleted = prune(self.applier, name, [], kinds=kinds, include_destructive=True)
            self.mover.release(remove_labels=True)
            return [("Normal", "Removed", f"deleted {len(deleted)} objects: the network is removed from the nodes")]
        released = self._release(name, kinds)
        self.mover.release(remove_labels=False)
        return [("Normal", "Kept", f"left {released} objects running, no longer managed (nodeCleanup: Keep)")]

    def _owns_anything(self, owner: str) -> bool:
        return next(managed_objects(self.applier, owner), None) is not None

    def _release(self, owner: str, kinds: list[tuple[str, str]]) -> int:
        """Drop our owner label so no later reconcile of another ClusterNetwork prunes these objects by mistake."""
        count = 0
        for obj in managed_objects(self.applier, owner, kinds):
            resource = self.applier.resource(obj["apiVersion"], obj["kind"])
            meta = obj["metadata"]
            resource.patch(
                name=meta["name"],
                namespace=meta.get("namespace") if resource.namespaced else None,
                body={"metadata": {"labels": {OWNER: None}}},
                content_type="application/merge-patch+json",
            )
            count += 1
        return count


# -- pure helpers of the reconcile ---------------------------------------------------------------------------------


def _revisions_in_use(nodes: Iterable[NodeView], *, unlabelled_as: str) -> set[str]:
    """Every revision a node runs or is moving between: their objects must stay."""
    used = set()
    for node in nodes:
        used.add(node.revision or unlabelled_as)
        if node.move:
            used |= {node.move.to, node.move.source}
    used.discard("")
    return used


def _nodes_after(nodes: Iterable[NodeView], plan: RolloutPlan) -> list[NodeView]:
    """The nodes as they are once the plan's patches are applied."""
    patches = {p.node: p for p in plan.patches}
    return [patches[n.name].applied_to(n) if n.name in patches else n for n in nodes]


def _count_revisions(nodes: Iterable[NodeView]) -> dict[str, int]:
    counts: dict[str, int] = {}
    for node in nodes:
        if node.revision:
            counts[node.revision] = counts.get(node.revision, 0) + 1
    return counts


def _plugins(rendering: Rendering) -> set[str]:
    return {rendering.release.plugin, *(o.plugin for o in rendering.overlays)}


def _node_daemonsets(rendering: Rendering) -> int:
    """How many Ready CNI pods a node on this revision must have: one per node DaemonSet it renders."""
    return sum(1 for obj in rendering.objects if obj["kind"] == "DaemonSet") or 1


def _after_nodes(rendering: Rendering) -> dict[str, set[str]]:
    """Per plugin, the cluster-level components its release upgrades after the node workloads."""
    result = {}
    for release in (rendering.release, *rendering.overlays):
        components = release.components
        first_node = next((i for i, c in enumerate(components) if c.scope is ComponentScope.NODE), len(components))
        result[release.plugin] = {c.name for c in components[first_node:] if c.scope is ComponentScope.CLUSTER}
    return result


def _objects_to_apply(
    rendering: Rendering, old: list[Rendering], in_progress: bool
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """(objects to apply now, objects deferred until every node moved).

    The target's cluster components that the release upgrades before its node workloads are applied at once;
    those it upgrades after them wait while nodes still run an older revision (which keeps its own version of
    them). Revisions still in use keep their objects; where one object is in several renderings, the target's wins.
    """
    later = _after_nodes(rendering)
    now, deferred = [], []
    for obj in rendering.objects:
        labels = obj["metadata"]["labels"]
        if in_progress and labels.get(L.COMPONENT) in later.get(labels.get(L.PLUGIN, ""), set()):
            deferred.append(obj)
        else:
            now.append(obj)
    chosen = {identity(obj) for obj in now}
    for again in old:
        for obj in again.objects:
            if identity(obj) not in chosen:
                chosen.add(identity(obj))
                now.append(obj)
    return now, deferred


def _rollout_events(
    status: dict[str, Any], plan: RolloutPlan, failed_nodes: list[dict[str, str]], target: str
) -> list[tuple[str, str, str]]:
    events = []
    started = [p for p in plan.patches if p.starts]
    if started:
        events.append(("Normal", "NodesMoving", f"{started[0].why}: {_names(started)} to revision {target}"))
    back = [p for p in plan.patches if p.move is not None and p.move.rollback]
    if back:
        events.append(("Warning", "RollingBack", f"{back[0].why}: {_names(back)}"))
    known = {(f.get("name"), f.get("reason")) for f in status.get("failedNodes") or []}
    for failure in failed_nodes:
        if (failure["name"], failure["reason"]) not in known:
            events.append(("Warning", failure["reason"], f"node {failure['name']}: {failure['message']}"))
    return events


def _names(patches: list[NodePatch]) -> str:
    return ", ".join(p.node for p in patches[:10]) + (f" and {len(patches) - 10} more" if len(patches) > 10 else "")
