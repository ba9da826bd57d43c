"""The agent's thin Kubernetes layer: read its Node and the revision's conflist ConfigMap, write its
NodeNetworkState. Everything else in the agent is plain files and processes."""

from __future__ import annotations

import json
import logging
import threading
from typing import Any

from kubernetes import client, watch
from kubernetes.client import ApiException

from cni_operator.agent.runner import CONFIGMAP_PREFIX, NodeFacts, Target
from cni_operator.api.nodestate import GROUP, KIND, PLURAL, VERSION
from cni_operator.api.v1alpha1 import API_VERSION

log = logging.getLogger("cni_operator.agent")


class KubeCluster:
    """The `Cluster` of the agent loop, on a kubernetes ApiClient (one client can serve many simulated nodes)."""

    def __init__(self, api_client: Any, namespace: str = "kube-system") -> None:
        self.core: Any = client.CoreV1Api(api_client)
        self.custom: Any = client.CustomObjectsApi(api_client)
        self.namespace = namespace

    def node(self, name: str) -> NodeFacts:
        node = self.core.read_node(name)
        cidrs = list(node.spec.pod_cidrs or ([node.spec.pod_cidr] if node.spec.pod_cidr else []))
        return NodeFacts(name, node.metadata.uid, dict(node.metadata.labels or {}), cidrs)

    def target(self, revision: str) -> Target | None:
        try:
            config_map = self.core.read_namespaced_config_map(f"{CONFIGMAP_PREFIX}{revision}", self.namespace)
        except ApiException as err:
            if err.status == 404:
                return None
            raise
        data = config_map.data or {}
        keep = json.loads(data["keepConfigs"]) if data.get("keepConfigs") else []
        skip = json.loads(data["skipCheck"]) if data.get("skipCheck") else []
        name = data["conflistName"].strip()
        return Target(revision, data["conflist.json"], name, [str(k) for k in keep], [str(s) for s in skip])

    def report(self, node: NodeFacts, status: dict[str, Any]) -> None:
        """Write the status subresource of the node's NodeNetworkState, creating the object on first use (owned by
        the Node, so it goes when the node goes). One request in the common case."""
        try:
            self._patch_status(node.name, status)
            return
        except ApiException as err:
            if err.status != 404:
                raise
        body = {
            "apiVersion": API_VERSION,
            "kind": KIND,
            "metadata": {
                "name": node.name,
                "labels": {"app.kubernetes.io/managed-by": "cni-operator-agent"},
                "ownerReferences": [{"apiVersion": "v1", "kind": "Node", "name": node.name, "uid": node.uid}],
            },
            "spec": {},
        }
        try:
            self.custom.create_cluster_custom_object(GROUP, VERSION, PLURAL, body)
        except ApiException as err:
            if err.status != 409:  # created meanwhile (another process of the same agent): just write status
                raise
        self._patch_status(node.name, status)

    def _patch_status(self, name: str, status: dict[str, Any]) -> None:
        self.custom.patch_cluster_custom_object_status(GROUP, VERSION, PLURAL, name, {"status": status})

    def delete_report(self, node_name: str) -> None:
        try:
            self.custom.delete_cluster_custom_object(GROUP, VERSION, PLURAL, node_name)
        except ApiException as err:
            if err.status != 404:
                raise


def watch_node(api_client: Any, name: str, changed: threading.Event, stop: threading.Event) -> threading.Thread:
    """A daemon thread that sets `changed` whenever the Node changes (its revision label above all); the agent's
    pass reads the Node itself, so a lost event costs at most one interval."""

    def loop() -> None:
        core: Any = client.CoreV1Api(api_client)
        watcher: Any = watch.Watch()  # type: ignore[no-untyped-call]
        while not stop.is_set():
            try:
                for _ in watcher.stream(core.list_node, field_selector=f"metadata.name={name}", timeout_seconds=300):
                    changed.set()
                    if stop.is_set():
                        return
            except Exception as err:  # reconnect after API server restarts and expired resource versions
                log.debug("node watch: %s", err)
                stop.wait(5)

    thread = threading.Thread(target=loop, name=f"watch-node-{name}", daemon=True)
    thread.start()
    return thread
