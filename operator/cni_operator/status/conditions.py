"""ClusterNetwork status from what the reconcile observed: conditions shaped for kstatus (Flux) and Argo CD.

kstatus reads `observedGeneration` and a `Ready` condition; Argo CD's health check (docs/gitops.md) reads `Ready`,
`Progressing` and `Degraded`. Conditions keep their lastTransitionTime while their status does not change.
"""

from __future__ import annotations

import datetime
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from cni_operator.api.conditions import ConditionUpdate
from cni_operator.api.vocabulary import COMPATIBLE, DEGRADED, PROGRESSING, READY
from cni_operator.plan.rollout import RolloutPlan

__all__ = ["COMPATIBLE", "DEGRADED", "PROGRESSING", "READY", "ConditionUpdate"]


def now() -> str:
    return datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass(frozen=True)
class Observation:
    """What one reconcile found out, in the terms status speaks."""

    generation: int
    phase: str
    message: str
    conditions: Sequence[ConditionUpdate]
    target_revision: str = ""
    current_revision: str = ""
    nodes_total: int = 0
    nodes_updated: int = 0
    nodes_ready: int = 0
    extra: dict[str, Any] = field(default_factory=dict)


def merge_conditions(
    previous: Sequence[dict[str, Any]], updates: Sequence[ConditionUpdate], generation: int, at: str | None = None
) -> list[dict[str, Any]]:
    """New condition list: updated types replace old ones, keeping lastTransitionTime when status is unchanged."""
    by_type = {c.get("type"): c for c in previous}
    stamp = at or now()
    merged = []
    for update in updates:
        status = "Unknown" if update.status is None else ("True" if update.status else "False")
        old = by_type.pop(update.type, None)
        changed = old is None or old.get("status") != status
        merged.append(
            {
                "type": update.type,
                "status": status,
                "reason": update.reason,
                "message": update.message,
                "lastTransitionTime": stamp if changed else old["lastTransitionTime"],  # type: ignore[index]
                "observedGeneration": generation,
            }
        )
    merged.extend(by_type.values())  # types this reconcile did not speak about stay as they were
    return merged


def status_patch(previous_status: dict[str, Any] | None, observation: Observation) -> dict[str, Any]:
    """The `status` to write, merged onto what was there."""
    previous = previous_status or {}
    patch: dict[str, Any] = {
        "observedGeneration": observation.generation,
        "phase": observation.phase,
        "message": observation.message,
        "conditions": merge_conditions(previous.get("conditions", []), observation.conditions, observation.generation),
        "nodes": {
            "total": observation.nodes_total,
            "updated": observation.nodes_updated,
            "ready": observation.nodes_ready,
        },
        **observation.extra,
    }
    if observation.target_revision:
        patch["targetRevision"] = observation.target_revision
    if observation.current_revision:
        patch["currentRevision"] = observation.current_revision
    return patch


def ready(generation: int, revision: str, total: int, message: str) -> Observation:
    return Observation(
        generation=generation,
        phase="Ready",
        message=message,
        target_revision=revision,
        current_revision=revision,
        nodes_total=total,
        nodes_updated=total,
        nodes_ready=total,
        conditions=[
            ConditionUpdate(READY, True, "RolloutComplete", message),
            ConditionUpdate(PROGRESSING, False, "RolloutComplete", "every node runs the target revision"),
            ConditionUpdate(DEGRADED, False, "AsExpected"),
        ],
    )


def progressing(
    generation: int, revision: str, total: int, updated: int, ready_count: int, message: str
) -> Observation:
    return Observation(
        generation=generation,
        phase="Progressing",
        message=message,
        target_revision=revision,
        nodes_total=total,
        nodes_updated=updated,
        nodes_ready=ready_count,
        conditions=[
            ConditionUpdate(READY, False, "RolloutInProgress", message),
            ConditionUpdate(PROGRESSING, True, "RolloutInProgress", message),
            ConditionUpdate(DEGRADED, False, "AsExpected"),
        ],
    )


