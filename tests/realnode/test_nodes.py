"""The real nodes themselves: what `sandbox status` shows, that kwok leaves them alone, that each has its own
network namespace, conf dir and runtime, and that pods on the two nodes reach each other across the bridge."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from typing import Any

from tests.realnode.conftest import (
    BUSYBOX,
    RealCluster,
    delete_test_pods,
    figure,
    pod_manifest,
    pod_ready,
)
from tests.waiting import eventually


def test_real_nodes_are_real_kubelets_that_kwok_leaves_alone(real_cluster: RealCluster) -> None:
    for view in real_cluster.nodes:
        node = real_cluster.core.read_node(view.name)
        info = node.status.node_info
        assert info.kubelet_version == "v1.36.3"
        assert info.container_runtime_version.startswith("containerd://1.")
        assert "kwok.x-k8s.io/node" not in (node.metadata.annotations or {})
        assert [a.address for a in node.status.addresses if a.type == "InternalIP"] == [view.address]
        assert node.spec.pod_cidr == view.pod_cidr
    # each node: its own network namespace with its own address; the host sees none of the nodes' links
    for view in real_cluster.nodes:
        inside = subprocess.run(
            ["ip", "netns", "exec", view.netns, "ip", "-o", "-4", "addr", "show", "eth0"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout
        assert f"{view.address}/24" in inside


def test_sandbox_status_lists_real_nodes_with_conf_dir_and_loaded_config(real_cluster: RealCluster) -> None:
    base = [sys.executable, "-m", "cni_operator.cli", "sandbox", "status", "--state-dir", str(real_cluster.box.dir)]
    table = subprocess.run(base, capture_output=True, text=True, check=False, env={**os.environ, "COLUMNS": "250"})
    assert table.returncode == 0, table.stdout + table.stderr
    assert "real nodes" in table.stdout and all(v.name in table.stdout for v in real_cluster.nodes)
    rows = json.loads(subprocess.run([*base, "--real-nodes-json"], capture_output=True, text=True, check=True).stdout)
    assert [r["name"] for r in rows] == [v.name for v in real_cluster.nodes]
    for row, view in zip(rows, real_cluster.nodes, strict=True):
        assert row["conf_dir"] == str(view.conf_dir) and row["address"] == view.address
        assert row["processes"] == {"holder": True, "containerd": True, "kubelet": True}
        assert 50 * 2**20 < row["rss"] < 600 * 2**20, row["rss"]
        # what the runtime loaded: nothing yet on a fresh node (no ClusterNetwork), and it says why
        assert row["loaded_config"] in (None, "cni-operator-bridge"), row
        if row["loaded_config"] is None:
            assert not row["network_ready"] and row["network_message"], row
    figure(
        "memory per real node (containerd + kubelet, idle, no pods): "
        + ", ".join(f"{r['name']} {r['rss'] / 2**20:.0f} MiB" for r in rows)
    )


def test_pods_on_two_real_nodes_reach_each_other(real_cluster: RealCluster) -> None:
    """With a plain bridge config written by hand into each node's conf dir (no operator): the runtime loads it,
    pods get addresses from their node's pod CIDR, and reach the other node's pod through the nodes' routes."""
    core: Any = real_cluster.core
    for view in real_cluster.nodes:
        conflist = (
            '{"cniVersion":"1.0.0","name":"sandbox-test","plugins":[{"type":"bridge","bridge":"cni0","isGateway":true,'
            '"ipMasq":true,"ipam":{"type":"host-local","ranges":[[{"subnet":"' + view.pod_cidr + '"}]],'
            '"routes":[{"dst":"0.0.0.0/0"}]}}]}'
        )
        for binary in ("bridge", "host-local", "loopback"):
            target = view.bin_dir / binary
            if not target.exists():
                target.write_bytes((real_cluster.tools / "cni" / "v1.9.1" / binary).read_bytes())
                target.chmod(0o755)
        tmp = view.conf_dir / ".sandbox-test.tmp"
        tmp.write_text(conflist)
        tmp.rename(view.conf_dir / "99-sandbox-test.conflist")
    try:
        started = time.monotonic()
        for view in real_cluster.nodes:
            core.create_namespaced_pod(
                "default", pod_manifest(f"ping-{view.name}", view.name, BUSYBOX, ["sleep", "600"])
            )
        pods = eventually(
            lambda: [core.read_namespaced_pod(f"ping-{v.name}", "default") for v in real_cluster.nodes],
            lambda items: all(pod_ready(p) for p in items),
            60,
            "ping pods Ready",
        )
        figure(f"first pods on fresh real nodes (one per node) Ready in {time.monotonic() - started:.1f}s")
        ips = [p.status.pod_ip for p in pods]
        for pod, view in zip(pods, real_cluster.nodes, strict=True):
            assert pod.status.pod_ip.rsplit(".", 1)[0] == view.pod_cidr.rsplit(".", 1)[0]
        out = real_cluster.exec(pods[0].metadata.name, ["ping", "-c", "3", "-W", "2", ips[1]])
        assert "3 packets received" in out, out
    finally:
        delete_test_pods(core)
        for view in real_cluster.nodes:
            (view.conf_dir / "99-sandbox-test.conflist").unlink(missing_ok=True)
