"""`decide` on snapshots: the whole reconcile as one pure decision, checked step by step and against golden dumps.

Regenerate the golden dumps with UPDATE_GOLDEN=1 scripts/test.sh tests/unit/test_decide.py, and review the diff.
"""

from __future__ import annotations

import copy
import dataclasses
import os
from typing import Any

import pytest

from cni_operator.api.v1alpha1 import ClusterNetworkSpec, ClusterNetworkStatus, RevisionRecord
from cni_operator.catalog.loader import Catalog, default_catalog
from cni_operator.decide.decision import Decision
from cni_operator.decide.pipeline import carry_defaults, decide, decide_deletion, defaulted_fields
from cni_operator.decide.snapshot import PodFacts
from cni_operator.plan.rollout import NodeView
from tests.decide_sim import FakeCluster, dump, names
from tests.rendering import GOLDEN, example_spec

DECISIONS = GOLDEN / "decide"


@pytest.fixture(scope="module")
def catalog() -> Catalog:
    return default_catalog()


def flannel(version: str = "v0.27.4") -> dict[str, Any]:
    return {**example_spec("flannel"), "version": version}


def calico(version: str = "v3.31.7", **fields: Any) -> dict[str, Any]:
    return {**example_spec("calico"), "version": version, **fields}


def check_golden(name: str, decision: Decision) -> None:
    path = DECISIONS / f"{name}.yaml"
    text = dump(decision)
    if os.environ.get("UPDATE_GOLDEN"):
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    assert path.exists(), f"{path} missing: run UPDATE_GOLDEN=1 scripts/test.sh tests/unit/test_decide.py"
    assert text == path.read_text(), f"decision {name} changed: review, then UPDATE_GOLDEN=1 to accept"


def installed(catalog: Catalog, spec: dict[str, Any], count: int = 5) -> FakeCluster:
    cluster = FakeCluster.with_nodes(catalog, spec, count)
    cluster.run()
    assert cluster.status.phase == "Ready", cluster.status.message
    return cluster


def test_fresh_install_labels_every_node_and_applies_everything_at_once(catalog: Catalog) -> None:
    cluster = FakeCluster.with_nodes(catalog, flannel(), 5)
    first = cluster.step()
    check_golden("fresh-install", first)
    target = first.status.target_revision
    assert [p.node for p in first.adopt] == sorted(cluster.nodes)
    assert all(p.revision == target for p in first.adopt)
    assert not first.node_patches, "a first install has no network to protect: no node is cordoned"
    daemonsets = [o["metadata"]["name"] for o in first.apply_now if o["kind"] == "DaemonSet"]
    assert daemonsets and all(name.endswith(target) for name in daemonsets)
    cluster.refresh_daemonsets()
    cluster.run()
    assert cluster.status.phase == "Ready"
    assert cluster.status.nodes.model_dump() == {"total": 5, "updated": 5, "ready": 5}


def test_upgrade_moves_the_canary_first_then_waves_and_prunes_the_old_revision(catalog: Catalog) -> None:
    cluster = installed(catalog, flannel())
    old = cluster.status.target_revision
    cluster.edit(version="v0.28.9")
    first = cluster.step()
    check_golden("upgrade-canary", first)
    new = first.status.target_revision
    assert new != old
    assert [p.node for p in first.node_patches] == ["node-00"]
    assert first.node_patches[0].unschedulable is True and first.node_patches[0].revision == new
    assert not first.delete, "the old revision's DaemonSet stays while nodes run it"
    cluster.run()
    assert cluster.status.phase == "Ready", cluster.status.message
    assert set(cluster.revisions().values()) == {new}
    assert not any(o.labels.get("cni-operator.dev/revision") == old for o in cluster.objects.values())


def test_swap_drains_before_switching_and_evicts_each_pod_once(catalog: Catalog) -> None:
    cluster = installed(catalog, flannel("v0.28.9"), count=3)
    cluster.workloads = {n: [PodFacts("web", f"web-{n}", "", True, must_leave=True)] for n in cluster.nodes}
    cluster.edit(**calico("v3.31.7"))
    cordon = cluster.step()
    assert [p.node for p in cordon.node_patches] == ["node-00"]
    assert cordon.node_patches[0].move is not None and cordon.node_patches[0].revision is None
    drain = cluster.step()
    check_golden("swap-draining", drain)
    assert [(e.node, e.pod) for e in drain.evictions] == [("node-00", "web-node-00")]
    switch = cluster.step()
    assert not switch.evictions
    assert [p.revision for p in switch.node_patches] == [switch.status.target_revision]
    cluster.run()
    assert cluster.status.phase == "Ready", cluster.status.message
    evicted = [e.pod for d in cluster.decisions for e in d.evictions]
    assert sorted(evicted) == sorted(set(evicted)) == ["web-node-00", "web-node-01", "web-node-02"]
    assert not any(o.labels.get("cni-operator.dev/plugin") == "flannel" for o in cluster.objects.values())


