"""The rollout engine end to end: 20 fake nodes, a PodDisruptionBudget-guarded workload, the real operator process.

Every test runs while an observer takes consistent snapshots of nodes and pods (both LISTs at one etcd revision)
and records any moment at which an uncordoned node had no Ready CNI pod, or a PodDisruptionBudget was violated.
The API server's audit log counts the operator's writes: cordons and evictions per node and pod.
"""

from __future__ import annotations

import json
import threading
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from kubernetes import client

from cni_operator.api import v1alpha1 as api
from cni_operator.api import vocabulary as L
from cni_operator.plan.rollout import MOVE_ANNOTATION, Move, Phase
from cni_operator.sandbox import Sandbox, SandboxConfig, SandboxError, fake_nodes
from cni_operator.sandbox.cluster import create_nodes
from cni_operator.sandbox.nodes import FakeNode
from tests.integration.conftest import REPO, OperatorProcess, wait_established
from tests.waiting import eventually

NODES = 20
WORKLOAD_NS = "shop"
FAIL_LABEL = "sandbox.cni-operator.dev/fail"
AUDIT_POLICY = {
    "apiVersion": "audit.k8s.io/v1",
    "kind": "Policy",
    "omitStages": ["RequestReceived"],
    "rules": [
        {"level": "Request", "verbs": ["patch", "update"], "resources": [{"group": "", "resources": ["nodes"]}]},
        {"level": "Metadata", "verbs": ["create"], "resources": [{"group": "", "resources": ["pods/eviction"]}]},
        {"level": "None"},
    ],
}


# -- the cluster ---------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Sandbox]:
    state_dir = tmp_path_factory.mktemp("rollout-sandbox")
    policy = state_dir / "audit-policy.yaml"
    policy.write_text(yaml.safe_dump(AUDIT_POLICY))
    flags = (f"--audit-policy-file={policy}", f"--audit-log-path={state_dir / 'audit.log'}", "--audit-log-maxsize=0")
    box = Sandbox(
        SandboxConfig(state_dir=state_dir, nodes=fake_nodes(NODES, prefix="node"), extra_apiserver_flags=flags)
    )
    try:
        box.start()
    except SandboxError as err:
        pytest.fail(f"the sandbox did not start: {err}\nBuild it with hack/controlplane/build.sh", pytrace=False)
    try:
        yield box
    finally:
        box.stop()


@pytest.fixture(scope="module")
def kube(cluster: Sandbox) -> Any:
    api_client = cluster.api_client()
    crd = yaml.safe_load((REPO / "crds" / "clusternetwork.yaml").read_text())
    client.ApiextensionsV1Api(api_client).create_custom_resource_definition(crd)
    wait_established(api_client, crd["metadata"]["name"])
    _workload(api_client)
    return api_client


