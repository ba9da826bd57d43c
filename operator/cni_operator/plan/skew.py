"""Version skew: do the running and target plugin releases suit this cluster, and what to move to if not.

Pure: the input is a plain snapshot of the cluster (`ClusterFacts`: the API server's version and every node's kubelet,
container runtime, OS and architecture) plus catalog releases; the output is findings, a condition and a decision.
`kube.skew` observes the facts and merges the result into the ClusterNetwork's status.

The condition is `Compatible` (positive polarity, so kstatus and Argo CD never read a healthy cluster as failing):
True when every release concerned suits the cluster (reason `Supported`, or `SupportedWithWarnings` when only
warnings were found, such as kubelets outside Kubernetes' own skew policy), False when a release does not
(`TargetUnsupported` when the target is refused, `UnsupportedAllowed` when spec.versionPolicy.allowUnsupported lets
it through, `RunningUnsupported` when the cluster changed under a running release). Degraded is set by the reconcile
only when a target is refused: a warning, or a running release that no longer fits, never makes the network Degraded.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from cni_operator.api.conditions import ConditionUpdate
from cni_operator.api.vocabulary import COMPATIBLE
from cni_operator.catalog.loader import Catalog, default_catalog
from cni_operator.catalog.model import PluginRelease, SupportStatus
from cni_operator.catalog.versions import parse_kubernetes_version, parse_version, runtime_of
from cni_operator.plan.upgrade import upgrade_paths

MAX_NODES_LISTED = 50  # per finding: status stays small on large clusters; the message gives the full count

# Kubernetes' version-skew policy (kubernetes/website content/en/releases/version-skew-policy.md; our facts file
# /work/shared/facts/multus-reference-skew.md section E): a kubelet is never newer than kube-apiserver and at most
# 3 minors older. The n-3 rule first appears in the v1.28 policy (n-2 before), and a kubelet older than 1.25 may
# only be 2 minors older.
KUBELET_SKEW_SINCE = (1, 28)
KUBELET_MAX_BEHIND = 3
KUBELET_MAX_BEHIND_BEFORE = 2
KUBELET_OLD_POLICY_BELOW = (1, 25)

LINUX = "linux"  # every plugin in the catalog runs its node agents on Linux nodes only


class Severity(StrEnum):
    UNSUPPORTED = "Unsupported"  # the catalog does not support this: refuses a new target
    WARNING = "Warning"  # worth fixing, but the plugin release still suits the cluster


class Kind(StrEnum):
    KUBERNETES_VERSION = "KubernetesVersion"
    KUBELET_VERSION = "KubeletVersion"
    CONTAINER_RUNTIME = "ContainerRuntime"
    CNI_SPEC_VERSION = "CniSpecVersion"
    ARCHITECTURE = "Architecture"
    OPERATING_SYSTEM = "OperatingSystem"
    KUBELET_SKEW = "KubeletSkew"
    ARCHIVED_RELEASE = "ArchivedRelease"
    UNKNOWN_VERSION = "UnknownVersion"


@dataclass(frozen=True)
class NodeFacts:
    """One node as its kubelet reports it (Node.status.nodeInfo), plus the revision label the operator put on it."""

    name: str
    kubelet_version: str
    container_runtime_version: str  # e.g. containerd://1.7.22
    os: str = LINUX
    arch: str = "amd64"
    revision: str = ""


@dataclass(frozen=True)
class ClusterFacts:
    server_version: str  # the API server's gitVersion, e.g. v1.36.3
    nodes: tuple[NodeFacts, ...] = ()


@dataclass(frozen=True)
class Finding:
    kind: Kind
    severity: Severity
    message: str
    nodes: tuple[str, ...] = ()
    release: str = ""  # plugin/version the finding is about; empty for findings about the cluster itself

    def to_status(self) -> dict[str, Any]:
        """As a SkewFinding in ClusterNetwork status."""
        data: dict[str, Any] = {
            "kind": self.kind.value,
            "severity": self.severity.value,
            "message": self.message,
            "nodes": list(self.nodes[:MAX_NODES_LISTED]),
        }
        if self.release:
            data["release"] = self.release
        return data


@dataclass(frozen=True)
class Recommendation:
    """The newest release of a plugin that suits the cluster, and the upgradeFrom path that reaches it."""

    release: PluginRelease
    path: tuple[str, ...]  # versions from the release we start from to the recommended one (one entry: install it)

    def describe(self) -> str:
        name = f"{self.release.plugin} {self.release.version}"
        if len(self.path) < 2:
            return name
        return f"{name} (upgrade path {' -> '.join(self.path)})"


@dataclass(frozen=True)
class SkewReport:
    findings: tuple[Finding, ...]
    condition: ConditionUpdate
    refused: bool
    message: str  # why the target is refused, or what the condition says
    recommendation: Recommendation | None = None
    unsupported: tuple[str, ...] = field(default=())  # keys of the releases concerned that do not suit the cluster

    @property
    def compatible(self) -> bool:
        return self.condition.status is True

    def status_findings(self) -> list[dict[str, Any]]:
        return [f.to_status() for f in self.findings]


# -- facts -> findings -----------------------------------------------------------------------------------------


def _minor(version: tuple[int, int, int]) -> tuple[int, int]:
    return version[0], version[1]


def _minor_text(minor: tuple[int, int]) -> str:
    return f"{minor[0]}.{minor[1]}"


def _parse(text: str) -> tuple[int, int, int] | None:
    try:
        return parse_version(text)
    except ValueError:
        return None


def _names(nodes: Iterable[NodeFacts]) -> tuple[str, ...]:
    return tuple(sorted(n.name for n in nodes))


def _on(nodes: Sequence[str]) -> str:
    shown = ", ".join(nodes[:5])
    return f"{len(nodes)} node{'s' if len(nodes) != 1 else ''} ({shown}{', ...' if len(nodes) > 5 else ''})"


def _range(release: PluginRelease) -> str:
    minors = release.compatibility.kubernetes
    return f"{minors[0]}-{minors[-1]}" if len(minors) > 1 else minors[0]


def _group(nodes: Iterable[NodeFacts], key: Any) -> dict[Any, list[NodeFacts]]:
    groups: dict[Any, list[NodeFacts]] = {}
    for node in nodes:
        groups.setdefault(key(node), []).append(node)
    return dict(sorted(groups.items(), key=lambda item: str(item[0])))


def cluster_findings(facts: ClusterFacts) -> list[Finding]:
    """What is wrong with the cluster whatever the plugin: Kubernetes' own kubelet skew policy, non-Linux nodes."""
    findings: list[Finding] = []
    server = _parse(facts.server_version)
    unknown = [n for n in facts.nodes if _parse(n.kubelet_version) is None]
    if unknown:
        names = _names(unknown)
        findings.append(
            Finding(
                Kind.UNKNOWN_VERSION,
                Severity.WARNING,
                f"no readable kubeletVersion on {_on(names)} yet; evaluated once their kubelet reports",
                names,
            )
        )
    if server is not None:
        findings += _kubelet_skew(server, [n for n in facts.nodes if n not in unknown])
    for os_name, group in _group((n for n in facts.nodes if n.os != LINUX), lambda n: n.os).items():
        names = _names(group)
        findings.append(
            Finding(
                Kind.OPERATING_SYSTEM,
                Severity.WARNING,
                f"{os_name} on {_on(names)}: the operator's plugins run on Linux nodes only, so pods there get "
                "no network from them; give those nodes a network of their own or taint them",
                names,
            )
        )
    return findings


