"""ClusterNetwork status from what the reconcile decided: conditions shaped for kstatus (Flux) and Argo CD.

kstatus reads `observedGeneration` and a `Ready` condition; Argo CD's health check (docs/gitops.md) reads `Ready`,
`Progressing` and `Degraded`. Conditions keep their lastTransitionTime while their status does not change.

Status is typed end to end: the previous status is read into `ClusterNetworkStatus` once, and the next one is
built as a `ClusterNetworkStatus` (validated by the same model the CRD schema is generated from), so what the
operator writes and what the schema admits cannot drift apart.
"""

from __future__ import annotations

import datetime
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from pydantic import ValidationError

from cni_operator.api.conditions import ConditionUpdate
from cni_operator.api.v1alpha1 import ClusterNetworkStatus, Condition
from cni_operator.api.vocabulary import COMPATIBLE, DEGRADED, PROGRESSING, READY
from cni_operator.plan.rollout import RolloutPlan

__all__ = ["COMPATIBLE", "DEGRADED", "PROGRESSING", "READY", "ConditionUpdate"]

log = logging.getLogger(__name__)


def now() -> str:
    return datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def read_status(raw: Mapping[str, Any] | None) -> ClusterNetworkStatus:
    """The status as the operator last wrote it. A field that no longer fits the model (written by an older operator,
    or edited by hand) is dropped, with a warning, instead of stopping every reconcile."""
    data = dict(raw or {})
    try:
        return ClusterNetworkStatus.model_validate(data)
    except ValidationError as err:
        bad = {str(e["loc"][0]) for e in err.errors() if e["loc"]}
        log.warning("status fields %s do not fit the ClusterNetworkStatus model and are ignored", sorted(bad))
        kept = {k: v for k, v in data.items() if k not in bad}
        try:
            return ClusterNetworkStatus.model_validate(kept)
        except ValidationError:
            return ClusterNetworkStatus()


def status_body(status: ClusterNetworkStatus) -> dict[str, Any]:
    """The JSON the API server stores (camelCase, enums as strings)."""
    return status.model_dump(by_alias=True, mode="json")


@dataclass(frozen=True)
class Observation:
    """What one reconcile found out, in the terms status speaks; `fields` are further ClusterNetworkStatus fields
    by their Python names (revision_history, waves, ...)."""

    generation: int
    phase: str
    message: str
    conditions: Sequence[ConditionUpdate]
    target_revision: str = ""
    current_revision: str = ""
    nodes_total: int = 0
    nodes_updated: int = 0
    nodes_ready: int = 0
    fields: Mapping[str, Any] = field(default_factory=dict)


def merge_conditions(
    previous: Sequence[Condition], updates: Sequence[ConditionUpdate], generation: int, at: str | None = None
) -> list[Condition]:
    """New condition list: updated types replace old ones, keeping lastTransitionTime when status is unchanged."""
    by_type = {c.type: c for c in previous}
    stamp = at or now()
    merged = []
    for update in updates:
        status = "Unknown" if update.status is None else ("True" if update.status else "False")
        old = by_type.pop(update.type, None)
        changed = old is None or old.status.value != status
        merged.append(
            Condition.model_validate(
                {
                    "type": update.type,
                    "status": status,
                    "reason": update.reason,
                    "message": update.message,
                    "lastTransitionTime": stamp if changed or old is None else old.last_transition_time,
                    "observedGeneration": generation,
                }
            )
        )
    merged.extend(by_type.values())  # types this reconcile did not speak about stay as they were
    return merged


def next_status(
    previous: ClusterNetworkStatus, observation: Observation, at: str | None = None
) -> ClusterNetworkStatus:
    """The status to write: the observation merged onto what was there."""
    data = previous.model_dump()
    data.update(
        observed_generation=observation.generation,
        phase=observation.phase,
        message=observation.message,
        conditions=merge_conditions(previous.conditions, observation.conditions, observation.generation, at),
        nodes={
            "total": observation.nodes_total,
            "updated": observation.nodes_updated,
            "ready": observation.nodes_ready,
        },
        **observation.fields,
    )
    if observation.target_revision:
        data["target_revision"] = observation.target_revision
    if observation.current_revision:
        data["current_revision"] = observation.current_revision
    return ClusterNetworkStatus.model_validate(data)


def condition(status: ClusterNetworkStatus, type_: str) -> Condition | None:
    return next((c for c in status.conditions if c.type == type_), None)


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


def degraded(
    generation: int,
    reason: str,
    message: str,
    *,
    phase: str = "Degraded",
    nodes_total: int = 0,
    nodes_updated: int = 0,
    nodes_ready: int = 0,
) -> Observation:
    """Something stops the operator from acting; the running network is left as it is."""
    return Observation(
        generation=generation,
        phase=phase,
        message=message,
        nodes_total=nodes_total,
        nodes_updated=nodes_updated,
        nodes_ready=nodes_ready,
        conditions=[
            ConditionUpdate(READY, False, reason, message),
            ConditionUpdate(PROGRESSING, False, reason, "nothing is changed until this is fixed"),
            ConditionUpdate(DEGRADED, True, reason, message),
        ],
    )


def refused(observation: Observation, reason: str, refusal: str) -> Observation:
    """A rollout status with a refused edit on top: the rollout of the last accepted revision goes on (nodes in
    flight finish or roll back, drift is repaired), and Degraded says the edit was refused and why."""
    message = f"{refusal}; {observation.message}"
    updates = [c for c in observation.conditions if c.type not in (DEGRADED, READY)]
    return Observation(
        generation=observation.generation,
        phase="Degraded",
        message=message,
        target_revision=observation.target_revision,
        current_revision=observation.current_revision,
        nodes_total=observation.nodes_total,
        nodes_updated=observation.nodes_updated,
        nodes_ready=observation.nodes_ready,
        conditions=[
            ConditionUpdate(READY, False, reason, message),
            *updates,
            ConditionUpdate(DEGRADED, True, reason, refusal),
        ],
        fields=observation.fields,
    )


def rollout(generation: int, target: str, current: str, plan: RolloutPlan, ready_count: int, total: int) -> Observation:
    """Status of a reconcile that moved nodes: where the rollout is, and when it stopped, why and what to do."""
    if plan.complete and total and ready_count >= total:
        return ready(generation, target, total, f"revision {target} runs on all {total} nodes")
    counts: dict[str, Any] = dict(
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
            **counts,
        )
    wave = next((w for w in plan.waves if w.state in ("InProgress", "Failed", "RolledBack")), None)
    where = f"wave {wave.index + 1} of {plan.wave_count}: " if wave else ""
    message = f"{where}{plan.on_target} of {total} nodes on revision {target}, {plan.done} passed the health gate"
    if plan.in_flight:
        message += f", {plan.in_flight} in flight"
    if plan.complete and ready_count < total:
        message += f"; {ready_count} of {total} nodes have every CNI pod of the revision Ready"
    if plan.waiting_for and plan.pending:
        message += f"; the next wave waits for {', '.join(plan.waiting_for)} to be Ready"
    if plan.skipped:
        shown = ", ".join(f"{s.name} ({s.reason.value})" for s in plan.skipped[:5])
        more = f" and {len(plan.skipped) - 5} more" if len(plan.skipped) > 5 else ""
        message += f"; skipped until back: {shown}{more}"
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
            **counts,
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
        **counts,
    )
