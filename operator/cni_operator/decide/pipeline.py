"""`decide(snapshot, catalog, now)`: the whole reconcile as one pure function, its steps as named calls in order.

    validate and fill defaults -> is the change safe -> version skew -> render (target and old revisions)
    -> upgrade path -> plan the rollout -> objects (apply now / after every node moved / delete) -> status -> events

An edit that any of the first steps refuses never strands the cluster: the pipeline then runs on the last accepted
spec (the target revision's record in status.revisionHistory), so nodes in flight finish or roll back, timeouts
keep counting and drift of the running revision is repaired, while status says the edit was refused and why.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

from cni_operator.api import vocabulary as L
from cni_operator.api.nodestate import NodeNetworkStateStatus
from cni_operator.api.v1alpha1 import (
    ClusterNetworkSpec,
    ClusterNetworkStatus,
    FailedNode,
    NodeCleanup,
    RevisionRecord,
    SkewFinding,
    SkippedNode,
    SpecWarning,
    WaveProgress,
)
from cni_operator.catalog.loader import Catalog, CatalogError
from cni_operator.catalog.model import ComponentScope, PluginRelease
from cni_operator.decide.decision import Decision, Event, Eviction, FailureRecord, ObjectRef
from cni_operator.decide.snapshot import DESTRUCTIVE_KINDS, MANAGED_KINDS, LiveObject, Snapshot, object_key
from cni_operator.plan import skew as S
from cni_operator.plan.change import check_change, confirmations
from cni_operator.plan.components import components_after_nodes, not_ready_before_nodes
from cni_operator.plan.rollout import NodeHealth, NodePatch, NodeView, Phase, RolloutPlan, RolloutSettings, plan_rollout
from cni_operator.plan.upgrade import check_step
from cni_operator.plan.validate import Problem, SpecError, ValidatedSpec, validate
from cni_operator.render.engine import NOT_IN_REVISION, Renderer, RenderError, Rendering, canonical_spec
from cni_operator.status import agents
from cni_operator.status import conditions as C

log = logging.getLogger(__name__)
HISTORY_LIMIT = 10
WAVE_NODES_SHOWN = 50  # status stays small on 5,000 nodes; the node labels say where every node is
RETRY_IN_FLIGHT = 2.0  # seconds: timeouts and drains advance with time, not only with events
RETRY_NOT_READY = 10.0
WORKLOAD_KINDS = frozenset({"Deployment", "DaemonSet", "StatefulSet"})
SKIPPED_SHOWN = 50


# -- the steps' values -------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Refusal:
    """Why the spec as written cannot be rolled out; nothing of it is applied."""

    reason: str  # InvalidSpec, UnsafeChange, UnsupportedRelease, UpgradePathRefused
    message: str
    skew: S.SkewReport | None = None


@dataclass(frozen=True)
class Target:
    """An accepted spec, rendered: the revision every node is to run."""

    validated: ValidatedSpec
    defaulted: dict[str, Any]  # the spec fields defaults filled in (carried forward by later reconciles)
    skew: S.SkewReport
    rendering: Rendering
    old: Mapping[str, Rendering | None]  # other revisions nodes run, rendered again (None: cannot be)
    adopt_as: str  # the revision unlabelled nodes run: their DaemonSets adopted them
    warnings: tuple[Problem, ...] = ()  # what the accepted change deserves a look at (status.warnings)


# -- the pipeline --------------------------------------------------------------------------------------------------


def decide(snapshot: Snapshot, catalog: Catalog, now: float, *, renderer: Renderer | None = None) -> Decision:
    """The one decision of this reconcile; `now` (epoch seconds) drives the rollout's timeouts."""
    network = snapshot.network
    if snapshot.active != network.name:
        return _inactive(snapshot)
    renderer = renderer or Renderer(catalog)
    previous = network.status
    accepted = _record(previous, previous.target_revision)

    proposal = _propose(snapshot, catalog, renderer, network.spec, accepted, is_edit=True)
    refusal = proposal if isinstance(proposal, Refusal) else None
    target: Target | Refusal = proposal
    if refusal is not None:
        target = (
            _propose(snapshot, catalog, renderer, accepted.spec, accepted, is_edit=False)
            if accepted is not None and accepted.spec
            else refusal
        )
    if isinstance(target, Refusal):
        return _nothing_to_roll_out(snapshot, refusal or target, target)

    nodes = [replace(n, revision=n.revision or target.adopt_as) for n in snapshot.nodes]
    adopt = tuple(
        NodePatch(n.name, revision=target.adopt_as, why="label: the revision it runs")
        for n in snapshot.nodes
        if n.revision is None
    )
    plan = plan_node_moves(snapshot, target, nodes, now)
    after = nodes_after(nodes, plan)
    in_use = revisions_in_use(after, unlabelled_as=target.rendering.revision)
    apply_now, apply_after, delete = objects(snapshot, target, in_use)
    skew = proposal_skew(proposal, target)
    status = compute_status(snapshot, target, plan, in_use, refusal, skew)
    failure = None
    if plan.failed_revision and previous.failed_revision != plan.failed_revision:
        failure = FailureRecord(plan.failed_revision, tuple(status.failed_nodes))
    events = compute_events(previous, status, target, plan, refusal, skew)
    retry = RETRY_IN_FLIGHT if plan.in_flight else (RETRY_NOT_READY if status.phase != "Ready" else None)
    drains = tuple(plan.drain)
    return Decision(
        network=network.name,
        status=status,
        events=tuple(events),
        failure=failure,
        adopt=adopt,
        apply_now=tuple(apply_now),
        node_patches=tuple(plan.patches),
        evictions=tuple(evictions(snapshot, drains)),
        drained=drains,
        apply_after=tuple(apply_after),
        delete=tuple(delete),
        retry_after=retry,
        nodes_per_revision=_count_revisions(after),
        resource_versions={o.key: o.resource_version for o in snapshot.objects},
        listed_kinds=frozenset(snapshot.listed_kinds),
    )


