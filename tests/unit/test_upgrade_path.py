"""Which release steps the catalog allows within one plugin, and the path it suggests instead."""

from __future__ import annotations

import pytest

from cni_operator.catalog.loader import Catalog, default_catalog
from cni_operator.catalog.model import PluginRelease
from cni_operator.plan import skew as S
from cni_operator.plan.skew import ClusterFacts
from cni_operator.plan.upgrade import check_step, upgrade_path, upgrade_paths

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


def _diamond() -> Catalog:
    """p v1 -> v2.0 | v2.1 -> v3 (two shortest paths), and v3 alone supports Kubernetes 1.36."""

    def rel(version: str, upgrade_from: list[str], kubernetes: str) -> PluginRelease:
        data = CATALOG.get("reference", "v1.9.1").model_dump(by_alias=True, mode="json")
        data.update(plugin="p", version=version, upgradeFrom=upgrade_from)
        data["compatibility"] = {**data["compatibility"], "kubernetes": [kubernetes]}
        return PluginRelease.model_validate(data)

    return Catalog(
        (
            rel("v1.0.0", [], "1.34"),
            rel("v2.0.0", ["v1.0.0"], "1.35"),
            rel("v2.1.0", ["v1.0.0"], "1.35"),
            rel("v3.0.0", ["v2.0.0", "v2.1.0"], "1.36"),
        ),
        CATALOG.runtimes,
    )


def test_ties_go_to_the_newest_release_at_each_step() -> None:
    catalog = _diamond()
    assert upgrade_path(catalog, "p", "v1.0.0", "v3.0.0") == ["v1.0.0", "v2.1.0", "v3.0.0"]
    assert upgrade_paths(catalog, "p", "v1.0.0")["v2.0.0"] == ("v1.0.0", "v2.0.0")
    assert upgrade_path(catalog, "p", "v3.0.0", "v1.0.0") is None
    assert upgrade_path(catalog, "p", "v1.0.0", "v9.0.0") is None


def test_the_refusal_and_the_recommendation_name_the_same_path() -> None:
    catalog = _diamond()
    v1, v3 = catalog.get("p", "v1.0.0"), catalog.get("p", "v3.0.0")
    refusal = check_step(catalog, [("p", "v1.0.0")], v3)
    assert refusal is not None and "v1.0.0 -> v2.1.0 -> v3.0.0" in refusal
    assert "set spec.version to v2.1.0 first" in refusal
    recommendation = S.recommend(catalog, "p", ClusterFacts("v1.36.3"), v1)
    assert recommendation is not None and recommendation.path == ("v1.0.0", "v2.1.0", "v3.0.0")
    assert "v1.0.0 -> v2.1.0 -> v3.0.0" in recommendation.describe()
    report = S.evaluate(ClusterFacts("v1.36.3"), catalog, [v1], [v1])
    assert "v1.0.0 -> v2.1.0 -> v3.0.0" in report.message


@pytest.mark.parametrize("plugin", sorted({r.plugin for r in CATALOG.releases}))
def test_the_bundled_catalog_gives_one_path_everywhere(plugin: str) -> None:
    releases = CATALOG.releases_of(plugin)
    for start in releases:
        paths = upgrade_paths(CATALOG, plugin, start.version)
        for target in releases:
            path = upgrade_path(CATALOG, plugin, start.version, target.version)
            assert (tuple(path) if path is not None else None) == paths.get(target.version)
