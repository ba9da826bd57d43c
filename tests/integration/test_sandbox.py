"""The sandbox is a real Kubernetes control plane: scheduler, controllers, kwok's kubelets and CRDs all work."""

from __future__ import annotations

import ipaddress
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml
from kubernetes import client

from cni_operator.sandbox import Sandbox
from cni_operator.sandbox.binaries import BUILD_SCRIPT
from tests.waiting import eventually

pytestmark = pytest.mark.cluster


def test_api_server_reports_the_pinned_release(api_client: Any) -> None:
    pinned = next(
        line.split()[1]
        for line in (BUILD_SCRIPT.parent / "go.mod").read_text().splitlines()
        if line.strip().startswith("k8s.io/kubernetes v")
    )
    version = client.VersionApi(api_client).get_code()
    assert version.git_version == pinned
    assert version.minor == pinned.split(".")[1]


def test_fake_nodes_are_ready_with_realistic_node_info(sandbox: Sandbox, api_client: Any) -> None:
    nodes = client.CoreV1Api(api_client).list_node().items
    assert len(nodes) == len(sandbox.config.nodes)
    cidrs = set()
    for node in nodes:
        ready = [c for c in node.status.conditions if c.type == "Ready"]
        assert ready and ready[0].status == "True", node.metadata.name
        info = node.status.node_info
        assert info.kubelet_version.startswith("v1.")
        assert info.container_runtime_version.startswith("containerd://")
        assert (info.operating_system, info.architecture) == ("linux", "amd64")
        cidrs.add(node.spec.pod_cidr)
    assert len(cidrs) == len(nodes), "every node has its own pod CIDR"


def test_daemonset_gets_one_running_ready_pod_per_node(api_client: Any) -> None:
    core, apps = client.CoreV1Api(api_client), client.AppsV1Api(api_client)
    namespace = f"ds-{uuid.uuid4().hex[:6]}"
    core.create_namespace({"metadata": {"name": namespace}})
    labels = {"app": "probe"}
    apps.create_namespaced_daemon_set(
        namespace,
        {
            "metadata": {"name": "probe"},
            "spec": {
                "selector": {"matchLabels": labels},
                "template": {
                    "metadata": {"labels": labels},
                    "spec": {"containers": [{"name": "probe", "image": "registry.k8s.io/pause:3.10"}]},
                },
            },
        },
    )
    try:
        nodes = {n.metadata.name: n for n in core.list_node().items}
        pods = eventually(
            lambda: core.list_namespaced_pod(namespace, label_selector="app=probe").items,
            lambda pods: (
                len(pods) == len(nodes)
                and all(
                    p.status.phase == "Running"
                    and any(c.type == "Ready" and c.status == "True" for c in p.status.conditions or [])
                    for p in pods
                )
            ),
        )
        assert {p.spec.node_name for p in pods} == set(nodes), "one pod on every node"
        for pod in pods:
            scheduled = [c for c in pod.status.conditions if c.type == "PodScheduled"]
            assert scheduled and scheduled[0].status == "True", "kube-scheduler bound the pod"
            node_cidr = ipaddress.ip_network(nodes[pod.spec.node_name].spec.pod_cidr)
            assert ipaddress.ip_address(pod.status.pod_ip) in node_cidr
        ds = eventually(
            lambda: apps.read_namespaced_daemon_set("probe", namespace),
            lambda ds: ds.status.number_ready == len(nodes),
        )
        assert ds.status.desired_number_scheduled == len(nodes)
    finally:
        core.delete_namespace(namespace)


def test_custom_resource_definition_is_served(api_client: Any) -> None:
    ext = client.ApiextensionsV1Api(api_client)
    custom = client.CustomObjectsApi(api_client)
    group = f"probe{uuid.uuid4().hex[:6]}.example.com"
    ext.create_custom_resource_definition(
        {
            "metadata": {"name": f"widgets.{group}"},
            "spec": {
                "group": group,
                "scope": "Cluster",
                "names": {"plural": "widgets", "singular": "widget", "kind": "Widget"},
                "versions": [
                    {
                        "name": "v1",
                        "served": True,
                        "storage": True,
                        "schema": {
                            "openAPIV3Schema": {
                                "type": "object",
                                "properties": {
                                    "spec": {
                                        "type": "object",
                                        "properties": {"size": {"type": "integer", "minimum": 1}},
                                    }
                                },
                            }
                        },
                    }
                ],
            },
        }
    )
    try:
        eventually(
            lambda: ext.read_custom_resource_definition(f"widgets.{group}").status.conditions or [],
            lambda conds: any(c.type == "Established" and c.status == "True" for c in conds),
        )
        body = {"apiVersion": f"{group}/v1", "kind": "Widget", "metadata": {"name": "w"}, "spec": {"size": 3}}
        created = eventually(
            lambda: _try(lambda: custom.create_cluster_custom_object(group, "v1", "widgets", body)),
            lambda r: r is not None,
        )
        assert created["spec"] == {"size": 3}
        with pytest.raises(client.ApiException) as rejected:
            custom.create_cluster_custom_object(
                group, "v1", "widgets", {**body, "metadata": {"name": "bad"}, "spec": {"size": 0}}
            )
        assert rejected.value.status == 422, "the schema is enforced"
        assert custom.get_cluster_custom_object(group, "v1", "widgets", "w")["spec"]["size"] == 3
    finally:
        ext.delete_custom_resource_definition(f"widgets.{group}")


def _try(call: Callable[[], Any]) -> Any:
    try:
        return call()
    except client.ApiException as err:
        if err.status == 404:  # the new API group is not routed yet
            return None
        raise


def test_kubeconfig_is_a_working_admin_config(sandbox: Sandbox) -> None:
    config = yaml.safe_load(Path(sandbox.kubeconfig).read_text())
    assert config["clusters"][0]["cluster"]["server"].startswith("https://127.0.0.1:")
    for key in ("client-certificate", "client-key"):
        assert Path(config["users"][0]["user"][key]).is_file()