def test_refused_skew_changes_nothing_and_keeps_counting_nodes(catalog: Catalog) -> None:
    cluster = installed(catalog, flannel("v0.28.9"))
    before = dict(cluster.objects)
    running = cluster.status.target_revision
    cluster.edit(version="v0.27.4")
    cluster.server = cluster.kubelet = "v1.36.1"  # v0.27.4 does not list 1.36
    decision = cluster.step()
    check_golden("refused-skew", decision)
    assert decision.status.phase == "Degraded"
    degraded = next(c for c in decision.status.conditions if c.type == "Degraded")
    assert degraded.reason == "UnsupportedRelease" and "refused flannel/v0.27.4" in degraded.message
    compatible = next(c for c in decision.status.conditions if c.type == "Compatible")
    assert compatible.reason == "TargetUnsupported"
    assert not decision.node_patches and not decision.delete
    assert {o.key for o in before.values()} == {o.key for o in cluster.objects.values()}
    assert decision.status.nodes.total == 5 and decision.status.nodes.ready == 5, "a refusal never zeroes the nodes"
    assert decision.status.target_revision == running


def test_refused_upgrade_path_names_the_path_and_moves_nothing(catalog: Catalog) -> None:
    cilium = {**example_spec("cilium"), "version": "v1.17.18"}
    cluster = FakeCluster.with_nodes(catalog, cilium, 3)
    cluster.server = cluster.kubelet = "v1.32.5"
    cluster.run()
    assert cluster.status.phase == "Ready", cluster.status.message
    cluster.edit(version="v1.19.6")
    decision = cluster.step()
    check_golden("refused-path", decision)
    degraded = next(c for c in decision.status.conditions if c.type == "Degraded")
    assert degraded.reason == "UpgradePathRefused"
    assert "v1.17.18 -> v1.18.12 -> v1.19.6" in degraded.message
    assert not decision.node_patches


def test_failed_canary_fails_the_target_and_moves_it_back(catalog: Catalog) -> None:
    cluster = installed(catalog, calico("v3.31.7"))
    cluster.edit(version="v3.32.1")
    start = cluster.step()
    cluster.broken.add(start.status.target_revision)
    failed = cluster.step()
    check_golden("failed-canary", failed)
    assert failed.failure is not None and failed.failure.revision == start.status.target_revision
    assert [f.name for f in failed.failure.nodes] == ["node-00"]
    back = [p for p in failed.node_patches if p.move is not None and p.move.rollback]
    assert [p.node for p in back] == ["node-00"]
    assert failed.status.phase == "Failed"
    cluster.run()
    assert cluster.status.phase == "Failed"
    assert set(cluster.revisions().values()) == {cluster.status.current_revision}, "every node back on the old one"


def test_components_the_release_upgrades_after_the_nodes_wait_for_every_node(catalog: Catalog) -> None:
    cluster = installed(catalog, calico("v3.31.7"), count=3)
    cluster.edit(version="v3.32.1")
    first = cluster.step()
    check_golden("deferred-components", first)
    assert "Deployment calico-kube-controllers" not in names(first.apply_now)
    assert not first.apply_after
    decisions = cluster.run()
    last_after = [d for d in decisions if d.apply_after]
    assert last_after, "calico-kube-controllers is applied once every node moved"
    assert "Deployment calico-kube-controllers" in names(last_after[0].apply_after)
    moved = [d for d in decisions if d.node_patches]
    assert decisions.index(last_after[0]) >= decisions.index(moved[-1])


def test_node_joining_mid_rollout_is_labelled_with_the_target(catalog: Catalog) -> None:
    cluster = installed(catalog, flannel())
    cluster.edit(version="v0.28.9")
    cluster.step()
    cluster.nodes["node-99"] = NodeView("node-99", None)
    decision = cluster.step()
    check_golden("node-joins", decision)
    target = decision.status.target_revision
    assert [(p.node, p.revision) for p in decision.adopt] == [("node-99", target)]
    cluster.run()
    assert cluster.status.phase == "Ready"
    assert cluster.revisions()["node-99"] == target