def oldest_kubelet_minor(server_minor: tuple[int, int]) -> tuple[int, int]:
    """The oldest kubelet minor Kubernetes' skew policy allows with this API server (never below x.0)."""
    allowed = kubelet_max_behind(server_minor, (server_minor[0], server_minor[1] - KUBELET_MAX_BEHIND))
    return server_minor[0], max(server_minor[1] - allowed, 0)


def kubelet_max_behind(server_minor: tuple[int, int], kubelet_minor: tuple[int, int]) -> int:
    """How many minors a kubelet may trail the API server (see the policy note at the top of this module)."""
    if server_minor < KUBELET_SKEW_SINCE or kubelet_minor < KUBELET_OLD_POLICY_BELOW:
        return KUBELET_MAX_BEHIND_BEFORE
    return KUBELET_MAX_BEHIND


def _kubelet_skew(server: tuple[int, int, int], nodes: Sequence[NodeFacts]) -> list[Finding]:
    findings = []
    server_minor = _minor(server)
    by_minor = _group(nodes, lambda n: _minor(parse_version(n.kubelet_version)))
    for kubelet_minor, group in by_minor.items():
        names = _names(group)
        where = f"kubelet {_minor_text(kubelet_minor)} on {_on(names)}"
        if kubelet_minor[0] != server_minor[0] or kubelet_minor > server_minor:
            if kubelet_minor > server_minor:
                message = (
                    f"{where} is newer than the API server ({_minor_text(server_minor)}); Kubernetes never supports "
                    "a kubelet newer than kube-apiserver: upgrade the control plane first"
                )
            else:
                message = f"{where} has another major version than the API server ({_minor_text(server_minor)})"
            findings.append(Finding(Kind.KUBELET_SKEW, Severity.WARNING, message, names))
            continue
        behind = server_minor[1] - kubelet_minor[1]
        allowed = kubelet_max_behind(server_minor, kubelet_minor)
        if behind > allowed:
            oldest = (server_minor[0], server_minor[1] - allowed)
            findings.append(
                Finding(
                    Kind.KUBELET_SKEW,
                    Severity.WARNING,
                    f"{where} is {behind} minors behind the API server ({_minor_text(server_minor)}); Kubernetes "
                    f"supports at most {allowed}: upgrade those kubelets to {_minor_text(oldest)} or newer",
                    names,
                )
            )
    return findings


