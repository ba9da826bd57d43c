"""ClusterNetwork status from what the reconcile observed: conditions shaped for kstatus (Flux) and Argo CD.

kstatus reads `observedGeneration` and a `Ready` condition; Argo CD's health check (docs/gitops.md) reads `Ready`,
`Progressing` and `Degraded`. Conditions keep their lastTransitionTime while their status does not change.
"""

from __future__ import annotations

import datetime
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

READY = "Ready"
PROGRESSING = "Progressing"
DEGRADED = "Degraded"
COMPATIBLE = "Compatible"  # version skew, positive polarity: see plan/skew.py


def now() -> str:
    return datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass(frozen=True)
class ConditionUpdate:
    type: str
    status: bool | None  # None: Unknown
    reason: str
    message: str = ""


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
