"""Is the change safe: refusals name the field and the way instead; the facts behind them are catalog data."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cni_operator.api.v1alpha1 import ClusterNetworkSpec
from cni_operator.catalog.loader import Catalog, default_catalog
from cni_operator.catalog.model import PluginRelease, PodAddressing
from cni_operator.plan.change import ChangeVerdict, check_change, confirmations
from cni_operator.plan.validate import validate

CATALOG = default_catalog()
PRIMARY = [r for r in CATALOG.releases if r.running_network.pod_addressing is not PodAddressing.NONE]


@pytest.fixture(scope="module")
def catalog() -> Catalog:
    return CATALOG


def spec(plugin: str, version: str | None = None, **fields: Any) -> ClusterNetworkSpec:
    """A spec the catalog validates."""
    release = CATALOG.get(plugin, version) if version else CATALOG.latest(plugin)
    raw = {
        "plugin": plugin,
        "version": release.version,
        "podCIDRs": ["10.244.0.0/16"],
        "networkPolicy": release.features.network_policy,
        **fields,
    }
    return validate(raw, CATALOG).spec


def refused(verdict: ChangeVerdict) -> dict[str, str]:
    return {p.field: p.message for p in verdict.refusals}


def test_a_fresh_install_and_an_unchanged_spec_are_safe(catalog: Catalog) -> None:
    calico = spec("calico")
    assert check_change(None, calico, catalog) == ChangeVerdict()
    assert check_change(calico, calico, catalog) == ChangeVerdict()


def test_an_upgrade_with_the_same_settings_is_safe(catalog: Catalog) -> None:
    assert check_change(spec("calico", "v3.31.7"), spec("calico", "v3.32.1"), catalog).safe
    assert check_change(spec("cilium", "v1.18.12"), spec("cilium", "v1.19.6"), catalog).safe


def test_writing_out_a_default_is_no_change(catalog: Catalog) -> None:
    written = spec("calico", encapsulation="IPIP", settings={"ipipMode": "Always", "ipv4BlockSize": 26})
    assert check_change(spec("calico"), written, catalog) == ChangeVerdict()


def test_changing_the_pod_ranges_of_a_running_network_is_refused_naming_the_field_and_the_way(
    catalog: Catalog,
) -> None:
    verdict = check_change(spec("calico"), spec("calico", podCIDRs=["10.96.0.0/12"]), catalog)
    message = refused(verdict)["spec.podCIDRs"]
    assert not verdict.safe and "from 10.244.0.0/16 to 10.96.0.0/12" in message
    assert "IPPool" in message  # Calico's own way, from the catalog
    assert "Set spec.podCIDRs back to 10.244.0.0/16" in message
    assert "cni-operator.dev/confirm-change: spec.podCIDRs" in message


def test_reordering_dual_stack_ranges_is_no_change(catalog: Catalog) -> None:
    one = spec("calico", podCIDRs=["10.244.0.0/16", "fd00:10:244::/56"])
    other = spec("calico", podCIDRs=["fd00:10:244::/56", "10.244.0.0/16"])
    assert check_change(one, other, catalog).safe


def test_adding_a_family_is_a_change_of_the_pod_ranges(catalog: Catalog) -> None:
    dual = spec("calico", podCIDRs=["10.244.0.0/16", "fd00:10:244::/56"])
    assert "spec.podCIDRs" in refused(check_change(spec("calico"), dual, catalog))


def test_calico_pool_settings_seed_once_and_are_refused_with_the_pool_edit_to_make(catalog: Catalog) -> None:
    verdict = check_change(spec("calico"), spec("calico", settings={"ipipMode": "CrossSubnet"}), catalog)
    message = refused(verdict)["spec.settings.ipipMode"]
    assert "from Always to CrossSubnet" in message and "kubectl patch ippools" in message


def test_calico_encapsulation_flip_is_refused_but_its_wireguard_is_node_by_node(catalog: Catalog) -> None:
    vxlan = check_change(spec("calico"), spec("calico", encapsulation="VXLAN"), catalog)
    assert (
        set(refused(vxlan)) == {"spec.encapsulation"} and "from IPIP to VXLAN" in refused(vxlan)["spec.encapsulation"]
    )
    assert check_change(spec("calico"), spec("calico", encryption="WireGuard"), catalog).safe


def test_cilium_tunnel_and_encryption_flips_would_split_the_datapath(catalog: Catalog) -> None:
    geneve = refused(check_change(spec("cilium"), spec("cilium", encapsulation="Geneve"), catalog))
    assert "split" in geneve["spec.encapsulation"] and "maxUnavailable: 100%" in geneve["spec.encapsulation"]
    ipsec = refused(check_change(spec("cilium"), spec("cilium", encryption="IPsec"), catalog))
    assert "spec.encryption" in ipsec
    assert check_change(spec("cilium"), spec("cilium", settings={"hubble": False}), catalog).safe


def test_an_upgrade_that_also_flips_a_refused_field_is_refused(catalog: Catalog) -> None:
    before = spec("calico", "v3.31.7")
    after = spec("calico", "v3.32.1", encapsulation="VXLAN", podCIDRs=["10.96.0.0/12"])
    assert set(refused(check_change(before, after, catalog))) == {"spec.podCIDRs", "spec.encapsulation"}


def test_a_running_release_the_catalog_no_longer_lists_is_judged_by_the_targets_facts(catalog: Catalog) -> None:
    gone = spec("cilium").model_copy(update={"version": "v1.16.0"})  # as recorded in an old revision
    verdict = check_change(gone, spec("cilium", encapsulation="Geneve"), catalog)
    assert set(refused(verdict)) == {"spec.encapsulation"}


def test_other_settings_roll_out_node_by_node(catalog: Catalog) -> None:
    assert check_change(spec("calico"), spec("calico", settings={"logSeverityScreen": "Debug"}), catalog).safe
    assert check_change(spec("calico"), spec("calico", mtu=1400), catalog).safe
    assert check_change(spec("calico"), spec("calico", multus={"enabled": True}), catalog).safe


def test_a_confirmed_change_goes_through_with_a_warning_and_a_stale_confirmation_is_reported(
    catalog: Catalog,
) -> None:
    before, after = spec("calico"), spec("calico", encapsulation="VXLAN", settings={"vxlanMode": "CrossSubnet"})
    confirmed = confirmations("encapsulation, spec.settings.vxlanMode")
    assert confirmed == {"spec.encapsulation", "spec.settings.vxlanMode"}
    verdict = check_change(before, after, catalog, confirmed)
    assert verdict.safe and set(verdict.confirmed) == confirmed
    assert {w.field for w in verdict.warnings} == confirmed
    stale = check_change(after, after, catalog, confirmations("spec.encapsulation"))
    assert stale.safe and [w.field for w in stale.warnings] == ["spec.encapsulation"]
    assert "remove it" in stale.warnings[0].message
    partly = check_change(before, after, catalog, confirmations("spec.encapsulation"))
    assert set(refused(partly)) == {"spec.settings.vxlanMode"}


def test_confirmations_parse_commas_and_spaces() -> None:
    assert confirmations(None) == frozenset()
    assert confirmations(" spec.podCIDRs ,encryption  settings.vni") == {
        "spec.podCIDRs",
        "spec.encryption",
        "spec.settings.vni",
    }


# -- plugin swaps: spec.podCIDRs is the new plugin's ranges --------------------------------------------------------


def test_a_swap_may_keep_or_change_the_pod_ranges_and_refuses_no_running_network_rule(catalog: Catalog) -> None:
    flannel = spec("flannel")
    same = check_change(flannel, spec("calico", encapsulation="VXLAN"), catalog)
    assert same.safe and same.swap
    assert [w.field for w in same.warnings] == ["spec.podCIDRs"] and "overlaps" in same.warnings[0].message
    apart = check_change(flannel, spec("calico", podCIDRs=["10.96.0.0/12"]), catalog)
    assert apart == ChangeVerdict(swap=True)


def test_a_swap_between_plugins_that_use_the_nodes_pod_cidrs_keeps_them(catalog: Catalog) -> None:
    flannel = spec("flannel")
    assert check_change(flannel, spec("reference"), catalog) == ChangeVerdict(swap=True)
    moved = check_change(flannel, spec("reference", podCIDRs=["10.96.0.0/12"]), catalog)
    assert moved.safe and "Node.spec.podCIDRs" in moved.warnings[0].message


# -- the catalog facts ---------------------------------------------------------------------------------------------


def _other_value(release: PluginRelease, field: str, current: Any) -> Any:
    """A valid value of `field` other than `current`."""
    if field == "encapsulation":
        options: list[Any] = list(release.features.encapsulation)
    elif field == "encryption":
        options = ["None", *release.features.encryption]
    else:
        schema = release.settings_schema["properties"][field.removeprefix("settings.")]
        if "enum" in schema:
            options = list(schema["enum"])
        elif schema["type"] == "boolean":
            options = [True, False]
        elif schema["type"] == "integer":
            options = [schema.get("minimum", 1), schema.get("maximum", 65535)]
        else:
            options = ["some-other-name"]
    return next(o for o in options if o != current)


@pytest.mark.parametrize(
    ("release", "field"),
    [(r, c.field) for r in PRIMARY for c in r.running_network.refused_changes],
    ids=lambda v: v.key if isinstance(v, PluginRelease) else str(v),
)
def test_every_refused_change_in_the_catalog_is_refused_and_names_its_field(release: PluginRelease, field: str) -> None:
    # vxlanMode is ignored unless the encapsulation is VXLAN (validate warns, and renders it away)
    mode: dict[str, Any] = {"encapsulation": "VXLAN"} if field == "settings.vxlanMode" else {}
    base = spec(release.plugin, release.version, **mode)
    current = (
        base.encapsulation or release.features.default_encapsulation
        if field == "encapsulation"
        else base.encryption.value
        if field == "encryption"
        else release.defaults.get(field.removeprefix("settings."))
    )
    value = _other_value(release, field, current)
    if field.startswith("settings."):
        proposed = spec(release.plugin, release.version, settings={field.removeprefix("settings."): value}, **mode)
    else:
        proposed = spec(release.plugin, release.version, **{field: value})
    problems = refused(check_change(base, proposed, CATALOG))
    assert list(problems) == [f"spec.{field}"]
    assert f"spec.{field}" in problems[f"spec.{field}"] and "confirm-change" in problems[f"spec.{field}"]


@pytest.mark.parametrize("release", CATALOG.releases, ids=lambda r: r.key)
def test_running_network_facts_name_real_fields_and_say_what_to_do(release: PluginRelease) -> None:
    spec_fields = set(ClusterNetworkSpec.model_json_schema(by_alias=True)["properties"])
    settings_ = set(release.settings_schema.get("properties", {}))
    for rule in release.running_network.refused_changes:
        name = rule.field.removeprefix("settings.")
        assert (name in settings_) if rule.field.startswith("settings.") else (rule.field in spec_fields)
        assert rule.reason and rule.instead
    overlay = release.running_network.pod_addressing is PodAddressing.NONE
    assert overlay == (release.plugin == "multus")  # every primary plugin says how it addresses pods
    assert overlay or release.running_network.pod_cidrs_instead


# -- properties ----------------------------------------------------------------------------------------------------

CHANGES = st.fixed_dictionaries(
    {},
    optional={
        "encapsulation": st.sampled_from(["IPIP", "VXLAN", "None"]),
        "encryption": st.sampled_from(["None", "WireGuard"]),
        "podCIDRs": st.sampled_from([["10.244.0.0/16"], ["10.96.0.0/12"], ["10.244.0.0/16", "fd00:10:244::/56"]]),
        "mtu": st.sampled_from(["auto", 1400]),
        "settings": st.fixed_dictionaries(
            {},
            optional={
                "ipipMode": st.sampled_from(["Always", "CrossSubnet"]),
                "natOutgoing": st.booleans(),
                "ipv4BlockSize": st.sampled_from([24, 26]),
                "logSeverityScreen": st.sampled_from(["Info", "Debug"]),
            },
        ),
    },
)


@settings(max_examples=200, deadline=None)
@given(one=CHANGES, other=CHANGES, confirmed=st.sets(st.sampled_from(["spec.podCIDRs", "spec.encapsulation"])))
def test_refusals_are_symmetric_and_confirmations_only_waive_what_they_name(
    one: dict[str, Any], other: dict[str, Any], confirmed: set[str]
) -> None:
    """Going there is refused exactly when coming back is; a spec is always safe against itself; a confirmation
    turns exactly the refusals it names into warnings."""
    first, second = spec("calico", **one), spec("calico", **other)
    there, back = check_change(first, second, CATALOG), check_change(second, first, CATALOG)
    assert set(refused(there)) == set(refused(back))
    assert check_change(first, first, CATALOG).safe
    waived = check_change(first, second, CATALOG, confirmed)
    assert set(refused(waived)) == set(refused(there)) - confirmed
    assert set(waived.confirmed) == set(refused(there)) & confirmed
