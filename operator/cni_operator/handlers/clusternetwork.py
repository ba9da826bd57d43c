"""Thin kopf glue: every event only asks for a reconcile of the ClusterNetwork it concerns.

A single worker thread runs the reconciles, coalescing bursts of events (a DaemonSet's status changes once per
node) into one reconcile. Deletion is the one synchronous handler, because kopf removes the finalizer after it.
Nothing registers at import: `register(queue, registry)` adds every handler to the registry `kopf.operator` runs.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Any

import kopf

from cni_operator.api import v1alpha1 as api
from cni_operator.api import vocabulary as L
from cni_operator.decide.snapshot import MANAGED_KINDS
from cni_operator.handlers import metrics
from cni_operator.kube import events
from cni_operator.kube.reconcile import Reconciler

log = logging.getLogger(__name__)
FINALIZER = L.FINALIZER
MIN_INTERVAL = 0.5  # seconds between two reconciles of the same ClusterNetwork
MANAGED = {L.MANAGED_BY: L.MANAGER}


class ReconcileQueue:
    """Names waiting for a reconcile, and the worker that runs them; a kick while queued is a no-op."""

    def __init__(self, reconciler: Reconciler) -> None:
        self.reconciler = reconciler
        self._pending: dict[str, float] = {}  # name -> not before (monotonic)
        self._wake = threading.Condition()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="reconcile", daemon=True)
        self.known: set[str] = set()  # ClusterNetworks seen, so node events need no API call to find them

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        with self._wake:
            self._wake.notify_all()
        self._thread.join(timeout=30)

    def kick(self, name: str, delay: float = 0.0) -> None:
        with self._wake:
            when = time.monotonic() + delay
            self._pending[name] = min(self._pending.get(name, when), when)
            self._wake.notify_all()

    def _next(self) -> str | None:
        with self._wake:
            while not self._stop.is_set():
                now = time.monotonic()
                due = [n for n, t in self._pending.items() if t <= now]
                if due:
                    name = min(due, key=self._pending.__getitem__)
                    del self._pending[name]
                    return name
                timeout = min(self._pending.values(), default=now + 5) - now
                self._wake.wait(timeout=max(timeout, 0.05))
        return None

    def _run(self) -> None:
        while (name := self._next()) is not None:
            try:
                self.reconcile_now(name)
            except Exception as err:  # keep the worker alive; retry with a back-off
                log.exception("reconcile of %s failed", name)
                metrics.RECONCILE_ERRORS.labels(name, type(err).__name__).inc()
                self.kick(name, delay=5.0)
                continue
            if not self._stop.is_set():
                time.sleep(MIN_INTERVAL)

    def reconcile_now(self, name: str) -> None:
        with metrics.RECONCILE_SECONDS.time():
            outcome = self.reconciler.reconcile(name)
        if outcome is None:
            return  # gone, or being deleted: the delete handler owns it now
        metrics.record(name, outcome.decision.status, self.reconciler.nodes_per_revision)
        if outcome.decision.retry_after:
            self.kick(name, delay=outcome.decision.retry_after)


def register(queue: ReconcileQueue, registry: kopf.OperatorRegistry) -> kopf.OperatorRegistry:
    """Every handler and watch, bound to `queue`, added to `registry`."""
    reconciler = queue.reconciler
    fingerprints: dict[str, tuple[Any, ...]] = {}

    def kick_all(delay: float = 0.2) -> None:
        for network in list(queue.known):
            queue.kick(network, delay=delay)

    @kopf.on.startup(registry=registry)
    def configure(settings: kopf.OperatorSettings, **_: Any) -> None:
        settings.persistence.finalizer = FINALIZER
        settings.persistence.progress_storage = kopf.AnnotationsProgressStorage(prefix=L.PREFIX)
        settings.persistence.diffbase_storage = kopf.AnnotationsDiffBaseStorage(
            prefix=L.PREFIX, key="last-handled-configuration"
        )
        settings.posting.level = logging.WARNING  # our own events say what happened; kopf's per-handler ones are noise
        settings.watching.server_timeout = 300
        settings.execution.max_workers = 4

    @kopf.on.login(registry=registry)
    def login(**_: Any) -> kopf.ConnectionInfo:
        """kopf talks to the API server with the same credentials as the reconciler (kubeconfig or service account)."""
        config = reconciler.api_client.configuration
        header = config.get_api_key_with_prefix("BearerToken") or config.get_api_key_with_prefix("authorization")
        scheme, _space, bearer = (header or "").rpartition(" ")
        return kopf.ConnectionInfo(
            server=config.host,
            ca_path=config.ssl_ca_cert,
            insecure=not config.verify_ssl,
            scheme=scheme or None,
            token=bearer or None,
            certificate_path=config.cert_file,
            private_key_path=config.key_file,
        )

    @kopf.on.resume(api.GROUP, api.VERSION, api.PLURAL, registry=registry)
    @kopf.on.create(api.GROUP, api.VERSION, api.PLURAL, registry=registry)
    @kopf.on.update(api.GROUP, api.VERSION, api.PLURAL, registry=registry)
    def clusternetwork_changed(name: str, **_: Any) -> None:
        queue.known.add(name)
        queue.kick(name)

    @kopf.timer(api.GROUP, api.VERSION, api.PLURAL, interval=60.0, idle=30.0, registry=registry)
    def clusternetwork_periodic(name: str, **_: Any) -> None:
        """A safety net: anything a missed watch event would have caught is caught within a minute."""
        queue.kick(name)

    @kopf.on.delete(api.GROUP, api.VERSION, api.PLURAL, registry=registry)
    def clusternetwork_deleted(body: kopf.Body, **_: Any) -> None:
        for event in reconciler.finalize(dict(body)):
            events.post(reconciler.api_client, dict(body), event.type, event.reason, event.message)
        queue.known.discard(body["metadata"]["name"])
        kick_all(0.0)  # another ClusterNetwork may become the active one now

    # Any change to an object we manage (an edit, a deletion, a status update) asks its owner for a reconcile.
    for api_version, kind in MANAGED_KINDS:
        group, _, version = api_version.rpartition("/")
        plural = kind.lower() + "s"  # true of every kind in MANAGED_KINDS

        def on_managed_event(labels: kopf.Labels, **_: Any) -> None:
            owner = labels.get(L.OWNER)
            if owner:
                queue.kick(owner)

        on_managed_event.__name__ = f"managed_{kind.lower()}_event"
        kopf.on.event(group, version, plural, labels=MANAGED, registry=registry)(on_managed_event)

    @kopf.on.event("", "v1", "nodes", registry=registry)
    def node_event(name: str, body: kopf.Body, type: str | None, **_: Any) -> None:
        """Nodes joining, leaving, moving between revisions or changing versions: reconcile. A 5,000-node cluster
        sends a node update every few seconds that changes nothing here; those are dropped without a reconcile."""
        if type == "DELETED":
            fingerprints.pop(name, None)
        else:
            fingerprint = node_fingerprint(body)
            if fingerprints.get(name) == fingerprint:
                return
            fingerprints[name] = fingerprint
        kick_all()

    @kopf.on.event(api.GROUP, api.VERSION, "nodenetworkstates", registry=registry)
    def agent_report_event(**_: Any) -> None:
        """A node agent's report changed (drift, a datapath check): the health gate and status read it."""
        kick_all()

    return registry


def node_fingerprint(body: kopf.Body | dict[str, Any]) -> tuple[Any, ...]:
    """What of a node the operator acts on; heartbeats and condition updates change none of it."""
    meta, spec, status = body.get("metadata", {}), body.get("spec", {}), body.get("status", {})
    info = status.get("nodeInfo") or {}
    ready = next((c.get("status") for c in status.get("conditions") or [] if c.get("type") == "Ready"), None)
    return (
        (meta.get("labels") or {}).get(L.NODE_REVISION),
        (meta.get("annotations") or {}).get(L.MOVE_ANNOTATION),
        bool(spec.get("unschedulable")),
        tuple(spec.get("podCIDRs") or ()),
        ready,
        *(info.get(k) for k in ("kubeletVersion", "containerRuntimeVersion", "operatingSystem", "architecture")),
    )
