"""Validation against the catalog: every problem names the field and the fix."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from cni_operator.catalog.loader import Catalog, default_catalog
from cni_operator.plan.skew import ClusterFacts
from cni_operator.plan.validate import SpecError, Stage, validate

REPO = Path(__file__).resolve().parents[2]


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
    validate(_spec(catalog, "calico", podCIDRs=["10.244.0.0/16", "FD00:10:244::/56"]), catalog)  # only written so


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
    assert problems["spec.surprise"].startswith("unknown field; remove it")


def test_multus_unknown_version_is_refused(catalog: Catalog) -> None:
    problems = _problems(catalog, _spec(catalog, "calico", multus={"enabled": True, "version": "v0.0.1"}))
    assert "multus" in problems["spec.multus.version"]


def test_all_problems_are_reported_at_once(catalog: Catalog) -> None:
    problems = _problems(catalog, _spec(catalog, "flannel", networkPolicy=True, encryption="IPsec", bgp=True))
    assert {"spec.networkPolicy", "spec.encryption", "spec.bgp"} <= problems.keys()


def _warnings(catalog: Catalog, spec: dict[str, Any]) -> dict[str, str]:
    return {w.field: w.message for w in validate(spec, catalog).warnings}


def test_problems_say_whether_the_api_server_or_the_operator_refuses(catalog: Catalog) -> None:
    with pytest.raises(SpecError) as err:
        validate(_spec(catalog, "calico", mtu=100), catalog)
    assert [p.stage for p in err.value.problems] == [Stage.ADMISSION] and not err.value.admitted
    with pytest.raises(SpecError) as err:
        validate(_spec(catalog, "flannel", networkPolicy=True), catalog)
    assert [p.stage for p in err.value.problems] == [Stage.OPERATOR] and err.value.admitted


@pytest.mark.parametrize(
    ("cidr", "says"),
    [
        ("0.0.0.0/0", "every IPv4 address"),
        ("::/0", "every IPv6 address"),
        ("127.0.0.0/8", "loopback"),
        ("0.0.0.0/1", "'this network'"),
        ("169.254.0.0/16", "link-local"),
        ("224.0.0.0/4", "multicast"),
        ("fe80::/64", "link-local"),
        ("ff00::/8", "multicast"),
    ],
)
def test_pod_ranges_that_cannot_work_are_refused(catalog: Catalog, cidr: str, says: str) -> None:
    message = _problems(catalog, _spec(catalog, "cilium", podCIDRs=[cidr]))["spec.podCIDRs[0]"]
    assert says in message and "e.g. " in message


def test_a_range_smaller_than_one_node_block_is_refused(catalog: Catalog) -> None:
    message = _problems(catalog, _spec(catalog, "calico", podCIDRs=["10.244.0.0/27"]))["spec.podCIDRs[0]"]
    assert "smaller than one per-node block" in message and "/26" in message
    assert "set spec.settings.ipv4BlockSize to 27 or more" in message
    validate(_spec(catalog, "calico", podCIDRs=["10.244.0.0/27"], settings={"ipv4BlockSize": 28}), catalog)
    message = _problems(catalog, _spec(catalog, "flannel", podCIDRs=["10.244.0.0/25"]))["spec.podCIDRs[0]"]
    assert "/24" in message and "kube-controller-manager" in message and "settings" not in message
    message = _problems(catalog, _spec(catalog, "cilium", podCIDRs=["fd00::/121"]))["spec.podCIDRs[0]"]
    assert "clusterPoolIPv6MaskSize" in message
    validate(_spec(catalog, "weave-net", podCIDRs=["10.32.0.0/28"]), catalog)  # no per-node block


def test_settings_the_plugin_ignores_are_warnings(catalog: Catalog) -> None:
    warnings = _warnings(catalog, _spec(catalog, "flannel", mtu=1400, encapsulation="None"))
    assert "ignores spec.mtu" in warnings["spec.mtu"] and "set mtu auto" in warnings["spec.mtu"]
    assert "spec.mtu" in _warnings(catalog, _spec(catalog, "flannel", mtu=1400, encryption="WireGuard"))
    assert not _warnings(catalog, _spec(catalog, "flannel", mtu=1400, encapsulation="VXLAN"))
    warnings = _warnings(catalog, _spec(catalog, "calico", networkPolicy=False))
    assert "always enforces NetworkPolicy" in warnings["spec.networkPolicy"]
    warnings = _warnings(catalog, _spec(catalog, "calico", encapsulation="VXLAN", settings={"ipipMode": "Always"}))
    assert set(warnings) == {"spec.settings.ipipMode"}
    assert "spec.settings" in _warnings(catalog, _spec(catalog, "flannel", encapsulation="None", settings={"vni": 2}))


def test_a_datapath_the_plugin_would_replace_is_refused(catalog: Catalog) -> None:
    spec = _spec(catalog, "flannel", encryption="WireGuard", encapsulation="VXLAN")
    message = _problems(catalog, spec)["spec.encapsulation"]
    assert "wireguard backend" in message and "leave spec.encapsulation empty" in message
    validate(_spec(catalog, "flannel", encryption="WireGuard"), catalog)


@pytest.mark.parametrize("example", ["calico", "calico-multus", "cilium", "flannel", "reference", "weave-net"])
def test_the_examples_have_no_warnings(example: str) -> None:
    spec = yaml.safe_load((REPO / "examples" / f"{example}.yaml").read_text())["spec"]
    assert validate(spec, default_catalog()).warnings == ()


def test_the_default_multus_is_the_newest_that_suits_the_cluster(catalog: Catalog) -> None:
    spec = _spec(catalog, "calico", multus={"enabled": True})
    overlay = catalog.overlay_plugin()
    newest = catalog.latest(overlay)
    assert validate(spec, catalog).overlays == (newest,)  # cluster unknown: the newest
    for release in catalog.releases_of(overlay):
        minor = release.compatibility.kubernetes[0]
        chosen = validate(spec, catalog, kubernetes_version=f"v{minor}.2").overlays[0]
        suiting = [r for r in catalog.releases_of(overlay) if minor in r.compatibility.kubernetes]
        assert chosen == suiting[-1]
    oldest = catalog.releases_of(overlay)[0]
    only_old = next(m for m in oldest.compatibility.kubernetes if m not in newest.compatibility.kubernetes)
    assert validate(spec, catalog, cluster=ClusterFacts(f"v{only_old}.0")).overlays == (oldest,)
    # no release suits: the newest, and skew reports it
    assert validate(spec, catalog, kubernetes_version="v1.99.0").overlays == (newest,)
    pinned = _spec(catalog, "calico", multus={"enabled": True, "version": oldest.version})
    assert validate(pinned, catalog, kubernetes_version=f"v{newest.compatibility.kubernetes[-1]}.0").overlays == (
        oldest,
    )


@pytest.mark.parametrize(
    ("plugin", "ignored", "effective"),
    [
        ("flannel", {"encapsulation": "None", "mtu": 1400}, {"encapsulation": "None"}),
        ("flannel", {"encryption": "WireGuard", "settings": {"vni": 7}}, {"encryption": "WireGuard"}),
        ("calico", {"networkPolicy": False}, {"networkPolicy": True}),
        ("calico", {"encapsulation": "VXLAN", "settings": {"ipipMode": "CrossSubnet"}}, {"encapsulation": "VXLAN"}),
        ("calico", {"settings": {"asNumber": 65000, "natOutgoing": False}}, {"settings": {"natOutgoing": False}}),
        ("cilium", {"settings": {"autoDirectNodeRoutes": False}}, {}),
        ("calico", {"multus": {"enabled": False, "version": "v4.2.4"}}, {}),
    ],
)
def test_an_ignored_setting_changes_no_manifest_and_no_revision(
    catalog: Catalog, plugin: str, ignored: dict[str, Any], effective: dict[str, Any]
) -> None:
    """A warning's setting is rendered as what the plugin runs instead: no rollout that changes nothing."""
    from cni_operator.render.engine import Renderer

    validated = validate(_spec(catalog, plugin, **ignored), catalog)
    assert validated.warnings
    plain = validate(_spec(catalog, plugin, **effective), catalog)
    assert not plain.warnings and validated.spec == plain.spec and validated.settings == plain.settings
    renderer = Renderer(catalog)
    first = renderer.render(validated, kubernetes_version="v1.36.3")
    second = renderer.render(plain, kubernetes_version="v1.36.3")
    assert first.revision == second.revision and first.objects == second.objects
