"""A plugin swap on real nodes, both ways: reference v1.9.1 -> Flannel v0.27.4 (VXLAN between the two node
namespaces) -> reference v1.9.1, driven by the real operator.

Flannel v0.27.4 is the release the Go module proxy can build (hack/realnode/build.sh says why not v0.28.9, and
where its CNI plugin comes from); it lists Kubernetes up to 1.34, so the spec allows an unsupported release, as a
user on 1.36 would have to.

Each node is cordoned, drained through the Eviction API, switched and released: the runtime's loaded config must
be the target's on every node after its move, the Deployment's pods come back with addresses of the new network,
and pods on the two nodes reach each other over it. The drained node's gap is reported, not hidden.
"""

from __future__ import annotations

import subprocess
import time
from typing import Any

import yaml
from kubernetes import client

from tests.integration.conftest import REPO, Networks
from tests.realnode.conftest import (
    BUSYBOX,
    TEST_NAMESPACE,
    NewPods,
    RealCluster,
    delete_test_pods,
    figure,
    pod_ready,
    wait_datapath,
    wait_rolled_out,
)
from tests.waiting import eventually

REPLICAS = 4


def deployment() -> dict[str, Any]:
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "swap-web", "labels": {"app": "realnode-test"}},
        "spec": {
            "replicas": REPLICAS,
            "selector": {"matchLabels": {"app": "swap-web"}},
            "template": {
                "metadata": {"labels": {"app": "swap-web"}},
                "spec": {
                    "nodeSelector": {"type": "real"},
                    "terminationGracePeriodSeconds": 1,
                    "topologySpreadConstraints": [
                        {
                            "maxSkew": 1,
                            "topologyKey": "kubernetes.io/hostname",
                            "whenUnsatisfiable": "ScheduleAnyway",
                            "labelSelector": {"matchLabels": {"app": "swap-web"}},
                        }
                    ],
                    "containers": [
                        {"name": "main", "image": BUSYBOX, "imagePullPolicy": "Never", "command": ["sleep", "3600"]}
                    ],
                },
            },
        },
    }


def web_pods(cluster: RealCluster) -> list[Any]:
    return list(cluster.core.list_namespaced_pod(TEST_NAMESPACE, label_selector="app=swap-web").items)


def all_web_ready(cluster: RealCluster, timeout: float = 120) -> list[Any]:
    return eventually(
        lambda: [p for p in web_pods(cluster) if p.metadata.deletion_timestamp is None],
        lambda pods: len(pods) == REPLICAS and all(pod_ready(p) for p in pods),
        timeout,
        "the Deployment's pods Ready",
    )


def respread(cluster: RealCluster, apps: Any) -> list[Any]:
    """A drain leaves the Deployment's pods on the node that stayed schedulable (a Deployment never rebalances):
    restart it so that its pods spread over both nodes again, then return them."""
    eventually(
        lambda: [cluster.core.read_node(n.name) for n in cluster.nodes],
        lambda nodes: all(
            not n.spec.unschedulable and any(c.type == "Ready" and c.status == "True" for c in n.status.conditions)
            for n in nodes
        ),
        60,
        "both real nodes Ready and schedulable",
    )
    patch = {"spec": {"template": {"metadata": {"annotations": {"restartedAt": str(time.time())}}}}}
    generation = apps.patch_namespaced_deployment("swap-web", TEST_NAMESPACE, patch).metadata.generation
    eventually(
        lambda: apps.read_namespaced_deployment_status("swap-web", TEST_NAMESPACE).status,
        lambda st: (
            st.observed_generation == generation
            and st.updated_replicas == st.ready_replicas == st.replicas == REPLICAS
            and not st.unavailable_replicas
        ),
        120,
        "the Deployment restarted",
    )
    return all_web_ready(cluster)


def cross_node_ping(cluster: RealCluster, pods: list[Any]) -> None:
    by_node: dict[str, Any] = {}
    for pod in pods:
        by_node.setdefault(pod.spec.node_name, pod)
    assert len(by_node) == 2, f"the Deployment's pods must run on both real nodes: {sorted(by_node)}"
    first, second = by_node.values()
    out = cluster.exec(first.metadata.name, ["ping", "-c", "3", "-W", "2", second.status.pod_ip])
    assert "3 packets received" in out, out


def in_node_cidrs(cluster: RealCluster, pods: list[Any]) -> None:
    cidrs = {n.name: n.pod_cidr.rsplit(".", 1)[0] for n in cluster.nodes}
    for pod in pods:
        assert pod.status.pod_ip.rsplit(".", 1)[0] == cidrs[pod.spec.node_name], (pod.metadata.name, pod.status.pod_ip)


