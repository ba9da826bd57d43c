"""Fixtures for tests against the sandbox's API server."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from kubernetes import client

from cni_operator.kube.apply import Applier
from cni_operator.operator_main import command as operator_command

REPO = Path(__file__).resolve().parents[2]


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
