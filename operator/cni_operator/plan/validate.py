"""Validate a ClusterNetwork spec and fill in its defaults: what the API server admits, then what the catalog knows.

Two stages, and every problem says which one refuses it:

- `admission`: what the API server refuses when the ClusterNetwork is applied: the CRD's OpenAPI schema and CEL
  rules, evaluated offline by `api.admission` on the very CRD the operator generates. `cni-operator validate`
  accepts and refuses exactly what the API server does here (tests/integration/test_admission_agreement.py).
- `operator`: the API server stores the object, and the operator then refuses to roll it out and says why in
  status: releases, features and settings that the catalog knows (bundled-plugins/), and pod ranges that cannot
  work (0.0.0.0/0, loopback, link-local, multicast, or smaller than one per-node block of the plugin).

Refusal or warning, for settings the chosen plugin ignores or cannot combine (the `checks` of a catalog release):

- a refusal where the spec asks for one datapath and the plugin would silently run another (Flannel with
  `encryption: WireGuard` and an explicit `encapsulation`: the wireguard backend replaces vxlan or host-gw, so
  the ports and the tunnel differ from what the spec says, and the firewall rules written for them are wrong);
- a warning where a setting merely has no effect and the network runs as the user expects otherwise (Flannel's
  fixed MTU with host-gw or WireGuard, Calico's `networkPolicy: false`, which Calico cannot turn off, settings of a
  mode that is not selected). Refusing those would block a GitOps sync over a knob that changes nothing; a warning
  shows in `cni-operator validate` and in status, so the user can clean the spec up. The check's `effective`
  patch turns the validated spec into what the plugin runs instead (mtu auto, networkPolicy true, the setting
  removed), so an ignored setting changes no manifest and no revision: it never starts a rollout that changes
  nothing on the nodes. One such warning is the API's own, whatever the plugin: spec.multus.version while
  spec.multus.enabled is false.

Every problem names the field as the user wrote it (`spec.rollout.maxUnavailable`) and the fix.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

import jsonschema
from pydantic import ValidationError

from cni_operator.api.admission import clusternetwork_admission
from cni_operator.api.cel import compile_rule
from cni_operator.api.v1alpha1 import ClusterNetworkSpec, Encryption
from cni_operator.catalog.loader import Catalog, CatalogError
from cni_operator.catalog.model import CheckSeverity, PluginRelease
from cni_operator.plan.skew import ClusterFacts, supports


class Stage(StrEnum):
    ADMISSION = "admission"  # the API server refuses the object (CRD schema and CEL rules)
    OPERATOR = "operator"  # stored, but the operator refuses to roll it out (catalog, pod ranges)


@dataclass(frozen=True)
class Problem:
    field: str
    message: str
    stage: Stage = Stage.OPERATOR

    def __str__(self) -> str:
        return f"{self.field}: {self.message}"


class SpecError(ValueError):
    """The spec cannot be rendered; `problems` says where and what to do."""

    def __init__(self, problems: Iterable[Problem], warnings: Iterable[Problem] = ()) -> None:
        self.problems = list(problems)
        self.warnings = list(warnings)  # found along the way: settings the plugin ignores
        super().__init__("\n".join(str(p) for p in self.problems))

    @property
    def admitted(self) -> bool:
        """Whether the API server would store the object all the same (only the operator refuses it)."""
        return all(p.stage is Stage.OPERATOR for p in self.problems)


@dataclass(frozen=True)
class ValidatedSpec:
    spec: ClusterNetworkSpec
    release: PluginRelease
    settings: dict[str, Any]  # the release's defaults with the user's settings on top
    overlays: tuple[PluginRelease, ...] = ()
    # Settings the plugin ignores: shown by `validate` and in status. `spec` is then the spec as the plugin runs it
    # (the catalog check's `effective` patch applied), so the ignored setting changes no manifest and no revision.
    warnings: tuple[Problem, ...] = ()


def _loc(location: Iterable[Any]) -> str:
    parts = "spec"
    for item in location:
        parts += f"[{item}]" if isinstance(item, int) else f".{item}"
    return parts


def _pydantic_problems(err: ValidationError) -> list[Problem]:
    return [
        Problem(_loc(e["loc"]), e["msg"] if e["type"] != "extra_forbidden" else "unknown field; remove it")
        for e in err.errors()
    ]


def parse_spec(raw: Any) -> ClusterNetworkSpec:
    """The admission step: what the API server stores (pruned, defaulted), or SpecError naming what it refuses."""
    admitted = clusternetwork_admission().admit_spec(raw)
    if admitted.errors:
        raise SpecError(Problem(e.field, e.message, Stage.ADMISSION) for e in admitted.errors)
    try:
        return ClusterNetworkSpec.model_validate(admitted.value)
    except ValidationError as err:  # the models and the CRD they generate disagree: say where
        raise SpecError(_pydantic_problems(err)) from err


def _who_has(catalog: Catalog, test: Any) -> str:
    plugins = sorted(p for p in catalog.primary_plugins() if test(catalog.latest(p)))
    return ", ".join(plugins) if plugins else "no plugin in the catalog"


# Address ranges that cannot carry pod traffic (RFC 6890 special-purpose registries; RFC 4291 for IPv6): a pod
# range that overlaps one would route the nodes' own loopback, link-local or multicast traffic into the pod network.
UNUSABLE_RANGES: tuple[tuple[str, str], ...] = (
    ("0.0.0.0/8", "'this network', RFC 791"),
    ("127.0.0.0/8", "loopback"),
    ("169.254.0.0/16", "link-local"),
    ("224.0.0.0/4", "multicast"),
    ("255.255.255.255/32", "broadcast"),
    ("::/128", "the unspecified address"),
    ("::1/128", "loopback"),
    ("fe80::/10", "link-local"),
    ("ff00::/8", "multicast"),
)
EXAMPLE_RANGE = {4: "10.244.0.0/16", 6: "fd00:10:244::/56"}


def _unusable(network: ipaddress.IPv4Network | ipaddress.IPv6Network) -> str | None:
    example = EXAMPLE_RANGE[network.version]
    if network.prefixlen == 0:
        return (
            f"{network} is every IPv{network.version} address, including the nodes', the Services', loopback and "
            f"link-local ones; use a private range that nothing else uses, e.g. {example}"
        )
    for text, what in UNUSABLE_RANGES:
        special = ipaddress.ip_network(text)
        if special.version == network.version and network.overlaps(special):
            return (
                f"{network} overlaps {special} ({what}), which cannot carry pod traffic; use a private range that "
                f"no node or Service uses, e.g. {example}"
            )
    return None


def _node_block_problem(
    index: int,
    network: ipaddress.IPv4Network | ipaddress.IPv6Network,
    release: PluginRelease,
    settings: dict[str, Any],
) -> Problem | None:
    """A pod range smaller than one per-node block leaves no block for any node."""
    block = release.addressing.node_block(network.version)
    if block is None:
        return None
    size = block.prefix_length if block.prefix_length is not None else settings.get(block.setting or "")
    if not isinstance(size, int) or isinstance(size, bool) or network.prefixlen <= size:
        return None
    name = release.key.replace("/", " ")
    fix = f"give a /{size} or larger range"
    if block.setting is not None:
        fix += f", or set spec.settings.{block.setting} to {network.prefixlen} or more"
    return Problem(
        f"spec.podCIDRs[{index}]",
        f"{network} is smaller than one per-node block of {name} (/{size}, {block.note}), so no node could get "
        f"addresses from it; {fix}",
    )


def _pod_cidr_problems(
    spec: ClusterNetworkSpec, release: PluginRelease, settings: dict[str, Any]
) -> tuple[list[Problem], set[int]]:
    """Problems of each pod range, and the address families given."""
    problems: list[Problem] = []
    networks = []
    for index, cidr in enumerate(spec.pod_cidrs):
        try:
            network = ipaddress.ip_network(cidr, strict=False)
        except ValueError:
            problems.append(Problem(f"spec.podCIDRs[{index}]", f"{cidr!r} is not a CIDR; write e.g. 10.244.0.0/16"))
            continue
        if ipaddress.ip_interface(cidr).ip != network.network_address:  # FD00::/56 is fine, 10.244.1.1/16 not
            problems.append(Problem(f"spec.podCIDRs[{index}]", f"{cidr} has host bits set; write {network}"))
        unusable = _unusable(network)
        if unusable:
            problems.append(Problem(f"spec.podCIDRs[{index}]", unusable))
        elif (block := _node_block_problem(index, network, release, settings)) is not None:
            problems.append(block)
        networks.append(network)
    return problems, {network.version for network in networks}


def _default_overlay(catalog: Catalog, overlay: str, cluster: ClusterFacts | None) -> PluginRelease:
    """The newest overlay release that suits the cluster; the newest of all when the cluster is unknown or none
    suits it (skew then reports why)."""
    releases = catalog.releases_of(overlay)
    if not releases:
        raise CatalogError(f"the catalog has no {overlay} release")
    if cluster is not None:
        fitting = [r for r in releases if supports(r, cluster, catalog)]
        if fitting:
            return fitting[-1]
    return releases[-1]


def _dump(spec: ClusterNetworkSpec) -> dict[str, Any]:
    """The spec as the API server stores it, for the catalog's CEL checks: `settings` holds what the user wrote."""
    data: dict[str, Any] = spec.model_dump(mode="json", by_alias=True, exclude_none=True)
    data.setdefault("settings", {})
    return data


