"""Is the change safe: the spec the cluster last accepted against the one proposed, before anything renders.

A rolling update moves nodes one wave at a time, so for a while nodes run the old and the new revision side by
side. Some changes cannot live through that: pod ranges that running pods hold addresses from, settings the plugin
reads only when it first creates its pools (a new value would change nothing and mislead), and encapsulation or
encryption flips after which moved and unmoved nodes cannot reach each other's pods. Those are refused, naming the
field and the way to do it instead; once the user did that (or accepts the split in a maintenance window), the
ClusterNetwork annotation `cni-operator.dev/confirm-change` naming the field lets the change through.

Which settings seed once and which flips split the datapath are catalog facts (`runningNetwork` in
bundled-plugins/<plugin>/<version>.yaml), never a plugin name here. A plugin swap drains every node before its
switch, so none of those refusals apply to it; what spec.podCIDRs means across a swap is in `_swap_warnings`.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Collection, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from cni_operator.api import vocabulary as L
from cni_operator.api.v1alpha1 import ClusterNetworkSpec
from cni_operator.catalog.loader import Catalog, CatalogError
from cni_operator.catalog.model import LiveChange, LiveChangeEffect, PluginRelease, PodAddressing
from cni_operator.plan.validate import Problem

POD_CIDRS = "spec.podCIDRs"

_EFFECT_WORDS = {
    LiveChangeEffect.SEEDS_ONCE: "which a running {plugin} network does not apply",
    LiveChangeEffect.SPLITS_DATAPATH: "which would split a running {plugin} network between its waves",
}


@dataclass(frozen=True)
class ChangeVerdict:
    """Refusals stop the new spec before anything renders; warnings go to status and events."""

    refusals: tuple[Problem, ...] = ()
    warnings: tuple[Problem, ...] = ()
    swap: bool = False  # another plugin: every node is drained before its switch
    confirmed: tuple[str, ...] = ()  # fields whose refusal the confirm-change annotation waived

    @property
    def safe(self) -> bool:
        return not self.refusals


def confirmations(annotation: str | None) -> frozenset[str]:
    """The fields the `cni-operator.dev/confirm-change` annotation names, as `spec.<field>`."""
    fields = (part.strip() for part in (annotation or "").replace(" ", ",").split(","))
    return frozenset(f if f.startswith("spec.") else f"spec.{f}" for f in fields if f)


def check_change(
    previous: ClusterNetworkSpec | None,
    proposed: ClusterNetworkSpec,
    catalog: Catalog,
    confirmed: Collection[str] = (),
) -> ChangeVerdict:
    """Whether `proposed` may replace `previous` (the spec of the revision the cluster last accepted; None on a
    fresh install). `confirmed` holds the fields of the confirm-change annotation (see `confirmations`)."""
    if previous is None:
        return ChangeVerdict()
    new_release = _release(catalog, proposed)
    old_release = _release(catalog, previous) or new_release
    if previous.plugin != proposed.plugin:
        return ChangeVerdict(warnings=tuple(_swap_warnings(previous, proposed, old_release, new_release)), swap=True)

    plugin = proposed.plugin.value
    refused: list[Problem] = []
    if _networks(previous.pod_cidrs) != _networks(proposed.pod_cidrs):
        refused.append(_pod_cidrs_refusal(previous, proposed, plugin, new_release or old_release))
    for rule in _rules(new_release, old_release):
        before = _value(previous, old_release, rule.field)
        after = _value(proposed, new_release, rule.field)
        if before != after:
            refused.append(_refusal(rule, plugin, before, after))

    waived = tuple(p.field for p in refused if p.field in confirmed)
    warnings = [
        Problem(p.field, f"confirmed by the {L.CONFIRM_CHANGE} annotation, so it rolls out: {p.message}")
        for p in refused
        if p.field in waived
    ]
    warnings += [
        Problem(
            field,
            f"the {L.CONFIRM_CHANGE} annotation names it, but this change needs no confirmation there: remove it "
            "from the annotation, so that a later change of it is checked again",
        )
        for field in sorted(set(confirmed) - {p.field for p in refused})
    ]
    return ChangeVerdict(
        refusals=tuple(p for p in refused if p.field not in waived), warnings=tuple(warnings), confirmed=waived
    )


def _release(catalog: Catalog, spec: ClusterNetworkSpec) -> PluginRelease | None:
    try:
        return catalog.get(spec.plugin.value, spec.version)
    except CatalogError:  # validation reports an unknown release; here it only means no catalog facts
        return None


def _rules(*releases: PluginRelease | None) -> list[LiveChange]:
    """Both releases' rules, one per field (the target's text first): during the rollout nodes run both."""
    rules: dict[str, LiveChange] = {}
    for release in releases:
        for rule in release.running_network.refused_changes if release else ():
            rules.setdefault(rule.field, rule)
    return list(rules.values())


def _value(spec: ClusterNetworkSpec, release: PluginRelease | None, field: str) -> Any:
    """A spec field's effective value: an empty encapsulation is the release's default, settings include the
    release's defaults, so writing out a default is no change."""
    if field == "encapsulation":
        if spec.encapsulation is not None:
            return spec.encapsulation.value
        return release.features.default_encapsulation if release else None
    if field.startswith("settings."):
        settings = {**(release.defaults if release else {}), **spec.settings}
        return settings.get(field.removeprefix("settings."))
    value: Any = spec.model_dump(by_alias=True, mode="json")
    for part in field.split("."):
        value = value.get(part) if isinstance(value, dict) else None
    return value


