"""The shape of one plugin release in `bundled-plugins/<plugin>/<version>.yaml`.

Adding a release is a data change: a new file here and, when its objects differ, templates in `templates/`.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Any

from pydantic import BaseModel, ConfigDict, Field


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


class CniFacts(_Strict):
    binaries: list[str] = Field(description="binaries the plugin installs into the node's CNI bin dir")
    conflist_name: str = Field(
        alias="conflistName", description="file name in the CNI conf dir, e.g. 10-calico.conflist"
    )
    cni_version: str = Field(alias="cniVersion", description="the cniVersion the conflist declares")
    spec_versions: list[str] = Field(alias="specVersions", description="CNI spec versions the plugin's binaries accept")


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


class PodAddressing(StrEnum):
    """Who hands out pod addresses, which decides what spec.podCIDRs means across a plugin swap."""

    PLUGIN_POOL = "pluginPool"  # the plugin's own IPAM carves per-node blocks out of spec.podCIDRs (Calico, Cilium)
    NODE_POD_CIDR = "nodePodCIDR"  # each node's Node.spec.podCIDRs, from kube-controller-manager (Flannel)
    NONE = "none"  # an overlay (Multus): the primary plugin addresses the pods


class LiveChangeEffect(StrEnum):
    """Why a change cannot simply roll out node by node to a running network."""

    SEEDS_ONCE = "seedsOnce"  # read only when the plugin first creates its pools or ranges; later edits do nothing
    SPLITS_DATAPATH = "splitsDatapath"  # nodes on the old and the new value cannot reach each other's pods


class LiveChange(_Strict):
    """A spec field a running network of this release cannot take in a rolling update (plan/change.py)."""

    field: str = Field(
        description="the spec field as users write it, without 'spec.': encapsulation, encryption, settings.<name>"
    )
    effect: LiveChangeEffect
    reason: str = Field(description="what goes wrong, in the plugin's terms")
    instead: str = Field(description="how to make the change instead (the refusal shows it)")


class RunningNetwork(_Strict):
    """How a running network of this release takes spec changes; plan/change.py reads only this."""

    pod_addressing: PodAddressing = Field(alias="podAddressing")
    pod_cidrs_instead: str = Field(
        "",
        alias="podCIDRsInstead",
        description="how to give pods new ranges with this plugin, shown when spec.podCIDRs changes",
    )
    refused_changes: list[LiveChange] = Field(default_factory=list, alias="refusedChanges")


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
    running_network: RunningNetwork = Field(
        default_factory=lambda: RunningNetwork(pod_addressing=PodAddressing.NONE),
        alias="runningNetwork",
        description="which changes a running network of this release refuses, and what to do instead",
    )
    sources: list[Source] = Field(min_length=1)

    @property
    def key(self) -> str:
        return f"{self.plugin}/{self.version}"
