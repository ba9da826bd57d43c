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


def test_a_node_someone_else_cordoned_is_not_started_and_one_in_flight_stays_cordoned_after_its_move() -> None:
    plan = plan_rollout([NodeView("n", OLD, unschedulable=True)], {}, upgrade(), NOW)
    assert plan.patches == [] and [(s.name, s.reason) for s in plan.skipped] == [("n", "Cordoned")]
    in_flight = NodeView("n", NEW, True, move=Move(NEW, OLD, Phase.VERIFYING, NOW - 1, cordoned=False))
    finish = plan_rollout([in_flight], {"n": NodeHealth(ready_pods=1)}, upgrade(), NOW).patches[0]
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


# -- nodes that are down or cordoned by others --------------------------------------------------------------------


def test_nodes_not_ready_or_cordoned_before_the_rollout_are_skipped_and_not_counted() -> None:
    cluster = [replace(n, ready=n.name != "node-00", unschedulable=n.name == "node-01") for n in nodes(5)]
    plan = plan_rollout(cluster, {}, upgrade(maxUnavailable=2), NOW)
    assert [(s.name, s.reason) for s in plan.skipped] == [("node-00", "NotReady"), ("node-01", "Cordoned")]
    assert "once Ready again" in plan.skipped[0].message and "once uncordoned" in plan.skipped[1].message
    assert [p.node for p in plan.patches] == ["node-02"]  # the canary is the first node that can move
    assert plan.in_flight == 1 and plan.pending == 2 and plan.wave_count == 2
    assert all(n not in w.nodes for w in plan.waves for n in ("node-00", "node-01"))


def test_the_rest_finish_without_the_skipped_nodes_which_move_once_they_are_back() -> None:
    done = [NodeView(f"node-{i:02d}", NEW) for i in range(2, 5)]
    down, cordoned = NodeView("node-00", OLD, ready=False), NodeView("node-01", OLD, unschedulable=True)
    plan = plan_rollout([down, cordoned, *done], {}, upgrade(maxUnavailable=2), NOW)
    assert plan.patches == [] and plan.pending == 0 and plan.in_flight == 0 and plan.done == 3
    assert not plan.complete and plan.phase() == "Progressing" and len(plan.skipped) == 2
    back = plan_rollout([replace(down, ready=True), replace(cordoned, unschedulable=False), *done], {}, upgrade(), NOW)
    assert [p.node for p in back.patches] == ["node-00"] and back.patches[0].move.cordoned  # type: ignore[union-attr]
    assert back.skipped == []


def test_a_canary_by_selector_whose_nodes_are_all_skipped_gives_way_to_another_node() -> None:
    cluster = [NodeView(f"n{i}", OLD, labels={"zone": "b" if i == 3 else "a"}, ready=i != 3) for i in range(5)]
    plan = plan_rollout(cluster, {}, upgrade(canary={"nodeSelector": {"zone": "b"}}, maxUnavailable=3), NOW)
    assert [p.node for p in plan.patches] == ["n0"] and [s.name for s in plan.skipped] == ["n3"]
    unmatched = plan_rollout(cluster, {}, upgrade(canary={"nodeSelector": {"zone": "c"}}, maxUnavailable=3), NOW)
    assert [p.node for p in unmatched.patches] == ["n0", "n1", "n2"]  # no canary was asked for: as before


def test_a_node_that_turns_not_ready_while_verifying_keeps_its_gate_and_fails_at_the_timeout() -> None:
    early = replace(moving("node-00", Phase.VERIFYING), ready=False)
    waiting = plan_rollout([early, NodeView("node-01", OLD)], {"node-00": NodeHealth()}, upgrade(), NOW)
    assert waiting.patches == [] and waiting.skipped == [] and waiting.in_flight == 1
    late = replace(moving("node-00", Phase.VERIFYING, since=NOW - 301), ready=False)
    failed = plan_rollout([late, NodeView("node-01", OLD)], {"node-00": NodeHealth()}, upgrade(), NOW)
    assert [(f.name, f.reason) for f in failed.failures] == [("node-00", "HealthGateTimeout")]
    assert failed.failed_revision == NEW


def test_a_swap_node_that_turns_not_ready_while_draining_is_released_and_skipped() -> None:
    draining = replace(moving("node-00", Phase.DRAINING), ready=False)
    plan = plan_rollout([draining, NodeView("node-01", OLD)], {"node-00": NodeHealth(evictable=3)}, swap(), NOW)
    release = plan.patches[0]
    assert release.node == "node-00" and release.clear_move and release.unschedulable is False
    assert release.revision is None and plan.drain == [] and not plan.failed_revision
    assert [(s.name, s.reason) for s in plan.skipped] == [("node-00", "NotReady")]
    assert [p.node for p in plan.patches[1:]] == ["node-01"]  # the rest go on
    theirs = replace(draining, move=replace(draining.move, cordoned=False))  # type: ignore[type-var]
    kept = plan_rollout([theirs], {"node-00": NodeHealth(evictable=3)}, swap(), NOW).patches[0]
    assert kept.clear_move and kept.unschedulable is None  # someone else's cordon stays


