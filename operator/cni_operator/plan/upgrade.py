"""Is moving from the releases that run now to the target release a step the catalog allows?

A release lists the releases it upgrades from directly (`upgradeFrom`). Moving along such an edge is an upgrade;
moving back along one is a rollback to the release that ran before, which is allowed too. Anything else within one
plugin is refused, with the path to take instead. A different plugin is a swap, which the rollout engine handles by
draining nodes, so no edge is needed.
"""

from __future__ import annotations

from collections.abc import Iterable

from cni_operator.catalog.loader import Catalog, CatalogError
from cni_operator.catalog.model import PluginRelease
from cni_operator.catalog.versions import parse_version


def upgrade_paths(catalog: Catalog, plugin: str, source: str) -> dict[str, tuple[str, ...]]:
    """The upgrade path from `source` to every release of `plugin` it reaches along upgradeFrom edges (source
    included, as a path of one). The one path search: the refusal message (`check_step`), the skew recommendation
    and the Kubernetes-upgrade plan (`plan.skew`) all use it, so they always name the same path.

    A path is a shortest one (fewest upgrades). Tie-break: of the shortest paths, the one that, read backwards from
    the target, steps through the newest release at each step: newer intermediate releases carry more fixes and
    support newer Kubernetes minors, so the cluster spends its time on releases that are most likely to suit it."""
    releases = {r.version: r for r in catalog.releases_of(plugin)}
    if source not in releases:
        return {}
    distance = {source: 0}
    frontier = [source]
    while frontier:
        following = []
        for version in frontier:
            for release in releases.values():
                if version in release.upgrade_from and release.version not in distance:
                    distance[release.version] = distance[version] + 1
                    following.append(release.version)
        frontier = following
    paths: dict[str, tuple[str, ...]] = {source: (source,)}
    for version in sorted(distance, key=lambda v: distance[v]):
        if version == source:
            continue
        steps_before = [
            older for older in releases[version].upgrade_from if distance.get(older) == distance[version] - 1
        ]
        parent = max(steps_before, key=parse_version)
        paths[version] = (*paths[parent], version)
    return paths


def upgrade_path(catalog: Catalog, plugin: str, source: str, target: str) -> list[str] | None:
    """The upgrade path from `source` to `target` (both ends included; see `upgrade_paths` for the tie-break), or
    None when the catalog has none."""
    if target not in {r.version for r in catalog.releases_of(plugin)}:
        return None
    path = upgrade_paths(catalog, plugin, source).get(target)
    return list(path) if path is not None else None


def check_step(catalog: Catalog, running: Iterable[tuple[str, str]], target: PluginRelease) -> str | None:
    """None when every running (plugin, version) may move to `target`; otherwise why not, and what to do."""
    for plugin, version in sorted(set(running)):
        if plugin != target.plugin or version == target.version:
            continue
        if version in target.upgrade_from:
            continue  # a direct upgrade
        try:
            current = catalog.get(plugin, version)
        except CatalogError:
            return (
                f"{plugin} {version} runs on some nodes but is not in this operator's catalog, so no upgrade path to "
                f"{target.version} is known; set spec.version back to {version} or move through a release the "
                "catalog lists"
            )
        if target.version in current.upgrade_from:
            continue  # a rollback to the release that ran before
        path = upgrade_path(catalog, plugin, version, target.version)
        if path is None:
            return (
                f"{plugin} {version} cannot move to {target.version}: the catalog lists no upgrade path between them "
                f"(upgrades go to newer releases one listed step at a time); set spec.version back to {version}"
            )
        steps = " -> ".join(path)
        return (
            f"{plugin} {version} cannot be upgraded to {target.version} directly: the catalog's upgrade path is "
            f"{steps}; set spec.version to {path[1]} first, wait for Ready, then continue along the path"
        )
    return None
