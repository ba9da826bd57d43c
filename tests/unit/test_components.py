"""Cluster components around the node waves, in each release's declared order, for upgrades and rollbacks."""

from __future__ import annotations

import pytest

from cni_operator.catalog.loader import Catalog, default_catalog
from cni_operator.catalog.model import PluginRelease
from cni_operator.plan.components import components_after_nodes, components_before_nodes, not_ready_before_nodes


@pytest.fixture(scope="module")
def catalog() -> Catalog:
    return default_catalog()


def test_calico_upgrades_typha_before_the_nodes_and_kube_controllers_after_them(catalog: Catalog) -> None:
    release = catalog.get("calico", "v3.32.1")
    assert components_before_nodes(release) == ["crds", "rbac", "typha", "config"]
    assert components_after_nodes(release) == ["controllers"]


@pytest.mark.parametrize(("target", "source"), [("v1.19.6", "v1.18.12"), ("v1.18.12", "v1.19.6")])
def test_cilium_moves_its_operator_before_the_agents_in_both_directions(
    catalog: Catalog, target: str, source: str
) -> None:
    """Upgrade and rollback alike: the waves wait for the operator of the release the nodes move to."""
    release = catalog.get("cilium", target)
    assert components_before_nodes(release) == ["rbac", "config", "operator"]
    assert components_after_nodes(release) == []
    assert not_ready_before_nodes([release], {("cilium", "operator"), ("calico", "operator")}) == ("cilium/operator",)
    assert not_ready_before_nodes([release], {("cilium", "agent")}) == ()  # the node workloads are the waves


def test_node_scoped_components_are_neither_before_nor_after(catalog: Catalog) -> None:
    multus = catalog.get("multus", "v4.3.0")  # its config is per revision (node scope), between crds/rbac and node
    assert components_before_nodes(multus) == ["crds", "rbac"] and components_after_nodes(multus) == []


def test_overlays_are_waited_for_too_and_after_node_components_hold_nothing_back(catalog: Catalog) -> None:
    releases = [catalog.get("calico", "v3.32.1"), catalog.get("multus", "v4.3.0")]
    not_ready = {("multus", "crds"), ("calico", "controllers"), ("calico", "typha")}
    assert not_ready_before_nodes(releases, not_ready) == ("calico/typha", "multus/crds")


def test_a_release_without_node_components_has_everything_before(catalog: Catalog) -> None:
    data = catalog.get("flannel", "v0.28.9").model_dump(by_alias=True)
    data["components"] = [{"name": "rbac", "scope": "cluster"}, {"name": "namespace", "scope": "cluster"}]
    release = PluginRelease.model_validate(data)
    assert components_before_nodes(release) == ["rbac", "namespace"] and components_after_nodes(release) == []