# -- cluster components before the node waves ----------------------------------------------------------------------


def test_node_waves_wait_for_cluster_components_but_nodes_in_flight_finish() -> None:
    waiting = replace(upgrade(), waiting_for=("calico/typha",))
    fresh = plan_rollout(nodes(3), {}, waiting, NOW)
    assert fresh.patches == [] and fresh.waiting_for == ("calico/typha",) and fresh.phase() == "Progressing"
    cluster = [moving("node-00", Phase.VERIFYING), *nodes(3)[1:]]
    plan = plan_rollout(cluster, {"node-00": NodeHealth(ready_pods=1)}, waiting, NOW)
    assert [p.node for p in plan.patches] == ["node-00"] and plan.patches[0].clear_move
    assert plan_rollout(cluster, {"node-00": NodeHealth(ready_pods=1)}, upgrade(), NOW).patches[1].starts
    settled = plan_rollout([NodeView("node-00", NEW)], {}, waiting, NOW)
    assert settled.waiting_for == () and settled.complete  # nothing left to start: nothing waits


def test_a_rollback_waits_for_the_components_of_the_revision_nodes_go_back_to() -> None:
    """The spec set back to the old release: its revision is the target, and its operator must be Ready first."""
    back = RolloutSettings(
        target=OLD, plugin_of={OLD: "cilium", NEW: "cilium"}, rollout=rollout(), waiting_for=("cilium/operator",)
    )
    plan = plan_rollout(nodes(3, revision=NEW), {}, back, NOW)
    assert plan.patches == [] and plan.waiting_for == ("cilium/operator",)
    ready = plan_rollout(nodes(3, revision=NEW), {}, replace(back, waiting_for=()), NOW)
    assert [(p.node, p.revision) for p in ready.patches] == [("node-00", OLD)]


def test_an_automatic_rollback_of_nodes_in_flight_does_not_wait_for_components() -> None:
    cluster = [moving("node-00", Phase.VERIFYING, since=NOW - 301), NodeView("node-01", OLD)]
    waiting = replace(upgrade(), waiting_for=("calico/typha",))
    plan = plan_rollout(cluster, {"node-00": NodeHealth()}, waiting, NOW)
    assert [(p.node, p.revision) for p in plan.patches] == [("node-00", OLD)] and plan.patches[0].move.rollback  # type: ignore[union-attr]
    assert plan.waiting_for == ()  # the target failed: nothing waits to start


# -- whole rollouts, with the operator crashing between any two writes and nodes failing under it ----------------

# What happens to a node from outside the operator: (kind, step, length, comes back). "cordoned" and "not-ready"
# hold from before the rollout until `step` (or for ever when it does not come back); "not-ready-later" is a node
# that turns NotReady at `step` for `length` steps, whatever it is doing then (shorter than the health gate).
OUTAGE_KINDS = ("cordoned", "not-ready", "not-ready-later")
Outage = tuple[str, int, int, bool]


def _outside(outage: Outage | None, step: int) -> tuple[bool, bool]:
    """(Ready, cordoned by someone else) of a node at a step."""
    if outage is None:
        return True, False
    kind, at, length, comes_back = outage
    if kind == "cordoned":
        return True, not (comes_back and step >= at)
    if kind == "not-ready":
        return comes_back and step >= at, False
    return not at <= step < at + length, False