def _propose(
    snapshot: Snapshot,
    catalog: Catalog,
    renderer: Renderer,
    raw_spec: Any,
    accepted: RevisionRecord | None,
    *,
    is_edit: bool,
) -> Target | Refusal:
    """Steps 1-5 for one spec: the user's (an edit), or the last accepted one (to carry on with after a refusal)."""
    filled = validate_and_fill_defaults(raw_spec, catalog, accepted, snapshot.server_version)
    if isinstance(filled, Refusal):
        return filled
    validated, defaulted = filled
    if not is_edit and accepted is not None:
        defaulted = dict(accepted.defaulted)  # the recorded spec is complete: its defaults are the record's own
    warnings: tuple[Problem, ...] = ()
    if is_edit:
        safety = is_change_safe(accepted, validated, catalog, snapshot)
        if isinstance(safety, Refusal):
            return safety
        warnings = (*validated.warnings, *safety)
    elif accepted is not None:
        warnings = tuple(Problem(w.field, w.message) for w in snapshot.network.status.warnings)
    skew = evaluate_skew(snapshot, catalog, validated)
    if skew.refused:
        return Refusal("UnsupportedRelease", f"nothing was changed: {skew.message}", skew)
    try:
        rendering, old, adopt_as = render_revisions(snapshot, catalog, renderer, validated)
    except (SpecError, RenderError, ValueError) as err:
        return Refusal("RenderFailed", f"the spec cannot be rendered; nothing was changed: {err}", skew)
    refused_path = check_upgrade_path(snapshot, catalog, validated, rendering, old, adopt_as)
    if refused_path is not None:
        return replace(refused_path, skew=skew)
    return Target(validated, defaulted, skew, rendering, old, adopt_as, warnings)


def proposal_skew(proposal: Target | Refusal, target: Target) -> S.SkewReport:
    """The skew report status shows: the edit's when it got that far (a refused target says why), else the
    accepted target's."""
    if isinstance(proposal, Refusal) and proposal.skew is not None:
        return proposal.skew
    return target.skew


# -- 1. validate and fill defaults -------------------------------------------------------------------------------


def validate_and_fill_defaults(
    raw_spec: Any, catalog: Catalog, accepted: RevisionRecord | None, kubernetes_version: str
) -> tuple[ValidatedSpec, dict[str, Any]] | Refusal:
    """The spec with its defaults: those the running revision was rendered with are carried forward (a default
    changed by a newer operator does not re-roll every node); fields the user sets always win."""
    carried = accepted.defaulted if accepted is not None else {}
    raw = carry_defaults(raw_spec, carried) if isinstance(raw_spec, dict) else raw_spec
    try:
        validated = validate(raw, catalog, kubernetes_version=kubernetes_version)
    except SpecError as err:
        message = "the spec cannot be rolled out; nothing was changed: " + "; ".join(map(str, err.problems))
        return Refusal("InvalidSpec", message)
    given = raw_spec if isinstance(raw_spec, dict) else {}
    validated = replace(validated, spec=pinned_spec(validated))  # renders the same whatever the cluster does later
    return validated, defaulted_fields(validated.spec, given=given)


