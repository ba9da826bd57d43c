"""`cni-operator run` against the sandbox: create, update, drift repair, delete, one network per cluster, restarts."""

from __future__ import annotations

import copy
import time
from pathlib import Path
from typing import Any

import pytest
import yaml
from kubernetes import client

from cni_operator.api.vocabulary import OWNER
from tests.integration.conftest import REPO, Networks, OperatorProcess
from tests.waiting import eventually

pytestmark = pytest.mark.cluster


def test_create_renders_applies_and_reports_ready(networks: Networks) -> None:
    networks.create("create")
    cn = networks.wait_ready("create")
    status = cn["status"]
    nodes = len(networks.core.list_node().items)
    assert status["nodes"] == {"total": nodes, "updated": nodes, "ready": nodes}
    assert status["targetRevision"] == status["currentRevision"]
    ready = networks.condition("create", "Ready")
    assert ready["status"] == "True" and ready["reason"] == "RolloutComplete"
    assert networks.condition("create", "Degraded")["status"] == "False"
    daemonsets = networks.owned_daemonsets("create")
    assert [ds.metadata.name.endswith(status["targetRevision"]) for ds in daemonsets] == [True]
    assert daemonsets[0].metadata.labels["cni-operator.dev/plugin"] == "flannel"
    reasons = {e.reason for e in networks.events("create")}
    assert {"Rendering", "Applied", "Ready"} <= reasons


def test_update_rolls_a_new_revision_and_prunes_the_old(networks: Networks) -> None:
    networks.create("update")
    first = networks.wait_ready("update")["status"]["targetRevision"]
    networks.patch_spec("update", {"mtu": 1400})
    second = eventually(
        lambda: networks.get("update"),
        lambda cn: cn["status"].get("targetRevision") not in (None, first) and cn["status"]["phase"] == "Ready",
        what="new revision Ready",
    )["status"]
    names = eventually(
        lambda: [ds.metadata.name for ds in networks.owned_daemonsets("update")],
        lambda names: len(names) == 1,
        what="old DaemonSet pruned",
    )
    assert names[0].endswith(second["targetRevision"])
    assert [h["revision"] for h in second["revisionHistory"]] == [first, second["targetRevision"]]
    assert "Pruned" in {e.reason for e in networks.events("update")}


def test_a_target_without_an_upgrade_path_is_refused_and_changes_nothing(networks: Networks) -> None:
    networks.create("skip", example="cilium", version="v1.17.18", versionPolicy={"allowUnsupported": True})
    networks.wait_ready("skip")
    before = {o.metadata.name: o.metadata.resource_version for o in networks.owned_daemonsets("skip")}
    nodes = {n.metadata.name: n.metadata.resource_version for n in networks.core.list_node().items}
    networks.patch_spec("skip", {"version": "v1.19.6"})
    degraded = eventually(
        lambda: networks.condition("skip", "Degraded"),
        lambda c: c.get("reason") == "UpgradePathRefused",
        what="the skipped release refused",
    )
    assert "v1.17.18 -> v1.18.12 -> v1.19.6" in degraded["message"]
    assert "set spec.version to v1.18.12 first" in degraded["message"]
    assert networks.get("skip")["status"]["phase"] == "Degraded"
    assert {o.metadata.name: o.metadata.resource_version for o in networks.owned_daemonsets("skip")} == before
    assert {n.metadata.name: n.metadata.resource_version for n in networks.core.list_node().items} == nodes
    networks.patch_spec("skip", {"version": "v1.18.12"})  # the first step of the path is taken
    networks.wait_ready("skip", timeout=120)


def test_drift_is_repaired(networks: Networks) -> None:
    networks.create("drift")
    networks.wait_ready("drift")
    ds = networks.owned_daemonsets("drift")[0]
    networks.apps.delete_namespaced_daemon_set(ds.metadata.name, ds.metadata.namespace)
    eventually(
        lambda: [d.metadata.uid for d in networks.owned_daemonsets("drift")],
        lambda uids: len(uids) == 1 and uids[0] != ds.metadata.uid,
        what="deleted DaemonSet recreated",
    )
    configmaps = networks.core.list_config_map_for_all_namespaces(label_selector=f"{OWNER}=drift").items
    cm = configmaps[0]
    original = copy.deepcopy(cm.data)
    networks.core.patch_namespaced_config_map(
        cm.metadata.name, cm.metadata.namespace, {"data": {key: "tampered" for key in cm.data}}
    )
    eventually(
        lambda: networks.core.read_namespaced_config_map(cm.metadata.name, cm.metadata.namespace).data,
        lambda data: data == original,
        what="edited ConfigMap restored",
    )
    role = networks.rbac.list_cluster_role(label_selector=f"{OWNER}=drift").items[0]
    networks.rbac.delete_cluster_role(role.metadata.name)
    eventually(
        lambda: [r.metadata.name for r in networks.rbac.list_cluster_role(label_selector=f"{OWNER}=drift").items],
        lambda names: role.metadata.name in names,
        what="deleted ClusterRole recreated",
    )


