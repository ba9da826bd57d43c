"""Kubernetes Events on the ClusterNetwork, posted from the reconcile worker (outside any kopf handler)."""

from __future__ import annotations

import datetime
import logging
import uuid
from typing import Any

from kubernetes import client
from kubernetes.client import ApiClient, ApiException

log = logging.getLogger(__name__)
REPORTER = "cni-operator.dev/operator"
EVENT_NAMESPACE = "default"  # cluster-scoped objects' events live in "default", as kubectl describe expects


def post(api_client: ApiClient, obj: dict[str, Any], event_type: str, reason: str, message: str) -> None:
    """One core/v1 Event about `obj`; a failure to post is logged, never fatal."""
    meta = obj["metadata"]
    stamp = datetime.datetime.now(datetime.UTC)
    body = {
        "metadata": {"name": f"{meta['name']}.{uuid.uuid4().hex[:12]}", "namespace": EVENT_NAMESPACE},
        "involvedObject": {
            "apiVersion": obj["apiVersion"],
            "kind": obj["kind"],
            "name": meta["name"],
            "uid": meta.get("uid"),
            "resourceVersion": meta.get("resourceVersion"),
        },
        "type": event_type,
        "reason": reason,
        "message": message[:1024],
        "firstTimestamp": stamp,
        "lastTimestamp": stamp,
        "count": 1,
        "source": {"component": "cni-operator"},
        "reportingComponent": REPORTER,
        "reportingInstance": "cni-operator",
    }
    try:
        core: Any = client.CoreV1Api(api_client)
        core.create_namespaced_event(EVENT_NAMESPACE, body)
    except ApiException:
        log.warning("could not post event %s/%s", reason, message, exc_info=True)