def pinned_spec(validated: ValidatedSpec) -> ClusterNetworkSpec:
    """The spec with the releases defaults chose written in (an empty spec.multus.version is the overlay release
    validation picked for this cluster), so a recorded revision renders the same again and a later Kubernetes
    upgrade does not silently move the overlay."""
    spec = validated.spec
    if spec.multus.enabled and not spec.multus.version and validated.overlays:
        multus = spec.multus.model_copy(update={"version": validated.overlays[0].version})
        spec = spec.model_copy(update={"multus": multus})
    return spec


def defaulted_fields(spec: ClusterNetworkSpec, *, given: Mapping[str, Any]) -> dict[str, Any]:
    """The node-shaping spec fields the user did not write, with the values defaults gave them."""
    full = spec.model_dump(by_alias=True, mode="json")
    return {k: v for k, v in _missing(full, given).items() if k not in NOT_IN_REVISION}


def _missing(full: Mapping[str, Any], given: Mapping[str, Any]) -> dict[str, Any]:
    result: dict[str, Any] = {}
    for key, value in full.items():
        if key == "settings":
            continue  # free-form: a release's own defaults are facts of that release file, not spec defaults
        if key not in given:
            result[key] = value
        elif isinstance(value, dict) and isinstance(given[key], dict):
            nested = _missing(value, given[key])
            if nested:
                result[key] = nested
    return result


def carry_defaults(raw: Mapping[str, Any], carried: Mapping[str, Any]) -> dict[str, Any]:
    """`raw` with every carried default it does not set itself."""
    result = dict(raw)
    for key, value in carried.items():
        if key not in result:
            result[key] = value
        elif isinstance(value, dict) and isinstance(result[key], dict):
            result[key] = carry_defaults(result[key], value)
    return result


# -- 2. is the change safe ---------------------------------------------------------------------------------------


def is_change_safe(
    accepted: RevisionRecord | None, proposed: ValidatedSpec, catalog: Catalog, snapshot: Snapshot
) -> Refusal | tuple[Problem, ...]:
    """Changes a running network cannot take node by node are refused, naming the field and the way to do it
    (plan/change.py; the ClusterNetwork's confirm-change annotation waives a refusal once the user did that);
    otherwise the warnings worth showing in status."""
    if accepted is None or not accepted.spec or not snapshot.nodes:
        return ()  # a first install has no running network to split
    try:
        running = ClusterNetworkSpec.model_validate(accepted.spec)
    except ValueError:
        return ()
    confirmed = confirmations(snapshot.network.annotations.get(L.CONFIRM_CHANGE))
    verdict = check_change(running, proposed.spec, catalog, confirmed)
    if verdict.safe:
        return verdict.warnings
    message = "the change cannot be rolled out; nothing was changed: " + "; ".join(map(str, verdict.refusals))
    return Refusal("UnsafeChange", message)


# -- 3. version skew ---------------------------------------------------------------------------------------------


def evaluate_skew(snapshot: Snapshot, catalog: Catalog, validated: ValidatedSpec) -> S.SkewReport:
    running = releases_in_use(snapshot.network.status, catalog, (n.revision or "" for n in snapshot.nodes))
    return S.evaluate(
        snapshot.cluster,
        catalog,
        (validated.release, *validated.overlays),
        running,
        allow_unsupported=validated.spec.version_policy.allow_unsupported,
    )


def releases_in_use(
    status: ClusterNetworkStatus, catalog: Catalog, node_revisions: Iterable[str] = ()
) -> list[PluginRelease]:
    """The releases (primary and overlays) of the revisions in use: the current one, the target being rolled out
    and any a node is labelled with, looked up in status.revisionHistory. A revision with no record (written by
    an older operator) or a release gone from the catalog is left out."""
    in_use = {status.current_revision, status.target_revision, *node_revisions} - {""}
    releases: dict[str, PluginRelease] = {}
    for record in status.revision_history:
        if record.revision not in in_use:
            continue
        keys = [(record.plugin.value, record.version), *(_split_key(o) for o in record.overlays)]
        for plugin, version in keys:
            try:
                release = catalog.get(plugin, version)
            except CatalogError:
                continue
            releases.setdefault(release.key, release)
    return list(releases.values())


