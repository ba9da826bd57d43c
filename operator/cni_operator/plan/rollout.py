"""Rollout decisions: which nodes move between revisions next, and what each node needs now.

Pure: `decide` (decide/pipeline.py) turns the snapshot of the nodes, the CNI pods of the nodes in flight and the
agents' reports into its inputs and calls `plan_rollout`; kube/reconcile.py carries out the node patches and
evictions it returns. All rollout state lives
on the nodes themselves, so a restarted operator takes up exactly where the last one stopped:

- label `cni-operator.dev/revision`: the revision whose node workloads run on the node (DaemonSets select by it);
- annotation `cni-operator.dev/move`: present while the node moves, a JSON `Move` (target, source, phase, since,
  whether the operator cordoned it, whether it is a rollback).

One move, per node:
  upgrade (same plugin):  cordon + switch label (one patch)  -> Verifying -> healthy: uncordon + clear (one patch)
  swap (other plugin):    cordon (one patch) -> Draining: evict pods (PDBs honoured) -> switch label (one patch)
                          -> Verifying -> healthy: uncordon + clear (one patch)
The node is cordoned from before its old CNI pod stops until its new one is Ready, so no pod is scheduled onto a
node whose CNI is being replaced, and every uncordoned node always has a Ready CNI pod. No move starts on a node
someone else cordoned; one in flight that the operator did not cordon stays cordoned afterwards. Node writes per
rollout: 2 for an upgrade, 3 for a swap, plus one eviction per evicted pod: bounded, whatever the cluster size.

Waves: the canary nodes move first; then batches of at most maxUnavailable nodes. A wave starts only when every
node of the waves before it passed the health gate, and only once the target's cluster components that upgrade
before the nodes are Ready (`RolloutSettings.waiting_for`, computed by the caller; see plan/components.py).

Nodes that were NotReady or cordoned by someone else before the rollout reached them are skipped: they take no
place in the waves, count against no maxUnavailable, fail nothing, are listed in `RolloutPlan.skipped`, and move in
the next wave that starts after they are Ready and uncordoned again, so one bad node never holds the rest back. A node
that turns NotReady while it moves is not skipped: the kubelet reports NotReady when the node's CNI is not ready,
so that is as likely the new revision's fault as not, and its health gate keeps counting (and fails the rollout at
its timeout). Only a swap's node still draining (its label, so its CNI, unchanged) is released and then skipped.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from enum import StrEnum
from typing import Any

from cni_operator.api import vocabulary as L
from cni_operator.api.v1alpha1 import Rollout

MOVE_ANNOTATION = L.MOVE_ANNOTATION
WAVES_SHOWN_AROUND_CURRENT = 3  # status lists the canary and a few waves around the current one, not thousands


class Phase(StrEnum):
    DRAINING = "Draining"  # cordoned, pods being evicted; the label still names the source revision
    VERIFYING = "Verifying"  # label names the target revision; waiting for the health gate


@dataclass(frozen=True)
class Move:
    """A node on its way to `to`; stored as JSON in the node's `cni-operator.dev/move` annotation."""

    to: str
    source: str
    phase: Phase
    since: float  # epoch seconds when the current phase started (the timeouts count from it)
    cordoned: bool  # the operator cordoned the node, so it uncordons it at the end
    rollback: bool = False

    def encode(self) -> str:
        return json.dumps(
            {
                "to": self.to,
                "from": self.source,
                "phase": self.phase.value,
                "since": round(self.since, 3),
                "cordoned": self.cordoned,
                "rollback": self.rollback,
            },
            sort_keys=True,
        )

    @classmethod
    def decode(cls, text: str | None) -> Move | None:
        """The move in an annotation, or None when there is none or it is not ours to understand."""
        if not text:
            return None
        try:
            data = json.loads(text)
            return cls(
                to=str(data["to"]),
                source=str(data["from"]),
                phase=Phase(data["phase"]),
                since=float(data["since"]),
                cordoned=bool(data["cordoned"]),
                rollback=bool(data.get("rollback", False)),
            )
        except (ValueError, KeyError, TypeError):
            return None


@dataclass(frozen=True)
class NodeView:
    """What the planner needs to know about one node."""

    name: str
    revision: str | None  # the node's revision label; None for a node that joined and carries none yet
    unschedulable: bool = False
    labels: Mapping[str, str] = field(default_factory=dict)
    move: Move | None = None
    ready: bool = True  # the Node's Ready condition is True (False and Unknown are not Ready)