def test_delete_with_keep_leaves_the_network_running(networks: Networks) -> None:
    networks.create("keep")
    networks.wait_ready("keep")
    names = {ds.metadata.name for ds in networks.owned_daemonsets("keep")}
    networks.delete("keep")
    left = networks.apps.list_daemon_set_for_all_namespaces(label_selector="cni-operator.dev/plugin=flannel").items
    assert names <= {ds.metadata.name for ds in left}, "the plugin's DaemonSet keeps running"
    assert all(OWNER not in (ds.metadata.labels or {}) for ds in left if ds.metadata.name in names)
    assert "Kept" in {e.reason for e in networks.events("keep")}
    for ds in left:  # tidy up for the next tests
        networks.apps.delete_namespaced_daemon_set(ds.metadata.name, ds.metadata.namespace)


def test_delete_with_remove_deletes_what_it_created(networks: Networks) -> None:
    networks.create("remove", nodeCleanup="Remove")
    networks.wait_ready("remove")
    assert networks.owned_daemonsets("remove")
    networks.delete("remove")
    assert networks.owned_daemonsets("remove") == []
    assert networks.rbac.list_cluster_role(label_selector=f"{OWNER}=remove").items == []
    eventually(
        lambda: [ns.metadata.name for ns in networks.core.list_namespace().items],
        lambda names: "kube-flannel" not in names,
        timeout=90,
        what="the plugin's namespace removed",
    )


def test_second_clusternetwork_is_inactive_and_changes_nothing(networks: Networks) -> None:
    networks.create("first")
    networks.wait_ready("first")
    networks.create("second", example="calico")
    degraded = eventually(
        lambda: networks.condition("second", "Degraded"),
        lambda c: c.get("status") == "True",
        what="second ClusterNetwork Degraded",
    )
    assert degraded["reason"] == "AnotherClusterNetworkActive"
    assert "ClusterNetwork first is the cluster's network" in degraded["message"]
    assert networks.get("second")["status"]["phase"] == "Inactive"
    assert networks.owned_daemonsets("second") == []
    assert networks.get("first")["status"]["phase"] == "Ready"


def test_restarted_operator_finishes_the_reconcile(
    api_client: Any, sandbox: Any, clusternetwork_crd: Any, tmp_path: Path
) -> None:
    """Killed between two applies of its first reconcile (slowed down on purpose), the next operator finishes it."""
    slow = OperatorProcess(sandbox.kubeconfig, tmp_path, env={"CNI_OPERATOR_TEST_APPLY_DELAY": "0.5"})
    slow.start()
    nets = Networks(api_client)
    try:
        nets.create("restart")
        owned = eventually(
            lambda: nets.core.list_service_account_for_all_namespaces(label_selector=f"{OWNER}=restart").items,
            lambda items: len(items) >= 1,
            what="the first objects applied",
        )
        slow.kill()
        assert owned and not nets.owned_daemonsets("restart"), "killed before the DaemonSet was applied"
        status = nets.get("restart").get("status") or {}
        assert status.get("observedGeneration", 0) == 0, "killed before the first reconcile wrote its status"
        slow.start()
        cn = nets.wait_ready("restart", timeout=120)
        assert cn["status"]["nodes"]["ready"] == len(nets.core.list_node().items)
        assert len(nets.owned_daemonsets("restart")) == 1
        nets.patch_spec("restart", {"nodeCleanup": "Remove"})
        nets.delete("restart")
    finally:
        slow.stop()
        print(slow.logs()[-20000:])


def test_metrics_report_reconciles_and_nodes(networks: Networks, operator: OperatorProcess) -> None:
    networks.create("metrics")
    networks.wait_ready("metrics")

    text = eventually(
        operator.metrics, lambda t: 'cni_operator_reconciles_total{clusternetwork="metrics",phase="Ready"}' in t
    )
    nodes = len(networks.core.list_node().items)
    assert f'cni_operator_nodes{{clusternetwork="metrics",state="ready"}} {float(nodes)}' in text
    assert 'cni_operator_condition{clusternetwork="metrics",condition="Ready"} 1.0' in text
    revision = networks.get("metrics")["status"]["targetRevision"]
    assert f'cni_operator_nodes_per_revision{{clusternetwork="metrics",revision="{revision}"}} {float(nodes)}' in text