def _refusal(rule: LiveChange, plugin: str, before: Any, after: Any) -> Problem:
    field = f"spec.{rule.field}"
    effect = _EFFECT_WORDS[rule.effect].format(plugin=plugin)
    return Problem(
        field,
        f"changes from {_show(before)} to {_show(after)}, {effect}: {rule.reason}. Instead, {rule.instead}; then "
        f"confirm the change with the ClusterNetwork annotation {L.CONFIRM_CHANGE}: {field}. Until then nothing "
        f"moves to the new spec; set {field} back to {_show(before)} to clear this",
    )


def _pod_cidrs_refusal(
    previous: ClusterNetworkSpec, proposed: ClusterNetworkSpec, plugin: str, release: PluginRelease | None
) -> Problem:
    how = release.running_network.pod_cidrs_instead if release else ""
    return Problem(
        POD_CIDRS,
        f"changes from {', '.join(previous.pod_cidrs)} to {', '.join(proposed.pod_cidrs)} on a running {plugin} "
        "network, whose pods hold addresses from the old ranges and which no plugin re-addresses in place"
        + (f": {how}" if how else "")
        + f". Set {POD_CIDRS} back to {', '.join(previous.pod_cidrs)}; once the pods moved to the new ranges by "
        f"hand, confirm the change with the ClusterNetwork annotation {L.CONFIRM_CHANGE}: {POD_CIDRS}",
    )


def _swap_warnings(
    previous: ClusterNetworkSpec,
    proposed: ClusterNetworkSpec,
    old_release: PluginRelease | None,
    new_release: PluginRelease | None,
) -> Iterable[Problem]:
    """Across a swap spec.podCIDRs is the new plugin's ranges: pods leave each node before its switch and come
    back with addresses from the new plugin. Two things can still go wrong while old and new nodes coexist."""
    old_plugin, new_plugin = previous.plugin.value, proposed.plugin.value
    old_way = old_release.running_network.pod_addressing if old_release else PodAddressing.NONE
    new_way = new_release.running_network.pod_addressing if new_release else PodAddressing.NONE
    pools = PodAddressing.PLUGIN_POOL in (old_way, new_way)
    if pools and _overlap(previous.pod_cidrs, proposed.pod_cidrs):
        yield Problem(
            POD_CIDRS,
            f"overlaps the ranges {old_plugin} hands out ({', '.join(previous.pod_cidrs)}): pods on nodes not yet "
            f"swapped keep their addresses until their node moves, and {new_plugin} may give a pod on a moved node "
            f"an address one of them still holds. Give {new_plugin} ranges that do not overlap (the old ones are "
            "free again once the last node moved), or accept the risk for the length of the swap",
        )
    if old_way is new_way is PodAddressing.NODE_POD_CIDR and _networks(previous.pod_cidrs) != _networks(
        proposed.pod_cidrs
    ):
        yield Problem(
            POD_CIDRS,
            f"{new_plugin}, like {old_plugin}, takes each node's addresses from Node.spec.podCIDRs, which a swap "
            "does not change: spec.podCIDRs must contain them (kube-controller-manager --cluster-cidr), as "
            f"{', '.join(previous.pod_cidrs)} did",
        )


def _networks(cidrs: Sequence[str]) -> frozenset[str]:
    """The ranges as a set, normalised, so reordering [IPv4, IPv6] is no change."""
    result = set()
    for cidr in cidrs:
        try:
            result.add(str(ipaddress.ip_network(cidr, strict=False)))
        except ValueError:
            result.add(cidr)
    return frozenset(result)


def _overlap(left: Sequence[str], right: Sequence[str]) -> bool:
    for a in left:
        for b in right:
            try:
                one, other = ipaddress.ip_network(a, strict=False), ipaddress.ip_network(b, strict=False)
            except ValueError:
                continue
            if one.version == other.version and one.overlaps(other):
                return True
    return False


def _show(value: Any) -> str:
    return "(unset)" if value is None or value == "" else str(value)