@dataclass(frozen=True)
class NodeHealth:
    """The health gate's inputs for a node in flight, about the revision it moves to."""

    ready_pods: int = 0  # Ready CNI pods of that revision on the node
    expected_pods: int = 1  # node DaemonSets that revision renders
    crashlooping: tuple[str, ...] = ()  # "pod: reason" of pods that crash-loop
    datapath: bool | None = None  # the node agent's check for that revision; None where no agent reports
    datapath_message: str = ""
    evictable: int = 0  # Draining only: pods still to leave the node
    eviction_blocked: str = ""  # Draining only: why the last eviction was refused (names the PDB)


@dataclass(frozen=True)
class RolloutSettings:
    target: str
    plugin_of: Mapping[str, str]  # revision -> plugin, for every revision a node carries
    rollout: Rollout
    failed_revision: str = ""  # status says this target already failed: start no node towards it
    require_datapath: bool = True
    # Cluster components of the target (for a rollback: of the revision nodes go back to) that upgrade before the
    # nodes and are not Ready yet (plan.components.not_ready_before_nodes): no node starts while any is listed.
    waiting_for: tuple[str, ...] = ()

    def is_swap(self, source: str) -> bool:
        return self.plugin_of.get(source) != self.plugin_of.get(self.target)


@dataclass(frozen=True)
class NodePatch:
    """One write to a node: label value (None removes), annotation value (None removes), cordon (None: as is)."""

    node: str
    revision: str | None = None
    move: Move | None = None
    clear_move: bool = False
    unschedulable: bool | None = None
    why: str = ""
    starts: bool = False  # the node's first step of this move

    def applied_to(self, node: NodeView) -> NodeView:
        """The node as it is once this patch is written."""
        return replace(
            node,
            revision=self.revision or node.revision,
            unschedulable=node.unschedulable if self.unschedulable is None else self.unschedulable,
            move=self.move if self.move else (None if self.clear_move else node.move),
        )

    def body(self) -> dict[str, Any]:
        """The JSON merge patch for the Node."""
        metadata: dict[str, Any] = {}
        if self.revision is not None:
            metadata["labels"] = {L.NODE_REVISION: self.revision}
        if self.move is not None:
            metadata["annotations"] = {MOVE_ANNOTATION: self.move.encode()}
        elif self.clear_move:
            metadata["annotations"] = {MOVE_ANNOTATION: None}
        body: dict[str, Any] = {"metadata": metadata} if metadata else {}
        if self.unschedulable is not None:
            body["spec"] = {"unschedulable": self.unschedulable}
        return body


@dataclass(frozen=True)
class NodeFailure:
    name: str
    reason: str  # HealthGateTimeout, CrashLoopBackOff, EvictionBlocked, RollbackFailed
    message: str


class SkipReason(StrEnum):
    NOT_READY = "NotReady"
    CORDONED = "Cordoned"  # unschedulable, and not by the operator


@dataclass(frozen=True)
class SkippedNode:
    """A node the rollout left out for now; it moves once it is Ready and uncordoned again."""

    name: str
    reason: SkipReason
    message: str


@dataclass(frozen=True)
class Wave:
    index: int
    nodes: tuple[str, ...]
    state: str  # Pending, InProgress, Succeeded, Failed, RolledBack


@dataclass
class RolloutPlan:
    patches: list[NodePatch] = field(default_factory=list)
    drain: list[str] = field(default_factory=list)  # nodes whose pods to evict now
    failures: list[NodeFailure] = field(default_factory=list)
    failed_revision: str = ""  # the target failed (now or before): no node starts towards it
    waves: list[Wave] = field(default_factory=list)
    wave_count: int = 0
    done: int = 0  # nodes on the target revision that passed the gate
    on_target: int = 0  # nodes labelled with the target revision (in flight or done)
    in_flight: int = 0
    pending: int = 0  # nodes still to move, not counting skipped ones
    paused: bool = False
    skipped: list[SkippedNode] = field(default_factory=list)  # by name; they still run their old revision
    waiting_for: tuple[str, ...] = ()  # cluster components the next wave waits for (RolloutSettings.waiting_for)

    @property
    def complete(self) -> bool:
        """Every node moved: skipped nodes still run an older revision, so a rollout with any is not complete."""
        return self.pending == 0 and self.in_flight == 0 and not self.skipped and not self.failed_revision

    def phase(self) -> str:
        if self.failed_revision:
            return "Failed"
        if self.complete:
            return "Ready"
        if self.paused and self.in_flight == 0:
            return "Paused"
        return "Progressing"


