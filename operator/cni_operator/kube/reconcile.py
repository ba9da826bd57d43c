"""The one level-based reconcile: observe a snapshot, `decide`, carry the decision out. No decisions here.

Every kopf handler asks for `Reconciler.reconcile(name)`. Nothing is kept in memory between calls but the reasons
the last evictions were refused (shown in status only): what the operator needs is in the cluster.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from kubernetes import client
from kubernetes.client import ApiClient, ApiException

from cni_operator.api import v1alpha1 as api
from cni_operator.api import vocabulary as L
from cni_operator.catalog.loader import Catalog
from cni_operator.decide.decision import Decision, Event, Eviction, ObjectRef
from cni_operator.decide.pipeline import decide, decide_deletion
from cni_operator.decide.snapshot import NetworkObject, listed_kinds, object_key
from cni_operator.kube import events as kube_events
from cni_operator.kube.apply import Applier
from cni_operator.kube.observe import NotFound, Observer, active_name, node_view
from cni_operator.plan.rollout import NodePatch
from cni_operator.render.engine import Renderer
from cni_operator.status.conditions import read_status, status_body

log = logging.getLogger(__name__)
SHOWN = 10  # objects named in one Applied/Pruned event


@dataclass
class Outcome:
    """What one reconcile decided and what the API really changed."""

    decision: Decision
    applied: list[str] = field(default_factory=list)  # created or changed ('Kind name')
    deleted: list[str] = field(default_factory=list)
    events: list[Event] = field(default_factory=list)  # posted (the decision's and the API results')


class Reconciler:
    """Holds the clients; safe to call from several handler threads (one reconcile at a time).

    `before_apply` is a test hook (a fault injector: tests slow every apply down to kill the operator between two
    of them); `clock` gives epoch seconds."""

    def __init__(
        self,
        api_client: ApiClient,
        catalog: Catalog,
        renderer: Renderer | None = None,
        *,
        before_apply: Callable[[dict[str, Any]], None] | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.api_client = api_client
        self.catalog = catalog
        self.renderer = renderer or Renderer(catalog)
        self.applier = Applier(api_client)
        self.observer = Observer(api_client, self.applier)
        self.core: Any = client.CoreV1Api(api_client)
        self.custom: Any = client.CustomObjectsApi(api_client)
        self.before_apply = before_apply
        self.clock = clock
        self._lock = threading.Lock()
        self.eviction_blocked: dict[str, str] = {}  # node -> why its last eviction was refused (for status only)
        self.nodes_per_revision: dict[str, int] = {}  # from the last reconcile, for metrics

    # -- the reconcile -----------------------------------------------------------------------------------------

    def reconcile(self, name: str) -> Outcome | None:
        """Observe, decide, act; None when the ClusterNetwork is gone or being deleted (finalize owns it then)."""
        with self._lock:
            try:
                snapshot = self.observer.snapshot(name, eviction_blocked=self.eviction_blocked)
            except NotFound:
                return None
            if snapshot.network.deleting:
                return None
            decision = decide(snapshot, self.catalog, self.clock(), renderer=self.renderer)
            outcome = self.act(decision, snapshot.network)
            self.nodes_per_revision = dict(decision.nodes_per_revision)
            return outcome

    def act(self, decision: Decision, network: NetworkObject) -> Outcome:
        """Carry a decision out, in its fixed order (see decide.decision)."""
        outcome = Outcome(decision)
        name = decision.network
        if decision.failure is not None:  # before any node moves back: a restart never resumes a failed target
            failed = [n.model_dump(by_alias=True, mode="json") for n in decision.failure.nodes]
            self._write_status(name, {"failedRevision": decision.failure.revision, "failedNodes": failed})
        for patch in decision.adopt:
            self.patch_node(patch)
        outcome.applied += self.apply(decision.apply_now, decision)
        for patch in decision.node_patches:
            self.patch_node(patch)
        self.evict(decision.evictions, decision.drained)
        outcome.applied += self.apply(decision.apply_after, decision)
        for ref in decision.delete:
            if self.delete(ref):
                outcome.deleted.append(str(ref))
        self._write_status(name, status_body(decision.status))
        outcome.events = [*decision.events, *_result_events(outcome)]
        body = {"apiVersion": api.API_VERSION, "kind": api.KIND, "metadata": {"name": name, "uid": network.uid}}
        for event in outcome.events:
            kube_events.post(self.api_client, body, event.type, event.reason, event.message)
        return outcome

    # -- act ---------------------------------------------------------------------------------------------------

    def apply(self, objects: Iterable[dict[str, Any]], decision: Decision) -> list[str]:
        """Server-side apply every object (this repairs drift); returns those the API created or changed."""
        changed = []
        for obj in objects:
            if self.before_apply is not None:
                self.before_apply(obj)
            key = object_key(obj)
            before = decision.resource_versions.get(key)
            if before is None and (obj["apiVersion"], obj["kind"]) not in decision.listed_kinds:
                before = self._resource_version(obj)
            after = self.applier.apply(obj).metadata.resourceVersion
            if before != after:
                changed.append(f"{obj['kind']} {obj['metadata']['name']}")
        return changed

    def _resource_version(self, obj: dict[str, Any]) -> str | None:
        """For kinds the snapshot did not list (a plugin's own kinds on their first rendering)."""
        try:
            resource = self.applier.resource(obj["apiVersion"], obj["kind"])
            meta = obj["metadata"]
            live = resource.get(name=meta["name"], namespace=meta.get("namespace") if resource.namespaced else None)
        except ApiException as err:
            if err.status == 404:
                return None
            raise
        except Exception:
            return None
        return str(live.metadata.resourceVersion)

    def patch_node(self, patch: NodePatch) -> None:
        log.info("node %s: %s", patch.node, patch.why)
        self.core.patch_node(patch.node, patch.body())

    def evict(self, evictions: Iterable[Eviction], drained: Iterable[str]) -> None:
        """Evict (never delete) every pod the decision names; PodDisruptionBudgets may refuse some (429), which
        the next snapshot reports as the node's eviction_blocked."""
        blocked: dict[str, list[str]] = {}
        for eviction in evictions:
            body = client.V1Eviction(metadata=client.V1ObjectMeta(name=eviction.pod, namespace=eviction.namespace))
            try:
                self.core.create_namespaced_pod_eviction(eviction.pod, eviction.namespace, body)
                log.info("node %s: evicted pod %s/%s", eviction.node, eviction.namespace, eviction.pod)
            except ApiException as err:
                if err.status == 404:
                    continue
                if err.status == 429:
                    blocked.setdefault(eviction.node, []).append(
                        f"{eviction.namespace}/{eviction.pod}: {_refusal(err)}"
                    )
                    continue
                raise
        for node in drained:
            reasons = blocked.get(node)
            if reasons:
                self.eviction_blocked[node] = "; ".join(reasons[:3]) + (" ..." if len(reasons) > 3 else "")
            else:
                self.eviction_blocked.pop(node, None)

    def delete(self, ref: ObjectRef) -> bool:
        """Delete one object; False if it was already gone."""
        resource = self.applier.resource(ref.api_version, ref.kind)
        try:
            resource.delete(
                name=ref.name,
                namespace=ref.namespace if resource.namespaced else None,
                body={"propagationPolicy": "Background"},
            )
        except ApiException as err:
            if err.status == 404:
                return False
            raise
        return True

    def _write_status(self, name: str, fields: dict[str, Any]) -> None:
        self.custom.patch_cluster_custom_object_status(api.GROUP, api.VERSION, api.PLURAL, name, {"status": fields})

    # -- deletion ----------------------------------------------------------------------------------------------

    def finalize(self, body: dict[str, Any]) -> list[Event]:
        """On deletion: observe what this ClusterNetwork owns, decide (decide_deletion), carry it out."""
        name = body["metadata"]["name"]
        status = read_status(body.get("status"))
        owned = list(self.observer.managed_objects(name, listed_kinds(status.inventory_kinds)))
        nodes = [node_view(n) for n in self.observer.node_list()]
        deletion = decide_deletion(name, body.get("spec"), active_name(self.observer.networks()), owned, nodes)
        for ref in deletion.delete:
            self.delete(ref)
        for ref in deletion.disown:
            self._disown(ref)
        for node, patch in deletion.node_patches:
            self.core.patch_node(node, patch)
        return [deletion.event] if deletion.event else []

    def _disown(self, obj: ObjectRef) -> None:
        """Drop our owner label so no later reconcile of another ClusterNetwork prunes the object by mistake."""
        resource = self.applier.resource(obj.api_version, obj.kind)
        resource.patch(
            name=obj.name,
            namespace=obj.namespace if resource.namespaced else None,
            body={"metadata": {"labels": {L.OWNER: None}}},
            content_type="application/merge-patch+json",
        )


def _result_events(outcome: Outcome) -> list[Event]:
    """What the API really changed, as Applied and Pruned events (the first few objects named)."""
    results = [
        ("Applied", f"created or repaired {len(outcome.applied)} objects", outcome.applied),
        ("Pruned", "removed objects no revision in use renders", outcome.deleted),
    ]
    return [
        Event("Normal", reason, f"{text}: {', '.join(names[:SHOWN])}{' ...' if len(names) > SHOWN else ''}")
        for reason, text, names in results
        if names
    ]


def _refusal(err: ApiException) -> str:
    """The PodDisruptionBudget's own words from a 429 eviction answer (it names the budget)."""
    try:
        status = json.loads(err.body or "{}")
    except ValueError:
        return "refused (429)"
    causes = [c.get("message", "") for c in (status.get("details") or {}).get("causes") or []]
    return "; ".join(c for c in causes if c) or str(status.get("message") or "refused (429)")
