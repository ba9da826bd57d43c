"""The rollout's health gate reads the node agents' datapath reports (NodeNetworkState), where agents report.

The reports are written here as the agent writes them (status subresource, named after the node); the agent's own
tests (tests/agent/) show that it writes them. This test shows what the operator does with them.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import pytest
import yaml
from kubernetes import client

from cni_operator.api import vocabulary as L
from cni_operator.plan.rollout import MOVE_ANNOTATION
from tests.integration.conftest import REPO, Networks, OperatorProcess, wait_established
from tests.waiting import eventually

REPORTS = ("cni-operator.dev", "v1alpha1", "nodenetworkstates")


@pytest.fixture
def reports(api_client: Any, applier: Any) -> Iterator[Any]:
    crd = yaml.safe_load((REPO / "crds" / "nodenetworkstate.yaml").read_text())
    applier.apply(crd)
    wait_established(api_client, crd["metadata"]["name"])
    custom = client.CustomObjectsApi(api_client)
    yield custom
    for item in custom.list_cluster_custom_object(*REPORTS)["items"]:
        custom.delete_cluster_custom_object(*REPORTS, item["metadata"]["name"])


def report(custom: Any, node: str, revision: str, passed: bool, drift: list[str] | None = None) -> None:
    """What `cni-operator agent` writes after a datapath check."""
    try:
        custom.create_cluster_custom_object(
            *REPORTS,
            {"apiVersion": "cni-operator.dev/v1alpha1", "kind": "NodeNetworkState", "metadata": {"name": node}},
        )
    except client.ApiException as err:
        if err.status != 409:
            raise
    datapath = {
        "revision": revision,
        "passed": passed,
        "reason": "Passed" if passed else "NoConnectivity",
        "message": "" if passed else "10.244.0.5 cannot reach 10.244.0.6",
        "checkedAt": "2026-11-28T00:00:00Z",
    }
    status = {"revision": revision, "datapath": datapath, "drift": drift or []}
    custom.patch_cluster_custom_object_status(*REPORTS, node, {"status": status})


def test_a_node_passes_the_gate_only_once_its_agent_checked_the_new_revision(
    api_client: Any, operator: OperatorProcess, reports: Any
) -> None:
    nets = Networks(api_client)
    core = client.CoreV1Api(api_client)
    nodes = sorted(n.metadata.name for n in core.list_node().items)
    try:
        nets.create("gated", example="reference", nodeCleanup="Remove")
        first = nets.wait_ready("gated")["status"]["targetRevision"]
        for node in nodes:
            report(reports, node, first, passed=True)
        report(reports, nodes[-1], first, passed=True, drift=["10-cni-operator-bridge.conflist was edited by hand"])
        agents = eventually(
            lambda: nets.get("gated")["status"].get("agents", {}),
            lambda a: a.get("reporting") == len(nodes) and a.get("problems"),
            timeout=30,
            what="agent reports summed up in status",
        )
        assert agents["problems"] == [
            {"node": nodes[-1], "kind": "Drift", "message": "10-cni-operator-bridge.conflist was edited by hand"}
        ]

        nets.patch_spec(
            "gated", {"mtu": 1400, "rollout": {"canary": {"nodes": 1}, "healthGate": {"timeoutSeconds": 600}}}
        )
        canary = nodes[0]
        target = eventually(
            lambda: core.read_node(canary).metadata.labels.get(L.NODE_REVISION),
            lambda revision: revision not in (None, first),
            timeout=30,
            what="the canary switched",
        )
        report(reports, canary, target, passed=False)  # the agent checked: no connectivity
        time.sleep(4)
        held = core.read_node(canary)
        assert held.spec.unschedulable and MOVE_ANNOTATION in held.metadata.annotations  # pods Ready, gate closed
        assert [core.read_node(n).metadata.labels[L.NODE_REVISION] for n in nodes[1:]] == [first] * (len(nodes) - 1)
        status = nets.get("gated")["status"]
        assert status["phase"] == "Progressing"
        assert {
            "node": canary,
            "kind": "Datapath",
            "message": "NoConnectivity: 10.244.0.5 cannot reach 10.244.0.6",
        } in (status["agents"]["problems"])

        report(reports, canary, target, passed=True)
        next_wave = eventually(
            lambda: core.read_node(nodes[1]).metadata.labels.get(L.NODE_REVISION),
            lambda revision: revision == target,
            timeout=30,
            what="the next wave after the canary passed",
        )
        assert next_wave == target and not core.read_node(canary).spec.unschedulable
        for node in nodes[1:]:
            report(reports, node, target, passed=True)
        nets.wait_ready("gated", timeout=60)
    finally:
        nets.delete("gated")
