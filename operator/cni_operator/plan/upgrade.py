"""Is moving from the releases that run now to the target release a step the catalog allows?

A release lists the releases it upgrades from directly (`upgradeFrom`). Moving along such an edge is an upgrade;
moving back along one is a rollback to the release that ran before, which is allowed too. Anything else within one
plugin is refused, with the path to take instead. A different plugin is a swap, which the rollout engine handles by
draining nodes, so no edge is needed.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable

from cni_operator.catalog.loader import Catalog, CatalogError
from cni_operator.catalog.model import PluginRelease
from cni_operator.catalog.versions import parse_version


def upgrade_path(catalog: Catalog, plugin: str, source: str, target: str) -> list[str] | None:
    """The shortest chain of releases from `source` to `target` along upgradeFrom edges (both ends included),
    or None when the catalog has none. Ties go to the newest intermediate releases."""
    releases = {r.version: r for r in catalog.releases_of(plugin)}
    if source not in releases or target not in releases:
        return None
    forward: dict[str, list[str]] = {v: [] for v in releases}
    for release in releases.values():
        for older in release.upgrade_from:
            if older in forward:
                forward[older].append(release.version)
    for successors in forward.values():
        successors.sort(key=parse_version, reverse=True)
    previous: dict[str, str | None] = {source: None}
    queue = deque([source])
    while queue:
        version = queue.popleft()
        if version == target:
            path = [version]
            while (step := previous[path[-1]]) is not None:
                path.append(step)
            return path[::-1]
        for successor in forward[version]:
            if successor not in previous:
                previous[successor] = version
                queue.append(successor)
    return None


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