def max_unavailable(value: int | str, total: int) -> int:
    """A count, or a percentage of all nodes rounded down (as Kubernetes does for DaemonSets), at least 1."""
    if isinstance(value, int):
        return max(1, value)
    percent = int(value.rstrip("%"))
    return max(1, math.floor(total * percent / 100))


def wave_order(nodes: Sequence[NodeView], rollout: Rollout) -> tuple[list[str], list[str]]:
    """(canary nodes, the others), each by name: the order nodes move in, the same for every reconcile."""
    names = sorted(n.name for n in nodes)
    selector = rollout.canary.node_selector
    if selector:
        by_name = {n.name: n for n in nodes}
        canary = [n for n in names if all(by_name[n].labels.get(k) == v for k, v in selector.items())]
    else:
        canary = names[: rollout.canary.nodes]
    chosen = set(canary)
    return canary, [n for n in names if n not in chosen]


def plan_rollout(
    nodes: Sequence[NodeView], health: Mapping[str, NodeHealth], settings: RolloutSettings, now: float
) -> RolloutPlan:
    """The next step of moving every node to `settings.target`; every decision is re-derivable from the nodes."""
    target, rollout = settings.target, settings.rollout
    plan = RolloutPlan(paused=rollout.paused)
    failed: set[str] = set()
    finished: set[str] = set()
    moving = [n for n in nodes if n.move]
    for node in moving:
        _advance(node, health.get(node.name, NodeHealth()), settings, now, plan, failed, finished)

    # A failure of a move towards the target fails the target; a move towards a target the spec has since left
    # behind only sends that node back. A node coming back from the target is evidence too (after a crash).
    by_name = {n.name: n for n in nodes}
    forward = {n for n in failed if _move(by_name[n]).to == target and not _move(by_name[n]).rollback}
    superseded = {n for n in failed if _move(by_name[n]).to != target and not _move(by_name[n]).rollback}
    returning = any(n.move and n.move.rollback and n.move.source == target for n in nodes)
    if forward or returning or settings.failed_revision == target:
        plan.failed_revision = target
    if rollout.auto_rollback and (forward or superseded):
        back = [n for n in moving if n.name in superseded or (n.name not in finished and forward)]
        _roll_back(back, finished, plan, now)

    # Where every node stands once the patches above are applied (an unlabelled node runs the target: its
    # DaemonSets adopt nodes without a revision label).
    patched = {p.node: p for p in plan.patches}
    state: dict[str, str] = {}
    revision_after: dict[str, str] = {}
    for node in nodes:
        patch = patched.get(node.name)
        revision_after[node.name] = (patch.revision if patch and patch.revision else node.revision) or target
        if patch and patch.move is not None:
            state[node.name] = "rolling-back" if patch.move.rollback else "in-flight"
        elif node.name in failed and not (patch and patch.clear_move):
            state[node.name] = "failed"
        elif node.move and not (patch and patch.clear_move):
            state[node.name] = "rolling-back" if node.move.rollback else "in-flight"
        elif revision_after[node.name] == target:
            state[node.name] = "done"
        else:
            skip = _skip(patch.applied_to(node) if patch else node, target)
            state[node.name] = "skipped" if skip else "pending"
            if skip:
                plan.skipped.append(skip)
    plan.skipped.sort(key=lambda s: s.name)

    skipped = {s.name for s in plan.skipped}
    waves = _waves(
        [n for n in nodes if n.name not in skipped], [n for n in nodes if n.name in skipped], rollout, len(nodes)
    )
    busy = any(s in ("in-flight", "rolling-back", "failed") for s in state.values())
    if settings.waiting_for and not plan.failed_revision and any(s == "pending" for s in state.values()):
        plan.waiting_for = settings.waiting_for
    if not plan.failed_revision and not rollout.paused and not busy and not plan.waiting_for:
        for wave in waves:
            pending = [n for n in wave if state[n] == "pending"]
            if pending:
                # A node this plan already writes to (it just finished a move towards a target the spec has since
                # left) starts again next reconcile, from its node as written: one patch per node per plan, so
                # its cordon is never lost between two patches.
                for name in (n for n in pending if n not in patched):
                    plan.patches.append(_start(by_name[name], settings, now))
                    state[name] = "in-flight"
                    revision_after[name] = plan.patches[-1].revision or revision_after[name]
                break

    plan.wave_count = len(waves)
    plan.waves = _shown_waves(waves, state)
    plan.done = sum(1 for s in state.values() if s == "done")
    plan.in_flight = sum(1 for s in state.values() if s in ("in-flight", "rolling-back", "failed"))
    plan.pending = sum(1 for s in state.values() if s == "pending")
    plan.on_target = sum(1 for r in revision_after.values() if r == target)
    return plan