def degraded(generation: int, reason: str, message: str, *, phase: str = "Degraded", **extra: Any) -> Observation:
    """Something stops the operator from acting; the running network is left as it is."""
    return Observation(
        generation=generation,
        phase=phase,
        message=message,
        conditions=[
            ConditionUpdate(READY, False, reason, message),
            ConditionUpdate(PROGRESSING, False, reason, "nothing is changed until this is fixed"),
            ConditionUpdate(DEGRADED, True, reason, message),
        ],
        extra=extra,
    )


def rollout(generation: int, target: str, current: str, plan: RolloutPlan, ready_count: int, total: int) -> Observation:
    """Status of a reconcile that moved nodes: where the rollout is, and when it stopped, why and what to do."""
    if plan.complete and total and ready_count >= total:
        return ready(generation, target, total, f"revision {target} runs on all {total} nodes")
    counts = dict(
        target_revision=target,
        current_revision=current,
        nodes_total=total,
        nodes_updated=plan.on_target,
        nodes_ready=plan.done if not plan.complete else ready_count,
    )
    forward = [f for f in plan.failures if f.reason != "EvictionBlocked"]
    blocked = [f for f in plan.failures if f.reason == "EvictionBlocked"]
    if plan.failed_revision:
        moving_back = plan.in_flight
        where = "; ".join(f"{f.name}: {f.reason}: {f.message}" for f in forward[:5]) or "see failedNodes"
        next_step = (
            f"{moving_back} nodes are still on their way back to their previous revision; "
            if moving_back
            else "nodes that failed are back on their previous revision or stay cordoned; "
        )
        message = (
            f"the rollout of revision {target} failed and stopped ({where}); {next_step}"
            "fix the cause and change the spec (a new revision rolls out), or set the spec back to the previous "
            "version to move every node back"
        )
        reason = forward[0].reason if forward else "RolloutFailed"
        return Observation(
            generation=generation,
            phase="Failed",
            message=message,
            conditions=[
                ConditionUpdate(READY, False, "RolloutFailed", message),
                ConditionUpdate(PROGRESSING, False, "RolloutFailed", "no more nodes move to the failed revision"),
                ConditionUpdate(DEGRADED, True, reason, message),
            ],
            **counts,  # type: ignore[arg-type]
        )
    wave = next((w for w in plan.waves if w.state in ("InProgress", "Failed", "RolledBack")), None)
    where = f"wave {wave.index + 1} of {plan.wave_count}: " if wave else ""
    message = f"{where}{plan.on_target} of {total} nodes on revision {target}, {plan.done} passed the health gate"
    if plan.in_flight:
        message += f", {plan.in_flight} in flight"
    if plan.paused and plan.in_flight == 0 and plan.pending:
        message = f"paused by spec.rollout.paused: {message}; {plan.pending} nodes wait. Set paused: false to resume"
        return Observation(
            generation=generation,
            phase="Paused",
            message=message,
            conditions=[
                ConditionUpdate(READY, False, "RolloutPaused", message),
                ConditionUpdate(PROGRESSING, False, "RolloutPaused", message),
                ConditionUpdate(DEGRADED, False, "AsExpected"),
            ],
            **counts,  # type: ignore[arg-type]
        )
    degraded_update = ConditionUpdate(DEGRADED, False, "AsExpected")
    if blocked:
        detail = "; ".join(f"{f.name}: {f.message}" for f in blocked[:5])
        message += f"; evictions blocked: {detail}"
        degraded_update = ConditionUpdate(DEGRADED, True, "EvictionBlocked", detail)
    return Observation(
        generation=generation,
        phase="Progressing",
        message=message,
        conditions=[
            ConditionUpdate(READY, False, "RolloutInProgress", message),
            ConditionUpdate(PROGRESSING, True, "RolloutInProgress", message),
            degraded_update,
        ],
        **counts,  # type: ignore[arg-type]
    )
