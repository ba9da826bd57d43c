"""A failing upgrade on a real node: the release's conflist names a binary that no image installs.

The canary is a real node. Once it moves, its runtime loads the new config and really fails new pods (the plugin
is not there); the agent's datapath check says PluginNotFound; the gate times out, the rollout stops at the
canary, autoRollback moves the node back, and new pods on it get addresses again.
"""

from __future__ import annotations

import time

from tests.integration.conftest import Networks
from tests.realnode.conftest import (
    BROKEN_RELEASE,
    NewPods,
    RealCluster,
    delete_test_pods,
    figure,
    node_reports,
    wait_datapath,
    wait_rolled_out,
)
from tests.waiting import eventually

GATE_TIMEOUT = 45  # the new agent pod must start and write the config first, on 2 busy cores


def test_failing_upgrade_stops_at_the_canary_and_rolls_back(real_cluster: RealCluster, networks: Networks) -> None:
    cluster = real_cluster
    canary, other = cluster.nodes
    rollout = {
        "canary": {"nodes": 1, "nodeSelector": {"kubernetes.io/hostname": canary.name}},
        "maxUnavailable": 1,
        "healthGate": {"timeoutSeconds": GATE_TIMEOUT},
        "autoRollback": True,
    }
    networks.create("default", example="reference", version="v1.9.1", rollout=rollout)
    wait_rolled_out(networks, "default")
    good = cluster.revision(canary.name)
    wait_datapath(cluster, good)

    with NewPods(cluster, every=2.0, timeout=20.0) as new_pods:
        time.sleep(2)
        started = time.monotonic()
        networks.patch_spec("default", {"version": BROKEN_RELEASE})
        # the canary moves and its runtime loads the broken config
        eventually(
            lambda: cluster.runtime(canary),
            lambda rt: "firewall" in rt.get("loaded_plugins", []),
            60,
            f"{canary.name}'s containerd loaded the {BROKEN_RELEASE} config",
        )
        bad = cluster.revision(canary.name)
        assert bad != good
        moved_at = time.monotonic() - started
        reports = eventually(
            lambda: node_reports(cluster),
            lambda r: (r.get(canary.name) or {}).get("datapath", {}).get("revision") == bad,
            60,
            "the canary's agent checked the broken revision",
        )
        datapath = reports[canary.name]["datapath"]
        assert (datapath["passed"], datapath["reason"]) == (False, "PluginNotFound"), datapath
        assert "firewall" in datapath["message"], datapath
        cn = eventually(
            lambda: networks.get("default"),
            lambda cn: (cn.get("status") or {}).get("phase") == "Failed",
            GATE_TIMEOUT + 90,
            "the rollout failed at the canary",
        )
        failed_at = time.monotonic() - started
        assert canary.name in cn["status"]["message"], cn["status"]
        # rolled back: the canary returns to the good revision and its runtime to the good config
        eventually(
            lambda: (cluster.revision(canary.name), cluster.runtime(canary)),
            lambda v: v[0] == good and v[1].get("loaded_plugins") == ["bridge", "portmap", "bandwidth"],
            90,
            f"{canary.name} rolled back to {good}",
        )
        back_at = time.monotonic() - started
        time.sleep(6)  # new pods after the rollback
    delete_test_pods(cluster.core, wait=False)

    # the rollout never went past the canary
    assert cluster.revision(other.name) == good
    assert "firewall" not in cluster.runtime(other)["loaded_plugins"]
    attempts = new_pods.attempts
    on_canary = [a for a in attempts if a.node == canary.name]
    broken = [a for a in on_canary if a.revision == bad and not a.ip]
    after = [a for a in on_canary if a.created - started > back_at + 1]
    assert broken, "a pod created on the canary while it ran the broken config must have failed"
    assert any("firewall" in a.error for a in broken), [a.error for a in broken]
    assert after and all(a.ip for a in after), [(a.created - started, a.error) for a in after]
    assert all(a.ip for a in attempts if a.node == other.name), "the other node never stopped giving addresses"
    failed_windows = sorted(round(a.created - started, 1) for a in on_canary if not a.ip)
    figure(
        f"failing upgrade ({BROKEN_RELEASE}, conflist names a missing binary), canary {canary.name}: moved at "
        f"{moved_at:.1f}s, rollout Failed at {failed_at:.1f}s (gate timeout {GATE_TIMEOUT}s), back on the good "
        f"revision at {back_at:.1f}s; new pods on the canary without an address: {len(failed_windows)} of "
        f"{len(on_canary)} (created at {failed_windows} s); on {other.name}: 0 of "
        f"{len([a for a in attempts if a.node == other.name])}"
    )