def test_bad_edit_mid_rollout_never_strands_the_cluster(catalog: Catalog) -> None:
    cluster = installed(catalog, flannel())
    cluster.edit(version="v0.28.9")
    cluster.step()
    accepted = cluster.status.target_revision
    cluster.edit(version="v0.28.99")  # a typo
    decision = cluster.step()
    check_golden("bad-edit-mid-rollout", decision)
    degraded = next(c for c in decision.status.conditions if c.type == "Degraded")
    assert degraded.status.value == "True" and degraded.reason == "InvalidSpec"
    assert "spec.version" in degraded.message
    assert decision.status.target_revision == accepted, "the last accepted revision stays the target"
    assert decision.status.nodes.total == 5
    assert decision.node_patches, "the node in flight goes on: its health gate passed, it is released"
    for _ in range(20):
        cluster.step()
        cluster.refresh_daemonsets()
    assert set(cluster.revisions().values()) == {accepted}, "the rollout of the accepted revision finished"
    assert not cluster.in_flight()
    assert cluster.status.phase == "Degraded", "and status still says the edit was refused"
    assert cluster.status.observed_generation == cluster.generation


def test_refused_edit_on_a_fresh_install_reports_nodes(catalog: Catalog) -> None:
    cluster = FakeCluster.with_nodes(catalog, {**flannel(), "version": "v9.9.9"}, 4)
    decision = cluster.step()
    assert decision.status.phase == "Degraded"
    assert decision.status.nodes.total == 4
    assert not decision.apply_now and not decision.adopt and not decision.node_patches


def test_changing_pod_cidrs_of_a_running_network_is_refused(catalog: Catalog) -> None:
    cluster = installed(catalog, flannel())
    cluster.edit(podCIDRs=["10.96.0.0/12"])
    decision = cluster.step()
    degraded = next(c for c in decision.status.conditions if c.type == "Degraded")
    assert degraded.reason == "UnsafeChange" and "spec.podCIDRs" in degraded.message
    assert not decision.node_patches and decision.status.phase == "Degraded"


def test_defaults_are_carried_forward_from_the_running_revision(catalog: Catalog) -> None:
    """A default changed by a newer operator does not re-roll every node: the running revision's defaults stay."""
    cluster = installed(catalog, {**flannel(), "mtu": 1400})
    revision = cluster.status.target_revision
    # As if an older operator's default had been 1400 and the user never wrote mtu.
    records = list(cluster.status.revision_history)
    record = records[-1]
    records[-1] = RevisionRecord.model_validate({**record.model_dump(), "defaulted": {**record.defaulted, "mtu": 1400}})
    cluster.status = ClusterNetworkStatus.model_validate({**cluster.status.model_dump(), "revision_history": records})
    spec = copy.deepcopy(cluster.spec)
    del spec["mtu"]
    cluster.spec = spec
    unchanged = cluster.step()
    assert unchanged.status.target_revision == revision and not unchanged.node_patches
    cluster.edit(mtu="auto")  # written by the user: it wins
    changed = cluster.step()
    assert changed.status.target_revision != revision


def test_defaulted_fields_are_what_the_user_left_out() -> None:
    raw = {"plugin": "flannel", "version": "v0.28.9", "podCIDRs": ["10.244.0.0/16"], "rollout": {"paused": True}}
    spec = ClusterNetworkSpec.model_validate(raw)
    defaulted = defaulted_fields(spec, given=raw)
    assert defaulted["mtu"] == "auto" and "rollout" not in defaulted and "plugin" not in defaulted
    assert carry_defaults({"mtu": 1500}, {"mtu": 1400, "multus": {"enabled": False}}) == {
        "mtu": 1500,
        "multus": {"enabled": False},
    }


def test_another_clusternetwork_is_inactive_and_changes_nothing(catalog: Catalog) -> None:
    cluster = FakeCluster.with_nodes(catalog, flannel(), 2)
    decision = decide(dataclasses.replace(cluster.snapshot(), active="other"), catalog, cluster.now)
    assert decision.status.phase == "Inactive" and not decision.apply_now and not decision.adopt
    assert decision.status.nodes.total == 2


def test_node_waves_wait_for_the_components_the_release_upgrades_first(catalog: Catalog) -> None:
    """Typha runs the target's release Ready before any node moves; the same towards the old one on the way back."""
    cluster = installed(catalog, calico("v3.31.7", settings={**calico()["settings"], "typhaReplicas": 2}), count=3)
    old_spec = copy.deepcopy(cluster.spec)
    cluster.unready_components.add("calico-typha")
    cluster.edit(version="v3.32.1")
    first = cluster.step()
    check_golden("waits-for-typha", first)
    assert "Deployment calico-typha" in names(first.apply_now)
    assert not first.node_patches, "no node moves before the new Typha is Ready"
    assert first.status.waiting_for == ["calico/typha"]
    assert "waits for calico/typha" in first.status.message
    cluster.step()
    assert cluster.in_flight() == []
    cluster.unready_components.clear()
    cluster.step()  # the Deployment is applied again and reports Ready now
    moving = cluster.step()
    assert [p.node for p in moving.node_patches] == ["node-00"] and moving.status.waiting_for == []
    cluster.run()
    assert cluster.status.phase == "Ready", cluster.status.message
    # Back to v3.31.7 (a rollback by spec): the old release's Typha first.
    cluster.unready_components.add("calico-typha")
    cluster.spec, cluster.generation = old_spec, cluster.generation + 1
    back = cluster.step()
    assert not back.node_patches and back.status.waiting_for == ["calico/typha"]
    cluster.unready_components.clear()
    cluster.step()
    assert [p.node for p in cluster.step().node_patches] == ["node-00"]