# -- 4. render ---------------------------------------------------------------------------------------------------


def render_revisions(
    snapshot: Snapshot, catalog: Catalog, renderer: Renderer, validated: ValidatedSpec
) -> tuple[Rendering, dict[str, Rendering | None], str]:
    """The target revision, and every other revision a node runs or moves between, rendered again from its record
    (without adopting unlabelled nodes) so drift repair keeps working on them mid-rollout."""
    status = snapshot.network.status
    rendering = renderer.render(validated, kubernetes_version=snapshot.server_version)
    target = rendering.revision
    previous_target = status.target_revision
    adopt_as = previous_target if previous_target and previous_target != target else target
    sources = revisions_in_use(snapshot.nodes, unlabelled_as=adopt_as) - {target}
    old = {r: _render_again(catalog, renderer, _record(status, r), r, snapshot.server_version) for r in sorted(sources)}
    return rendering, old, adopt_as


def _render_again(
    catalog: Catalog, renderer: Renderer, record: RevisionRecord | None, revision: str, server_version: str
) -> Rendering | None:
    """None when impossible (no record, or the catalog or templates changed so that it renders another revision):
    that revision's live objects are then kept as they are."""
    if record is None or not record.spec:
        return None
    try:
        again = renderer.render(
            validate(record.spec, catalog), kubernetes_version=server_version, adopt_unlabelled_nodes=False
        )
    except (SpecError, RenderError, ValueError) as err:
        log.warning("revision %s cannot be rendered again (%s): its live objects are kept as they are", revision, err)
        return None
    if again.revision != revision:
        log.warning("revision %s renders as %s now: its live objects are kept as they are", revision, again.revision)
        return None
    return again


# -- 5. upgrade path ---------------------------------------------------------------------------------------------


def check_upgrade_path(
    snapshot: Snapshot,
    catalog: Catalog,
    validated: ValidatedSpec,
    rendering: Rendering,
    old: Mapping[str, Rendering | None],
    adopt_as: str,
) -> Refusal | None:
    records = {r.revision: r for r in snapshot.network.status.revision_history}
    running = [(records[r].plugin.value, records[r].version) for r in old if r in records]
    refusal = check_step(catalog, running, validated.release)
    return Refusal("UpgradePathRefused", f"nothing was changed: {refusal}") if refusal else None


# -- 6. plan the rollout -----------------------------------------------------------------------------------------


def plan_node_moves(snapshot: Snapshot, target: Target, nodes: Sequence[NodeView], now: float) -> RolloutPlan:
    rendering, status = target.rendering, snapshot.network.status
    records = {r.revision: r for r in status.revision_history}
    plugin_of = {r: rec.plugin.value for r, rec in records.items()} | {rendering.revision: rendering.release.plugin}
    plugin_of |= {r: o.release.plugin for r, o in target.old.items() if o is not None}
    expected = {r.revision: node_daemonsets(r) for r in [rendering, *(o for o in target.old.values() if o)]}
    rollout = target.validated.spec.rollout
    settings = RolloutSettings(
        target=rendering.revision,
        plugin_of=plugin_of,
        rollout=rollout,
        failed_revision=status.failed_revision,
        require_datapath=rollout.health_gate.require_datapath_check,
        waiting_for=not_ready_before_nodes(
            (rendering.release, *rendering.overlays), components_not_ready(snapshot, rendering)
        ),
    )
    return plan_rollout(nodes, health(snapshot, nodes, expected), settings, now)


def components_not_ready(snapshot: Snapshot, rendering: Rendering) -> set[tuple[str, str]]:
    """(plugin, component) of the target's cluster workloads (Typha, the Cilium operator) that do not run the
    target's release Ready yet: absent, another release's, or still rolling out."""
    scopes = {(r.plugin, c.name): c.scope for r in (rendering.release, *rendering.overlays) for c in r.components}
    waiting = set()
    for obj in rendering.objects:
        if obj["kind"] not in WORKLOAD_KINDS:
            continue
        labels = obj["metadata"]["labels"]
        component = (str(labels.get(L.PLUGIN)), str(labels.get(L.COMPONENT)))
        if scopes.get(component) is not ComponentScope.CLUSTER:
            continue
        live = snapshot.live(object_key(obj))
        if live is None or live.labels.get(L.RELEASE) != labels.get(L.RELEASE) or not live.rolled_out:
            waiting.add(component)
    return waiting


