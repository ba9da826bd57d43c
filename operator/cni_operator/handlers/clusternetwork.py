"""Thin kopf glue: every event only asks for a reconcile of the ClusterNetwork it concerns.

A single worker thread runs the reconciles, coalescing bursts of events (a DaemonSet's status changes once per
node) into one reconcile. Deletion is the one synchronous handler, because kopf removes the finalizer after it.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Any

import kopf
from kubernetes import client

from cni_operator.api import v1alpha1 as api
from cni_operator.api import vocabulary as L
from cni_operator.handlers import metrics
from cni_operator.kube import events
from cni_operator.kube.inventory import MANAGED_KINDS, OWNER
from cni_operator.kube.reconcile import Reconciler
from cni_operator.plan.rollout import MOVE_ANNOTATION

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
        custom: Any = client.CustomObjectsApi(self.reconciler.api_client)
        try:
            body = custom.get_cluster_custom_object(api.GROUP, api.VERSION, api.PLURAL, name)
        except client.ApiException as err:
            if err.status == 404:
                return
            raise
        if body["metadata"].get("deletionTimestamp"):
            return  # the delete handler owns it now
        with metrics.RECONCILE_SECONDS.time():
            outcome = self.reconciler.reconcile(body)
        custom.patch_cluster_custom_object_status(api.GROUP, api.VERSION, api.PLURAL, name, {"status": outcome.status})
        for event_type, reason, message in outcome.events:
            events.post(self.reconciler.api_client, body, event_type, reason, message)
        metrics.record(name, outcome.status, self.reconciler.nodes_per_revision)
        if outcome.retry_after:
            self.kick(name, delay=outcome.retry_after)


QUEUE: ReconcileQueue | None = None


def _queue() -> ReconcileQueue:
    if QUEUE is None:
        raise kopf.TemporaryError("the operator is still starting", delay=1)
    return QUEUE


def install(reconciler: Reconciler) -> ReconcileQueue:
    """Create and start the worker (called by `cni-operator run` before kopf starts)."""
    global QUEUE
    QUEUE = ReconcileQueue(reconciler)
    QUEUE.start()
    return QUEUE


@kopf.on.startup()
def configure(settings: kopf.OperatorSettings, **_: Any) -> None:
    settings.persistence.finalizer = FINALIZER
    settings.persistence.progress_storage = kopf.AnnotationsProgressStorage(prefix=L.PREFIX)
    settings.persistence.diffbase_storage = kopf.AnnotationsDiffBaseStorage(
        prefix=L.PREFIX, key="last-handled-configuration"
    )
    settings.posting.level = logging.WARNING  # our own events say what happened; kopf's per-handler ones are noise
    settings.watching.server_timeout = 300
    settings.execution.max_workers = 4


@kopf.on.login()
def login(**_: Any) -> kopf.ConnectionInfo:
    """kopf talks to the API server with the same credentials as the reconciler (kubeconfig or service account)."""
    config = _queue().reconciler.api_client.configuration
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


@kopf.on.resume(api.GROUP, api.VERSION, api.PLURAL)
@kopf.on.create(api.GROUP, api.VERSION, api.PLURAL)
@kopf.on.update(api.GROUP, api.VERSION, api.PLURAL)
def clusternetwork_changed(name: str, **_: Any) -> None:
    queue = _queue()
    queue.known.add(name)
    queue.kick(name)


@kopf.timer(api.GROUP, api.VERSION, api.PLURAL, interval=60.0, idle=30.0)
def clusternetwork_periodic(name: str, **_: Any) -> None:
    """A safety net: anything a missed watch event would have caught is caught within a minute."""
    _queue().kick(name)


@kopf.on.delete(api.GROUP, api.VERSION, api.PLURAL)
def clusternetwork_deleted(body: kopf.Body, **_: Any) -> None:
    queue = _queue()
    for event_type, reason, message in queue.reconciler.finalize(dict(body)):
        events.post(queue.reconciler.api_client, dict(body), event_type, reason, message)
    queue.known.discard(body["metadata"]["name"])
    for name in queue.known:  # another ClusterNetwork may become the active one now
        queue.kick(name)


def _kick_owner(labels: dict[str, str] | kopf.Labels) -> None:
    owner = labels.get(OWNER)
    if owner:
        _queue().kick(owner)


def _register_drift_watches() -> None:
    """Any change to an object we manage (an edit, a deletion, a status update) asks its owner for a reconcile."""
    for api_version, kind in MANAGED_KINDS:
        group, _, version = api_version.rpartition("/")
        plural = kind.lower() + "s"  # true of every kind in MANAGED_KINDS

        def on_managed_event(labels: kopf.Labels, **_: Any) -> None:
            _kick_owner(labels)

        on_managed_event.__name__ = f"managed_{kind.lower()}_event"
        kopf.on.event(group, version, plural, labels=MANAGED)(on_managed_event)


_register_drift_watches()


_NODE_FINGERPRINTS: dict[str, tuple[Any, ...]] = {}


def _node_fingerprint(body: kopf.Body) -> tuple[Any, ...]:
    """What of a node the operator acts on; heartbeats and condition updates change none of it."""
    meta, spec, status = body.get("metadata", {}), body.get("spec", {}), body.get("status", {})
    info = status.get("nodeInfo") or {}
    return (
        (meta.get("labels") or {}).get(L.NODE_REVISION),
        (meta.get("annotations") or {}).get(MOVE_ANNOTATION),
        bool(spec.get("unschedulable")),
        tuple(spec.get("podCIDRs") or ()),
        *(info.get(k) for k in ("kubeletVersion", "containerRuntimeVersion", "operatingSystem", "architecture")),
    )


@kopf.on.event("", "v1", "nodes")
def node_event(name: str, body: kopf.Body, type: str | None, **_: Any) -> None:
    """Nodes joining, leaving, moving between revisions or changing versions: reconcile. A 5,000-node cluster
    sends a node update every few seconds that changes nothing here; those are dropped without a reconcile."""
    if type == "DELETED":
        _NODE_FINGERPRINTS.pop(name, None)
    else:
        fingerprint = _node_fingerprint(body)
        if _NODE_FINGERPRINTS.get(name) == fingerprint:
            return
        _NODE_FINGERPRINTS[name] = fingerprint
    queue = _queue()
    for network in list(queue.known):
        queue.kick(network, delay=0.2)


@kopf.on.event(api.GROUP, api.VERSION, "nodenetworkstates")
def agent_report_event(**_: Any) -> None:
    """A node agent's report changed (drift, a datapath check): the health gate and status read it."""
    queue = _queue()
    for network in list(queue.known):
        queue.kick(network, delay=0.2)
