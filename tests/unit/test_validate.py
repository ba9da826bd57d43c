"""Validation against the catalog: every problem names the field and the fix."""

from __future__ import annotations

from typing import Any

import pytest

from cni_operator.catalog.loader import Catalog, default_catalog
from cni_operator.plan.validate import SpecError, validate


@pytest.fixture(scope="module")
def catalog() -> Catalog:
    return default_catalog()


def _spec(catalog: Catalog, plugin: str, **changes: Any) -> dict[str, Any]:
    spec: dict[str, Any] = {
        "plugin": plugin,
        "version": catalog.latest(plugin).version,
        "podCIDRs": ["10.244.0.0/16"],
        "networkPolicy": catalog.latest(plugin).features.network_policy,
    }
    return {**spec, **changes}


def _problems(catalog: Catalog, spec: dict[str, Any]) -> dict[str, str]:
    with pytest.raises(SpecError) as err:
        validate(spec, catalog)
    return {p.field: p.message for p in err.value.problems}


@pytest.mark.parametrize("plugin", ["calico", "flannel", "cilium", "weave-net", "reference"])
def test_each_plugins_newest_release_validates_and_fills_defaults(catalog: Catalog, plugin: str) -> None:
    validated = validate(_spec(catalog, plugin), catalog)
    assert validated.release.plugin == plugin
    assert validated.spec.rollout.max_unavailable == 1
    assert validated.settings == validated.release.defaults


def test_unknown_version_lists_the_known_ones(catalog: Catalog) -> None:
    problems = _problems(catalog, _spec(catalog, "calico", version="v9.9.9"))
    known = [r.version for r in catalog.releases_of("calico")]
    assert "v9.9.9" in problems["spec.version"]
    assert all(version in problems["spec.version"] for version in known)


def test_network_policy_with_flannel_names_the_plugins_that_have_it(catalog: Catalog) -> None:
    message = _problems(catalog, _spec(catalog, "flannel", networkPolicy=True))["spec.networkPolicy"]
    assert "networkPolicy: false" in message
    for plugin in ("calico", "cilium", "weave-net"):
        assert plugin in message
    assert "flannel" not in message.split("does:")[-1]


def test_bgp_with_weave_net_names_calico_and_cilium(catalog: Catalog) -> None:
    message = _problems(catalog, _spec(catalog, "weave-net", bgp=True))["spec.bgp"]
    assert "calico" in message and "cilium" in message


def test_encapsulation_the_plugin_lacks_is_refused_with_alternatives(catalog: Catalog) -> None:
    message = _problems(catalog, _spec(catalog, "flannel", encapsulation="IPIP"))["spec.encapsulation"]
    assert "has no IPIP mode" in message and "calico" in message
    message = _problems(catalog, _spec(catalog, "calico", encapsulation="Geneve"))["spec.encapsulation"]
    assert "cilium" in message


def test_encryption_the_plugin_lacks_is_refused(catalog: Catalog) -> None:
    message = _problems(catalog, _spec(catalog, "weave-net", encryption="WireGuard"))["spec.encryption"]
    assert "WireGuard" in message and "calico" in message and "cilium" in message and "flannel" in message
    message = _problems(catalog, _spec(catalog, "calico", encryption="IPsec"))["spec.encryption"]
    assert "plugins with IPsec: cilium" in message


def test_ipv6_with_an_ipv4_only_plugin_is_refused(catalog: Catalog) -> None:
    problems = _problems(catalog, _spec(catalog, "weave-net", podCIDRs=["fd00:10:244::/56"]))
    assert "IPv6" in problems["spec.podCIDRs"]


def test_cidr_with_host_bits_names_the_network(catalog: Catalog) -> None:
    problems = _problems(catalog, _spec(catalog, "calico", podCIDRs=["10.244.1.1/16"]))
    assert "write 10.244.0.0/16" in problems["spec.podCIDRs[0]"]


def test_unknown_setting_lists_the_accepted_ones(catalog: Catalog) -> None:
    release = catalog.latest("calico")
    problems = _problems(catalog, _spec(catalog, "calico", settings={"noSuchKnob": 1}))
    message = problems["spec.settings"]
    assert "noSuchKnob" in message
    for known in release.settings_schema.get("properties", {}):
        assert known in message


def test_schema_errors_name_the_camel_case_field(catalog: Catalog) -> None:
    problems = _problems(catalog, _spec(catalog, "calico", rollout={"maxUnavailable": 1, "canary": {"nodes": -1}}))
    assert "spec.rollout.canary.nodes" in problems
    problems = _problems(catalog, _spec(catalog, "calico", surprise=True))
    assert problems["spec.surprise"] == "unknown field; remove it"


def test_multus_unknown_version_is_refused(catalog: Catalog) -> None:
    problems = _problems(catalog, _spec(catalog, "calico", multus={"enabled": True, "version": "v0.0.1"}))
    assert "multus" in problems["spec.multus.version"]


def test_all_problems_are_reported_at_once(catalog: Catalog) -> None:
    problems = _problems(catalog, _spec(catalog, "flannel", networkPolicy=True, encryption="IPsec", bgp=True))
    assert {"spec.networkPolicy", "spec.encryption", "spec.bgp"} <= problems.keys()