def test_second_replica_waits_for_the_lease(networks: Networks, operator: OperatorProcess, api_client: Any) -> None:
    coordination: Any = client.CoordinationV1Api(api_client)
    eventually(operator.logs, lambda logs: "became leader" in logs, what="first replica leads")
    holder = coordination.read_namespaced_lease("cni-operator", "kube-system").spec.holder_identity
    assert holder
    standby = operator.start()
    eventually(operator.logs, lambda logs: logs.count("waiting for leadership") == 2, what="second replica waits")
    time.sleep(6)  # longer than a renew period: the standby keeps waiting while the leader renews
    assert standby.poll() is None
    assert coordination.read_namespaced_lease("cni-operator", "kube-system").spec.holder_identity == holder
    assert operator.logs().count("became leader") == 1
    networks.create("leader")
    networks.wait_ready("leader")  # the leader still acts


def _service_account_kubeconfig(api_client: Any, sandbox: Any, namespace: str, tmp_path: Path) -> Path:
    """The operator's service account bound to exactly the chart's rules, and a kubeconfig with its token."""
    core: Any = client.CoreV1Api(api_client)
    rbac: Any = client.RbacAuthorizationV1Api(api_client)
    chart = REPO / "helm" / "cni-operator" / "files"
    core.create_namespace({"metadata": {"name": namespace}})
    core.create_namespaced_service_account(namespace, {"metadata": {"name": "cni-operator"}})
    rbac.create_cluster_role(
        {
            "metadata": {"name": "cni-operator-test"},
            "rules": yaml.safe_load((chart / "clusterrole-rules.yaml").read_text()),
        }
    )
    subject = [{"kind": "ServiceAccount", "name": "cni-operator", "namespace": namespace}]
    rbac.create_cluster_role_binding(
        {
            "metadata": {"name": "cni-operator-test"},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "cni-operator-test"},
            "subjects": subject,
        }
    )
    rbac.create_namespaced_role(
        namespace,
        {"metadata": {"name": "leader-election"}, "rules": yaml.safe_load((chart / "lease-rules.yaml").read_text())},
    )
    rbac.create_namespaced_role_binding(
        namespace,
        {
            "metadata": {"name": "leader-election"},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "leader-election"},
            "subjects": subject,
        },
    )
    token = core.create_namespaced_service_account_token(
        "cni-operator", namespace, {"spec": {"expirationSeconds": 3600}}
    ).status.token
    admin = yaml.safe_load(Path(sandbox.kubeconfig).read_text())
    admin["users"] = [{"name": "cni-operator", "user": {"token": token}}]
    admin["contexts"][0]["context"]["user"] = "cni-operator"
    path = tmp_path / "operator-sa.kubeconfig"
    path.write_text(yaml.safe_dump(admin))
    return path


@pytest.mark.parametrize("example", ["calico", "cilium"])
def test_operator_works_with_only_the_charts_rbac(
    api_client: Any, sandbox: Any, clusternetwork_crd: Any, tmp_path: Path, example: str
) -> None:
    namespace = f"cni-operator-rbac-{example}"
    kubeconfig = _service_account_kubeconfig(api_client, sandbox, namespace, tmp_path)
    process = OperatorProcess(kubeconfig, tmp_path, lease_namespace=namespace)
    process.start()
    nets = Networks(api_client)
    try:
        nets.create(
            "least-privilege",
            example=example,
            nodeCleanup="Remove",
            bgp=example == "calico",
            # the examples' calico v3.31.7 and cilium v1.19.6 do not list the sandbox's Kubernetes 1.36 (issue 7)
            versionPolicy={"allowUnsupported": True},
        )
        nets.wait_ready("least-privilege", timeout=120)
        assert "Forbidden" not in process.logs() and "forbidden" not in process.logs()
        nets.delete("least-privilege")
        assert nets.owned_daemonsets("least-privilege") == []
    finally:
        process.stop()
        print(process.logs()[-20000:])
        rbac: Any = client.RbacAuthorizationV1Api(api_client)
        rbac.delete_cluster_role_binding("cni-operator-test")
        rbac.delete_cluster_role("cni-operator-test")
        client.CoreV1Api(api_client).delete_namespace(namespace)