def release_findings(release: PluginRelease, facts: ClusterFacts, catalog: Catalog | None = None) -> list[Finding]:
    """What about this cluster the catalog says the release does not support (and whether it is archived).

    `catalog` supplies the container runtimes' facts (bundled-plugins/runtimes.yaml); default: the bundled one."""
    key = release.key
    name = f"{release.plugin} {release.version}"
    compat = release.compatibility
    supported = {_minor(parse_version(m)) for m in compat.kubernetes}
    findings: list[Finding] = []

    server = _parse(facts.server_version)
    if server is None:
        findings.append(
            Finding(
                Kind.UNKNOWN_VERSION,
                Severity.UNSUPPORTED,
                f"the API server reports version {facts.server_version!r}, which is not a Kubernetes version; "
                f"{name} supports Kubernetes {_range(release)}",
                release=key,
            )
        )
    elif _minor(server) not in supported:
        findings.append(
            Finding(
                Kind.KUBERNETES_VERSION,
                Severity.UNSUPPORTED,
                f"{name} supports Kubernetes {_range(release)}, not the API server's {_minor_text(_minor(server))}",
                release=key,
            )
        )

    known = [n for n in facts.nodes if _parse(n.kubelet_version) is not None]
    for kubelet_minor, group in _group(known, lambda n: _minor(parse_version(n.kubelet_version))).items():
        # a kubelet at the API server's minor is covered by the KubernetesVersion finding
        if kubelet_minor not in supported and (server is None or kubelet_minor != _minor(server)):
            names = _names(group)
            findings.append(
                Finding(
                    Kind.KUBELET_VERSION,
                    Severity.UNSUPPORTED,
                    f"{name} supports Kubernetes {_range(release)}, not kubelet {_minor_text(kubelet_minor)} "
                    f"on {_on(names)}",
                    names,
                    key,
                )
            )

    # a node whose kubelet has not reported yet has no nodeInfo to judge (an UnknownVersion warning says so)
    findings += _runtime_findings(release, known, catalog if catalog is not None else default_catalog())

    linux = [n for n in known if n.os == LINUX]
    for arch, group in _group((n for n in linux if n.arch not in compat.architectures), lambda n: n.arch).items():
        names = _names(group)
        findings.append(
            Finding(
                Kind.ARCHITECTURE,
                Severity.UNSUPPORTED,
                f"{name} publishes no {arch or 'unknown-architecture'} images (it has "
                f"{', '.join(compat.architectures)}), needed on {_on(names)}",
                names,
                key,
            )
        )

    if release.status is SupportStatus.ARCHIVED:
        findings.append(
            Finding(
                Kind.ARCHIVED_RELEASE,
                Severity.WARNING,
                release.notice or f"{name} is archived upstream: plan a move to a maintained plugin",
                release=key,
            )
        )
    return findings