@settings(max_examples=150, deadline=None)
@given(
    count=st.integers(1, 25),
    batch=st.integers(1, 6),
    canary=st.integers(0, 3),
    is_swap=st.booleans(),
    crashes=st.lists(st.integers(0, 4), min_size=0, max_size=200),
    outages=st.dictionaries(
        st.integers(0, 24),
        st.tuples(st.sampled_from(OUTAGE_KINDS), st.integers(1, 40), st.integers(1, 40), st.booleans()),
        max_size=4,
    ),
    components_ready_at=st.integers(0, 30),
)
def test_a_rollout_always_finishes_with_bounded_writes_even_when_the_operator_crashes(
    count: int,
    batch: int,
    canary: int,
    is_swap: bool,
    crashes: list[int],
    outages: dict[int, Outage],
    components_ready_at: int,
) -> None:
    """The cluster applies only a prefix of each plan's writes (the operator died); the next plan must pick up.
    Nodes go NotReady or are cordoned by others: the healthy ones always converge, the others are skipped, never
    counted, and move once they are back. No node starts before the cluster components are Ready."""
    base = (swap if is_swap else upgrade)(maxUnavailable=batch, canary={"nodes": canary})
    outage = {f"node-{i:02d}": o for i, o in outages.items() if i < count}
    cluster = {n.name: n for n in nodes(count)}
    writes = {name: 0 for name in cluster}
    cordons = {name: 0 for name in cluster}
    starts = {name: 0 for name in cluster}
    crash = iter(crashes)
    limit = max(canary, batch, 1)
    last_outage = max((o[1] + o[2] for o in outage.values()), default=0)
    for step in range(20 * count + last_outage + components_ready_at + 20):
        for name, node in cluster.items():  # the world outside the operator
            ready, cordoned = _outside(outage.get(name), step)
            was_cordoned = step > 0 and _outside(outage.get(name), step - 1)[1]
            cluster[name] = replace(
                node, ready=ready, unschedulable=cordoned if cordoned != was_cordoned else node.unschedulable
            )
        health = {}
        for node in cluster.values():  # pods leave and new ones become Ready as soon as the label allows, where
            if node.move:  # the node is up (pods on a NotReady node cannot confirm their eviction)
                ready_pods = int(node.revision == node.move.to and node.ready)
                health[node.name] = NodeHealth(ready_pods=ready_pods, evictable=int(not node.ready))
        waiting = ("calico/typha",) if step < components_ready_at else ()
        plan = plan_rollout(list(cluster.values()), health, replace(base, waiting_for=waiting), NOW + step)
        assert not plan.failed_revision and plan.in_flight <= limit
        assert not (waiting and any(p.starts for p in plan.patches))
        skipped = {s.name for s in plan.skipped}
        assert not skipped & {p.node for p in plan.patches if p.starts}
        released = {p.node for p in plan.patches if p.clear_move}
        assert all(cluster[name].move is None or name in released for name in skipped)  # never counted in flight
        if step > last_outage and not plan.patches and plan.in_flight == 0 and plan.pending == 0:
            break
        applied = plan.patches[: next(crash, len(plan.patches))] if step % 3 == 0 else plan.patches
        for patch in applied:
            before = cluster[patch.node]
            if patch.unschedulable and not before.unschedulable:
                cordons[patch.node] += 1
            cluster[patch.node] = patch.applied_to(before)
            writes[patch.node] += 1
            starts[patch.node] += patch.starts
        in_flight = [n for n in cluster.values() if n.move]
        assert len(in_flight) <= limit
        for node in cluster.values():  # a node off its old revision and not yet verified is always cordoned
            if node.move and node.revision == node.move.to and node.move.phase is Phase.VERIFYING:
                assert node.unschedulable
    else:
        pytest.fail("the rollout did not finish")
    never_back = {name for name, o in outage.items() if o[0] != "not-ready-later" and not o[3]}
    assert skipped == never_back and plan.complete == (not never_back)
    for name, node in cluster.items():
        assert node.move is None
        if name in never_back:  # left where it was, as its owner left it
            assert node.revision == OLD and node.unschedulable == (outage[name][0] == "cordoned")
        else:
            assert node.revision == NEW and not node.unschedulable
    for name in cluster:  # a swap's node released while draining starts once more; every other node once
        assert starts[name] <= (2 if is_swap and outage.get(name, ("",))[0] == "not-ready-later" else 1)
        assert cordons[name] <= max(1, starts[name])
        assert writes[name] <= (3 if is_swap else 2) * max(1, starts[name])


def test_a_node_finishing_a_superseded_move_starts_again_only_in_the_next_plan() -> None:
    """One patch per node per plan: finishing (uncordon) and starting again (cordon) in one plan would leave the new
    move believing someone else had cordoned the node, and the node cordoned for good."""
    finished = NodeView("node-00", OTHER, True, move=Move(OTHER, OLD, Phase.VERIFYING, NOW - 1, True))
    others = nodes(3)[1:]
    settings = RolloutSettings(target=NEW, plugin_of={OLD: "calico", NEW: "calico", OTHER: "calico"}, rollout=rollout())
    plan = plan_rollout([finished, *others], {"node-00": NodeHealth(ready_pods=1)}, settings, NOW)
    assert [p.node for p in plan.patches] == ["node-00"]
    assert plan.patches[0].clear_move and plan.patches[0].unschedulable is False
    after = plan.patches[0].applied_to(finished)
    again = plan_rollout([after, *others], {}, settings, NOW + 1)
    start = next(p for p in again.patches if p.node == "node-00")
    assert start.move is not None and start.move.cordoned and start.unschedulable is True
