"""Fake nodes for the sandbox: real v1.Node objects whose kubelet kwok simulates."""

from __future__ import annotations

import ipaddress
import itertools
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from cni_operator.api.vocabulary import SANDBOX_NODE
from cni_operator.sandbox.errors import SandboxError

SANDBOX_LABEL = SANDBOX_NODE
KWOK_ANNOTATION = "kwok.x-k8s.io/node"
DEFAULT_RUNTIME = "containerd://2.1.4"


@dataclass(frozen=True)
class FakeNode:
    """One simulated node. `kubelet_version` None means "the API server's own version", as after a fresh install."""

    name: str
    pod_cidr: str
    kubelet_version: str | None = None
    container_runtime_version: str = DEFAULT_RUNTIME
    operating_system: str = "linux"
    architecture: str = "amd64"
    kernel_version: str = "6.12.48+deb13-amd64"
    os_image: str = "Debian GNU/Linux 13 (trixie)"
    labels: dict[str, str] = field(default_factory=dict)

    def manifest(self, server_version: str = "v0.0.0") -> dict[str, Any]:
        """The Node as created: nodes may carry status on create, and the kwok stages keep this nodeInfo."""
        return {
            "apiVersion": "v1",
            "kind": "Node",
            "metadata": {
                "name": self.name,
                "annotations": {KWOK_ANNOTATION: "fake", "node.alpha.kubernetes.io/ttl": "0"},
                "labels": {
                    "kubernetes.io/hostname": self.name,
                    "kubernetes.io/os": self.operating_system,
                    "kubernetes.io/arch": self.architecture,
                    "type": "kwok",
                    SANDBOX_LABEL: "true",
                    **self.labels,
                },
            },
            "spec": {"podCIDR": self.pod_cidr, "podCIDRs": [self.pod_cidr]},
            "status": {
                "nodeInfo": {
                    "architecture": self.architecture,
                    "bootID": "",
                    "containerRuntimeVersion": self.container_runtime_version,
                    "kernelVersion": self.kernel_version,
                    "kubeProxyVersion": "",
                    "kubeletVersion": self.kubelet_version or server_version,
                    "machineID": "",
                    "operatingSystem": self.operating_system,
                    "osImage": self.os_image,
                    "systemUUID": "",
                },
            },
        }


def node_pod_cidrs(cluster_cidr: str, node_mask: int) -> Iterator[str]:
    """Per-node pod CIDRs carved from the cluster's, in order, as kube-controller-manager's allocator would."""
    network = ipaddress.ip_network(cluster_cidr)
    if node_mask < network.prefixlen:
        raise SandboxError(f"node CIDR mask /{node_mask} is wider than the cluster CIDR {cluster_cidr}")
    return (str(subnet) for subnet in network.subnets(new_prefix=node_mask))


def fake_nodes(
    count: int,
    *,
    prefix: str = "sandbox-node",
    cluster_cidr: str = "10.244.0.0/16",
    node_mask: int = 24,
    **overrides: Any,
) -> list[FakeNode]:
    """`count` nodes named `<prefix>-000`, ... with consecutive pod CIDRs."""
    capacity = 2 ** (node_mask - ipaddress.ip_network(cluster_cidr).prefixlen)
    if count > capacity:
        raise SandboxError(
            f"{count} nodes do not fit {cluster_cidr} with a /{node_mask} per node ({capacity} fit): "
            "pass a larger --pod-cidr or a longer --node-cidr-mask"
        )
    width = max(3, len(str(count - 1)))
    cidrs = node_pod_cidrs(cluster_cidr, node_mask)
    return [
        FakeNode(name=f"{prefix}-{i:0{width}d}", pod_cidr=cidr, **overrides)
        for i, cidr in zip(range(count), itertools.islice(cidrs, count), strict=True)
    ]
