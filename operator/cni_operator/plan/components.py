"""A release's cluster-level components around its node waves, in the order its `components` list declares.

Cluster components before the first node component (CRDs, RBAC, Calico's Typha, the Cilium operator) upgrade
first, and the node waves wait until they are Ready: new agents need the new CRDs and the new Typha or operator.
Those after it (calico-kube-controllers) upgrade once every node moved. A rollback is the same order towards the
revision nodes go back to: pass that revision's release.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence

from cni_operator.catalog.model import ComponentScope, PluginRelease


def _first_node_component(release: PluginRelease) -> int:
    components = release.components
    return next((i for i, c in enumerate(components) if c.scope is ComponentScope.NODE), len(components))


def components_before_nodes(release: PluginRelease) -> list[str]:
    """Cluster components that upgrade before the node workloads, in declared order."""
    first = _first_node_component(release)
    return [c.name for c in release.components[:first] if c.scope is ComponentScope.CLUSTER]


def components_after_nodes(release: PluginRelease) -> list[str]:
    """Cluster components that upgrade once every node moved, in declared order."""
    first = _first_node_component(release)
    return [c.name for c in release.components[first:] if c.scope is ComponentScope.CLUSTER]


def not_ready_before_nodes(
    releases: Sequence[PluginRelease], not_ready: Collection[tuple[str, str]]
) -> tuple[str, ...]:
    """What node waves wait for (`RolloutSettings.waiting_for`): of the (plugin, component) pairs whose workloads
    the caller saw not Ready, those the releases upgrade before their nodes, in declared order, as
    "<plugin>/<component>". Components without workloads (CRDs, RBAC, ConfigMaps) are Ready once applied, and an
    after-node component that is not Ready (calico-kube-controllers) holds no wave back."""
    return tuple(
        f"{release.plugin}/{name}"
        for release in releases
        for name in components_before_nodes(release)
        if (release.plugin, name) in not_ready
    )