def health(snapshot: Snapshot, nodes: Iterable[NodeView], expected_pods: Mapping[str, int]) -> dict[str, NodeHealth]:
    """Health-gate inputs for every node in flight, about the revision it moves to."""
    result = {}
    for node in nodes:
        move = node.move
        if move is None:
            continue
        pods = snapshot.pods.get(node.name, ())
        if move.phase is Phase.DRAINING:
            result[node.name] = NodeHealth(
                evictable=sum(1 for p in pods if p.must_leave),
                eviction_blocked=snapshot.eviction_blocked.get(node.name, ""),
            )
            continue
        cni = [p for p in pods if p.revision == move.to]
        datapath, message = _datapath(snapshot.reports.get(node.name), move.to)
        result[node.name] = NodeHealth(
            ready_pods=sum(1 for p in cni if p.ready and not p.terminating),
            expected_pods=expected_pods.get(move.to, 1),
            crashlooping=tuple(f"{p.namespace}/{p.name}: {p.crash}" for p in cni if p.crash),
            datapath=datapath,
            datapath_message=message,
        )
    return result


def _datapath(report: NodeNetworkStateStatus | None, revision: str) -> tuple[bool | None, str]:
    """The node agent's datapath verdict for `revision`; None when no agent reports for the node."""
    if report is None:
        return None, ""
    datapath = report.datapath
    if datapath is None or datapath.revision != revision:
        return False, f"the agent has not checked revision {revision} yet"
    return datapath.passed, datapath.message or datapath.reason


def evictions(snapshot: Snapshot, drain: Iterable[str]) -> list[Eviction]:
    """Every pod that must leave a draining node and is not already terminating (never evicted twice)."""
    return [
        Eviction(node, pod.namespace, pod.name)
        for node in drain
        for pod in snapshot.pods.get(node, ())
        if pod.must_leave and not pod.terminating
    ]


# -- 7. objects --------------------------------------------------------------------------------------------------


def objects(
    snapshot: Snapshot, target: Target, in_use: set[str]
) -> tuple[list[dict[str, Any]], list[dict[str, Any]], list[ObjectRef]]:
    """(apply now, apply after every node moved, delete).

    The target's cluster components that its release upgrades before the node workloads are applied at once;
    those it upgrades after them wait while nodes still run an older revision (which keeps its own version of
    them). Revisions still in use keep their objects; where one object is in several renderings, the target's
    wins. Deleted is what no revision in use renders; CRDs and Namespaces only once no revision in use is of the
    plugin that brought them.
    """
    rendering = target.rendering
    in_progress = bool(target.old)  # nodes run other revisions than the target (before this step's patches)
    later = {r.plugin: set(components_after_nodes(r)) for r in (rendering.release, *rendering.overlays)}
    now, deferred = [], []
    for obj in rendering.objects:
        labels = _labelled(obj, snapshot.network.name)["metadata"]["labels"]
        if in_progress and labels.get(L.COMPONENT) in later.get(labels.get(L.PLUGIN, ""), set()):
            deferred.append(obj)
        else:
            now.append(obj)
    chosen = {object_key(obj) for obj in now} | {object_key(obj) for obj in deferred}
    for revision, again in target.old.items():
        if again is None or revision not in in_use:
            continue
        for obj in again.objects:
            if object_key(obj) not in chosen:
                chosen.add(object_key(obj))
                now.append(_labelled(obj, snapshot.network.name))
    apply_after = deferred if in_use == {rendering.revision} else []

    plugins = {rendering.release.plugin, *(o.plugin for o in rendering.overlays)}
    records = {r.revision: r for r in snapshot.network.status.revision_history}
    for revision in in_use:
        again = target.old.get(revision)
        if again is not None:
            plugins |= {again.release.plugin, *(o.plugin for o in again.overlays)}
        elif revision in records:
            plugins.add(records[revision].plugin.value)
            plugins |= {o.split("/", 1)[0] for o in records[revision].overlays}
    delete = []
    for live in snapshot.objects:
        if live.key in chosen or live.labels.get(L.REVISION) in in_use:
            continue
        if live.kind in DESTRUCTIVE_KINDS and live.labels.get(L.PLUGIN) in plugins:
            continue
        delete.append(ObjectRef(live.api_version, live.kind, live.namespace, live.name))
    return now, apply_after, delete


