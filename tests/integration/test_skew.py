"""Version skew with the real operator on the sandbox: fake nodes' kubelets and runtimes change (as kwok would
report an upgrade, through the Node status subresource), and the condition, status.skew, metrics and Events follow;
an unsupported target is refused without touching a managed object, and allowUnsupported lets it through."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import pytest
from kubernetes import client

from cni_operator.cli import main
from cni_operator.decide.snapshot import MANAGED_KINDS
from cni_operator.kube.observe import Observer
from tests.integration.conftest import Networks, OperatorProcess
from tests.waiting import eventually

pytestmark = pytest.mark.cluster


class NodeVersions:
    """Patch fake nodes' nodeInfo through the status subresource; every change is undone after the test."""

    def __init__(self, api_client: Any) -> None:
        self.core: Any = client.CoreV1Api(api_client)
        self.saved: dict[str, dict[str, str]] = {}

    def names(self) -> list[str]:
        return sorted(n.metadata.name for n in self.core.list_node().items)

    def set(self, name: str, **node_info: str) -> None:
        if name not in self.saved:
            info = self.core.read_node_status(name).status.node_info
            self.saved[name] = {
                "kubeletVersion": info.kubelet_version,
                "containerRuntimeVersion": info.container_runtime_version,
            }
        self.core.patch_node_status(name, {"status": {"nodeInfo": node_info}})

    def restore(self) -> None:
        for name, info in self.saved.items():
            self.core.patch_node_status(name, {"status": {"nodeInfo": info}})
        self.saved.clear()


@pytest.fixture
def node_versions(api_client: Any) -> Iterator[NodeVersions]:
    nodes = NodeVersions(api_client)
    try:
        yield nodes
    finally:
        nodes.restore()


def compatible(networks: Networks, name: str) -> dict[str, Any]:
    return networks.condition(name, "Compatible")


def skew_of(networks: Networks, name: str) -> list[dict[str, Any]]:
    return list((networks.get(name).get("status") or {}).get("skew") or [])


def test_node_upgrades_change_condition_status_metrics_and_events(
    networks: Networks,
    node_versions: NodeVersions,
    operator: OperatorProcess,
    sandbox: Any,
    capsys: pytest.CaptureFixture[str],
) -> None:
    name = "skew-nodes"
    networks.create(name)  # flannel v0.28.9: Kubernetes 1.33-1.36, containerd >= 1.6.0
    networks.wait_ready(name)
    assert compatible(networks, name)["reason"] == "Supported"
    assert compatible(networks, name)["status"] == "True"
    assert skew_of(networks, name) == []
    eventually(operator.metrics, lambda t: f'cni_operator_skew_compatible{{clusternetwork="{name}"}} 1.0' in t)

    first, second = node_versions.names()[:2]
    node_versions.set(first, kubeletVersion="v1.32.5")  # four minors behind the API server's 1.36
    started = time.monotonic()
    condition = eventually(
        lambda: compatible(networks, name),
        lambda c: c.get("reason") == "RunningUnsupported",
        timeout=30,
        what="Compatible=False after a kubelet downgrade",
    )
    latency = time.monotonic() - started
    with capsys.disabled():  # capsys captures the CLI's output below; the measurement goes to the log
        print(f"\nkubelet change -> Compatible=False in {latency:.1f} s")
    assert latency < 10, "a node change must be reported within seconds"
    assert condition["status"] == "False"
    assert "flannel v0.28.9 supports Kubernetes 1.33-1.36, not kubelet 1.32" in condition["message"]
    assert "upgrade the kubelets to the API server's 1.36 first" in condition["message"]
    found = {(f["kind"], f["severity"]): f for f in skew_of(networks, name)}
    assert found[("KubeletVersion", "Unsupported")]["nodes"] == [first]
    assert found[("KubeletVersion", "Unsupported")]["release"] == "flannel/v0.28.9"
    assert found[("KubeletSkew", "Warning")]["nodes"] == [first]
    cn = networks.get(name)
    assert cn["status"]["phase"] == "Ready", "a running release that no longer fits keeps running"
    assert networks.condition(name, "Degraded")["status"] == "False"
    warnings = [e for e in networks.events(name) if e.reason == "VersionSkew"]
    assert warnings and warnings[-1].type == "Warning" and "kubelet 1.32" in warnings[-1].message
    text = eventually(
        operator.metrics,
        lambda t: f'cni_operator_skew_compatible{{clusternetwork="{name}"}} 0.0' in t,
        what="skew metrics updated",
    )
    labels = f'clusternetwork="{name}",kind="KubeletVersion",severity="Unsupported"'
    assert f"cni_operator_skew_findings{{{labels}}} 1.0" in text
    assert f'cni_operator_condition{{clusternetwork="{name}",condition="Compatible"}} 0.0' in text

    # the CLI reads the same from the live cluster, and exits 1
    assert main(["skew", "--kubeconfig", str(sandbox.kubeconfig)]) == 1
    output = capsys.readouterr().out
    assert "KubeletVersion" in output and "Compatible=False" in output and first in output

    node_versions.set(second, containerRuntimeVersion="containerd://1.5.9")
    eventually(
        lambda: {f["kind"]: f["nodes"] for f in skew_of(networks, name)},
        lambda kinds: kinds.get("ContainerRuntime") == [second],
        timeout=30,
        what="runtime finding for the second node",
    )

    node_versions.restore()
    started = time.monotonic()
    condition = eventually(
        lambda: compatible(networks, name),
        lambda c: c.get("reason") == "Supported",
        timeout=30,
        what="Compatible=True once the nodes are back",
    )
    print(f"nodes restored -> Compatible=True in {time.monotonic() - started:.1f} s")
    assert condition["status"] == "True" and skew_of(networks, name) == []
    assert any(e.reason == "Compatible" and e.type == "Normal" for e in networks.events(name))
    text = eventually(operator.metrics, lambda t: f'cni_operator_skew_compatible{{clusternetwork="{name}"}} 1.0' in t)
    assert f"cni_operator_skew_findings{{{labels}}} 0.0" in text


