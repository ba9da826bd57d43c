"""Load `bundled-plugins/` into an immutable catalog of plugin releases."""

from __future__ import annotations

import os
from collections.abc import Iterable
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import yaml
from pydantic import ValidationError

from cni_operator.catalog.model import PluginRelease, Role, RuntimeFacts
from cni_operator.catalog.versions import parse_version

_REPO_ROOT = Path(__file__).resolve().parents[3]


class CatalogError(ValueError):
    """The catalog is missing, malformed, or lacks what was asked for."""


def data_root() -> Path:
    """The folder holding `bundled-plugins/` and `templates/` (overridable for packaged installs)."""
    return Path(os.environ.get("CNI_OPERATOR_DATA", _REPO_ROOT))


RUNTIMES_FILE = "runtimes.yaml"


@dataclass(frozen=True)
class Catalog:
    releases: tuple[PluginRelease, ...]
    runtimes: RuntimeFacts | None = None  # bundled-plugins/runtimes.yaml; None: no runtime facts (CNI spec unknown)

    def plugins(self) -> list[str]:
        return sorted({r.plugin for r in self.releases})

    def primary_plugins(self) -> list[str]:
        """Plugins that can carry the cluster network (spec.plugin), without the overlays."""
        return sorted({r.plugin for r in self.releases if r.role is Role.PRIMARY})

    def overlay_plugin(self) -> str:
        """The plugin that spec.multus layers over the primary: the catalog's one overlay."""
        overlays = sorted({r.plugin for r in self.releases if r.role is Role.OVERLAY})
        if len(overlays) != 1:
            raise CatalogError(
                f"the catalog must hold exactly one overlay plugin (role: overlay) for spec.multus, not "
                f"{len(overlays)} ({', '.join(overlays) or 'none'})"
            )
        return overlays[0]

    def max_cni_spec(self, runtime: str, version: tuple[int, int, int]) -> str | None:
        """The newest CNI spec version a runtime release reads, or None when the catalog's facts do not say."""
        return self.runtimes.max_cni_spec(runtime, version) if self.runtimes is not None else None

    def releases_of(self, plugin: str) -> list[PluginRelease]:
        """Releases of one plugin, oldest first."""
        return sorted((r for r in self.releases if r.plugin == plugin), key=lambda r: parse_version(r.version))

    def get(self, plugin: str, version: str) -> PluginRelease:
        for release in self.releases:
            if release.plugin == plugin and release.version == version:
                return release
        known = ", ".join(r.version for r in self.releases_of(plugin)) or "none"
        raise CatalogError(f"the catalog has no {plugin} release {version}; known {plugin} releases: {known}")

    def latest(self, plugin: str) -> PluginRelease:
        releases = self.releases_of(plugin)
        if not releases:
            raise CatalogError(f"the catalog has no plugin named {plugin!r}; known: {', '.join(self.plugins())}")
        return releases[-1]

    def with_feature(self, predicate_name: str, releases: Iterable[PluginRelease] | None = None) -> list[str]:
        """Plugins whose newest release has a truthy feature (by its field name), for "use X instead" messages."""
        chosen = releases if releases is not None else (self.latest(p) for p in self.primary_plugins())
        return sorted({r.plugin for r in chosen if getattr(r.features, predicate_name)})


def load_catalog(root: Path | None = None) -> Catalog:
    """Read every `bundled-plugins/<plugin>/<version>.yaml`; errors name the file and the field."""
    folder = (root or data_root()) / "bundled-plugins"
    if not folder.is_dir():
        raise CatalogError(f"{folder} not found: set CNI_OPERATOR_DATA to the folder that holds bundled-plugins/")
    releases = []
    for path in sorted(folder.glob("*/*.yaml")):
        try:
            release = PluginRelease.model_validate(yaml.safe_load(path.read_text()))
        except (ValidationError, yaml.YAMLError) as err:
            raise CatalogError(f"{path}: {err}") from err
        if (release.plugin, release.version) != (path.parent.name, path.stem):
            raise CatalogError(
                f"{path}: declares {release.key}; the file must be {release.plugin}/{release.version}.yaml"
            )
        releases.append(release)
    runtimes_path = folder / RUNTIMES_FILE
    runtimes = None
    if runtimes_path.is_file():
        try:
            runtimes = RuntimeFacts.model_validate(yaml.safe_load(runtimes_path.read_text()))
        except (ValidationError, yaml.YAMLError) as err:
            raise CatalogError(f"{runtimes_path}: {err}") from err
    return Catalog(tuple(releases), runtimes)


@cache
def default_catalog() -> Catalog:
    return load_catalog()
