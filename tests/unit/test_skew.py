"""The version-skew evaluation table: cluster facts x catalog releases -> findings, condition, refusal, advice."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cni_operator.catalog.loader import Catalog, default_catalog
from cni_operator.catalog.model import PluginRelease
from cni_operator.decide.pipeline import releases_in_use
from cni_operator.plan import skew as S
from cni_operator.plan.skew import ClusterFacts, Kind, NodeFacts, Severity
from cni_operator.plan.upgrade import upgrade_paths
from cni_operator.status.conditions import read_status

CATALOG = default_catalog()


def release(base: str = "reference/v1.9.1", **changes: Any) -> PluginRelease:
    """A catalog release with some fields changed (camelCase keys as in bundled-plugins/)."""
    plugin, version = base.split("/")
    data = CATALOG.get(plugin, version).model_dump(by_alias=True, mode="json")
    for key, value in changes.items():
        section, _, field = key.partition("__")
        if field:
            data[section] = {**data[section], field: value}
        else:
            data[section] = value
    return PluginRelease.model_validate(data)


def node(name: str = "n1", kubelet: str = "v1.36.3", runtime: str = "containerd://2.1.4", **kw: Any) -> NodeFacts:
    return NodeFacts(name=name, kubelet_version=kubelet, container_runtime_version=runtime, **kw)


def cluster(server: str = "v1.36.3", *nodes: NodeFacts) -> ClusterFacts:
    return ClusterFacts(server, nodes or (node("n1"), node("n2")))


def kinds(findings: Any, severity: Severity | None = None) -> list[str]:
    return sorted(f.kind.value for f in findings if severity is None or f.severity is severity)


# -- one release against one cluster -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("facts", "rel", "expected"),
    [
        pytest.param(cluster(), release(), [], id="everything fits"),
        pytest.param(cluster("v1.38.0", node(kubelet="v1.38.0")), release(), ["KubernetesVersion"], id="server-new"),
        pytest.param(cluster("v1.36.3", node(kubelet="v1.32.1")), release(), ["KubeletVersion"], id="old-kubelet"),
        pytest.param(
            cluster("v1.36.3", node(runtime="containerd://1.5.9")), release(), ["ContainerRuntime"], id="containerd-old"
        ),
        pytest.param(cluster("v1.36.3", node(runtime="cri-o://1.25.0")), release(), ["ContainerRuntime"], id="crio"),
        pytest.param(
            cluster("v1.36.3", node(runtime="docker://24.0.7")), release(), ["ContainerRuntime"], id="unlisted-runtime"
        ),
        pytest.param(cluster("v1.36.3", node(runtime="")), release(), ["ContainerRuntime"], id="no-runtime-version"),
        pytest.param(cluster("v1.36.3", node(arch="riscv64")), release(), ["Architecture"], id="no-riscv64-images"),
        pytest.param(
            cluster("v1.36.3", node(arch="riscv64")), release("flannel/v0.28.9"), [], id="flannel-has-riscv64"
        ),
        pytest.param(
            cluster("v1.36.3", node(runtime="containerd://1.7.22")),
            release(cni__cniVersion="1.1.0"),
            ["CniSpecVersion"],
            id="containerd-1.7-reads-spec-1.0.0-only",
        ),
        pytest.param(
            cluster("v1.36.3", node(runtime="containerd://2.0.0")), release(cni__cniVersion="1.1.0"), [], id="cd-2.0"
        ),
        pytest.param(
            cluster("v1.36.3", node(runtime="cri-o://1.30.4")),
            release(cni__cniVersion="1.1.0"),
            ["CniSpecVersion"],
            id="crio-1.30-reads-spec-1.0.0-only",
        ),
        pytest.param(
            cluster("v1.36.3", node(runtime="cri-o://1.31.0")), release(cni__cniVersion="1.1.0"), [], id="crio-1.31"
        ),
        pytest.param(
            cluster("v1.36.3", node(os="windows", arch="riscv64", runtime="docker://1")), release(), [], id="windows"
        ),
        pytest.param(cluster("not-a-version"), release(), ["UnknownVersion"], id="garbage-server-version"),
        pytest.param(
            cluster("v1.36.3", node(kubelet="", runtime="", arch="")), release(), [], id="node-not-reported-yet"
        ),
    ],
)
def test_unsupported_findings_of_one_release(facts: ClusterFacts, rel: PluginRelease, expected: list[str]) -> None:
    found = S.release_findings(rel, facts)
    assert kinds(found, Severity.UNSUPPORTED) == expected
    assert S.supports(rel, facts) is (not expected)
    for finding in found:
        assert finding.release == rel.key
        assert set(finding.nodes) <= {n.name for n in facts.nodes}


def test_findings_group_nodes_and_name_them() -> None:
    facts = cluster(
        "v1.36.3",
        node("a", kubelet="v1.32.0"),
        node("b", kubelet="v1.32.9"),
        node("c"),
        node("d", runtime="containerd://1.5.0"),
    )
    found = {f.kind: f for f in S.release_findings(release("flannel/v0.28.9"), facts)}
    assert found[Kind.KUBELET_VERSION].nodes == ("a", "b")
    assert "kubelet 1.32 on 2 nodes (a, b)" in found[Kind.KUBELET_VERSION].message
    assert found[Kind.CONTAINER_RUNTIME].nodes == ("d",)
    assert "containerd 1.6.0 or newer, not containerd 1.5.0" in found[Kind.CONTAINER_RUNTIME].message


def test_status_lists_at_most_50_nodes_per_finding() -> None:
    facts = cluster("v1.36.3", *(node(f"n{i:03d}", kubelet="v1.32.0") for i in range(120)))
    finding = next(f for f in S.release_findings(release(), facts) if f.kind is Kind.KUBELET_VERSION)
    assert len(finding.nodes) == 120 and "120 nodes" in finding.message
    assert len(finding.to_status()["nodes"]) == S.MAX_NODES_LISTED


def test_archived_release_is_a_warning() -> None:
    facts = cluster("v1.25.4", node(kubelet="v1.25.4", runtime="containerd://1.7.0"))
    found = S.release_findings(CATALOG.get("weave-net", "v2.8.1"), facts)
    assert kinds(found) == ["ArchivedRelease"]
    assert found[0].severity is Severity.WARNING and "no longer maintained" in found[0].message


# -- Kubernetes' own skew policy -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("server", "kubelet", "warned"),
    [
        ("v1.36.3", "v1.36.0", False),
        ("v1.36.3", "v1.33.9", False),  # n-3 is allowed since the v1.28 policy
        ("v1.36.3", "v1.32.9", True),
        ("v1.28.0", "v1.25.0", False),
        ("v1.28.0", "v1.24.0", True),  # a kubelet older than 1.25 may only be 2 minors behind
        ("v1.26.0", "v1.24.0", False),
        ("v1.27.5", "v1.24.0", True),  # before 1.28: n-2
        ("v1.27.5", "v1.25.0", False),
        ("v1.36.3", "v1.37.0", True),  # never newer than the API server
        ("v1.36.3", "v2.0.0", True),
    ],
)
def test_kubelet_skew_policy(server: str, kubelet: str, warned: bool) -> None:
    found = S.cluster_findings(cluster(server, node("k", kubelet=kubelet)))
    skew = [f for f in found if f.kind is Kind.KUBELET_SKEW]
    assert bool(skew) is warned
    assert all(f.severity is Severity.WARNING and f.nodes == ("k",) for f in skew)


def test_non_linux_nodes_and_unreported_kubelets_are_warnings() -> None:
    found = S.cluster_findings(cluster("v1.36.3", node("w", os="windows"), node("new", kubelet="")))
    assert {(f.kind, f.nodes) for f in found} == {(Kind.OPERATING_SYSTEM, ("w",)), (Kind.UNKNOWN_VERSION, ("new",))}
    assert all(f.severity is Severity.WARNING for f in found)


# -- the decision ----------------------------------------------------------------------------------------------


def test_supported_target_is_compatible() -> None:
    report = S.evaluate(cluster(), CATALOG, [CATALOG.get("flannel", "v0.28.9")])
    assert report.compatible and not report.refused and report.condition.reason == "Supported"
    assert report.condition.type == "Compatible"
    assert report.findings == ()


def test_warnings_keep_it_compatible() -> None:
    facts = cluster("v1.37.0", node("old", kubelet="v1.33.0"))  # reference supports 1.33-1.37; 4 minors behind
    report = S.evaluate(facts, CATALOG, [CATALOG.get("reference", "v1.9.1")])
    assert report.compatible and not report.refused
    assert report.condition.reason == "SupportedWithWarnings"
    assert kinds(report.findings) == ["KubeletSkew"]
    assert "1 warning: kubelet 1.33 on 1 node (old) is 4 minors behind" in report.message


@pytest.mark.parametrize(
    ("target", "running", "allow", "reason", "refused"),
    [
        ("flannel/v0.28.9", [], False, "Supported", False),
        ("flannel/v0.27.4", [], False, "TargetUnsupported", True),  # first install of an unsupported release
        ("flannel/v0.27.4", ["flannel/v0.28.9"], False, "TargetUnsupported", True),  # downgrade out of range
        ("flannel/v0.27.4", ["flannel/v0.28.9"], True, "UnsupportedAllowed", False),
        ("calico/v3.31.7", ["calico/v3.31.7"], False, "RunningUnsupported", False),  # the cluster moved under it
        ("calico/v3.31.7", ["calico/v3.31.7"], True, "UnsupportedAllowed", False),  # knowingly kept
        ("calico/v3.32.1", ["calico/v3.31.7"], False, "RunningUnsupported", False),  # upgrading to the fix
        ("calico/v3.32.1", ["flannel/v0.27.4"], False, "RunningUnsupported", False),  # swapping away from it
        ("calico/v3.31.7", ["flannel/v0.28.9"], False, "TargetUnsupported", True),  # swapping to an unsupported one
    ],
)
def test_decision_table(target: str, running: list[str], allow: bool, reason: str, refused: bool) -> None:
    def get(key: str) -> PluginRelease:
        plugin, version = key.split("/")
        return CATALOG.get(plugin, version)

    report = S.evaluate(cluster(), CATALOG, [get(target)], [get(r) for r in running], allow_unsupported=allow)
    assert (report.condition.reason, report.refused) == (reason, refused)
    assert report.compatible is (reason == "Supported")
    if refused:
        assert "The running network is left as it is" in report.message
        assert "spec.versionPolicy.allowUnsupported: true" in report.message


def test_refused_downgrade_advises_keeping_the_running_release() -> None:
    report = S.evaluate(cluster(), CATALOG, [CATALOG.get("flannel", "v0.27.4")], [CATALOG.get("flannel", "v0.28.9")])
    assert "keep flannel v0.28.9: set spec.version back to v0.28.9" in report.message
    assert "flannel v0.27.4 supports Kubernetes 1.31-1.34, not the API server's 1.36" in report.message


def test_running_release_made_unsupported_gets_the_recommended_release_and_path() -> None:
    calico = CATALOG.get("calico", "v3.31.7")
    report = S.evaluate(cluster(), CATALOG, [calico], [calico])
    assert report.recommendation is not None
    assert report.recommendation.release.key == "calico/v3.32.1"
    assert report.recommendation.path == ("v3.31.7", "v3.32.1")
    assert "move to calico v3.32.1 (upgrade path v3.31.7 -> v3.32.1)" in report.message


def test_upgrading_to_the_fix_says_to_finish_the_rollout() -> None:
    report = S.evaluate(cluster(), CATALOG, [CATALOG.get("calico", "v3.32.1")], [CATALOG.get("calico", "v3.31.7")])
    assert "the target calico/v3.32.1 suits the cluster: finish rolling it out" in report.message


def test_no_release_fits_names_other_plugins_and_the_kubelets() -> None:
    cilium = CATALOG.get("cilium", "v1.19.6")
    report = S.evaluate(cluster(), CATALOG, [cilium], [cilium])
    assert report.recommendation is None
    assert "no cilium release in the catalog suits this cluster" in report.message
    assert "plugins whose newest release does: calico, flannel, reference" in report.message
    facts = cluster("v1.36.3", node("a", kubelet="v1.32.0"), node("b"))
    flannel = CATALOG.get("flannel", "v0.28.9")
    report = S.evaluate(facts, CATALOG, [flannel], [flannel])
    assert "upgrade the kubelets to the API server's 1.36 first" in report.message


def _chain_catalog() -> Catalog:
    """p v1 -> v2 -> v3 (upgradeFrom edges), plus v4 that no path reaches; only v3 and v4 support 1.36."""
    return Catalog(
        (
            release(plugin="p", version="v1.0.0", upgradeFrom=[], compatibility__kubernetes=["1.34"]),
            release(plugin="p", version="v2.0.0", upgradeFrom=["v1.0.0"], compatibility__kubernetes=["1.35"]),
            release(plugin="p", version="v3.0.0", upgradeFrom=["v2.0.0"], compatibility__kubernetes=["1.36"]),
            release(plugin="p", version="v4.0.0", upgradeFrom=[], compatibility__kubernetes=["1.36"]),
        )
    )


def test_recommendation_follows_upgrade_from_edges() -> None:
    catalog = _chain_catalog()
    v1 = catalog.get("p", "v1.0.0")
    assert upgrade_paths(catalog, "p", "v1.0.0") == {
        "v1.0.0": ("v1.0.0",),
        "v2.0.0": ("v1.0.0", "v2.0.0"),
        "v3.0.0": ("v1.0.0", "v2.0.0", "v3.0.0"),
    }
    found = S.recommend(catalog, "p", cluster(), v1)
    assert found is not None and found.release.version == "v3.0.0"  # v4 is newer but no upgrade reaches it
    assert found.describe() == "p v3.0.0 (upgrade path v1.0.0 -> v2.0.0 -> v3.0.0)"
    fresh = S.recommend(catalog, "p", cluster())  # nothing of p runs: any release may be installed
    assert fresh is not None and fresh.release.version == "v4.0.0" and fresh.path == ("v4.0.0",)
    assert S.recommend(catalog, "p", cluster("v1.37.0", node(kubelet="v1.37.0")), v1) is None


def test_overlays_are_evaluated_with_the_primary() -> None:
    old_multus = CATALOG.get("multus", "v4.2.4")  # supports 1.32-1.35
    report = S.evaluate(cluster(), CATALOG, [CATALOG.get("flannel", "v0.28.9"), old_multus])
    assert report.refused and report.unsupported == ("multus/v4.2.4",)


def test_evaluate_needs_a_target() -> None:
    with pytest.raises(ValueError, match="needs the target release"):
        S.evaluate(cluster(), CATALOG, [])


# -- which releases run now ------------------------------------------------------------------------------------


def test_releases_in_use_come_from_the_revision_history() -> None:
    status = {
        "currentRevision": "aaa",
        "targetRevision": "bbb",
        "revisionHistory": [
            {"revision": "old", "plugin": "flannel", "version": "v0.27.4", "created": "2026-01-01T00:00:00Z"},
            {"revision": "aaa", "plugin": "flannel", "version": "v0.28.9", "created": "2026-01-01T00:00:00Z"},
            {"revision": "bbb", "plugin": "calico", "version": "v3.32.1", "created": "2026-01-01T00:00:00Z"},
            {"revision": "gone", "plugin": "calico", "version": "v0.0.1", "created": "2026-01-01T00:00:00Z"},
        ],
    }
    typed = read_status(status)
    assert [r.key for r in releases_in_use(typed, CATALOG)] == ["flannel/v0.28.9", "calico/v3.32.1"]
    assert [r.key for r in releases_in_use(typed, CATALOG, ["old"])] == [
        "flannel/v0.27.4",
        "flannel/v0.28.9",
        "calico/v3.32.1",
    ]
    assert releases_in_use(read_status({}), CATALOG) == []


# -- planning a Kubernetes upgrade offline ---------------------------------------------------------------------


def test_plan_for_a_kubernetes_upgrade() -> None:
    plans = {p.release.key: p for p in S.plan_kubernetes_upgrade(CATALOG, "v1.36.0")}
    assert plans["calico/v3.32.1"].works and plans["reference/v1.9.1"].works
    assert not plans["calico/v3.31.7"].works
    assert plans["calico/v3.31.7"].advice == (
        "upgrade calico to v3.32.1 (v3.31.7 -> v3.32.1) before moving Kubernetes to 1.36"
    )
    assert plans["cilium/v1.17.18"].advice == (
        "no cilium release in the catalog supports Kubernetes 1.36: stay on 1.35, or swap to calico, flannel, reference"
    )
    assert len(plans) == len(CATALOG.releases)


def test_plan_when_no_release_bridges_two_minors() -> None:
    plans = {p.release.key: p for p in S.plan_kubernetes_upgrade(_chain_catalog(), "1.36")}
    assert plans["p/v2.0.0"].advice == (
        "no p release supports both 1.35 and 1.36: move Kubernetes and p v3.0.0 (v2.0.0 -> v3.0.0) together, "
        "with spec.versionPolicy.allowUnsupported during the move"
    )
    assert plans["p/v4.0.0"].works


def test_plan_rejects_a_bad_version() -> None:
    with pytest.raises(ValueError, match=r"--kubernetes-version: 'x1' is not a Kubernetes version"):
        S.plan_kubernetes_upgrade(CATALOG, "x1")


# -- properties ------------------------------------------------------------------------------------------------

_minor = st.integers(min_value=20, max_value=40)
_nodes = st.lists(
    st.builds(
        NodeFacts,
        name=st.text("abcdefgh", min_size=1, max_size=4),
        kubelet_version=st.one_of(_minor.map(lambda m: f"v1.{m}.0"), st.just("")),
        container_runtime_version=st.sampled_from(
            ["containerd://2.1.4", "containerd://1.7.22", "containerd://1.5.0", "cri-o://1.30.0", "docker://24.0.0"]
        ),
        os=st.sampled_from(["linux", "linux", "windows"]),
        arch=st.sampled_from(["amd64", "arm64", "riscv64"]),
    ),
    max_size=6,
)


@settings(max_examples=150, deadline=None)
@given(
    server=_minor,
    nodes=_nodes,
    target=st.sampled_from(CATALOG.releases),
    running=st.lists(st.sampled_from(CATALOG.releases), max_size=2),
    allow=st.booleans(),
)
def test_properties_of_the_decision(
    server: int, nodes: list[NodeFacts], target: PluginRelease, running: list[PluginRelease], allow: bool
) -> None:
    facts = ClusterFacts(f"v1.{server}.1", tuple(nodes))
    report = S.evaluate(facts, CATALOG, [target], running, allow_unsupported=allow)
    blocking = [f for f in report.findings if f.severity is Severity.UNSUPPORTED]
    assert report.compatible is (not blocking)  # warnings alone never make it incompatible
    assert not (allow and report.refused)  # allowUnsupported always lets the rollout through
    if report.refused:  # only a new release is refused, never one that already runs
        assert target.key in report.unsupported and target.key not in {r.key for r in running}
    names = {n.name for n in nodes}
    assert all(set(f.nodes) <= names for f in report.findings)
    assert report.message == report.condition.message and report.message
