"""Generate the CRDs (`crds/*.yaml`) from the pydantic models, so the models stay the one source of the schema.

Pydantic's JSON Schema becomes a structural OpenAPI v3 schema: references inlined, optionals unwrapped,
int-or-string unions marked, titles dropped, and empty defaults added to nested objects so the API server fills in
their own defaults (`rollout: {}` gets `maxUnavailable: 1` and the rest).
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel

from cni_operator.api import nodestate
from cni_operator.api import v1alpha1 as api

CRD_PATH = Path("crds") / "clusternetwork.yaml"

_DROP = {"title", "discriminator"}


def _resolve(node: Any, defs: dict[str, Any]) -> Any:
    if isinstance(node, list):
        return [_resolve(item, defs) for item in node]
    if not isinstance(node, dict):
        return node
    if "$ref" in node:
        target = copy.deepcopy(defs[node["$ref"].rsplit("/", 1)[-1]])
        merged = {**target, **{k: v for k, v in node.items() if k != "$ref"}}
        return _resolve(merged, defs)
    return {key: _resolve(value, defs) for key, value in node.items() if key not in _DROP}


def _structural(node: Any) -> Any:
    """Rewrite JSON Schema constructs that CRDs do not accept."""
    if isinstance(node, list):
        return [_structural(item) for item in node]
    if not isinstance(node, dict):
        return node
    node = {key: _structural(value) for key, value in node.items()}
    if "anyOf" in node:
        options = [o for o in node.pop("anyOf") if o.get("type") != "null"]
        if node.get("x-kubernetes-int-or-string"):
            pass  # the validations on the node itself say what each type may hold
        elif len(options) == 1:
            node = {**options[0], **node}
        else:
            raise ValueError(f"cannot express union {options} in a structural schema")
    if "const" in node:
        node["enum"] = [node.pop("const")]
    if node.get("default", "x") is None:
        del node["default"]
    if node.get("x-kubernetes-preserve-unknown-fields"):
        node.pop("additionalProperties", None)
        node["type"] = "object"
    elif node.get("additionalProperties") is False or "properties" in node:
        node.pop("additionalProperties", None)
    if node.get("type") == "object" and "properties" in node:
        required = set(node.get("required", []))
        for name, prop in node["properties"].items():
            if name not in required and prop.get("type") == "object" and "default" not in prop and "properties" in prop:
                prop["default"] = {}
    return node


def _clusternetwork_schema(schema: dict[str, Any]) -> None:
    props = schema["properties"]
    status = props["status"]
    conditions = status["properties"]["conditions"]
    conditions.update({"x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["type"]})
    conditions["items"]["required"] = ["type", "status", "reason", "lastTransitionTime"]
    schema["required"] = ["spec"]


@dataclass(frozen=True)
class CrdKind:
    """What differs between the operator's CRDs; the schema itself always comes from `model`."""

    model: type[BaseModel]
    kind: str
    plural: str
    short_names: list[str]
    path: Path
    description: str
    columns: list[dict[str, Any]]
    customize: Callable[[dict[str, Any]], None] = field(default=lambda schema: None)


CLUSTER_NETWORK = CrdKind(
    model=api.ClusterNetwork,
    kind=api.KIND,
    plural=api.PLURAL,
    short_names=["cnet"],
    path=CRD_PATH,
    description=(
        "ClusterNetwork declares the cluster's CNI plugin, its release and settings; cni-operator renders, rolls out "
        "and upgrades it. One per cluster."
    ),
    columns=[
        {"name": "Plugin", "type": "string", "jsonPath": ".spec.plugin"},
        {"name": "Version", "type": "string", "jsonPath": ".spec.version"},
        {"name": "Phase", "type": "string", "jsonPath": ".status.phase"},
        {
            "name": "Updated",
            "type": "integer",
            "jsonPath": ".status.nodes.updated",
            "description": "nodes on the target revision",
        },
        {"name": "Nodes", "type": "integer", "jsonPath": ".status.nodes.total"},
        {"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp"},
    ],
    customize=_clusternetwork_schema,
)

NODE_NETWORK_STATE = CrdKind(
    model=nodestate.NodeNetworkState,
    kind=nodestate.KIND,
    plural=nodestate.PLURAL,
    short_names=nodestate.SHORT_NAMES,
    path=Path("crds") / "nodenetworkstate.yaml",
    description=(
        "NodeNetworkState is what cni-operator's node agent found on one node (CNI configs, binaries, drift) and "
        "the result of its datapath check; named after the node, written by its agent, read by the operator."
    ),
    columns=[
        {"name": "Revision", "type": "string", "jsonPath": ".status.revision"},
        {"name": "Active", "type": "string", "jsonPath": ".status.activeConfig.file"},
        {"name": "Datapath", "type": "string", "jsonPath": ".status.datapath.reason"},
        {"name": "Checked", "type": "date", "jsonPath": ".status.datapath.checkedAt"},
        {"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp"},
    ],
)

KINDS = {crd.kind: crd for crd in (CLUSTER_NETWORK, NODE_NETWORK_STATE)}


def openapi_schema(crd: CrdKind = CLUSTER_NETWORK) -> dict[str, Any]:
    raw = crd.model.model_json_schema(by_alias=True, mode="validation")
    defs = raw.pop("$defs", {})
    schema: dict[str, Any] = _structural(_resolve(raw, defs))
    props = schema["properties"]
    props["metadata"] = {"type": "object"}
    props["apiVersion"] = {"type": "string", "description": f"{api.GROUP}/{api.VERSION}"}
    props["kind"] = {"type": "string", "description": crd.kind}
    crd.customize(schema)
    schema["description"] = crd.description
    return schema


def custom_resource_definition(crd: CrdKind = CLUSTER_NETWORK) -> dict[str, Any]:
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {
            "name": f"{crd.plural}.{api.GROUP}",
            "labels": {"app.kubernetes.io/name": "cni-operator", "app.kubernetes.io/component": "crd"},
        },
        "spec": {
            "group": api.GROUP,
            "scope": "Cluster",
            "names": {
                "kind": crd.kind,
                "listKind": f"{crd.kind}List",
                "plural": crd.plural,
                "singular": crd.kind.lower(),
                "shortNames": crd.short_names,
                "categories": ["cni-operator"],
            },
            "versions": [
                {
                    "name": api.VERSION,
                    "served": True,
                    "storage": True,
                    "subresources": {"status": {}},
                    "additionalPrinterColumns": crd.columns,
                    "schema": {"openAPIV3Schema": openapi_schema(crd)},
                }
            ],
        },
    }


def render_crd_yaml(crd: CrdKind = CLUSTER_NETWORK) -> str:
    header = "# Generated from cni_operator.api by 'cni-operator crd'; do not edit by hand.\n"
    return header + yaml.safe_dump(custom_resource_definition(crd), sort_keys=False, width=120)