def _skip(node: NodeView, target: str) -> SkippedNode | None:
    """Why a node that still has to move sits this rollout out for now (None: it can move)."""
    if not node.ready:
        return SkippedNode(
            node.name,
            SkipReason.NOT_READY,
            f"NotReady: left on its revision, not counted against maxUnavailable; it moves to revision {target} "
            "once Ready again",
        )
    if node.unschedulable:
        return SkippedNode(
            node.name,
            SkipReason.CORDONED,
            f"cordoned by someone else: left on its revision, not counted against maxUnavailable; it moves to "
            f"revision {target} once uncordoned",
        )
    return None


def _waves(nodes: Sequence[NodeView], skipped: Sequence[NodeView], rollout: Rollout, total: int) -> list[list[str]]:
    """The canary and the batches over the nodes that are not skipped; maxUnavailable counts all nodes.

    A canary chosen by node selector whose nodes are all skipped gives way to the first `canary.nodes` (at least
    one) other nodes: a canary still goes first, and the rollout does not wait for nodes that may never return."""
    canary, others = wave_order(nodes, rollout)
    if not canary and wave_order(skipped, rollout)[0] and rollout.canary.node_selector:
        size = max(1, rollout.canary.nodes)
        canary, others = others[:size], others[size:]
    batch = max_unavailable(rollout.max_unavailable, total)
    return ([canary] if canary else []) + [others[i : i + batch] for i in range(0, len(others), batch)]


def _move(node: NodeView) -> Move:
    assert node.move is not None
    return node.move


def _advance(
    node: NodeView,
    health: NodeHealth,
    settings: RolloutSettings,
    now: float,
    plan: RolloutPlan,
    failed: set[str],
    finished: set[str],
) -> None:
    """One step for a node already moving: drain, switch, verify, finish, or fail."""
    move = node.move
    assert move is not None
    rollout = settings.rollout
    waited = now - move.since
    if move.phase is Phase.DRAINING and not node.ready and not move.rollback:
        # Its own CNI still runs (the label did not change), so the NotReady is not the target's doing; pods on a
        # NotReady node cannot confirm their eviction. Let it go; it is skipped until Ready, then starts again.
        plan.patches.append(_release(node.name, move, "NotReady while draining: released before its switch"))
        finished.add(node.name)
        return
    if move.phase is Phase.DRAINING and move.to != settings.target and not move.rollback:
        if settings.is_swap(move.source):  # still a swap: keep draining, towards the new target
            plan.patches.append(NodePatch(node.name, move=replace(move, to=settings.target), why="new target"))
            plan.drain.append(node.name)
        else:  # the new target is the plugin the node runs: nothing to drain
            switched = replace(move, to=settings.target, phase=Phase.VERIFYING, since=now)
            plan.patches.append(NodePatch(node.name, revision=settings.target, move=switched, why="new target"))
        return
    if move.phase is Phase.DRAINING:
        if health.evictable == 0:
            plan.patches.append(
                NodePatch(
                    node.name,
                    revision=move.to,
                    move=replace(move, phase=Phase.VERIFYING, since=now),
                    why=f"drained: switch to revision {move.to}",
                )
            )
            return
        plan.drain.append(node.name)
        if waited > rollout.eviction_timeout_seconds:
            plan.failures.append(
                NodeFailure(
                    node.name,
                    "EvictionBlocked",
                    f"{health.evictable} pods still on the node after {int(waited)}s"
                    + (f": {health.eviction_blocked}" if health.eviction_blocked else "")
                    + "; the operator keeps retrying: scale up the workload or relax its PodDisruptionBudget",
                )
            )
        return

    healthy = health.ready_pods >= health.expected_pods and not health.crashlooping
    if healthy and settings.require_datapath and health.datapath is False:
        healthy = False
    if healthy:
        plan.patches.append(_release(node.name, move, f"healthy on revision {move.to}"))
        finished.add(node.name)
        return
    if move.rollback:
        if health.crashlooping or waited > rollout.health_gate.timeout_seconds:
            failed.add(node.name)
            plan.failures.append(
                NodeFailure(
                    node.name,
                    "RollbackFailed",
                    f"not healthy on revision {move.to} after rolling back ({_unhealthy(health)}); the node stays "
                    "cordoned: inspect its CNI pods",
                )
            )
        return
    if health.crashlooping:
        reason, detail = "CrashLoopBackOff", ", ".join(health.crashlooping)
    elif waited > rollout.health_gate.timeout_seconds:
        reason, detail = "HealthGateTimeout", f"not healthy after {int(waited)}s: {_unhealthy(health)}"
    else:
        return
    failed.add(node.name)
    plan.failures.append(NodeFailure(node.name, reason, f"revision {move.to}: {detail}"))


