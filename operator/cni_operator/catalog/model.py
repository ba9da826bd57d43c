"""The shape of one plugin release in `bundled-plugins/<plugin>/<version>.yaml`.

Adding a release is a data change: a new file here and, when its objects differ, templates in `templates/`.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, model_validator

from cni_operator.api.cel import compile_rule
from cni_operator.catalog.versions import parse_version


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


class SupportStatus(StrEnum):
    SUPPORTED = "supported"
    ARCHIVED = "archived"  # upstream stopped maintaining it: we still support it, and status says so


class Role(StrEnum):
    """What a plugin is to the cluster network."""

    PRIMARY = "primary"  # carries the cluster network: spec.plugin names it
    OVERLAY = "overlay"  # a meta-plugin layered in front of the primary (spec.multus): never a primary itself


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


class NodeBlock(_Strict):
    """The address block each node gets from a pod range: a fixed prefix length, or one a setting holds."""

    prefix_length: int | None = Field(None, alias="prefixLength", ge=0, le=128, description="fixed prefix length")
    setting: str | None = Field(
        None, description="the spec.settings key holding the prefix length (the release's defaults hold its default)"
    )
    note: str = Field("", description="where the block comes from, for messages")

    @model_validator(mode="after")
    def _one_of(self) -> NodeBlock:
        if (self.prefix_length is None) == (self.setting is None):
            raise ValueError("give exactly one of prefixLength and setting")
        return self


class Addressing(_Strict):
    """How the plugin splits spec.podCIDRs into per-node blocks (empty: no per-node block, any size works)."""

    ipv4_node_block: NodeBlock | None = Field(None, alias="ipv4NodeBlock")
    ipv6_node_block: NodeBlock | None = Field(None, alias="ipv6NodeBlock")

    def node_block(self, family: int) -> NodeBlock | None:
        return self.ipv4_node_block if family == 4 else self.ipv6_node_block


class CheckSeverity(StrEnum):
    REFUSE = "Refuse"  # the spec says one thing and the plugin would run another: validate refuses it
    WARN = "Warn"  # a setting the plugin ignores: validate warns, the rollout goes ahead unchanged


class SpecCheck(_Strict):
    """A rule about the whole spec that only this release knows: settings it ignores or cannot combine.

    `rule` is CEL over the spec as the API server stores it (defaults filled; `self.settings` holds only what the
    user wrote), and must hold, as in the CRD's x-kubernetes-validations."""

    rule: str
    field: str = Field(pattern=r"^spec(\.[A-Za-z0-9]+|\[[0-9]+\])*$", description="the field the message is about")
    severity: CheckSeverity
    message: str = Field(description="what the plugin does instead, and the fix")
    effective: dict[str, Any] | None = Field(
        None,
        description="Warn only: a JSON merge patch (RFC 7386) of the spec to what the plugin runs instead (e.g. "
        "{mtu: auto}); the operator renders the patched spec, so an ignored setting changes neither the manifests "
        "nor the revision, and never starts a rollout that changes nothing on the nodes",
    )

    @model_validator(mode="after")
    def _compiles(self) -> SpecCheck:
        compile_rule(self.rule)
        if self.effective is not None and self.severity is not CheckSeverity.WARN:
            raise ValueError("effective is for Warn checks: a refused spec is not rendered")
        return self


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
    role: Role = Role.PRIMARY
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
    addressing: Addressing = Field(default_factory=Addressing, description="per-node address blocks")
    checks: list[SpecCheck] = Field(
        default_factory=list, description="settings this release ignores or cannot combine (validate refuses or warns)"
    )
    running_network: RunningNetwork = Field(
        default_factory=lambda: RunningNetwork(pod_addressing=PodAddressing.NONE),
        alias="runningNetwork",
        description="which changes a running network of this release refuses, and what to do instead",
    )
    sources: list[Source] = Field(min_length=1)

    @model_validator(mode="after")
    def _block_settings_exist(self) -> PluginRelease:
        for block in (self.addressing.ipv4_node_block, self.addressing.ipv6_node_block):
            if block is not None and block.setting is not None and block.setting not in self.defaults:
                raise ValueError(f"addressing: setting {block.setting!r} has no default in defaults")
        return self

    @property
    def key(self) -> str:
        return f"{self.plugin}/{self.version}"


class CniSpecStep(_Strict):
    since: str = Field(description="the first runtime release whose libcni reads this CNI spec version")
    cni_spec: str = Field(alias="cniSpec", description="the newest CNI spec version from that release on")


class ContainerRuntime(_Strict):
    name: str = Field(description="as in Node.status.nodeInfo.containerRuntimeVersion, e.g. containerd")
    cni_spec: list[CniSpecStep] = Field(alias="cniSpec", min_length=1)


class RuntimeFacts(_Strict):
    """`bundled-plugins/runtimes.yaml`: what the container runtimes read, whatever the plugin."""

    runtimes: list[ContainerRuntime]
    sources: list[Source] = Field(min_length=1)

    def max_cni_spec(self, runtime: str, version: tuple[int, int, int]) -> str | None:
        """The newest CNI spec version a runtime release reads, or None when the facts do not say."""
        best = None
        for known in self.runtimes:
            if known.name != runtime:
                continue
            for step in sorted(known.cni_spec, key=lambda s: parse_version(s.since)):
                if version >= parse_version(step.since):
                    best = step.cni_spec
        return best