def swap(
    cluster: RealCluster, networks: Networks, spec: dict[str, Any], loaded: str, plugins: list[str]
) -> dict[str, Any]:
    """Patch the spec, and watch every node move: per node, when it was cordoned, when the runtime loaded the
    target's config, when it was released; returns the figures."""
    nodes = {n.name: n for n in cluster.nodes}
    started = time.monotonic()
    before = {name: cluster.revision(name) for name in nodes}
    # a merge patch: the other plugin's settings must go (null), the target's come in
    old_settings = networks.get("default")["spec"].get("settings") or {}
    patch = {**spec, "settings": {**dict.fromkeys(old_settings), **spec.get("settings", {})}}
    networks.patch_spec("default", patch)
    seen: dict[str, dict[str, float]] = {name: {} for name in nodes}
    deadline = started + 300
    while time.monotonic() < deadline:
        for name, view in nodes.items():
            node = cluster.core.read_node(name)
            t = time.monotonic() - started
            marks = seen[name]
            if node.spec.unschedulable and "cordoned" not in marks:
                marks["cordoned"] = t
            if "loaded" not in marks and cluster.runtime(view).get("loaded_config") == loaded:
                assert cluster.runtime(view)["loaded_plugins"] == plugins
                marks["loaded"] = t
            moved = cluster.revision(name) != before[name]
            if "loaded" in marks and "released" not in marks and not node.spec.unschedulable and moved:
                marks["released"] = t
        cn = networks.get("default")
        status = cn.get("status") or {}
        if (
            status.get("phase") == "Ready"
            and status.get("observedGeneration") == cn["metadata"]["generation"]
            and all("released" in m for m in seen.values())
        ):
            break
        assert status.get("phase") != "Failed", status
        if status.get("observedGeneration") == cn["metadata"]["generation"]:
            assert "cannot be rolled out" not in status.get("message", ""), status
        time.sleep(0.3)
    else:
        raise AssertionError(f"the swap did not finish in 300s: {seen}; status {networks.get('default').get('status')}")
    return {"took": time.monotonic() - started, "nodes": seen}


def test_swap_reference_to_flannel_and_back_on_real_nodes(real_cluster: RealCluster, networks: Networks) -> None:
    cluster = real_cluster
    apps = client.AppsV1Api(cluster.api_client)
    networks.create("default", example="reference", version="v1.9.1")
    wait_rolled_out(networks, "default")
    wait_datapath(cluster, cluster.revision(cluster.nodes[0].name))
    apps.create_namespaced_deployment(TEST_NAMESPACE, deployment())
    try:
        all_web_ready(cluster)
        cross_node_ping(cluster, respread(cluster, apps))

        flannel = yaml.safe_load((REPO / "examples" / "flannel.yaml").read_text())["spec"]
        flannel.update(version="v0.27.4", versionPolicy={"allowUnsupported": True})
        with NewPods(cluster, every=3.0, timeout=30.0) as to_flannel_pods:
            to_flannel = swap(cluster, networks, flannel, "cbr0", ["flannel", "portmap"])
        pods = all_web_ready(cluster)
        in_node_cidrs(cluster, pods)
        for view in cluster.nodes:
            vxlan = subprocess.run(
                ["ip", "netns", "exec", view.netns, "ip", "-d", "link", "show", "flannel.1"],
                capture_output=True,
                text=True,
                check=False,
            ).stdout
            assert "vxlan id 1" in vxlan, vxlan
        cross_node_ping(cluster, respread(cluster, apps))  # over the VXLAN overlay now

        reference = yaml.safe_load((REPO / "examples" / "reference.yaml").read_text())["spec"]
        reference.update(version="v1.9.1", versionPolicy={"allowUnsupported": False}, settings=reference["settings"])
        with NewPods(cluster, every=3.0, timeout=30.0) as to_reference_pods:
            to_reference = swap(cluster, networks, reference, "cni-operator-bridge", ["bridge", "portmap", "bandwidth"])
        pods = all_web_ready(cluster)
        in_node_cidrs(cluster, pods)
        cross_node_ping(cluster, respread(cluster, apps))
        # What Flannel leaves in the node after it is gone: its VXLAN device and its routes through it (flanneld
        # removes neither on exit; the operator does not either). Reported, not hidden.
        leftover = {
            view.name: subprocess.run(
                ["ip", "netns", "exec", view.netns, "ip", "-o", "route", "show", "dev", "flannel.1"],
                capture_output=True,
                text=True,
                check=False,
            ).stdout.strip()
            for view in cluster.nodes
        }
    finally:
        apps.delete_namespaced_deployment("swap-web", TEST_NAMESPACE)
        delete_test_pods(cluster.core, wait=False)
        # put the nodes' own network back for whatever runs next: no flannel.1, the sandbox's routes
        for view in cluster.nodes:
            inside = ["ip", "netns", "exec", view.netns]
            subprocess.run([*inside, "ip", "link", "del", "flannel.1"], capture_output=True, check=False)
            for other in cluster.nodes:
                if other is not view:
                    route = ["ip", "route", "replace", other.pod_cidr, "via", other.address]
                    subprocess.run([*inside, *route], capture_output=True, check=False)

    for name, figures, attempts in (
        ("reference -> flannel v0.27.4", to_flannel, to_flannel_pods.attempts),
        ("flannel -> reference v1.9.1", to_reference, to_reference_pods.attempts),
    ):
        per_node = "; ".join(
            f"{node}: cordoned {m.get('cordoned', 0):.1f}s, target config loaded {m['loaded']:.1f}s, released "
            f"{m['released']:.1f}s (cordoned and drained for {m['released'] - m.get('cordoned', 0):.1f}s)"
            for node, m in figures["nodes"].items()
        )
        failed = [a for a in attempts if not a.ip]
        figure(
            f"swap {name} on 2 real nodes: {figures['took']:.1f}s; {per_node}; new pods by nodeName: "
            f"{len(failed)} of {len(attempts)} without an address {[(a.node, a.error[:120]) for a in failed]}"
        )
    figure(f"after flannel -> reference, flannel's routes still in the nodes: {leftover}")
