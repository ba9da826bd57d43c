"""ClusterNetwork v1alpha1: the one source of the CRD schema (`crds/clusternetwork.yaml` is generated from here).

Descriptions become the `kubectl explain` text; `x-kubernetes-validations` carry the CEL rules the OpenAPI schema
cannot say. The schema holds no plugin facts: which plugin offers BGP, encryption, an encapsulation mode or
NetworkPolicy is catalog data (bundled-plugins/), checked by `plan.validate`, so a new release that gains a feature
needs no new CRD.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field
from pydantic.alias_generators import to_camel

GROUP = "cni-operator.dev"
VERSION = "v1alpha1"
KIND = "ClusterNetwork"
PLURAL = "clusternetworks"
API_VERSION = f"{GROUP}/{VERSION}"


class _Model(BaseModel):
    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="forbid", frozen=True)


def _cel(*rules: tuple[str, ...]) -> dict[str, Any]:
    """CEL rules as (rule, message) or (rule, message, fieldPath) so errors name the field they are about."""
    return {
        "x-kubernetes-validations": [
            {"rule": rule[0], "message": rule[1], **({"fieldPath": rule[2]} if len(rule) > 2 else {})} for rule in rules
        ]
    }


class Plugin(StrEnum):
    CALICO = "calico"
    FLANNEL = "flannel"
    CILIUM = "cilium"
    WEAVE_NET = "weave-net"
    REFERENCE = "reference"


class Encapsulation(StrEnum):
    VXLAN = "VXLAN"
    IPIP = "IPIP"
    GENEVE = "Geneve"
    NONE = "None"


class Encryption(StrEnum):
    NONE = "None"
    WIREGUARD = "WireGuard"
    IPSEC = "IPsec"


class NodeCleanup(StrEnum):
    KEEP = "Keep"
    REMOVE = "Remove"


Cidr = Annotated[
    str,
    Field(
        max_length=43,
        description="a CIDR such as 10.244.0.0/16 or fd00:10:244::/56",
        json_schema_extra=_cel(("isCIDR(self)", "must be a CIDR such as 10.244.0.0/16 or fd00:10:244::/56")),
    ),
]


class Canary(_Model):
    """The first wave of a rollout: these nodes move first and must pass the health gate before any other."""

    nodes: int = Field(1, ge=0, le=1000, description="how many nodes the canary wave holds (0 skips the canary)")
    node_selector: dict[str, str] | None = Field(
        None, description="label selector choosing the canary nodes instead of the first nodes by name"
    )


class HealthGate(_Model):
    """What a node must show before the rollout moves on."""

    timeout_seconds: int = Field(
        300, ge=10, le=86400, description="how long a node may take to become healthy before the rollout fails"
    )
    require_datapath_check: bool = Field(
        True, description="also wait for the node agent's datapath check where an agent runs on the node"
    )


MaxUnavailable = Annotated[
    int | str,
    Field(
        description="nodes a wave may take out at once: a count (1) or a percentage of all nodes ('10%')",
        json_schema_extra={
            "x-kubernetes-int-or-string": True,
            **_cel(
                (
                    "type(self) == int ? self >= 1 : self.matches('^(100|[1-9][0-9]?)%$')",
                    "must be a count of at least 1 or a percentage from 1% to 100%",
                )
            ),
        },
    ),
]


class Rollout(_Model):
    """How a new revision reaches the nodes: a canary, then waves bounded by maxUnavailable, each health-gated."""

    canary: Canary = Field(default_factory=Canary, description="the first wave")
    max_unavailable: MaxUnavailable = 1
    health_gate: HealthGate = Field(default_factory=HealthGate, description="what each node must pass")
    paused: bool = Field(False, description="stop starting new waves; nodes already moving finish their step")
    auto_rollback: bool = Field(True, description="move failed and in-flight nodes back to the last good revision")
    eviction_timeout_seconds: int = Field(
        600, ge=0, le=86400, description="how long a plugin swap waits for evictions that PodDisruptionBudgets block"
    )


class VersionPolicy(_Model):
    allow_unsupported: bool = Field(
        False,
        description="roll out a release the catalog does not list as supported for this cluster's Kubernetes, "
        "kubelets or runtimes; skew is still reported",
    )


class Multus(_Model):
    """Multus layered over the primary plugin, so pods can attach extra networks."""

    enabled: bool = Field(False, description="install Multus as the meta-plugin in front of the primary plugin")
    version: str | None = Field(None, max_length=32, description="Multus release; empty means the newest supported")


Mtu = Annotated[
    int | Literal["auto"],
    Field(
        description="'auto' (the plugin derives it from the node's interface) or a fixed MTU from 1280 to 9000",
        json_schema_extra={
            "x-kubernetes-int-or-string": True,
            **_cel(
                (
                    "type(self) == int ? (self >= 1280 && self <= 9000) : self == 'auto'",
                    "must be 'auto' or a number from 1280 to 9000",
                )
            ),
        },
    ),
]


class ClusterNetworkSpec(_Model):
    """Which CNI plugin runs, at which version, with which settings, and how changes roll out."""

    plugin: Plugin = Field(description="the primary CNI plugin")
    version: str = Field(
        max_length=32,
        pattern=r"^v[0-9]+\.[0-9]+\.[0-9]+$",
        description="the plugin release, as listed by 'cni-operator catalog' (e.g. v3.30.3)",
    )
    pod_cidrs: list[Cidr] = Field(
        alias="podCIDRs",
        min_length=1,
        max_length=2,
        description="pod address ranges: one IPv4, one IPv6, or one of each for dual-stack",
        json_schema_extra=_cel(
            (
                "size(self) < 2 || cidr(self[0]).ip().family() != cidr(self[1]).ip().family()",
                "two podCIDRs must be one IPv4 and one IPv6 range (dual-stack)",
            )
        ),
    )
    mtu: Mtu = "auto"
    encapsulation: Encapsulation | None = Field(
        None, description="how pod traffic crosses nodes; empty means the plugin's default"
    )
    encryption: Encryption = Field(Encryption.NONE, description="encryption of pod traffic between nodes")
    network_policy: bool = Field(True, description="enforce NetworkPolicy objects (needs a plugin that can)")
    bgp: bool = Field(
        False, description="advertise pod routes to the network's routers over BGP (needs a plugin that can)"
    )
    multus: Multus = Field(default_factory=Multus, description="Multus over the primary plugin")
    settings: dict[str, Any] = Field(
        default_factory=dict,
        description="plugin-specific settings, validated against the plugin release's own schema in the catalog",
        json_schema_extra={"x-kubernetes-preserve-unknown-fields": True},
    )
    rollout: Rollout = Field(default_factory=Rollout, description="how changes reach the nodes")
    version_policy: VersionPolicy = Field(
        default_factory=VersionPolicy, description="what to do with unsupported releases"
    )
    node_cleanup: NodeCleanup = Field(
        NodeCleanup.KEEP,
        description="when this ClusterNetwork is deleted: Keep leaves the running network on the nodes, "
        "Remove deletes the plugin's workloads and configs too",
    )


class ConditionStatus(StrEnum):
    TRUE = "True"
    FALSE = "False"
    UNKNOWN = "Unknown"


class Condition(_Model):
    """A kstatus-style condition, as metav1.Condition (Flux and Argo CD health checks read these)."""

    type: str = Field(max_length=316, description="Ready, Progressing, Degraded or Compatible")
    status: ConditionStatus = Field(description="True, False or Unknown")
    reason: str = Field(max_length=1024, description="CamelCase reason")
    message: str = Field("", max_length=32768, description="what happened and what to do")
    last_transition_time: str = Field(description="when status last changed (RFC 3339)")
    observed_generation: int = Field(0, ge=0, description="the spec generation this condition describes")


class WaveProgress(_Model):
    index: int = Field(ge=0, description="0 is the canary")
    size: int = Field(0, ge=0, description="how many nodes the wave holds")
    nodes: list[str] = Field(default_factory=list, description="nodes in this wave (the first 50 of large waves)")
    state: Literal["Pending", "InProgress", "Succeeded", "Failed", "RolledBack"] = Field(
        "Pending", description="where this wave is"
    )


class FailedNode(_Model):
    name: str = Field(description="the node")
    reason: str = Field(description="CamelCase reason, e.g. HealthGateTimeout, CrashLoopBackOff, EvictionBlocked")
    message: str = Field("", description="details and the next step")


class RevisionRecord(_Model):
    revision: str = Field(description="hash of plugin, release and rendered node configuration")
    plugin: Plugin = Field(description="the primary plugin of this revision")
    version: str = Field(description="its release")
    created: str = Field(description="when the operator first rendered this revision (RFC 3339)")
    spec: dict[str, Any] = Field(
        default_factory=dict,
        description="the spec that rendered it, so the operator can render it again while nodes still run it",
        json_schema_extra={"x-kubernetes-preserve-unknown-fields": True},
    )
    defaulted: dict[str, Any] = Field(
        default_factory=dict,
        description="the spec fields that defaults filled in for it; later reconciles keep these values while the "
        "user leaves the fields unset, so a default changed by a newer operator does not re-roll every node",
        json_schema_extra={"x-kubernetes-preserve-unknown-fields": True},
    )
    overlays: list[str] = Field(
        default_factory=list, max_length=4, description="overlay releases of this revision, e.g. multus/v4.2.4"
    )


class SkippedNode(_Model):
    name: str = Field(description="the node")
    reason: Literal["NotReady", "Cordoned"] = Field(description="why the rollout leaves it out for now")
    message: str = Field("", description="details; the node moves once it is Ready and uncordoned")


class SpecWarning(_Model):
    field: str = Field(description="the spec field, e.g. spec.podCIDRs")
    message: str = Field(description="what to look at, and why it was not refused")


class NodeCounts(_Model):
    total: int = Field(0, ge=0, description="nodes in the cluster")
    updated: int = Field(0, ge=0, description="nodes on the target revision")
    ready: int = Field(0, ge=0, description="nodes on the target revision that passed the health gate")


class SkewFinding(_Model):
    kind: str = Field(
        description="what does not fit: KubernetesVersion, KubeletVersion, ContainerRuntime, CniSpecVersion, "
        "Architecture, OperatingSystem, KubeletSkew, ArchivedRelease or UnknownVersion"
    )
    severity: Literal["Unsupported", "Warning"] = Field(
        "Unsupported",
        description="Unsupported: the catalog does not support the release here (a new target is refused); "
        "Warning: worth fixing, the release still suits the cluster",
    )
    release: str = Field("", description="the plugin release concerned, e.g. calico/v3.31.7 (empty: the cluster)")
    message: str = Field(description="what does not fit and what to do")
    nodes: list[str] = Field(
        default_factory=list, description="nodes concerned, at most 50 (empty for cluster-wide findings)"
    )


class AgentProblem(_Model):
    node: str = Field(description="the node whose agent reports it")
    kind: Literal["Drift", "Datapath"] = Field(description="Drift (differs from the rendered revision) or Datapath")
    message: str = Field("", description="what the agent saw and did")


class AgentSummary(_Model):
    reporting: int = Field(0, ge=0, description="nodes with a node agent report (NodeNetworkState)")
    datapath_passing: int = Field(0, ge=0, description="of those, nodes whose last datapath check passed")
    problems: list[AgentProblem] = Field(
        default_factory=list, max_length=20, description="drift and failing checks (the first 20; kubectl get nns)"
    )


class ClusterNetworkStatus(_Model):
    """What the operator observed and did; never written by users."""

    observed_generation: int = Field(0, ge=0, description="the spec generation the operator last acted on")
    phase: Literal["Pending", "Progressing", "Ready", "Degraded", "Paused", "Failed", "Inactive"] = Field(
        "Pending", description="one word summary; the conditions hold the details"
    )
    conditions: list[Condition] = Field(
        default_factory=list, description="Ready, Progressing, Degraded and Compatible (kstatus conventions)"
    )
    current_revision: str = Field("", description="the revision every node ran before the rollout in progress")
    target_revision: str = Field("", description="the revision the spec renders")
    nodes: NodeCounts = Field(default_factory=NodeCounts, description="rollout progress in nodes")
    waves: list[WaveProgress] = Field(
        default_factory=list,
        description="progress of the rollout in progress: the canary and the waves around the current one",
    )
    wave_count: int = Field(0, ge=0, description="how many waves the rollout in progress has, canary included")
    failed_revision: str = Field(
        "", description="the target revision failed its health gate: no more nodes move to it until the spec changes"
    )
    failed_nodes: list[FailedNode] = Field(default_factory=list, description="nodes that failed the rollout, and why")
    skipped_nodes: list[SkippedNode] = Field(
        default_factory=list,
        max_length=50,
        description="nodes the rollout leaves out for now (NotReady, or cordoned by someone else): they count "
        "against no maxUnavailable and move once back (the first 50)",
    )
    waiting_for: list[str] = Field(
        default_factory=list,
        description="cluster components (plugin/component) that must be Ready before the next node wave starts",
    )
    warnings: list[SpecWarning] = Field(
        default_factory=list, max_length=20, description="what the accepted spec does that deserves a look"
    )
    revision_history: list[RevisionRecord] = Field(
        default_factory=list, max_length=20, description="revisions rolled out, newest last (for rollbacks)"
    )
    skew: list[SkewFinding] = Field(default_factory=list, description="version-skew findings for this cluster")
    agents: AgentSummary = Field(
        default_factory=AgentSummary, description="what the node agents report, where they run (reference plugins)"
    )
    inventory_kinds: list[str] = Field(
        default_factory=list,
        max_length=64,
        description="apiVersion/Kind of plugin-specific kinds this network has rendered, so they are pruned later",
    )
    message: str = Field("", description="one line for humans: what is happening and what to do")


class ClusterNetwork(_Model):
    api_version: Literal["cni-operator.dev/v1alpha1"] = "cni-operator.dev/v1alpha1"
    kind: Literal["ClusterNetwork"] = "ClusterNetwork"
    metadata: dict[str, Any] = Field(default_factory=dict)
    spec: ClusterNetworkSpec
    status: ClusterNetworkStatus | None = None
