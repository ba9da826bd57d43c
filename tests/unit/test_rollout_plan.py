"""The rollout planner's decisions, one reconcile at a time, and whole rollouts simulated with crashes in between."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cni_operator.api.v1alpha1 import Rollout
from cni_operator.plan.rollout import (
    Move,
    NodeHealth,
    NodePatch,
    NodeView,
    Phase,
    RolloutSettings,
    max_unavailable,
    plan_rollout,
)

OLD, NEW, OTHER = "aaaaaaaaaa", "bbbbbbbbbb", "cccccccccc"
NOW = 1_000_000.0


def rollout(**fields: Any) -> Rollout:
    return Rollout.model_validate(fields)


def upgrade(**fields: Any) -> RolloutSettings:
    return RolloutSettings(target=NEW, plugin_of={OLD: "calico", NEW: "calico"}, rollout=rollout(**fields))


def swap(**fields: Any) -> RolloutSettings:
    return RolloutSettings(target=NEW, plugin_of={OLD: "flannel", NEW: "calico"}, rollout=rollout(**fields))


def nodes(count: int, revision: str = OLD) -> list[NodeView]:
    return [NodeView(f"node-{i:02d}", revision) for i in range(count)]


def moving(name: str, phase: Phase, *, since: float = NOW - 1, to: str = NEW, source: str = OLD) -> NodeView:
    return NodeView(name, to if phase is Phase.VERIFYING else source, True, move=Move(to, source, phase, since, True))


def test_move_annotation_round_trips_and_foreign_text_is_ignored() -> None:
    move = Move(NEW, OLD, Phase.DRAINING, NOW, cordoned=True, rollback=False)
    assert Move.decode(move.encode()) == move
    assert Move.decode("not json") is None
    assert Move.decode('{"to": "x"}') is None
    assert Move.decode(None) is None


@pytest.mark.parametrize(
    ("value", "total", "expected"), [(1, 50, 1), (7, 50, 7), ("10%", 50, 5), ("10%", 5, 1), ("100%", 20, 20)]
)
def test_max_unavailable_counts_and_percentages(value: int | str, total: int, expected: int) -> None:
    assert max_unavailable(value, total) == expected


def test_an_upgrade_starts_with_the_canary_alone_cordoning_and_switching_in_one_write() -> None:
    plan = plan_rollout(nodes(5), {}, upgrade(maxUnavailable=2), NOW)
    assert [p.node for p in plan.patches] == ["node-00"]
    patch = plan.patches[0]
    assert patch.body() == {
        "metadata": {
            "labels": {"cni-operator.dev/revision": NEW},
            "annotations": {"cni-operator.dev/move": Move(NEW, OLD, Phase.VERIFYING, NOW, True).encode()},
        },
        "spec": {"unschedulable": True},
    }
    assert plan.phase() == "Progressing" and plan.in_flight == 1 and plan.pending == 4
    assert [w.state for w in plan.waves] == ["InProgress", "Pending", "Pending"]


def test_the_next_wave_waits_for_the_canary_and_starts_once_it_is_healthy() -> None:
    cluster = [moving("node-00", Phase.VERIFYING), *nodes(5)[1:]]
    waiting = plan_rollout(cluster, {"node-00": NodeHealth(ready_pods=0)}, upgrade(maxUnavailable=2), NOW)
    assert waiting.patches == []
    healthy = plan_rollout(cluster, {"node-00": NodeHealth(ready_pods=1)}, upgrade(maxUnavailable=2), NOW)
    finish, *started = healthy.patches
    assert finish == NodePatch("node-00", clear_move=True, unschedulable=False, why=finish.why)
    assert [p.node for p in started] == ["node-01", "node-02"] and all(p.starts for p in started)


def test_a_node_someone_else_cordoned_stays_cordoned_after_its_move() -> None:
    start = plan_rollout([NodeView("n", OLD, unschedulable=True)], {}, upgrade(), NOW).patches[0]
    assert start.move is not None and start.move.cordoned is False
    node = NodeView("n", NEW, True, move=start.move)
    finish = plan_rollout([node], {"n": NodeHealth(ready_pods=1)}, upgrade(), NOW).patches[0]
    assert finish.clear_move and finish.unschedulable is None


def test_a_swap_cordons_drains_switches_then_verifies() -> None:
    start = plan_rollout(nodes(1), {}, swap(), NOW).patches[0]
    assert start.revision is None and start.unschedulable is True and start.move.phase is Phase.DRAINING  # type: ignore[union-attr]
    draining = moving("node-00", Phase.DRAINING)
    busy = plan_rollout([draining], {"node-00": NodeHealth(evictable=2)}, swap(), NOW)
    assert busy.drain == ["node-00"] and busy.patches == [] and busy.failures == []
    drained = plan_rollout([draining], {"node-00": NodeHealth(evictable=0)}, swap(), NOW).patches[0]
    assert drained.revision == NEW and drained.move is not None and drained.move.phase is Phase.VERIFYING


def test_blocked_evictions_are_reported_after_the_timeout_but_do_not_fail_the_rollout() -> None:
    draining = moving("node-00", Phase.DRAINING, since=NOW - 601)
    blocked = "default/web-1: The disruption budget web needs 2 healthy pods and has 2 currently"
    plan = plan_rollout([draining], {"node-00": NodeHealth(evictable=1, eviction_blocked=blocked)}, swap(), NOW)
    assert [f.reason for f in plan.failures] == ["EvictionBlocked"]
    assert "disruption budget web" in plan.failures[0].message
    assert plan.drain == ["node-00"] and not plan.failed_revision and plan.phase() == "Progressing"


@pytest.mark.parametrize(
    ("health", "since", "reason"),
    [
        (
            NodeHealth(ready_pods=0, crashlooping=("kube-system/calico-node-x: calico-node CrashLoopBackOff",)),
            NOW - 1,
            "CrashLoopBackOff",
        ),
        (NodeHealth(ready_pods=0), NOW - 301, "HealthGateTimeout"),
        (NodeHealth(ready_pods=1, datapath=False, datapath_message="ping failed"), NOW - 301, "HealthGateTimeout"),
    ],
)
def test_a_failed_node_stops_the_rollout_and_rolls_failed_and_in_flight_nodes_back(
    health: NodeHealth, since: float, reason: str
) -> None:
    cluster = [
        moving("node-00", Phase.VERIFYING, since=since),
        moving("node-01", Phase.VERIFYING),
        moving("node-02", Phase.DRAINING),
        NodeView("node-03", OLD),
    ]
    plan = plan_rollout(
        cluster, {"node-00": health, "node-01": NodeHealth(), "node-02": NodeHealth(evictable=1)}, upgrade(), NOW
    )
    assert plan.failed_revision == NEW and plan.phase() == "Failed"
    assert [(f.name, f.reason) for f in plan.failures] == [("node-00", reason)]
    by_node = {p.node: p for p in plan.patches}
    assert set(by_node) == {"node-00", "node-01", "node-02"}  # node-03 does not start
    for name in ("node-00", "node-01"):
        back = by_node[name]
        assert back.revision == OLD and back.move is not None and back.move.rollback and back.move.to == OLD
    assert by_node["node-02"].clear_move and by_node["node-02"].unschedulable is False and plan.drain == []


def test_without_auto_rollback_the_failed_node_stays_cordoned_and_nothing_else_starts() -> None:
    cluster = [moving("node-00", Phase.VERIFYING, since=NOW - 301), NodeView("node-01", OLD)]
    plan = plan_rollout(cluster, {"node-00": NodeHealth()}, upgrade(autoRollback=False), NOW)
    assert plan.failed_revision == NEW and plan.patches == []
    assert [w.state for w in plan.waves] == ["Failed", "Pending"]


def test_a_recorded_failure_or_a_node_coming_back_keeps_the_target_stopped() -> None:
    recorded = replace(upgrade(), failed_revision=NEW)
    assert plan_rollout(nodes(3), {}, recorded, NOW).patches == []
    back = NodeView("node-00", OLD, True, move=Move(OLD, NEW, Phase.VERIFYING, NOW, True, rollback=True))
    plan = plan_rollout([back, NodeView("node-01", OLD)], {"node-00": NodeHealth(ready_pods=1)}, upgrade(), NOW)
    assert plan.failed_revision == NEW
    assert [p.node for p in plan.patches] == ["node-00"]  # it finishes its way back; node-01 does not start


def test_paused_starts_nothing_but_lets_nodes_in_flight_finish() -> None:
    cluster = [moving("node-00", Phase.VERIFYING), NodeView("node-01", OLD)]
    plan = plan_rollout(cluster, {"node-00": NodeHealth(ready_pods=1)}, upgrade(paused=True), NOW)
    assert [p.node for p in plan.patches] == ["node-00"] and plan.patches[0].clear_move
    assert plan.phase() == "Paused"


def test_canary_by_node_selector() -> None:
    cluster = [NodeView(f"n{i}", OLD, labels={"zone": "b" if i == 3 else "a"}) for i in range(5)]
    plan = plan_rollout(cluster, {}, upgrade(canary={"nodeSelector": {"zone": "b"}}), NOW)
    assert [p.node for p in plan.patches] == ["n3"]


def test_a_draining_node_follows_a_new_target() -> None:
    draining = moving("node-00", Phase.DRAINING, to=OTHER)
    plan = plan_rollout([draining], {"node-00": NodeHealth(evictable=1)}, swap(), NOW)
    assert plan.patches[0].move is not None and plan.patches[0].move.to == NEW and plan.drain == ["node-00"]
    same_plugin = RolloutSettings(
        target=NEW, plugin_of={OLD: "calico", NEW: "calico", OTHER: "cilium"}, rollout=rollout()
    )
    switched = plan_rollout([draining], {"node-00": NodeHealth(evictable=1)}, same_plugin, NOW).patches[0]
    assert switched.revision == NEW and switched.move is not None and switched.move.phase is Phase.VERIFYING


def test_status_shows_a_few_waves_of_a_large_cluster() -> None:
    plan = plan_rollout(nodes(5000), {}, upgrade(maxUnavailable=10), NOW)
    assert plan.wave_count == 501
    assert len(plan.waves) <= 5 and plan.waves[0].index == 0
    assert len(plan.patches) == 1


# -- whole rollouts, with the operator crashing between any two writes ------------------------------------------


@settings(max_examples=60, deadline=None)
@given(
    count=st.integers(1, 25),
    batch=st.integers(1, 6),
    canary=st.integers(0, 3),
    is_swap=st.booleans(),
    crashes=st.lists(st.integers(0, 4), min_size=0, max_size=200),
    cordoned_by_others=st.sets(st.integers(0, 24), max_size=3),
)
def test_a_rollout_always_finishes_with_bounded_writes_even_when_the_operator_crashes(
    count: int, batch: int, canary: int, is_swap: bool, crashes: list[int], cordoned_by_others: set[int]
) -> None:
    """The cluster applies only a prefix of each plan's writes (the operator died); the next plan must pick up."""
    settings_ = (swap if is_swap else upgrade)(maxUnavailable=batch, canary={"nodes": canary})
    cluster = {n.name: replace(n, unschedulable=i in cordoned_by_others) for i, n in enumerate(nodes(count))}
    writes = {name: 0 for name in cluster}
    cordons = {name: 0 for name in cluster}
    crash = iter(crashes)
    limit = max(canary, batch, 1)
    for step in range(20 * count + 20):
        health = {}
        for node in cluster.values():
            if node.move:  # pods leave and new ones become Ready as soon as the label allows
                health[node.name] = NodeHealth(ready_pods=int(node.revision == node.move.to), evictable=0)
        plan = plan_rollout(list(cluster.values()), health, settings_, NOW + step)
        if plan.complete and not plan.patches:
            break
        applied = plan.patches[: next(crash, len(plan.patches))] if step % 3 == 0 else plan.patches
        for patch in applied:
            before = cluster[patch.node]
            if patch.unschedulable and not before.unschedulable:
                cordons[patch.node] += 1
            cluster[patch.node] = patch.applied_to(before)
            writes[patch.node] += 1
        in_flight = [n for n in cluster.values() if n.move]
        assert len(in_flight) <= limit
        for node in cluster.values():  # a node off its old revision and not yet verified is always cordoned
            if node.move and node.revision == node.move.to and node.move.phase is Phase.VERIFYING:
                assert node.unschedulable
    else:
        pytest.fail("the rollout did not finish")
    assert all(n.revision == NEW and n.move is None for n in cluster.values())
    for i, node in enumerate(cluster.values()):
        assert node.unschedulable == (i in cordoned_by_others)
    assert max(cordons.values()) <= 1
    assert max(writes.values()) <= (3 if is_swap else 2)
