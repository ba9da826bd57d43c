"""The shape of one plugin release in `bundled-plugins/<plugin>/<version>.yaml`.

Adding a release is a data change: a new file here and, when its objects differ, templates in `templates/`.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, model_validator


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


class SupportStatus(StrEnum):
    SUPPORTED = "supported"
    ARCHIVED = "archived"  # upstream stopped maintaining it: we still support it, and status says so


class ComponentScope(StrEnum):
    CLUSTER = "cluster"  # one copy per cluster (CRDs, RBAC, controllers)
    NODE = "node"  # runs on every node, rendered once per revision and moved between revisions in waves


class Component(_Strict):
    """A group of objects that upgrade together; a release lists them in the order they must upgrade."""

    name: str = Field(description="matches the `component` key templates put on their objects")
    scope: ComponentScope


class SkipCheck(_Strict):
    """A plugin of the release whose CNI CHECK is known broken upstream: the node agent's datapath check still runs
    ADD, DEL and the ping through it, but does not call its CHECK (the rest of the chain is still checked)."""

    plugin: str = Field(description="the plugin type in the conflist, e.g. bandwidth")
    reason: str = Field(description="what goes wrong, as seen")
    source: str = Field(description="the upstream issue or fix that documents it")


class CniFacts(_Strict):
    binaries: list[str] = Field(description="binaries the plugin installs into the node's CNI bin dir")
    conflist_name: str = Field(
        alias="conflistName", description="file name in the CNI conf dir, e.g. 10-calico.conflist"
    )
    cni_version: str = Field(alias="cniVersion", description="the cniVersion the conflist declares")
    spec_versions: list[str] = Field(alias="specVersions", description="CNI spec versions the plugin's binaries accept")
    skip_check: list[SkipCheck] = Field(
        default_factory=list,
        alias="skipCheck",
        description="plugins whose CHECK this release's binaries get wrong; the agent's gate does not call it",
    )

    @model_validator(mode="after")
    def _skipped_plugins_are_installed(self) -> CniFacts:
        unknown = [s.plugin for s in self.skip_check if s.plugin not in self.binaries]
        if unknown:
            raise ValueError(f"skipCheck names {', '.join(unknown)}, not among the release's binaries")
        return self


class Compatibility(_Strict):
    kubernetes: list[str] = Field(description="supported Kubernetes minors, e.g. ['1.33', '1.34']")
    runtimes: dict[str, str] = Field(
        default_factory=dict, description="minimum container runtime versions, e.g. {containerd: '1.7.0'}"
    )
    architectures: list[str] = Field(default_factory=lambda: ["amd64", "arm64"])


class Features(_Strict):
    network_policy: bool = Field(alias="networkPolicy")
    encryption: list[str] = Field(default_factory=list, description="kinds: WireGuard, IPsec")
    bgp: bool = False
    ipv6: bool = False
    dual_stack: bool = Field(False, alias="dualStack")
    encapsulation: list[str] = Field(description="modes: VXLAN, IPIP, Geneve, None")
    default_encapsulation: str = Field(alias="defaultEncapsulation")


class Source(_Strict):
    """Where the facts in this file come from (the upstream project's own docs and repository)."""

    url: str
    note: str = ""


class PluginRelease(_Strict):
    plugin: str
    version: str = Field(description="upstream release tag, e.g. v3.30.3")
    released: str = Field(description="date of the upstream release (YYYY-MM-DD)")
    status: SupportStatus = SupportStatus.SUPPORTED
    notice: str = Field("", description="shown in status and the CLI, e.g. why an archived plugin is flagged")
    images: dict[str, str] = Field(description="logical name -> fully qualified image reference with tag")
    cni: CniFacts
    compatibility: Compatibility
    features: Features
    upgrade_from: list[str] = Field(
        default_factory=list, alias="upgradeFrom", description="releases this one can be upgraded from directly"
    )
    components: list[Component] = Field(description="in the order they upgrade")
    settings_schema: dict[str, Any] = Field(
        default_factory=lambda: {"type": "object", "additionalProperties": False},
        alias="settingsSchema",
        description="JSON Schema of spec.settings for this plugin",
    )
    defaults: dict[str, Any] = Field(
        default_factory=dict, description="values templates use when the spec leaves them out (e.g. the VXLAN port)"
    )
    sources: list[Source] = Field(min_length=1)

    @property
    def key(self) -> str:
        return f"{self.plugin}/{self.version}"
