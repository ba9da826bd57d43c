"""Which release steps the catalog allows within one plugin, and the path it suggests instead."""

from __future__ import annotations

import pytest

from cni_operator.catalog.loader import default_catalog
from cni_operator.plan.upgrade import check_step, upgrade_path

CATALOG = default_catalog()


def test_direct_upgrades_rollbacks_and_swaps_are_allowed() -> None:
    cilium_18 = CATALOG.get("cilium", "v1.18.12")
    assert check_step(CATALOG, [("cilium", "v1.17.18")], cilium_18) is None  # listed in upgradeFrom
    assert check_step(CATALOG, [("cilium", "v1.19.6")], cilium_18) is None  # back along an edge
    assert check_step(CATALOG, [("calico", "v3.30.7")], cilium_18) is None  # a swap drains instead
    assert check_step(CATALOG, [("cilium", "v1.18.12")], cilium_18) is None


def test_a_skipped_release_is_refused_with_the_path_to_take() -> None:
    problem = check_step(CATALOG, [("cilium", "v1.17.18")], CATALOG.get("cilium", "v1.19.6"))
    assert problem is not None
    assert "v1.17.18 -> v1.18.12 -> v1.19.6" in problem
    assert "set spec.version to v1.18.12 first" in problem


def test_downgrades_that_skip_releases_have_no_path() -> None:
    problem = check_step(CATALOG, [("cilium", "v1.19.6")], CATALOG.get("cilium", "v1.17.18"))
    assert problem is not None and "no upgrade path" in problem and "set spec.version back to v1.19.6" in problem


def test_a_release_missing_from_the_catalog_is_named() -> None:
    problem = check_step(CATALOG, [("calico", "v3.29.0")], CATALOG.get("calico", "v3.31.7"))
    assert problem is not None and "v3.29.0" in problem and "not in this operator's catalog" in problem


@pytest.mark.parametrize("plugin", sorted({r.plugin for r in CATALOG.releases}))
def test_every_release_is_reachable_from_the_oldest(plugin: str) -> None:
    releases = [r.version for r in CATALOG.releases_of(plugin)]
    for version in releases:
        path = upgrade_path(CATALOG, plugin, releases[0], version)
        assert path is not None and path[0] == releases[0] and path[-1] == version
