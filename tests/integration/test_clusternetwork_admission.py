"""The real API server enforces the ClusterNetwork schema and its CEL rules, with messages that name the fix."""

from __future__ import annotations

import json
from typing import Any

import pytest
from kubernetes.client import ApiException

from cni_operator.kube.apply import Applier

pytestmark = pytest.mark.cluster

VALID = {"plugin": "calico", "version": "v3.31.7", "podCIDRs": ["10.244.0.0/16"]}


def _object(name: str, spec: dict[str, Any]) -> dict[str, Any]:
    return {
        "apiVersion": "cni-operator.dev/v1alpha1",
        "kind": "ClusterNetwork",
        "metadata": {"name": name},
        "spec": spec,
    }


def test_valid_spec_is_accepted_with_defaults_filled(clusternetwork_crd: Any, applier: Applier) -> None:
    created = applier.apply(_object("valid", VALID), dry_run=True).to_dict()["spec"]
    assert created["mtu"] == "auto"
    assert created["encryption"] == "None"
    assert created["networkPolicy"] is True
    assert created["nodeCleanup"] == "Keep"
    assert created["rollout"]["maxUnavailable"] == 1
    assert created["rollout"]["canary"] == {"nodes": 1}
    assert created["rollout"]["healthGate"]["timeoutSeconds"] == 300
    assert created["multus"] == {"enabled": False}


def test_dual_stack_and_percent_max_unavailable_are_accepted(clusternetwork_crd: Any, applier: Applier) -> None:
    spec = {
        **VALID,
        "podCIDRs": ["10.244.0.0/16", "fd00:10:244::/56"],
        "mtu": 1450,
        "rollout": {"maxUnavailable": "25%"},
    }
    assert applier.apply(_object("dual", spec), dry_run=True).to_dict()["spec"]["mtu"] == 1450


@pytest.mark.parametrize(
    ("change", "field", "says"),
    [
        ({"plugin": "foo"}, "spec.plugin", 'Unsupported value: "foo"'),
        ({"version": "3.30"}, "spec.version", "should match"),
        ({"podCIDRs": ["10.244.0.0/33"]}, "spec.podCIDRs[0]", "must be a CIDR"),
        ({"podCIDRs": []}, "spec.podCIDRs", "should have at least 1 items"),
        ({"podCIDRs": ["10.244.0.0/16", "10.245.0.0/16"]}, "spec.podCIDRs", "one IPv4 and one IPv6"),
        ({"mtu": 100}, "spec.mtu", "from 1280 to 9000"),
        ({"mtu": "big"}, "spec.mtu", "must be 'auto'"),
        ({"rollout": {"maxUnavailable": "150%"}}, "spec.rollout.maxUnavailable", "percentage from 1% to 100%"),
        ({"rollout": {"maxUnavailable": 0}}, "spec.rollout.maxUnavailable", "at least 1"),
        ({"rollout": {"canary": {"nodes": -1}}}, "spec.rollout.canary.nodes", "greater than or equal to 0"),
        ({"rollout": {"healthGate": {"timeoutSeconds": 1}}}, "spec.rollout.healthGate.timeoutSeconds", "10"),
        ({"encryption": "Sometimes"}, "spec.encryption", 'Unsupported value: "Sometimes"'),
    ],
)
def test_invalid_spec_is_rejected_at_admission(
    clusternetwork_crd: Any, applier: Applier, change: dict[str, Any], field: str, says: str
) -> None:
    with pytest.raises(ApiException) as rejected:
        applier.apply(_object("invalid", {**VALID, **change}), dry_run=True)
    assert rejected.value.status == 422
    message = json.loads(rejected.value.body)["message"]
    assert f"{field}:" in message, message
    assert says in message, message


@pytest.mark.parametrize(
    "change",
    [
        {"plugin": "flannel", "networkPolicy": True},
        {"encryption": "IPsec"},
        {"plugin": "cilium", "encapsulation": "IPIP"},
        {"plugin": "weave-net", "bgp": True},
    ],
)
def test_plugin_facts_are_left_to_the_catalog(
    clusternetwork_crd: Any, applier: Applier, change: dict[str, Any]
) -> None:
    """The CRD holds no plugin facts (a future release may gain the feature): the API server stores these, and the
    operator's catalog check refuses them in status (tests/unit/test_validate.py)."""
    stored = applier.apply(_object("catalog-facts", {**VALID, **change}), dry_run=True).to_dict()["spec"]
    assert all(stored[key] == value for key, value in change.items())


def test_missing_plugin_is_rejected(clusternetwork_crd: Any, applier: Applier) -> None:
    spec = {k: v for k, v in VALID.items() if k != "plugin"}
    with pytest.raises(ApiException) as rejected:
        applier.apply(_object("noplugin", spec), dry_run=True)
    assert "spec.plugin: Required value" in json.loads(rejected.value.body)["message"]
