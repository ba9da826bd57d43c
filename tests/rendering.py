"""What the render tests share: one spec per plugin release, rendered as the operator would."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import yaml

from cni_operator.catalog.loader import Catalog
from cni_operator.catalog.model import PluginRelease
from cni_operator.plan.validate import validate
from cni_operator.render.engine import Renderer, Rendering

REPO = Path(__file__).resolve().parents[1]
GOLDEN = REPO / "tests" / "golden"
KUBERNETES_VERSION = "v1.36.3"


def example_spec(plugin: str) -> dict[str, Any]:
    spec: dict[str, Any] = yaml.safe_load((REPO / "examples" / f"{plugin}.yaml").read_text())["spec"]
    return spec


def cases(catalog: Catalog) -> list[tuple[str, dict[str, Any]]]:
    """(golden name, spec): every release of every primary plugin from its example, and every overlay release
    (Multus) over Calico, from examples/calico-<overlay>.yaml."""
    found = []
    for plugin in catalog.primary_plugins():
        for release in catalog.releases_of(plugin):
            found.append((f"{plugin}-{release.version}", {**example_spec(plugin), "version": release.version}))
    overlay = catalog.overlay_plugin()
    for release in catalog.releases_of(overlay):
        spec = copy.deepcopy(example_spec(f"calico-{overlay}"))
        spec["multus"]["version"] = release.version
        found.append((f"calico-{overlay}-{release.version}", spec))
    return found


def render(catalog: Catalog, spec: dict[str, Any]) -> Rendering:
    return Renderer(catalog).render(validate(spec, catalog), kubernetes_version=KUBERNETES_VERSION)


def as_yaml(rendering: Rendering) -> str:
    header = f"# revision {rendering.revision}\n"
    return header + yaml.safe_dump_all(rendering.objects, sort_keys=False, width=120, explicit_start=True)


def release_for(catalog: Catalog, name: str) -> PluginRelease:
    plugin, _, version = name.rpartition("-")
    return catalog.get(plugin, version)
