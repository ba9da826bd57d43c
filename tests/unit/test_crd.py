"""The committed CRD is exactly what the API models generate."""

from __future__ import annotations

from pathlib import Path

import yaml

from cni_operator.api.crd import CRD_PATH, custom_resource_definition, render_crd_yaml

REPO = Path(__file__).resolve().parents[2]


def test_committed_crd_matches_the_models() -> None:
    committed = (REPO / CRD_PATH).read_text()
    assert committed == render_crd_yaml(), (
        "crds/clusternetwork.yaml is stale: run '.venv/bin/cni-operator crd --write crds/clusternetwork.yaml "
        "--also helm/cni-operator/crds/clusternetwork.yaml'"
    )


def _walk(node: object, path: str = "") -> list[tuple[str, dict[str, object]]]:
    found: list[tuple[str, dict[str, object]]] = []
    if isinstance(node, dict):
        found.append((path, node))
        for key, value in node.get("properties", {}).items():
            found += _walk(value, f"{path}.{key}")
        if isinstance(node.get("items"), dict):
            found += _walk(node["items"], f"{path}[]")
        if isinstance(node.get("additionalProperties"), dict):
            found += _walk(node["additionalProperties"], f"{path}{{}}")
    return found


def test_schema_is_structural_and_explained() -> None:
    schema = custom_resource_definition()["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    for path, node in _walk(schema):
        for forbidden in ("$ref", "anyOf", "allOf", "oneOf", "const", "title"):
            assert forbidden not in node, f"{path} uses {forbidden}"
        assert "type" in node or node.get("x-kubernetes-int-or-string"), f"{path} has no type"
        if path.startswith((".spec.", ".status.")) and path.count(".") >= 2 and not path.endswith(("[]", "{}")):
            assert node.get("description"), f"{path} has no description for kubectl explain"


def test_printer_columns_and_status_subresource() -> None:
    version = custom_resource_definition()["spec"]["versions"][0]
    assert version["subresources"] == {"status": {}}
    columns = [c["name"] for c in version["additionalPrinterColumns"]]
    assert columns == ["Plugin", "Version", "Phase", "Updated", "Nodes", "Age"]
    assert yaml.safe_load(render_crd_yaml())["spec"]["names"]["shortNames"] == ["cnet"]


def test_helm_chart_ships_the_same_crd() -> None:
    chart_copy = REPO / "helm" / "cni-operator" / "crds" / "clusternetwork.yaml"
    assert chart_copy.read_text() == (REPO / CRD_PATH).read_text(), (
        "helm/cni-operator/crds/clusternetwork.yaml is stale: copy crds/clusternetwork.yaml over it"
    )