@pytest.fixture(scope="module")
def operator(cluster: Sandbox, kube: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[OperatorProcess]:
    process = OperatorProcess(cluster.kubeconfig, tmp_path_factory.mktemp("rollout-operator"))
    process.start()
    try:
        yield process
    finally:
        process.stop()
        print(process.logs()[-30000:])


def _workload(api_client: Any) -> None:
    """Ten web pods guarded by a PodDisruptionBudget that lets one go at a time."""
    core, apps, policy = client.CoreV1Api(api_client), client.AppsV1Api(api_client), client.PolicyV1Api(api_client)
    core.create_namespace({"metadata": {"name": WORKLOAD_NS}})
    labels = {"app": "web"}
    apps.create_namespaced_deployment(
        WORKLOAD_NS,
        {
            "metadata": {"name": "web"},
            "spec": {
                "replicas": 10,
                "selector": {"matchLabels": labels},
                "template": {
                    "metadata": {"labels": labels},
                    "spec": {"containers": [{"name": "web", "image": "registry.invalid/web:1"}]},
                },
            },
        },
    )
    policy.create_namespaced_pod_disruption_budget(
        WORKLOAD_NS,
        {"metadata": {"name": "web"}, "spec": {"maxUnavailable": 1, "selector": {"matchLabels": labels}}},
    )
    eventually(
        lambda: apps.read_namespaced_deployment("web", WORKLOAD_NS).status.ready_replicas,
        lambda ready: ready == 10,
        timeout=60,
        what="the web workload Ready",
    )


# -- observing -----------------------------------------------------------------------------------------------------


class Observer:
    """Consistent snapshots of nodes, CNI pods and the PodDisruptionBudget, as often as the API server allows."""

    def __init__(self, api_client: Any) -> None:
        self.core = client.CoreV1Api(api_client)
        self.policy = client.PolicyV1Api(api_client)
        self.violations: list[str] = []
        self.snapshots = 0
        self.moves_seen: set[tuple[str, Move]] = set()
        self.most_in_flight = 0  # nodes moving at once, in any snapshot
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> Observer:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join(timeout=10)

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self.snapshot()
            except client.ApiException as err:
                if err.status != 410:  # compacted between the two reads: take the next snapshot
                    self.violations.append(f"observer error: {err}")
            time.sleep(0.05)

    def snapshot(self) -> None:
        nodes = self.core.list_node()
        at = nodes.metadata.resource_version
        pods = self.core.list_pod_for_all_namespaces(
            label_selector=L.REVISION, resource_version=at, resource_version_match="Exact"
        ).items
        ready_on = {
            p.spec.node_name
            for p in pods
            if not p.metadata.deletion_timestamp
            and any(c.type == "Ready" and c.status == "True" for c in p.status.conditions or [])
        }
        in_flight = 0
        for node in nodes.items:
            move = Move.decode((node.metadata.annotations or {}).get(MOVE_ANNOTATION))
            if move:
                self.moves_seen.add((node.metadata.name, move))
                in_flight += 1
            if not node.spec.unschedulable and node.metadata.name not in ready_on:
                self.violations.append(f"rv {at}: node {node.metadata.name} uncordoned without a Ready CNI pod")
        self.most_in_flight = max(self.most_in_flight, in_flight)
        pdb = self.policy.read_namespaced_pod_disruption_budget("web", WORKLOAD_NS).status
        if pdb.current_healthy is not None and pdb.current_healthy < pdb.desired_healthy:
            self.violations.append(f"PodDisruptionBudget web: {pdb.current_healthy} < {pdb.desired_healthy} healthy")
        self.snapshots += 1


class Audit:
    """The operator's node writes and evictions, from the API server's audit log, from a point in time on."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.offset = path.stat().st_size if path.exists() else 0

    def events(self) -> list[dict[str, Any]]:
        with self.path.open() as log:
            log.seek(self.offset)
            return [json.loads(line) for line in log if line.strip()]

    def node_writes(self) -> Counter[str]:
        return Counter(e["objectRef"]["name"] for e in self._operator_node_writes())

    def cordons(self) -> Counter[str]:
        return Counter(
            e["objectRef"]["name"]
            for e in self._operator_node_writes()
            if ((e.get("requestObject") or {}).get("spec") or {}).get("unschedulable") is True
        )

    def evictions(self) -> Counter[str]:
        """Successful evictions per pod."""
        return Counter(
            f"{e['objectRef']['namespace']}/{e['objectRef']['name']}"
            for e in self.events()
            if e["objectRef"].get("subresource") == "eviction" and e["responseStatus"]["code"] == 201
        )

    def _operator_node_writes(self) -> list[dict[str, Any]]:
        return [
            e
            for e in self.events()
            if e["objectRef"].get("resource") == "nodes"
            and not e["objectRef"].get("subresource")
            and not e["user"]["username"].startswith("system:")
            and e["responseStatus"]["code"] < 300
        ]


# -- driving the ClusterNetwork ------------------------------------------------------------------------------------


class Network:
    NAME = "default"

    def __init__(self, api_client: Any) -> None:
        self.custom = client.CustomObjectsApi(api_client)
        self.core = client.CoreV1Api(api_client)
        self.apps = client.AppsV1Api(api_client)

    def get(self) -> dict[str, Any]:
        result: dict[str, Any] = self.custom.get_cluster_custom_object(api.GROUP, api.VERSION, api.PLURAL, self.NAME)
        return result

    def apply(self, spec: dict[str, Any]) -> None:
        """Replace the whole spec (as `kubectl replace` would), retrying when the operator's annotations raced us."""
        for _attempt in range(10):
            body = {"apiVersion": api.API_VERSION, "kind": api.KIND, "metadata": {"name": self.NAME}, "spec": spec}
            try:
                current = self.get()
            except client.ApiException as err:
                if err.status != 404:
                    raise
                self.custom.create_cluster_custom_object(api.GROUP, api.VERSION, api.PLURAL, body)
                return
            body["metadata"] = {**current["metadata"], "managedFields": None}
            try:
                self.custom.replace_cluster_custom_object(api.GROUP, api.VERSION, api.PLURAL, self.NAME, body)
                return
            except client.ApiException as err:
                if err.status != 409:
                    raise
        pytest.fail("could not replace the ClusterNetwork: 10 conflicts in a row")

    def patch(self, spec: dict[str, Any]) -> None:
        self.custom.patch_cluster_custom_object(api.GROUP, api.VERSION, api.PLURAL, self.NAME, {"spec": spec})

    def wait_phase(self, phase: str, timeout: float = 240) -> dict[str, Any]:
        generation = self.get()["metadata"]["generation"]

        def fetch() -> dict[str, Any]:  # without managedFields, so a failure shows the status
            cn = self.get()
            cn["metadata"].pop("managedFields", None)
            return cn

        return eventually(
            fetch,
            lambda cn: (
                (cn.get("status") or {}).get("phase") == phase and cn["status"].get("observedGeneration") == generation
            ),
            timeout=timeout,
            what=f"ClusterNetwork phase {phase}",
        )

    def converge(self, spec: dict[str, Any], timeout: float = 300) -> dict[str, Any]:
        self.apply(spec)
        return self.wait_phase("Ready", timeout)

    def revisions(self) -> Counter[str]:
        return Counter((n.metadata.labels or {}).get(L.NODE_REVISION) for n in self.core.list_node().items)

    def assert_settled_on(self, revision: str) -> None:
        nodes = self.core.list_node().items
        assert {n.metadata.name: n.metadata.labels.get(L.NODE_REVISION) for n in nodes} == {
            n.metadata.name: revision for n in nodes
        }
        assert [n.metadata.name for n in nodes if n.spec.unschedulable] == []
        assert [n.metadata.name for n in nodes if MOVE_ANNOTATION in (n.metadata.annotations or {})] == []


def spec(plugin: str, version: str, **extra: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "plugin": plugin,
        "version": version,
        "podCIDRs": ["10.244.0.0/16"],
        "networkPolicy": plugin not in ("flannel", "reference"),
        "rollout": {"canary": {"nodes": 1}, "maxUnavailable": "20%", "healthGate": {"timeoutSeconds": 120}},
        # The sandbox runs Kubernetes 1.36, which most catalog releases do not list yet; these tests are about
        # moving nodes between releases, so they opt in (version skew is still reported, see test_skew.py).
        "versionPolicy": {"allowUnsupported": True},
    }
    return {**base, **extra}


@pytest.fixture
def network(kube: Any, operator: OperatorProcess) -> Network:
    return Network(kube)


# -- the scenarios -------------------------------------------------------------------------------------------------


def test_upgrade_moves_nodes_in_waves_without_evictions(network: Network, kube: Any, cluster: Sandbox) -> None:
    before = network.converge(spec("flannel", "v0.27.4"))["status"]["targetRevision"]
    network.assert_settled_on(before)
    audit = Audit(cluster.dir / "audit.log")
    with Observer(kube) as observer:
        network.apply(spec("flannel", "v0.28.9"))
        status = network.wait_phase("Ready")["status"]
    target = status["targetRevision"]
    assert target != before
    network.assert_settled_on(target)
    assert status["waveCount"] == 1 + 5  # the canary, then 19 nodes in waves of 4 (20% of 20)
    assert observer.snapshots > 20 and observer.violations == []
    assert observer.most_in_flight == 4  # maxUnavailable 20% of 20 nodes
    assert audit.evictions() == Counter()  # an upgrade keeps every pod where it is
    assert set(audit.cordons().values()) == {1} and len(audit.cordons()) == NODES
    assert max(audit.node_writes().values()) == 2  # cordon+switch, then uncordon
    old = network.apps.list_daemon_set_for_all_namespaces(label_selector=f"{L.REVISION}={before}").items
    assert old == []  # the old revision is pruned once the last node moved


def test_swap_drains_through_pod_disruption_budgets_and_keeps_multus(
    network: Network, kube: Any, cluster: Sandbox
) -> None:
    multus = {"multus": {"enabled": True}}
    before = network.converge(spec("flannel", "v0.28.9", **multus))["status"]["targetRevision"]
    audit = Audit(cluster.dir / "audit.log")
    with Observer(kube) as observer:
        network.apply(spec("calico", "v3.31.7", **multus))
        status = network.wait_phase("Ready", timeout=400)["status"]
    target = status["targetRevision"]
    network.assert_settled_on(target)
    assert observer.violations == []
    draining = {name for name, move in observer.moves_seen if move.phase is Phase.DRAINING and move.to == target}
    assert len(draining) >= NODES - 2  # every node was drained before its switch (a fast one may be missed)
    evicted = audit.evictions()
    assert evicted and max(evicted.values()) == 1  # PDB-guarded pods left through the Eviction API, once each
    assert set(audit.cordons().values()) == {1}
    assert max(audit.node_writes().values()) == 3  # cordon, switch, uncordon
    daemonsets = network.apps.list_daemon_set_for_all_namespaces(label_selector=f"{L.REVISION}={target}").items
    assert sorted(d.metadata.labels[L.PLUGIN] for d in daemonsets) == ["calico", "multus"]
    for ds in daemonsets:  # Multus runs on every node of the new revision, next to the new primary plugin
        assert ds.status.number_ready == NODES
    flannel = network.apps.list_daemon_set_for_all_namespaces(label_selector=f"{L.PLUGIN}=flannel").items
    assert flannel == [] and before != target
    web = network.apps.read_namespaced_deployment("web", WORKLOAD_NS).status
    assert web.ready_replicas == 10


def test_failed_upgrade_is_rolled_back_automatically(network: Network, kube: Any) -> None:
    good = network.converge(spec("calico", "v3.31.7"))["status"]["targetRevision"]
    # Paused: the new revision's objects are applied but no node moves; its pods are then made to crash-loop.
    network.apply(spec("calico", "v3.32.1", rollout={"paused": True, "canary": {"nodes": 2}, "maxUnavailable": 4}))
    bad = network.wait_phase("Paused")["status"]["targetRevision"]
    assert network.revisions() == Counter({good: NODES})
    ds_name = f"calico-node-{bad}"
    network.apps.patch_namespaced_daemon_set(
        ds_name,
        "kube-system",
        {"spec": {"template": {"metadata": {"labels": {FAIL_LABEL: "true"}}}}},
        field_manager="chaos-test",
    )
    with Observer(kube) as observer:
        network.patch({"rollout": {"paused": False}})
        failed = network.wait_phase("Failed")["status"]
        eventually(network.revisions, lambda r: r == Counter({good: NODES}), timeout=120, what="nodes back on good")
        eventually(
            lambda: [n.metadata.name for n in network.core.list_node().items if n.spec.unschedulable],
            lambda cordoned: cordoned == [],
            timeout=60,
            what="rolled-back nodes uncordoned",
        )
    assert observer.violations == []
    assert failed["failedRevision"] == bad
    assert {f["name"] for f in failed["failedNodes"]} <= {"node-000", "node-001"}
    assert {f["reason"] for f in failed["failedNodes"]} == {"CrashLoopBackOff"}
    assert "set the spec back" in failed["message"]
    condition = {c["type"]: c for c in failed["conditions"]}
    assert condition["Degraded"]["status"] == "True" and condition["Ready"]["status"] == "False"
    # Nodes outside the canary never moved.
    moved = {name for name, move in observer.moves_seen}
    assert moved <= {"node-000", "node-001"}
    time.sleep(3)
    assert network.get()["status"]["phase"] == "Failed"  # it stays stopped: nothing retries the failed revision
    # Setting the spec back is the way out.
    network.converge(spec("calico", "v3.31.7"))
    network.assert_settled_on(good)


def test_pause_and_resume(network: Network, kube: Any, operator: OperatorProcess) -> None:
    start = network.converge(spec("calico", "v3.31.7"))["status"]["targetRevision"]
    rollout = {"canary": {"nodes": 1}, "maxUnavailable": 2}
    network.apply(spec("calico", "v3.31.7", mtu=1400, rollout={**rollout, "paused": True}))
    paused = network.wait_phase("Paused")["status"]
    assert "paused: false" in paused["message"]
    time.sleep(3)
    assert network.revisions() == Counter({start: NODES})  # nothing moved
    _a_new_node_runs_the_target_without_the_operator(network, kube, operator, paused["targetRevision"])
    network.patch({"rollout": {"paused": False}})
    target = paused["targetRevision"]
    eventually(network.revisions, lambda r: r[target] >= 5, timeout=120, what="a few waves on the new revision")
    network.patch({"rollout": {"paused": True}})
    held = network.wait_phase("Paused")["status"]
    counts = network.revisions()
    assert 0 < counts[target] < NODES and counts[start] == NODES - counts[target]
    time.sleep(4)
    assert network.revisions() == counts  # paused: no new wave starts
    assert held["nodes"]["updated"] == counts[target]
    network.patch({"rollout": {"paused": False}})
    network.wait_phase("Ready")
    network.assert_settled_on(target)


def _a_new_node_runs_the_target_without_the_operator(
    network: Network, kube: Any, operator: OperatorProcess, target: str
) -> None:
    """A node that joins mid-rollout gets the target revision's CNI pod from the DaemonSet alone; the operator,
    once back, only labels it."""
    operator.kill()
    late = FakeNode("node-late", pod_cidr="10.244.250.0/24")
    create_nodes(kube, [late])
    try:
        pods = eventually(
            lambda: network.core.list_pod_for_all_namespaces(field_selector="spec.nodeName=node-late").items,
            lambda pods: any(
                p.metadata.labels.get(L.REVISION) == target
                and any(c.type == "Ready" and c.status == "True" for c in p.status.conditions or [])
                for p in pods
            ),
            timeout=60,
            what="the target's CNI pod Ready on the new node",
        )
        assert {p.metadata.labels.get(L.REVISION) for p in pods if L.REVISION in p.metadata.labels} == {target}
        operator.start()
        eventually(
            lambda: network.core.read_node("node-late").metadata.labels.get(L.NODE_REVISION),
            lambda revision: revision == target,
            timeout=60,
            what="the operator labels the new node with the target revision",
        )
    finally:
        if operator.procs[-1].poll() is not None:
            operator.start()
        network.core.delete_node("node-late")
        eventually(
            lambda: [n.metadata.name for n in network.core.list_node().items],
            lambda names: "node-late" not in names,
            timeout=30,
            what="node-late gone",
        )


def test_operator_killed_during_a_swap_finishes_it(
    network: Network, kube: Any, operator: OperatorProcess, cluster: Sandbox
) -> None:
    network.converge(spec("calico", "v3.31.7"))
    audit = Audit(cluster.dir / "audit.log")

    def moves() -> list[Move]:
        nodes = network.core.list_node().items
        found = [Move.decode((n.metadata.annotations or {}).get(MOVE_ANNOTATION)) for n in nodes]
        return [m for m in found if m]

    with Observer(kube) as observer:
        network.apply(spec("cilium", "v1.18.12", rollout={"canary": {"nodes": 1}, "maxUnavailable": 3}))
        kill_points = [
            ("the canary draining", lambda: any(m.phase is Phase.DRAINING for m in moves())),
            ("a node verifying", lambda: any(m.phase is Phase.VERIFYING for m in moves())),
            ("a later wave draining", lambda: network.revisions().most_common(1)[0][1] <= NODES - 4 and bool(moves())),
        ]
        for what, reached in kill_points:
            eventually(reached, bool, timeout=240, what=what)
            operator.kill()
            operator.start()
        status = network.wait_phase("Ready", timeout=400)["status"]
    network.assert_settled_on(status["targetRevision"])
    assert observer.violations == []
    assert set(audit.cordons().values()) == {1}, "a node was cordoned twice"
    evicted = audit.evictions()
    assert evicted and max(evicted.values()) == 1, "a pod was evicted twice"
    assert max(audit.node_writes().values()) == 3
