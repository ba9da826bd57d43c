"""Validate a ClusterNetwork spec and fill in its defaults: the schema first, then what only the catalog knows.

Every problem names the field (as the user wrote it, e.g. `spec.rollout.maxUnavailable`) and the fix. The CRD
rejects most of these at admission already; this catches the rest, and serves `cni-operator validate` offline.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import jsonschema
from pydantic import ValidationError

from cni_operator.api.v1alpha1 import ClusterNetworkSpec, Encryption
from cni_operator.catalog.loader import Catalog, CatalogError
from cni_operator.catalog.model import PluginRelease


@dataclass(frozen=True)
class Problem:
    field: str
    message: str

    def __str__(self) -> str:
        return f"{self.field}: {self.message}"


class SpecError(ValueError):
    """The spec cannot be rendered; `problems` says where and what to do."""

    def __init__(self, problems: Iterable[Problem]) -> None:
        self.problems = list(problems)
        super().__init__("\n".join(str(p) for p in self.problems))


@dataclass(frozen=True)
class ValidatedSpec:
    spec: ClusterNetworkSpec
    release: PluginRelease
    settings: dict[str, Any]  # the release's defaults with the user's settings on top
    overlays: tuple[PluginRelease, ...] = ()


def _loc(location: Iterable[Any]) -> str:
    parts = "spec"
    for item in location:
        parts += f"[{item}]" if isinstance(item, int) else f".{item}"
    return parts


def parse_spec(raw: Any) -> ClusterNetworkSpec:
    """The schema step: types, enums, ranges, patterns (what the CRD's OpenAPI schema also checks)."""
    try:
        return ClusterNetworkSpec.model_validate(raw)
    except ValidationError as err:
        raise SpecError(
            Problem(_loc(e["loc"]), e["msg"] if e["type"] != "extra_forbidden" else "unknown field; remove it")
            for e in err.errors()
        ) from err


def _who_has(catalog: Catalog, test: Any) -> str:
    plugins = sorted({p for p in catalog.plugins() if p != "multus" and test(catalog.latest(p))})
    return ", ".join(plugins) if plugins else "no plugin in the catalog"


def validate(raw: Any, catalog: Catalog) -> ValidatedSpec:
    """Both steps; raises SpecError listing every problem found."""
    spec = raw if isinstance(raw, ClusterNetworkSpec) else parse_spec(raw)
    plugin = spec.plugin.value
    try:
        release = catalog.get(plugin, spec.version)
    except CatalogError as err:
        raise SpecError([Problem("spec.version", f"{err}; pick one of those")]) from err
    problems: list[Problem] = []
    features = release.features
    name = release.key.replace("/", " ")

    if not features.network_policy and spec.network_policy:
        problems.append(
            Problem(
                "spec.networkPolicy",
                f"{name} does not enforce NetworkPolicy; set networkPolicy: "
                f"false, or choose a plugin that does: {_who_has(catalog, lambda r: r.features.network_policy)}",
            )
        )
    if spec.encapsulation is not None and spec.encapsulation.value not in features.encapsulation:
        mode = spec.encapsulation.value
        problems.append(
            Problem(
                "spec.encapsulation",
                f"{name} has no {mode} mode (it offers "
                f"{', '.join(features.encapsulation)}); plugins with {mode}: "
                f"{_who_has(catalog, lambda r: mode in r.features.encapsulation)}",
            )
        )
    if spec.encryption is not Encryption.NONE and spec.encryption.value not in features.encryption:
        kind = spec.encryption.value
        offered = ", ".join(features.encryption) or "none"
        problems.append(
            Problem(
                "spec.encryption",
                f"{name} cannot encrypt with {kind} (it offers: {offered}); "
                f"plugins with {kind}: {_who_has(catalog, lambda r: kind in r.features.encryption)}",
            )
        )
    if spec.bgp and not features.bgp:
        problems.append(
            Problem(
                "spec.bgp",
                f"{name} does not speak BGP; set bgp: false, or choose a plugin that "
                f"does: {_who_has(catalog, lambda r: r.features.bgp)}",
            )
        )
    networks = []
    for index, cidr in enumerate(spec.pod_cidrs):
        try:
            network = ipaddress.ip_network(cidr, strict=False)
        except ValueError:
            problems.append(Problem(f"spec.podCIDRs[{index}]", f"{cidr!r} is not a CIDR; write e.g. 10.244.0.0/16"))
            continue
        if str(network) != cidr:
            problems.append(Problem(f"spec.podCIDRs[{index}]", f"{cidr} has host bits set; write {network}"))
        networks.append(network)
    families = {network.version for network in networks}
    if 6 in families and not features.ipv6:
        problems.append(
            Problem(
                "spec.podCIDRs",
                f"{name} has no IPv6 support; use an IPv4 range, or a plugin with "
                f"IPv6: {_who_has(catalog, lambda r: r.features.ipv6)}",
            )
        )
    elif len(families) == 2 and not features.dual_stack:
        problems.append(
            Problem(
                "spec.podCIDRs",
                f"{name} has no dual-stack support; give one range, or choose a "
                f"plugin with dual-stack: {_who_has(catalog, lambda r: r.features.dual_stack)}",
            )
        )
    if len(networks) == 2 and len(families) == 1:
        problems.append(Problem("spec.podCIDRs", "two ranges must be one IPv4 and one IPv6 (dual-stack)"))

    overlays: tuple[PluginRelease, ...] = ()
    if spec.multus.enabled:
        try:
            overlays = (
                catalog.get("multus", spec.multus.version) if spec.multus.version else catalog.latest("multus"),
            )
        except CatalogError as err:
            problems.append(Problem("spec.multus.version", f"{err}; pick one of those or leave it empty"))

    validator = jsonschema.Draft202012Validator(release.settings_schema)
    for error in sorted(validator.iter_errors(spec.settings), key=lambda e: list(e.absolute_path)):
        where = _loc(["settings", *error.absolute_path])
        hint = ""
        if error.validator == "additionalProperties":
            known = sorted(release.settings_schema.get("properties", {}))
            hint = f"; {name} accepts: {', '.join(known) if known else 'no settings'}"
        problems.append(Problem(where, error.message + hint))

    if problems:
        raise SpecError(problems)
    return ValidatedSpec(spec=spec, release=release, settings={**release.defaults, **spec.settings}, overlays=overlays)
