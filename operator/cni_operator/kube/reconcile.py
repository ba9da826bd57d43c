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
from dataclasses import dataclass, field
from typing import Any

from kubernetes import client
from kubernetes.client import ApiClient, ApiException

from cni_operator.api import v1alpha1 as api
from cni_operator.catalog.loader import Catalog
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
from cni_operator.plan.validate import SpecError, validate
from cni_operator.render import labels as L
from cni_operator.render.engine import Renderer, Rendering
from cni_operator.status import conditions as C

log = logging.getLogger(__name__)
HISTORY_LIMIT = 10


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
        self.nodes_per_revision: dict[str, int] = {}  # from the last observe, for metrics
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
        skew = kube_skew.check(self.api_client, self.catalog, status, validated)
        if skew.refused:
            refused = self._outcome(status, kube_skew.refusal(skew, generation), "Warning")
            kube_skew.merge_into(refused, status, skew, generation)
            return refused
        # -- end of version skew --

        server_version = self.server_version()
        rendering = self.renderer.render(validated, kubernetes_version=server_version)
        events: list[tuple[str, str, str]] = []
        if status.get("targetRevision") != rendering.revision:
            events.append(
                (
                    "Normal",
                    "Rendering",
                    f"revision {rendering.revision} of {rendering.release.key}"
                    + "".join(f" with {o.key}" for o in rendering.overlays),
                )
            )

        repaired = self.apply(name, rendering)
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
        kinds = inventory_kinds(rendering.objects, recorded=status.get("inventoryKinds") or [])
        deleted = prune(self.applier, name, rendering.objects, kinds=kinds)
        deleted += self._prune_other_plugins(name, rendering)
        if deleted:
            events.append(
                (
                    "Normal",
                    "Pruned",
                    "removed objects the revision no longer renders: "
                    + ", ".join(deleted[:10])
                    + (" ..." if len(deleted) > 10 else ""),
                )
            )

        observation = self.observe_rollout(generation, rendering)
        history = self._history(status, rendering, validated.spec)
        recorded = sorted({f"{v}/{k}" for v, k in kinds if (v, k) not in MANAGED_KINDS})
        extra = {"revisionHistory": history, "inventoryKinds": recorded}
        observation = dataclasses.replace(observation, extra={**observation.extra, **extra})
        outcome = self._outcome(status, observation, None)
        outcome.events[:0] = events
        kube_skew.merge_into(outcome, status, skew, generation)  # version skew (issue 7): status.skew, condition
        if observation.phase != "Ready":
            outcome.retry_after = 10.0
        return outcome

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

    def observe_rollout(self, generation: int, rendering: Rendering) -> C.Observation:
        """How far the target revision's node workloads are: counts from the DaemonSets' own status."""
        nodes = self.core.list_node().items
        total = len(nodes)
        per_revision: dict[str, int] = {}
        for node in nodes:  # unlabelled nodes run the target revision: its DaemonSets adopt them
            revision = (node.metadata.labels or {}).get(L.NODE_REVISION, rendering.revision)
            per_revision[revision] = per_revision.get(revision, 0) + 1
        self.nodes_per_revision = per_revision
        daemonsets = [o for o in rendering.objects if o["kind"] == "DaemonSet"]
        updated = ready = total
        for ds in daemonsets:
            live = self.apps.read_namespaced_daemon_set(ds["metadata"]["name"], ds["metadata"]["namespace"]).status
            updated = min(updated, live.updated_number_scheduled or 0)
            ready = min(ready, live.number_ready or 0)
        if total and ready >= total and updated >= total:
            return C.ready(
                generation,
                rendering.revision,
                total,
                f"{rendering.release.key} revision {rendering.revision} runs on all {total} nodes",
            )
        return C.progressing(
            generation,
            rendering.revision,
            total,
            updated,
            ready,
            f"{ready} of {total} nodes ready on revision {rendering.revision}",
        )

    # -- act ---------------------------------------------------------------------------------------------------

    def apply(self, owner: str, rendering: Rendering) -> list[str]:
        """Server-side apply every object (this repairs drift); returns those that were created or changed."""
        changed = []
        for obj in rendering.objects:
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

    def _prune_other_plugins(self, owner: str, rendering: Rendering) -> list[str]:
        """CRDs and Namespaces go only when the plugin that brought them is no longer rendered at all."""
        plugins = {rendering.release.plugin, *(o.plugin for o in rendering.overlays)}
        wanted = {identity(obj) for obj in rendering.objects}
        deleted = []
        kinds = [kind for kind in MANAGED_KINDS if kind[1] in DESTRUCTIVE_KINDS]
        for obj in managed_objects(self.applier, owner, kinds):
            if identity(obj) in wanted or obj["metadata"].get("labels", {}).get(L.PLUGIN) in plugins:
                continue
            if delete(self.applier, obj):
                deleted.append(f"{obj['kind']} {obj['metadata']['name']}")
        return deleted

    @staticmethod
    def _history(status: dict[str, Any], rendering: Rendering, spec: api.ClusterNetworkSpec) -> list[dict[str, Any]]:
        history: list[dict[str, Any]] = list(status.get("revisionHistory") or [])
        if not history or history[-1].get("revision") != rendering.revision:
            history.append(
                {
                    "revision": rendering.revision,
                    "plugin": spec.plugin.value,
                    "version": spec.version,
                    "created": C.now(),
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
            return [("Normal", "Removed", f"deleted {len(deleted)} objects: the network is removed from the nodes")]
        released = self._release(name, kinds)
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
