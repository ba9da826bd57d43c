"""The committed NodeNetworkState CRD is exactly what the API models generate, and keeps the agreed interface."""

from __future__ import annotations

from pathlib import Path

from cni_operator.api.crd import NODE_NETWORK_STATE, custom_resource_definition, render_crd_yaml
from tests.unit.test_crd import _walk

REPO = Path(__file__).resolve().parents[2]
REGENERATE = (
    "run '.venv/bin/cni-operator crd --kind NodeNetworkState --write crds/nodenetworkstate.yaml "
    "--also helm/cni-operator/crds/nodenetworkstate.yaml'"
)


def test_committed_crd_matches_the_models() -> None:
    committed = (REPO / NODE_NETWORK_STATE.path).read_text()
    assert committed == render_crd_yaml(NODE_NETWORK_STATE), f"crds/nodenetworkstate.yaml is stale: {REGENERATE}"


def test_helm_chart_ships_the_same_crd() -> None:
    chart_copy = REPO / "helm" / "cni-operator" / "crds" / "nodenetworkstate.yaml"
    assert chart_copy.read_text() == (REPO / NODE_NETWORK_STATE.path).read_text(), REGENERATE


def test_identity_and_the_fields_the_health_gate_reads() -> None:
    crd = custom_resource_definition(NODE_NETWORK_STATE)
    assert crd["metadata"]["name"] == "nodenetworkstates.cni-operator.dev"
    assert crd["spec"]["scope"] == "Cluster"
    assert crd["spec"]["names"]["shortNames"] == ["nns"]
    version = crd["spec"]["versions"][0]
    assert (version["name"], version["subresources"]) == ("v1alpha1", {"status": {}})
    status = version["schema"]["openAPIV3Schema"]["properties"]["status"]["properties"]
    assert {"revision", "activeConfig", "configs", "binaries", "specVersions", "drift", "datapath"} <= status.keys()
    assert "lastReportTime" in status
    datapath = status["datapath"]["properties"]
    assert datapath["passed"]["type"] == "boolean"
    assert {"revision", "reason", "message", "checkedAt"} <= datapath.keys()
    assert status["configs"]["items"]["properties"]["state"]["enum"] == ["Active", "Ignored", "Quarantined"]


def test_schema_is_structural_and_explained() -> None:
    schema = custom_resource_definition(NODE_NETWORK_STATE)["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    for path, node in _walk(schema):
        for forbidden in ("$ref", "anyOf", "allOf", "oneOf", "const", "title"):
            assert forbidden not in node, f"{path} uses {forbidden}"
        assert "type" in node, f"{path} has no type"
        if path.startswith(".status.") and not path.endswith(("[]", "{}")):
            assert node.get("description"), f"{path} has no description for kubectl explain"