def _runtime_findings(release: PluginRelease, nodes: Sequence[NodeFacts], catalog: Catalog) -> list[Finding]:
    key, name = release.key, f"{release.plugin} {release.version}"
    minimums = release.compatibility.runtimes
    listed = ", ".join(f"{r} >= {v}" for r, v in sorted(minimums.items()))
    conflist_spec = parse_version(release.cni.cni_version)
    findings = []
    for runtime_version, group in _group(
        (n for n in nodes if n.os == LINUX), lambda n: n.container_runtime_version
    ).items():
        names = _names(group)
        runtime, version_text = runtime_of(runtime_version)
        version = _parse(version_text)
        shown = f"{runtime} {version_text}" if version_text else repr(runtime_version)
        if version is None:
            findings.append(
                Finding(
                    Kind.CONTAINER_RUNTIME,
                    Severity.UNSUPPORTED,
                    f"container runtime {runtime_version!r} on {_on(names)} is not <runtime>://<version>; "
                    f"{name} needs {listed or 'a CRI runtime'}",
                    names,
                    key,
                )
            )
            continue
        if minimums and runtime not in minimums:
            findings.append(
                Finding(
                    Kind.CONTAINER_RUNTIME,
                    Severity.UNSUPPORTED,
                    f"{name} supports the container runtimes {listed}, not {shown} on {_on(names)}",
                    names,
                    key,
                )
            )
        elif runtime in minimums and version < parse_version(minimums[runtime]):
            findings.append(
                Finding(
                    Kind.CONTAINER_RUNTIME,
                    Severity.UNSUPPORTED,
                    f"{name} needs {runtime} {minimums[runtime]} or newer, not {shown} on {_on(names)}: upgrade "
                    "their runtime",
                    names,
                    key,
                )
            )
        spec = catalog.max_cni_spec(runtime, version)
        if spec is not None and parse_version(spec) < conflist_spec:
            findings.append(
                Finding(
                    Kind.CNI_SPEC_VERSION,
                    Severity.UNSUPPORTED,
                    f"{name} writes a cniVersion {release.cni.cni_version} conflist, but {shown} on {_on(names)} "
                    f"reads CNI spec versions up to {spec} only: upgrade their runtime",
                    names,
                    key,
                )
            )
    return findings


def supports(release: PluginRelease, facts: ClusterFacts, catalog: Catalog | None = None) -> bool:
    return not any(f.severity is Severity.UNSUPPORTED for f in release_findings(release, facts, catalog))


# -- recommendation --------------------------------------------------------------------------------------------


def recommend(
    catalog: Catalog, plugin: str, facts: ClusterFacts, start: PluginRelease | None = None
) -> Recommendation | None:
    """The newest release of `plugin` that suits the cluster: reachable from `start` through upgradeFrom edges when
    a release of the plugin runs, any release when the plugin is to be installed. None when no release fits."""
    if start is not None and start.plugin == plugin:
        paths = upgrade_paths(catalog, plugin, start.version)
        candidates = [catalog.get(plugin, version) for version in paths]
    else:
        paths = {}
        candidates = catalog.releases_of(plugin)
    fitting = [r for r in candidates if supports(r, facts, catalog) and r.status is not SupportStatus.ARCHIVED]
    fitting = fitting or [r for r in candidates if supports(r, facts, catalog)]
    if not fitting:
        return None
    best = max(fitting, key=lambda r: parse_version(r.version))
    return Recommendation(best, paths.get(best.version, (best.version,)))


def _describe_cluster(facts: ClusterFacts) -> str:
    kubelets = sorted({_minor(v) for n in facts.nodes if (v := _parse(n.kubelet_version)) is not None}, key=lambda m: m)
    text = f"Kubernetes {facts.server_version}"
    if kubelets:
        shown = _minor_text(kubelets[0]) + (f"-{_minor_text(kubelets[-1])}" if len(kubelets) > 1 else "")
        text += f", kubelets {shown}"
    return text