def _resource_versions(api_client: Any, owner: str) -> dict[tuple[str, str, str], str]:
    return {
        (obj.kind, obj.namespace, obj.name): obj.resource_version
        for obj in Observer(api_client).managed_objects(owner, MANAGED_KINDS)
    }


def test_unsupported_target_is_refused_untouched_until_allowed(networks: Networks, api_client: Any) -> None:
    name = "skew-refuse"
    networks.create(name)  # flannel v0.28.9 runs
    ready = networks.wait_ready(name)["status"]
    before = _resource_versions(api_client, name)
    assert any(kind == "DaemonSet" for kind, _, _ in before)

    networks.patch_spec(name, {"version": "v0.27.4"})  # Kubernetes 1.31-1.34: not the sandbox's 1.36
    generation = networks.get(name)["metadata"]["generation"]
    degraded = eventually(
        lambda: networks.get(name),
        lambda cn: (
            (cn.get("status") or {}).get("observedGeneration") == generation and cn["status"].get("phase") == "Degraded"
        ),
        what="the unsupported target refused",
    )["status"]
    condition = compatible(networks, name)
    assert (condition["status"], condition["reason"]) == ("False", "TargetUnsupported")
    assert networks.condition(name, "Degraded")["reason"] == "UnsupportedRelease"
    assert (
        "refused flannel/v0.27.4: flannel v0.27.4 supports Kubernetes 1.31-1.34, not the API server's 1.36"
        in (degraded["message"])
    )
    assert "keep flannel v0.28.9: set spec.version back to v0.28.9" in degraded["message"]
    assert "spec.versionPolicy.allowUnsupported: true" in degraded["message"]
    assert [(f["kind"], f["release"]) for f in degraded["skew"]] == [("KubernetesVersion", "flannel/v0.27.4")]
    assert degraded["targetRevision"] == ready["targetRevision"]
    assert {e.reason for e in networks.events(name)} >= {"UnsupportedRelease", "VersionSkew"}
    time.sleep(3)  # a few more reconciles (node heartbeats kick them) must not touch anything either
    assert _resource_versions(api_client, name) == before, "a refused target leaves every managed object untouched"

    networks.patch_spec(name, {"versionPolicy": {"allowUnsupported": True}})
    allowed = eventually(
        lambda: networks.get(name),
        lambda cn: cn["status"].get("phase") == "Ready" and cn["status"]["targetRevision"] != ready["targetRevision"],
        timeout=90,
        what="the allowed release rolled out",
    )["status"]
    condition = compatible(networks, name)
    assert (condition["status"], condition["reason"]) == ("False", "UnsupportedAllowed")
    assert "move to flannel v0.28.9" in condition["message"] or "keep flannel v0.28.9" in condition["message"]
    assert networks.condition(name, "Degraded")["status"] == "False"
    releases = {ds.metadata.labels["cni-operator.dev/release"] for ds in networks.owned_daemonsets(name)}
    assert "v0.27.4" in releases
    assert allowed["revisionHistory"][-1]["version"] == "v0.27.4"