def _labelled(obj: dict[str, Any], owner: str) -> dict[str, Any]:
    obj["metadata"].setdefault("labels", {})[L.OWNER] = owner
    return obj


def node_daemonsets(rendering: Rendering) -> int:
    """How many Ready CNI pods a node on this revision must have: one per node DaemonSet it renders."""
    return sum(1 for obj in rendering.objects if obj["kind"] == "DaemonSet") or 1


# -- 8. status ---------------------------------------------------------------------------------------------------


def compute_status(
    snapshot: Snapshot,
    target: Target,
    plan: RolloutPlan,
    in_use: set[str],
    refusal: Refusal | None,
    skew: S.SkewReport,
) -> ClusterNetworkStatus:
    network, previous = snapshot.network, snapshot.network.status
    rendering = target.rendering
    revision = rendering.revision
    total = len(snapshot.nodes)
    ready = target_ready(snapshot, rendering, total) if plan.complete and in_use == {revision} else 0
    observation = C.rollout(network.generation, revision, previous.current_revision, plan, ready, total)
    failed_nodes = [FailedNode(name=f.name, reason=f.reason, message=f.message) for f in plan.failures]
    rendered = {f"{o['apiVersion']}/{o['kind']}" for o in rendering.objects}
    managed = {f"{v}/{k}" for v, k in MANAGED_KINDS}
    kinds = sorted((rendered | set(previous.inventory_kinds)) - managed)
    fields = {
        "revision_history": history(previous, target),
        "inventory_kinds": kinds,
        "waves": [
            WaveProgress(index=w.index, size=len(w.nodes), nodes=list(w.nodes[:WAVE_NODES_SHOWN]), state=w.state)
            for w in plan.waves
        ],
        "wave_count": plan.wave_count,
        "failed_nodes": failed_nodes,
        "failed_revision": plan.failed_revision,
        "skipped_nodes": [
            SkippedNode(name=s.name, reason=s.reason.value, message=s.message) for s in plan.skipped[:SKIPPED_SHOWN]
        ],
        "waiting_for": list(plan.waiting_for),
        "warnings": [SpecWarning(field=w.field, message=w.message) for w in target.warnings],
        "agents": agents.summarise(snapshot.reports),
        "skew": [f.to_status() for f in skew.findings],
    }
    observation = replace(observation, fields=fields)
    if refusal is not None:
        observation = C.refused(observation, refusal.reason, refusal.message)
    status = C.next_status(previous, observation)
    conditions = C.merge_conditions(status.conditions, [skew.condition], network.generation)
    return status.model_copy(update={"conditions": conditions})


def target_ready(snapshot: Snapshot, rendering: Rendering, total: int) -> int:
    """Nodes whose every target DaemonSet pod is Ready, from the DaemonSets' own status. Not their "updated"
    count: with OnDelete, a pod created while the revision was an old one (without adopting unlabelled nodes)
    runs the same CNI but counts as not updated, and that is as it should be."""
    ready = total
    for ds in (o for o in rendering.objects if o["kind"] == "DaemonSet"):
        live = snapshot.live(object_key(ds))
        ready = min(ready, (live.ready or 0) if live is not None else 0)
    return ready


def history(previous: ClusterNetworkStatus, target: Target) -> list[RevisionRecord]:
    """Revisions rolled out, newest last, each with the spec that renders it again (for nodes still on it) and the
    defaults it was rendered with (carried forward)."""
    rendering, spec = target.rendering, target.validated.spec
    kept = [r for r in previous.revision_history if r.revision != rendering.revision]
    before = _record(previous, rendering.revision)
    record = RevisionRecord(
        revision=rendering.revision,
        plugin=spec.plugin,
        version=spec.version,
        created=before.created if before is not None else C.now(),
        spec=canonical_spec(spec),
        defaulted=target.defaulted,
        overlays=[o.key for o in rendering.overlays],
    )
    return [*kept, record][-HISTORY_LIMIT:]


# -- 9. events ---------------------------------------------------------------------------------------------------


