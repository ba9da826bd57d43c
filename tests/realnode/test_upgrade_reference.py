"""The reference plugins v1.8.0 -> v1.9.1 on real nodes, driven by the real operator, with the disruption probe.

The binaries are the containernetworking/plugins releases built from their Go module (hack/realnode/build.sh),
shipped to the nodes in the plugins image the catalog names and installed by the agent's init container; the
runtime is a real containerd, the pods real pods with veths on a real bridge.
"""

from __future__ import annotations

import time
from pathlib import Path

from tests.integration.conftest import Networks
from tests.realnode.conftest import (
    NewPods,
    Probe,
    RealCluster,
    delete_test_pods,
    figure,
    host_agent_check,
    wait_datapath,
    wait_rolled_out,
)
from tests.waiting import eventually

REFERENCE_BINARIES = ["bridge", "host-local", "loopback", "portmap", "bandwidth", "tuning"]


def installed(cluster: RealCluster, version: str) -> bool:
    want = {k: v for k, v in cluster.release_binaries(version).items() if k in REFERENCE_BINARIES}
    return all({k: v for k, v in n.binaries().items() if k in REFERENCE_BINARIES} == want for n in cluster.nodes)


def test_reference_upgrade_on_real_nodes(real_cluster: RealCluster, networks: Networks, tmp_path: Path) -> None:
    cluster = real_cluster
    v180, v191 = cluster.release_binaries("v1.8.0"), cluster.release_binaries("v1.9.1")
    assert v180["bandwidth"] != v191["bandwidth"], "the two releases' builds must differ for this test to mean much"

    # -- v1.8.0 on every node --------------------------------------------------------------------------------------
    started = time.monotonic()
    networks.create("default", example="reference", version="v1.8.0")
    cn = wait_rolled_out(networks, "default")
    old_revision = cn["status"]["currentRevision"] or cluster.revision(cluster.nodes[0].name)
    reports = wait_datapath(cluster, old_revision)
    figure(f"reference v1.8.0 installed on 2 real nodes + 1 kwok node in {time.monotonic() - started:.1f}s")
    assert installed(cluster, "v1.8.0"), "the nodes' /opt/cni/bin must hold the v1.8.0 build"
    for node in cluster.nodes:
        runtime = cluster.runtime(node)
        assert runtime["network_ready"], runtime
        assert runtime["loaded_config"] == "cni-operator-bridge", runtime
        assert runtime["loaded_plugins"] == ["bridge", "portmap", "bandwidth"], runtime
        # The catalog's skipCheck for v1.8.0 is what lets the gate pass: the agent says so ...
        message = reports[node.name]["datapath"]["message"]
        assert "CHECK not called for bandwidth" in message, message
        # ... and these very binaries do panic on CHECK without it (containernetworking/plugins#1221).
        plain = host_agent_check(node, tmp_path)
        assert (plain["passed"], plain["reason"]) == (False, "CheckFailed"), plain
        assert "bandwidth" in plain["message"] and "nil pointer" in plain["message"], plain
        assert host_agent_check(node, tmp_path, skip="bandwidth")["passed"]

    # -- the probe, then the upgrade -------------------------------------------------------------------------------
    probe = Probe(cluster)
    probe.start()
    time.sleep(2)
    with NewPods(cluster) as new_pods:
        time.sleep(3)
        upgrade_started = time.monotonic()
        networks.patch_spec("default", {"version": "v1.9.1"})
        cn = eventually(
            lambda: networks.get("default"),
            lambda cn: (
                cn["metadata"]["generation"] == (cn.get("status") or {}).get("observedGeneration")
                and (cn.get("status") or {}).get("phase") == "Ready"
                and cn["spec"]["version"] == "v1.9.1"
            ),
            180,
            "the upgrade to v1.9.1 rolled out",
        )
        new_revision = cluster.revision(cluster.nodes[0].name)
        assert new_revision != old_revision
        reports = wait_datapath(cluster, new_revision)
        upgrade_took = time.monotonic() - upgrade_started
        time.sleep(4)
    figures = probe.stop()
    delete_test_pods(cluster.core, wait=False)

    # -- what the nodes run now ------------------------------------------------------------------------------------
    assert installed(cluster, "v1.9.1"), {n.name: n.binaries() for n in cluster.nodes}
    for node in cluster.nodes:
        assert cluster.revision(node.name) == new_revision
        runtime = cluster.runtime(node)
        assert runtime["loaded_config"] == "cni-operator-bridge" and runtime["network_ready"], runtime
        # v1.9.1 has no skipCheck: the gate ran bandwidth's CHECK, and it passed (the fix)
        message = reports[node.name]["datapath"]["message"]
        assert "CHECK not called" not in message, message
        assert host_agent_check(node, tmp_path)["passed"]

    # -- new pods: created after each node's move, they got addresses from the new binaries --------------------
    attempts = new_pods.attempts
    moved = [a for a in attempts if a.revision == new_revision and a.binaries.get("bandwidth") == v191["bandwidth"]]
    assert moved, "no pod was created after a node moved"
    failed_after_move = [a for a in moved if not a.ip]
    assert not failed_after_move, [(a.node, a.error) for a in failed_after_move]
    failed = [a for a in attempts if not a.ip]
    latencies = sorted(a.latency for a in attempts if a.ip)

    # -- existing pods kept their connections ------------------------------------------------------------------------
    figure(
        f"upgrade v1.8.0 -> v1.9.1 (2 real nodes + 1 kwok): {upgrade_took:.1f}s; probe over {figures['pairs']} pod "
        f"pairs: ICMP {figures['icmp_sent']} sent, {figures['icmp_lost']} lost, longest gap "
        f"{figures['icmp_longest_gap']:.2f}s; TCP {figures['tcp_connections']} connections, {figures['tcp_broken']} "
        f"broken, {figures['tcp_round_trips']} round trips, longest gap {figures['tcp_longest_gap']:.2f}s"
    )
    figure(
        f"new pods during the upgrade: {len(attempts)} created, {len(failed)} without an address "
        f"({[(a.node, round(a.created - upgrade_started, 1), a.error) for a in failed]}); "
        f"pod start latency (create -> Ready with an IP) median {latencies[len(latencies) // 2]:.2f}s, "
        f"max {latencies[-1]:.2f}s"
    )
    assert figures["tcp_broken"] == 0, figures["per_pod"]
    assert figures["tcp_connections"] == figures["pairs"], "every TCP connection must have been the first one"
    assert figures["icmp_sent"] > 0 and figures["icmp_lost"] <= figures["pairs"], figures