def test_nodes_not_ready_or_cordoned_by_others_are_skipped_and_reported(catalog: Catalog) -> None:
    cluster = installed(catalog, flannel(), count=4)
    cluster.nodes["node-00"] = dataclasses.replace(cluster.nodes["node-00"], ready=False)
    cluster.nodes["node-01"] = dataclasses.replace(cluster.nodes["node-01"], unschedulable=True)
    cluster.edit(version="v0.28.9")
    first = cluster.step()
    check_golden("skips-unready-nodes", first)
    assert [p.node for p in first.node_patches] == ["node-02"], "the first node that can move is the canary"
    assert {(s.name, s.reason) for s in first.status.skipped_nodes} == {
        ("node-00", "NotReady"),
        ("node-01", "Cordoned"),
    }
    assert {e.reason for e in first.events} >= {"NodeSkipped"}
    cluster.run()
    target = first.status.target_revision
    assert cluster.revisions()["node-03"] == target and cluster.revisions()["node-00"] != target
    assert cluster.status.phase == "Progressing" and "skipped until back" in cluster.status.message
    cluster.nodes["node-00"] = dataclasses.replace(cluster.nodes["node-00"], ready=True)
    cluster.nodes["node-01"] = dataclasses.replace(cluster.nodes["node-01"], unschedulable=False)
    cluster.run()
    assert set(cluster.revisions().values()) == {target} and cluster.status.phase == "Ready"


def test_deletion_keeps_or_removes_and_always_releases_the_nodes(catalog: Catalog) -> None:
    cluster = installed(catalog, flannel(), count=2)
    cluster.edit(version="v0.28.9")
    cluster.step()  # node-00 is cordoned, in flight
    owned = list(cluster.objects.values())
    nodes = list(cluster.nodes.values())
    keep = decide_deletion("default", cluster.spec, "default", owned, nodes)
    assert not keep.delete and len(keep.disown) == len(owned) and keep.event and keep.event.reason == "Kept"
    assert keep.node_patches == (
        ("node-00", {"metadata": {"annotations": {"cni-operator.dev/move": None}}, "spec": {"unschedulable": False}}),
    )
    remove = decide_deletion("default", {**cluster.spec, "nodeCleanup": "Remove"}, "default", owned, nodes)
    assert len(remove.delete) == len(owned) and not remove.disown
    assert [kind for kind in (r.kind for r in remove.delete)][-1] == "Namespace", "namespaces go last"
    assert {n for n, _ in remove.node_patches} == {"node-00", "node-01"}, "revision labels are removed too"
    inactive = decide_deletion("other", cluster.spec, "default", [], nodes)
    assert inactive.event is None and not inactive.node_patches


def test_default_multus_release_suits_the_cluster_and_is_pinned_in_the_record(catalog: Catalog) -> None:
    spec = {**example_spec("calico-multus"), "version": "v3.31.7"}
    spec["multus"] = {"enabled": True}
    cluster = FakeCluster.with_nodes(catalog, spec, 2)
    cluster.server = cluster.kubelet = "v1.32.4"  # multus v4.3.0 lists 1.33 and newer only
    decision = cluster.step()
    record = decision.status.revision_history[-1]
    assert record.overlays == ["multus/v4.2.4"]
    assert record.spec["multus"]["version"] == "v4.2.4" and record.defaulted["multus"]["version"] == "v4.2.4"
    cluster.run()
    revision = cluster.status.target_revision
    cluster.server = cluster.kubelet = "v1.33.2"  # now v4.3.0 would suit too: the running overlay stays
    assert cluster.step().status.target_revision == revision


def test_adding_multus_keeps_one_target_revision_and_every_node_ends_uncordoned(catalog: Catalog) -> None:
    """The overlay release a default picks is written into the spec before rendering: the target revision stays
    the same from one reconcile to the next (it once changed after the first one, and a node finishing the first
    move was restarted towards the second in the same plan, cordoned for good)."""
    cluster = installed(catalog, flannel("v0.28.9"))
    cluster.edit(multus={"enabled": True})
    decisions = cluster.run()
    assert len({d.status.target_revision for d in decisions}) == 1
    assert cluster.status.phase == "Ready"
    assert not [n for n, v in cluster.nodes.items() if v.unschedulable]
    for decision in decisions:
        patched = [p.node for p in decision.node_patches]
        assert len(patched) == len(set(patched)), "one patch per node per decision"