def merge_patch(target: Any, patch: Any) -> Any:
    """RFC 7386 JSON merge patch: objects merge, null deletes, anything else replaces."""
    if not isinstance(patch, dict):
        return patch
    result = dict(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        else:
            result[key] = merge_patch(result.get(key), value)
    return result


def _checks(
    releases: Sequence[PluginRelease], spec: ClusterNetworkSpec
) -> tuple[list[Problem], list[Problem], ClusterNetworkSpec]:
    """(refusals, warnings, the spec as the plugin runs it) from the catalog checks of the target releases."""
    refusals: list[Problem] = []
    warnings: list[Problem] = []
    value = _dump(spec)
    effective = value
    for release in releases:
        for check in release.checks:
            if compile_rule(check.rule).holds(value):
                continue
            problem = Problem(check.field, f"{release.key.replace('/', ' ')}: {check.message}")
            (refusals if check.severity is CheckSeverity.REFUSE else warnings).append(problem)
            if check.effective is not None:
                effective = merge_patch(effective, check.effective)
    if effective is not value:
        spec = ClusterNetworkSpec.model_validate(effective)
    return refusals, warnings, spec


def validate(
    raw: Any,
    catalog: Catalog,
    *,
    kubernetes_version: str | None = None,
    cluster: ClusterFacts | None = None,
) -> ValidatedSpec:
    """Both stages; raises SpecError listing every problem found, or returns the spec with its defaults and any
    warnings.

    `kubernetes_version` (the API server's gitVersion) or `cluster` (all the facts) choose defaults that depend on
    the cluster: an empty spec.multus.version is the newest overlay release that suits it."""
    if cluster is None and kubernetes_version:
        cluster = ClusterFacts(kubernetes_version)
    spec = raw if isinstance(raw, ClusterNetworkSpec) else parse_spec(raw)
    plugin = spec.plugin.value
    try:
        release = catalog.get(plugin, spec.version)
    except CatalogError as err:
        raise SpecError([Problem("spec.version", f"{err}; pick one of those")]) from err
    problems: list[Problem] = []
    features = release.features
    name = release.key.replace("/", " ")
    settings = {**release.defaults, **spec.settings}

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

    cidr_problems, families = _pod_cidr_problems(spec, release, settings)
    problems += cidr_problems
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

    overlays: tuple[PluginRelease, ...] = ()
    if spec.multus.enabled:
        try:
            overlay = catalog.overlay_plugin()
            overlays = (
                catalog.get(overlay, spec.multus.version)
                if spec.multus.version
                else _default_overlay(catalog, overlay, cluster),
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

    refusals, warnings, spec = _checks((release, *overlays), spec)
    problems += refusals
    if not spec.multus.enabled and spec.multus.version:  # the API's own semantics, whatever the plugin
        warnings.append(
            Problem(
                "spec.multus.version",
                f"ignored while spec.multus.enabled is false (no overlay is installed): remove it, or set enabled "
                f"true to install {spec.multus.version}",
            )
        )
        spec = spec.model_copy(update={"multus": spec.multus.model_copy(update={"version": None})})
    if problems:
        raise SpecError(problems, warnings)
    return ValidatedSpec(
        spec=spec,
        release=release,
        settings={**release.defaults, **spec.settings},
        overlays=overlays,
        warnings=tuple(warnings),
    )