def _no_fit_advice(catalog: Catalog, plugin: str, facts: ClusterFacts) -> str:
    others = sorted(p for p in catalog.primary_plugins() if p != plugin and supports(catalog.latest(p), facts, catalog))
    advice = f"no {plugin} release in the catalog suits this cluster ({_describe_cluster(facts)})"
    server = _parse(facts.server_version)
    kubelets = {_minor(v) for n in facts.nodes if (v := _parse(n.kubelet_version)) is not None}
    if server is not None and kubelets - {_minor(server)}:
        advice += f"; upgrade the kubelets to the API server's {_minor_text(_minor(server))} first"
    if others:
        advice += f"; plugins whose newest release does: {', '.join(others)}"
    return advice


# -- the decision ----------------------------------------------------------------------------------------------


def _dedupe(releases: Iterable[PluginRelease]) -> list[PluginRelease]:
    seen: dict[str, PluginRelease] = {}
    for release in releases:
        seen.setdefault(release.key, release)
    return list(seen.values())


def evaluate(
    facts: ClusterFacts,
    catalog: Catalog,
    target: Sequence[PluginRelease],
    running: Sequence[PluginRelease] = (),
    *,
    allow_unsupported: bool = False,
) -> SkewReport:
    """Evaluate the target releases (primary first, then overlays such as Multus) and the releases running now.

    A target release that already runs is not "new": the cluster may have moved under it, which is reported
    (RunningUnsupported) but never refused, so drift repair and settings changes keep working. A new target release
    that does not suit the cluster is refused unless `allow_unsupported`.
    """
    if not target:
        raise ValueError("evaluate needs the target release (the ClusterNetwork's spec.plugin and spec.version)")
    running = _dedupe(running)
    running_keys = {r.key for r in running}
    concerned = _dedupe([*target, *running])
    per_release = {r.key: release_findings(r, facts, catalog) for r in concerned}
    findings = [*cluster_findings(facts), *(f for r in concerned for f in per_release[r.key])]
    unsupported = tuple(
        key for key, found in per_release.items() if any(f.severity is Severity.UNSUPPORTED for f in found)
    )
    new_unsupported = [r for r in target if r.key in unsupported and r.key not in running_keys]
    running_unsupported = [r for r in concerned if r.key in unsupported and r not in new_unsupported]
    refused = bool(new_unsupported) and not allow_unsupported

    primary = target[0]
    start = next((r for r in running if r.plugin == primary.plugin), None)
    recommendation: Recommendation | None = None
    advice = ""
    if primary.key in unsupported or (start is not None and start.key in unsupported):
        recommendation = recommend(catalog, primary.plugin, facts, start)
        if recommendation is None and start is not None:
            recommendation = recommend(catalog, primary.plugin, facts)  # exists, but no upgrade path reaches it
        if recommendation is None:
            advice = _no_fit_advice(catalog, primary.plugin, facts)
        elif recommendation.release.key == primary.key:
            advice, recommendation = f"the target {primary.key} suits the cluster: finish rolling it out", None
    for release in running_unsupported:
        if release.plugin != primary.plugin and not advice:
            advice = f"{release.key} is being replaced by {primary.key}"

    def summary(releases: Sequence[PluginRelease]) -> str:
        return "; ".join(f.message for r in releases for f in per_release[r.key] if f.severity is Severity.UNSUPPORTED)

    def next_step() -> str:
        if recommendation is not None and start is not None and recommendation.release.key == start.key:
            return f"keep {start.plugin} {start.version}: set spec.version back to {start.version}"
        if recommendation is not None:
            return f"move to {recommendation.describe()}"
        return advice

    warnings = [f for f in findings if f.severity is Severity.WARNING]
    allowed = [r for r in target if r.key in unsupported] if allow_unsupported else []
    if refused:
        keys = ", ".join(r.key for r in new_unsupported)
        fix = next_step()
        message = (
            f"refused {keys}: {summary(new_unsupported)}. The running network is left as it is. "
            + (f"Pick a release that suits the cluster ({fix}), " if fix else "Pick a release that suits it, ")
            + "or set spec.versionPolicy.allowUnsupported: true to roll it out anyway"
        )
        condition = ConditionUpdate(COMPATIBLE, False, "TargetUnsupported", message)
    elif allowed:
        fix = next_step()
        message = (
            f"{', '.join(r.key for r in allowed)} does not suit the cluster and runs anyway because "
            f"spec.versionPolicy.allowUnsupported is true: {summary(allowed)}" + (f"; {fix}" if fix else "")
        )
        condition = ConditionUpdate(COMPATIBLE, False, "UnsupportedAllowed", message)
    elif running_unsupported:
        fix = next_step()
        message = (
            f"{', '.join(r.key for r in running_unsupported)} no longer suits the cluster: "
            f"{summary(running_unsupported)}" + (f"; {fix}" if fix else "")
        )
        condition = ConditionUpdate(COMPATIBLE, False, "RunningUnsupported", message)
    else:
        what = " and ".join(r.key for r in concerned)
        verb = "suits" if len(concerned) == 1 else "suit"
        message = f"{what} {verb} {_describe_cluster(facts)} on {len(facts.nodes)} nodes"
        if warnings:
            message += f"; {len(warnings)} warning{'s' if len(warnings) != 1 else ''}: " + "; ".join(
                w.message for w in warnings
            )
            condition = ConditionUpdate(COMPATIBLE, True, "SupportedWithWarnings", message)
        else:
            condition = ConditionUpdate(COMPATIBLE, True, "Supported", message)
    return SkewReport(
        findings=tuple(findings),
        condition=condition,
        refused=refused,
        message=condition.message,
        recommendation=recommendation,
        unsupported=unsupported,
    )