def compute_events(
    previous: ClusterNetworkStatus,
    status: ClusterNetworkStatus,
    target: Target,
    plan: RolloutPlan,
    refusal: Refusal | None,
    skew: S.SkewReport,
) -> list[Event]:
    events: list[Event] = []
    rendering = target.rendering
    if previous.target_revision != rendering.revision:
        overlays = "".join(f" with {o.key}" for o in rendering.overlays)
        events.append(
            Event("Normal", "Rendering", f"revision {rendering.revision} of {rendering.release.key}{overlays}")
        )
    before_degraded = C.condition(previous, L.DEGRADED)
    if refusal is not None and (before_degraded is None or before_degraded.message != refusal.message):
        events.append(Event("Warning", refusal.reason, refusal.message))
    started = [p for p in plan.patches if p.starts]
    if started:
        events.append(
            Event("Normal", "NodesMoving", f"{started[0].why}: {_names(started)} to revision {rendering.revision}")
        )
    back = [p for p in plan.patches if p.move is not None and p.move.rollback]
    if back:
        events.append(Event("Warning", "RollingBack", f"{back[0].why}: {_names(back)}"))
    skipped_before = {s.name for s in previous.skipped_nodes}
    for skipped in plan.skipped:
        if skipped.name not in skipped_before:
            events.append(Event("Warning", "NodeSkipped", f"node {skipped.name}: {skipped.message}"))
    known = {(f.name, f.reason) for f in previous.failed_nodes}
    for failure in plan.failures:
        if (failure.name, failure.reason) not in known:
            events.append(Event("Warning", failure.reason, f"node {failure.name}: {failure.message}"))
    if refusal is None:
        if plan.failed_revision and previous.message != status.message:
            degraded = C.condition(status, L.DEGRADED)
            events.append(Event("Warning", degraded.reason if degraded else "RolloutFailed", status.message))
        elif previous.phase != status.phase:
            events.append(Event("Normal", status.phase, status.message))
    events += skew_events(previous, skew)
    return events


def skew_events(previous: ClusterNetworkStatus, report: S.SkewReport) -> list[Event]:
    """An event when status.skew or the Compatible condition changes."""
    findings = [SkewFinding.model_validate(f.to_status()) for f in report.findings]
    before = C.condition(previous, L.COMPATIBLE)
    after = report.condition
    status_text = "True" if after.status else "False"
    changed = (
        previous.skew != findings
        or before is None
        or before.status.value != status_text
        or before.reason != after.reason
    )
    if not changed:
        return []
    event_type = "Normal" if after.status and not findings else "Warning"
    return [Event(event_type, "VersionSkew" if event_type == "Warning" else L.COMPATIBLE, after.message)]


# -- when there is nothing to roll out --------------------------------------------------------------------------


def _inactive(snapshot: Snapshot) -> Decision:
    network = snapshot.network
    message = (
        f"ClusterNetwork {snapshot.active} is the cluster's network; this one changes nothing. "
        f"Delete {network.name}, or move its settings into {snapshot.active}"
    )
    observation = C.degraded(
        network.generation, "AnotherClusterNetworkActive", message, phase="Inactive", nodes_total=len(snapshot.nodes)
    )
    status = C.next_status(network.status, observation)
    events = []
    if network.status.message != message:
        events.append(Event("Warning", "AnotherClusterNetworkActive", message))
    return Decision(network=network.name, status=status, events=tuple(events))


def _nothing_to_roll_out(snapshot: Snapshot, refusal: Refusal, last: Refusal) -> Decision:
    """The edit is refused and no accepted spec can be carried on with (a first install, or the accepted one no
    longer renders): nothing is touched; status says why and still counts the nodes."""
    network, previous = snapshot.network, snapshot.network.status
    message = refusal.message
    if last is not refusal:
        message += f"; the last accepted spec cannot be carried on with either: {last.message}"
    target = previous.target_revision
    on_target = sum(1 for n in snapshot.nodes if target and n.revision == target)
    settled = sum(1 for n in snapshot.nodes if target and n.revision == target and n.move is None)
    observation = C.degraded(
        network.generation,
        refusal.reason,
        message,
        nodes_total=len(snapshot.nodes),
        nodes_updated=on_target,
        nodes_ready=settled,
    )
    if refusal.skew is not None:
        observation = replace(observation, fields={"skew": [f.to_status() for f in refusal.skew.findings]})
    status = C.next_status(previous, observation)
    if refusal.skew is not None:
        conditions = C.merge_conditions(status.conditions, [refusal.skew.condition], network.generation)
        status = status.model_copy(update={"conditions": conditions})
    events = []
    if previous.message != status.message:
        events.append(Event("Warning", refusal.reason, message))
    if refusal.skew is not None:
        events += skew_events(previous, refusal.skew)
    return Decision(
        network=network.name,
        status=status,
        events=tuple(events),
        retry_after=RETRY_NOT_READY,
        nodes_per_revision=_count_revisions(snapshot.nodes),
    )


