"""The catalog holds the plugin facts; the Python code holds none of them."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

from cni_operator.api.v1alpha1 import ClusterNetworkSpec, Plugin
from cni_operator.catalog.loader import CatalogError, default_catalog, load_catalog
from cni_operator.catalog.model import Role

REPO = Path(__file__).resolve().parents[2]
PACKAGE = REPO / "operator" / "cni_operator"
CATALOG = default_catalog()
API_FIELDS = set(ClusterNetworkSpec.model_fields)  # the API's own field names (spec.multus) are not plugin facts


def test_the_api_offers_exactly_the_primary_plugins() -> None:
    assert sorted(p.value for p in Plugin) == CATALOG.primary_plugins()
    overlay = CATALOG.overlay_plugin()
    assert overlay not in CATALOG.primary_plugins()
    assert all(r.role is Role.OVERLAY for r in CATALOG.releases_of(overlay))


def _string_constants(path: Path) -> list[tuple[int, str]]:
    """String literals that are not documentation: docstrings, `description=` (kubectl explain) and `help=` (the
    CLI's) texts are."""
    tree = ast.parse(path.read_text())
    docstrings = {
        id(node.body[0].value)
        for node in ast.walk(tree)
        if isinstance(node, ast.Module | ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef)
        and node.body
        and isinstance(node.body[0], ast.Expr)
        and isinstance(node.body[0].value, ast.Constant)
    }
    docstrings |= {
        id(constant)
        for node in ast.walk(tree)
        if isinstance(node, ast.keyword) and node.arg in ("description", "help")
        for constant in ast.walk(node.value)
    }
    return [
        (node.lineno, node.value)
        for node in ast.walk(tree)
        if isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in docstrings
    ]


@pytest.mark.parametrize("name", ["multus", "calico", "flannel", "cilium", "weave-net"])
def test_no_plugin_name_in_the_decisions(name: str) -> None:
    """Plugin facts are catalog data: plan/ and render/ never test for a plugin by name (api/ lists the plugins the
    CRD offers, templates/ are per plugin)."""
    found = [
        f"{path.relative_to(REPO)}:{line}: {text!r}"
        for folder in ("plan", "render", "catalog")
        for path in sorted((PACKAGE / folder).glob("*.py"))
        for line, text in _string_constants(path)
        if (name in text.lower().split("/")[0].split() or text.lower() == name) and text not in API_FIELDS
    ]
    assert not found, found


def test_no_literal_multus_anywhere_in_the_package() -> None:
    """The overlay is the catalog's `role: overlay`; only the API field's own name (spec.multus) is spelt out."""
    found = [
        f"{path.relative_to(REPO)}:{line}: {text!r}"
        for path in sorted(PACKAGE.rglob("*.py"))
        for line, text in _string_constants(path)
        if re.search(r"(?<!spec\.)multus", text, re.IGNORECASE) and text not in API_FIELDS
    ]
    assert not found, found


def test_runtime_facts_are_catalog_data() -> None:
    assert CATALOG.runtimes is not None and CATALOG.runtimes.sources
    assert CATALOG.max_cni_spec("containerd", (1, 7, 22)) == "1.0.0"
    assert CATALOG.max_cni_spec("containerd", (2, 1, 4)) == "1.1.0"
    assert CATALOG.max_cni_spec("cri-o", (1, 30, 0)) == "1.0.0"
    assert CATALOG.max_cni_spec("cri-o", (1, 23, 0)) is None
    assert CATALOG.max_cni_spec("docker", (28, 0, 0)) is None


def test_every_check_compiles_and_block_settings_have_defaults() -> None:
    for release in CATALOG.releases:
        for family in (4, 6):
            block = release.addressing.node_block(family)
            if block is not None and block.setting is not None:
                assert isinstance(release.defaults[block.setting], int)
                assert block.setting in release.settings_schema["properties"]
        for check in release.checks:
            assert check.field.startswith("spec")


def test_a_broken_check_names_the_file(tmp_path: Path) -> None:
    source = REPO / "bundled-plugins" / "flannel" / "v0.28.9.yaml"
    folder = tmp_path / "bundled-plugins" / "flannel"
    folder.mkdir(parents=True)
    (folder / "v0.28.9.yaml").write_text(source.read_text().replace("rule: self.mtu == 'auto'", "rule: self.mtu ==="))
    with pytest.raises(CatalogError, match=r"(?s)flannel/v0\.28\.9\.yaml.*checks.*does not compile"):
        load_catalog(tmp_path)