# -- planning a Kubernetes upgrade (offline) ---------------------------------------------------------------------


@dataclass(frozen=True)
class ReleasePlan:
    """For one catalog release: does it keep working on the planned Kubernetes version, and what to do first."""

    release: PluginRelease
    works: bool
    advice: str


def plan_kubernetes_upgrade(catalog: Catalog, kubernetes_version: str) -> list[ReleasePlan]:
    """Every catalog release against a planned Kubernetes version (control plane and kubelets at that version).

    The API server cannot skip minors (version-skew policy), so right before the move the cluster runs the minor
    before it: the advice prefers a release that supports both, so the plugin can be upgraded first."""
    planned = parse_kubernetes_version(kubernetes_version, "--kubernetes-version")
    target = ClusterFacts(f"v{planned[0]}.{planned[1]}.{planned[2]}")
    previous = f"{planned[0]}.{max(planned[1] - 1, 0)}"
    before = ClusterFacts(f"v{previous}.0")
    minor = f"{planned[0]}.{planned[1]}"
    plans = []
    for plugin in catalog.plugins():
        for release in catalog.releases_of(plugin):
            if supports(release, target, catalog):
                plans.append(ReleasePlan(release, True, "keeps working"))
                continue
            paths = upgrade_paths(catalog, plugin, release.version)
            reachable = [catalog.get(plugin, v) for v in paths if v != release.version]
            both = [r for r in reachable if supports(r, target, catalog) and supports(r, before, catalog)]
            after = [r for r in reachable if supports(r, target, catalog)]
            newest = max(both or after, key=lambda r: parse_version(r.version), default=None)
            if newest is None:
                others = [r for r in catalog.releases_of(plugin) if supports(r, target, catalog)]
                swaps = [
                    p for p in catalog.primary_plugins() if p != plugin and supports(catalog.latest(p), target, catalog)
                ]
                advice = (
                    f"no {plugin} release in the catalog supports Kubernetes {minor}: stay on "
                    f"{max((r.compatibility.kubernetes[-1] for r in [*reachable, release]), key=parse_version)}"
                    + (f", or swap to {', '.join(swaps)}" if swaps else "")
                    if not others
                    else f"no upgrade path reaches a {plugin} release for {minor}: reinstall with "
                    f"{plugin} {others[-1].version}"
                )
            else:
                path = " -> ".join(paths[newest.version])
                if both:
                    advice = f"upgrade {plugin} to {newest.version} ({path}) before moving Kubernetes to {minor}"
                else:
                    advice = (
                        f"no {plugin} release supports both {previous} and "
                        f"{minor}: move Kubernetes and {plugin} {newest.version} ({path}) together, with "
                        "spec.versionPolicy.allowUnsupported during the move"
                    )
            plans.append(ReleasePlan(release, False, advice))
    return plans
