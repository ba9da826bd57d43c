"""Fixtures for tests against the sandbox's API server."""

from __future__ import annotations

import os
import signal
import subprocess
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from kubernetes import client

from cni_operator.api.vocabulary import OWNER
from cni_operator.kube.apply import Applier
from cni_operator.operator_main import command as operator_command
from tests.waiting import eventually

REPO = Path(__file__).resolve().parents[2]
GROUP, VERSION, PLURAL = "cni-operator.dev", "v1alpha1", "clusternetworks"


def wait_established(api_client: Any, name: str, timeout: float = 30.0) -> None:
    ext = client.ApiextensionsV1Api(api_client)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        conditions = ext.read_custom_resource_definition(name).status.conditions or []
        if any(c.type == "Established" and c.status == "True" for c in conditions):
            return
        time.sleep(0.2)
    pytest.fail(f"CRD {name} not Established within {timeout}s")


@pytest.fixture(scope="session")
def applier(api_client: Any) -> Applier:
    return Applier(api_client)


@pytest.fixture(scope="session")
def clusternetwork_crd(api_client: Any, applier: Applier) -> dict[str, Any]:
    """The committed CRD, installed in the sandbox."""
    crd: dict[str, Any] = yaml.safe_load((REPO / "crds" / "clusternetwork.yaml").read_text())
    applier.apply(crd)
    wait_established(api_client, crd["metadata"]["name"])
    return crd


class OperatorProcess:
    """`cni-operator run` as a real process against the sandbox, so tests can kill it and start it again."""

    def __init__(
        self, kubeconfig: Path, log_dir: Path, lease_namespace: str = "kube-system", env: dict[str, str] | None = None
    ) -> None:
        self.kubeconfig = kubeconfig
        self.env = {**os.environ, **(env or {})}
        self.log_dir = log_dir
        self.lease_namespace = lease_namespace
        self.procs: list[subprocess.Popen[bytes]] = []
        self.metrics_port = 0

    def start(self) -> subprocess.Popen[bytes]:
        from cni_operator.sandbox.cluster import free_port

        self.metrics_port = free_port()
        log = (self.log_dir / f"operator-{len(self.procs)}.log").open("wb")
        proc = subprocess.Popen(
            operator_command(self.kubeconfig, self.metrics_port, self.lease_namespace),
            stdout=log,
            stderr=subprocess.STDOUT,
            env=self.env,
        )
        self.procs.append(proc)
        return proc

    def metrics(self) -> str:
        """The Prometheus text the operator serves now."""
        with urllib.request.urlopen(f"http://127.0.0.1:{self.metrics_port}/metrics", timeout=5) as response:
            return str(response.read().decode())

    def kill(self) -> None:
        """SIGKILL: no clean-up, no lease release, as a crash or an OOM kill would leave things."""
        for proc in self.procs:
            if proc.poll() is None:
                proc.send_signal(signal.SIGKILL)
                proc.wait()

    def stop(self) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
                try:
                    proc.wait(timeout=20)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()

    def logs(self) -> str:
        return "\n".join(p.read_text(errors="replace") for p in sorted(self.log_dir.glob("operator-*.log")))


@pytest.fixture
def operator(sandbox: Any, clusternetwork_crd: Any, tmp_path: Path) -> Iterator[OperatorProcess]:
    """A running operator; stopped after the test (its logs are printed when the test fails)."""
    process = OperatorProcess(sandbox.kubeconfig, tmp_path)
    process.start()
    try:
        yield process
    finally:
        process.stop()
        print(process.logs()[-20000:])


class Networks:
    """Create ClusterNetworks and read them back; deletes what it created (with nodeCleanup Remove) afterwards."""

    def __init__(self, api_client: Any) -> None:
        self.custom: Any = client.CustomObjectsApi(api_client)
        self.core: Any = client.CoreV1Api(api_client)
        self.apps: Any = client.AppsV1Api(api_client)
        self.rbac: Any = client.RbacAuthorizationV1Api(api_client)
        self.created: list[str] = []

    def create(self, name: str, example: str = "flannel", **spec_changes: Any) -> dict[str, Any]:
        body = yaml.safe_load((REPO / "examples" / f"{example}.yaml").read_text())
        body["metadata"] = {"name": name}
        body["spec"].update(spec_changes)
        self.created.append(name)
        return dict(self.custom.create_cluster_custom_object(GROUP, VERSION, PLURAL, body))

    def get(self, name: str) -> dict[str, Any]:
        return dict(self.custom.get_cluster_custom_object(GROUP, VERSION, PLURAL, name))

    def patch_spec(self, name: str, spec: dict[str, Any]) -> None:
        self.custom.patch_cluster_custom_object(GROUP, VERSION, PLURAL, name, {"spec": spec})

    def condition(self, name: str, kind: str) -> dict[str, Any]:
        status = self.get(name).get("status") or {}
        return next((c for c in status.get("conditions", []) if c["type"] == kind), {})

    def wait_ready(self, name: str, timeout: float = 90.0) -> dict[str, Any]:
        return eventually(
            lambda: self.get(name),
            lambda cn: (
                (cn.get("status") or {}).get("phase") == "Ready"
                and cn["status"].get("observedGeneration") == cn["metadata"]["generation"]
            ),
            timeout,
            f"ClusterNetwork {name} Ready",
        )

    def owned_daemonsets(self, name: str) -> list[Any]:
        return list(self.apps.list_daemon_set_for_all_namespaces(label_selector=f"{OWNER}={name}").items)

    def events(self, name: str) -> list[Any]:
        return [
            e
            for e in self.core.list_namespaced_event("default").items
            if e.involved_object.kind == "ClusterNetwork" and e.involved_object.name == name
        ]

    def delete(self, name: str, wait: bool = True) -> None:
        try:
            self.custom.delete_cluster_custom_object(GROUP, VERSION, PLURAL, name)
        except client.ApiException as err:
            if err.status == 404:
                return
            raise
        if wait:
            eventually(lambda: self._exists(name), lambda exists: not exists, 60, f"{name} deleted")

    def _exists(self, name: str) -> bool:
        try:
            self.get(name)
        except client.ApiException as err:
            if err.status == 404:
                return False
            raise
        return True


@pytest.fixture
def networks(api_client: Any, operator: OperatorProcess) -> Iterator[Networks]:
    nets = Networks(api_client)
    yield nets
    for name in nets.created:
        if nets._exists(name):
            nets.patch_spec(name, {"nodeCleanup": "Remove"})
            nets.delete(name)
