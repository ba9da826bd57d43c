"""Leader election on a coordination.k8s.io Lease, so two operator replicas never act at once.

The holder renews every `duration / 3`; another replica takes over only once a lease has gone unrenewed for
`duration`. Losing the lease stops the operator (its pod restarts and queues for leadership again).
"""

from __future__ import annotations

import datetime
import logging
import threading
from typing import Any

from kubernetes import client
from kubernetes.client import ApiClient, ApiException

log = logging.getLogger(__name__)


def _now() -> datetime.datetime:
    return datetime.datetime.now(datetime.UTC)


class LeaseLock:
    def __init__(
        self, api_client: ApiClient, identity: str, *, namespace: str, name: str = "cni-operator", duration: int = 15
    ) -> None:
        self.api: Any = client.CoordinationV1Api(api_client)
        self.identity = identity
        self.namespace = namespace
        self.name = name
        self.duration = duration
        self.lost = threading.Event()

    def _spec(self, acquired: datetime.datetime | None, transitions: int) -> dict[str, Any]:
        stamp = _now().isoformat(timespec="microseconds").replace("+00:00", "Z")
        return {
            "holderIdentity": self.identity,
            "leaseDurationSeconds": self.duration,
            "acquireTime": (acquired.isoformat(timespec="microseconds").replace("+00:00", "Z") if acquired else stamp),
            "renewTime": stamp,
            "leaseTransitions": transitions,
        }

    def try_acquire(self) -> bool:
        """One attempt to take or renew the lease; True when we hold it afterwards."""
        try:
            lease = self.api.read_namespaced_lease(self.name, self.namespace)
        except ApiException as err:
            if err.status != 404:
                raise
            body = {"metadata": {"name": self.name, "namespace": self.namespace}, "spec": self._spec(None, 0)}
            try:
                self.api.create_namespaced_lease(self.namespace, body)
            except ApiException as create_err:
                if create_err.status == 409:  # another replica was faster
                    return False
                raise
            return True
        spec = lease.spec
        holder = spec.holder_identity
        renewed = spec.renew_time or spec.acquire_time
        expired = renewed is None or _now() - renewed > datetime.timedelta(seconds=spec.lease_duration_seconds or 0)
        if holder not in (None, "", self.identity) and not expired:
            return False
        transitions = (spec.lease_transitions or 0) + (0 if holder == self.identity else 1)
        acquired = spec.acquire_time if holder == self.identity else None
        body = {
            "metadata": {"resourceVersion": lease.metadata.resource_version},
            "spec": self._spec(acquired, transitions),
        }
        try:
            self.api.patch_namespaced_lease(self.name, self.namespace, body)
        except ApiException as err:
            if err.status == 409:  # changed under us: someone else renewed or took it
                return False
            raise
        return True

    def acquire(self, stop: threading.Event) -> bool:
        """Block until we hold the lease (True) or `stop` is set (False)."""
        while not stop.is_set():
            if self.try_acquire():
                log.info("became leader (lease %s/%s as %s)", self.namespace, self.name, self.identity)
                return True
            stop.wait(self.duration / 3)
        return False

    def keep_renewing(self, stop: threading.Event) -> None:
        """Renew until `stop`; on failure set `lost` (the caller stops the operator)."""
        while not stop.wait(self.duration / 3):
            try:
                if self.try_acquire():
                    continue
            except Exception:  # the API server is unreachable: we can no longer prove leadership
                log.exception("renewing the lease failed")
            log.error("lost the lease %s/%s; stopping", self.namespace, self.name)
            self.lost.set()
            return

    def release(self) -> None:
        """Hand the lease over at once on a clean shutdown."""
        try:
            lease = self.api.read_namespaced_lease(self.name, self.namespace)
            if lease.spec.holder_identity == self.identity:
                self.api.patch_namespaced_lease(self.name, self.namespace, {"spec": {"holderIdentity": None}})
        except ApiException:
            log.warning("could not release the lease", exc_info=True)