# -- deletion ------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Deletion:
    """What deleting a ClusterNetwork does: objects to delete or to disown, node patches, one event."""

    delete: tuple[ObjectRef, ...]
    disown: tuple[ObjectRef, ...]
    node_patches: tuple[tuple[str, dict[str, Any]], ...]  # (node, JSON merge patch)
    event: Event | None


def decide_deletion(
    name: str, spec: Any, active: str, owned: Sequence[LiveObject], nodes: Iterable[NodeView]
) -> Deletion:
    """nodeCleanup Remove deletes everything this ClusterNetwork created (workloads first, CRDs and namespaces
    last) and the nodes' revision labels; Keep (the default) leaves the running network in place, unmanaged (our
    owner label dropped, so no other ClusterNetwork prunes it), so nodes keep their pods' connectivity. Either
    way nodes the operator cordoned are uncordoned and moves are forgotten. An inactive ClusterNetwork that owns
    nothing does nothing."""
    if active != name and not owned:
        return Deletion((), (), (), None)
    cleanup = (spec.get("nodeCleanup") if isinstance(spec, dict) else None) or NodeCleanup.KEEP.value
    remove = cleanup == NodeCleanup.REMOVE.value
    order = {kind: index for index, kind in enumerate(MANAGED_KINDS)}  # custom objects before all: -1
    ordered = sorted(owned, key=lambda o: order.get((o.api_version, o.kind), -1))
    refs = tuple(ObjectRef(o.api_version, o.kind, o.namespace, o.name) for o in ordered)
    patches = []
    for node in nodes:
        patch: dict[str, Any] = {}
        if node.move:
            patch["metadata"] = {"annotations": {L.MOVE_ANNOTATION: None}}
            if node.move.cordoned:
                patch["spec"] = {"unschedulable": False}
        if remove and node.revision is not None:
            patch.setdefault("metadata", {})["labels"] = {L.NODE_REVISION: None}
        if patch:
            patches.append((node.name, patch))
    if remove:
        event = Event("Normal", "Removed", f"deleted {len(refs)} objects: the network is removed from the nodes")
        return Deletion(refs, (), tuple(patches), event)
    event = Event("Normal", "Kept", f"left {len(refs)} objects running, no longer managed (nodeCleanup: Keep)")
    return Deletion((), refs, tuple(patches), event)


# -- small pure helpers ------------------------------------------------------------------------------------------


def _split_key(key: str) -> tuple[str, str]:
    plugin, _, version = key.partition("/")
    return plugin, version


def _record(status: ClusterNetworkStatus, revision: str) -> RevisionRecord | None:
    return next((r for r in status.revision_history if r.revision == revision and revision), None)


def revisions_in_use(nodes: Iterable[NodeView], *, unlabelled_as: str) -> set[str]:
    """Every revision a node runs or is moving between: their objects must stay."""
    used = set()
    for node in nodes:
        used.add(node.revision or unlabelled_as)
        if node.move:
            used |= {node.move.to, node.move.source}
    used.discard("")
    return used


def nodes_after(nodes: Iterable[NodeView], plan: RolloutPlan) -> list[NodeView]:
    """The nodes as they are once the plan's patches are applied."""
    patches = {p.node: p for p in plan.patches}
    return [patches[n.name].applied_to(n) if n.name in patches else n for n in nodes]


def _count_revisions(nodes: Iterable[NodeView]) -> dict[str, int]:
    counts: dict[str, int] = {}
    for node in nodes:
        if node.revision:
            counts[node.revision] = counts.get(node.revision, 0) + 1
    return counts


def _names(patches: Sequence[NodePatch]) -> str:
    return ", ".join(p.node for p in patches[:10]) + (f" and {len(patches) - 10} more" if len(patches) > 10 else "")