def _unhealthy(health: NodeHealth) -> str:
    parts = [f"{health.ready_pods} of {health.expected_pods} CNI pods Ready"]
    if health.crashlooping:
        parts.append("crash-looping: " + ", ".join(health.crashlooping))
    if health.datapath is False:
        parts.append("datapath check failed" + (f": {health.datapath_message}" if health.datapath_message else ""))
    return "; ".join(parts)


def _roll_back(nodes: Iterable[NodeView], finished: set[str], plan: RolloutPlan, now: float) -> None:
    """Failed and in-flight nodes go back where they came from; nodes not yet switched are simply released."""
    for node in nodes:
        move = node.move
        assert move is not None
        if move.rollback or node.name in finished:
            continue
        plan.patches = [p for p in plan.patches if p.node != node.name]
        if node.revision == move.source:  # still draining: the label never changed
            plan.drain = [n for n in plan.drain if n != node.name]
            plan.patches.append(_release(node.name, move, "rollback: released before its switch"))
            finished.add(node.name)
        else:
            plan.patches.append(
                NodePatch(
                    node.name,
                    revision=move.source,
                    move=Move(move.source, move.to, Phase.VERIFYING, now, move.cordoned, rollback=True),
                    why=f"rolling back to revision {move.source}",
                )
            )


def _release(node: str, move: Move, why: str) -> NodePatch:
    """The end of a move: the annotation cleared, and the node uncordoned if the operator cordoned it."""
    return NodePatch(node, clear_move=True, unschedulable=False if move.cordoned else None, why=why)


def _start(node: NodeView, settings: RolloutSettings, now: float) -> NodePatch:
    source = node.revision or ""
    cordoned = not node.unschedulable  # always True for new moves (cordoned nodes are skipped); kept for safety
    if settings.is_swap(source):
        move = Move(settings.target, source, Phase.DRAINING, now, cordoned)
        return NodePatch(node.name, move=move, unschedulable=True, why="swap: cordon and drain", starts=True)
    move = Move(settings.target, source, Phase.VERIFYING, now, cordoned)
    return NodePatch(
        node.name,
        revision=settings.target,
        move=move,
        unschedulable=True,
        why="upgrade: cordon and switch",
        starts=True,
    )


def _shown_waves(waves: list[list[str]], state: Mapping[str, str]) -> list[Wave]:
    """Wave progress for status: the canary and the waves around the current one (a 5,000 node cluster has
    thousands of waves; status shows where the rollout is, the node labels hold the rest)."""
    result = []
    current = next(
        (i for i, wave in enumerate(waves) if any(state[n] != "done" for n in wave)),
        len(waves) - 1,
    )
    for index, wave in enumerate(waves):
        if index != 0 and abs(index - current) > WAVES_SHOWN_AROUND_CURRENT:
            continue
        states = {state[n] for n in wave}
        if "failed" in states:
            label = "Failed"
        elif "rolling-back" in states:
            label = "RolledBack"
        elif states == {"done"}:
            label = "Succeeded"
        elif states & {"in-flight"} or ("done" in states):
            label = "InProgress"
        else:
            label = "Pending"
        result.append(Wave(index, tuple(wave), label))
    return result
