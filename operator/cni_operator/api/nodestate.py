"""NodeNetworkState v1alpha1: what the node agent found and checked on one node (`crds/nodenetworkstate.yaml`).

One cluster-scoped object per node, named after the node, written only by that node's agent (status subresource)
and read by the operator's health gate: a node passes revision R when `status.datapath.revision == R` and
`status.datapath.passed`. See docs/agent.md for why this is a CRD and not annotations on the Node.
"""

from __future__ import annotations

from enum import StrEnum

from pydantic import BaseModel, ConfigDict, Field
from pydantic.alias_generators import to_camel

from cni_operator.api.v1alpha1 import API_VERSION, GROUP, VERSION

__all__ = ["API_VERSION", "GROUP", "KIND", "PLURAL", "VERSION"]

KIND = "NodeNetworkState"
PLURAL = "nodenetworkstates"
SHORT_NAMES = ["nns"]


class _Model(BaseModel):
    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="forbid", frozen=True)


class ConfigState(StrEnum):
    """How the container runtime sees a file in the CNI conf dir."""

    ACTIVE = "Active"  # lexically first config: the one containerd and CRI-O use
    IGNORED = "Ignored"  # still in the conf dir, but not the first
    QUARANTINED = "Quarantined"  # moved out of the conf dir by the agent, restorable


class ActiveConfig(_Model):
    file: str = Field("", description="file name in the CNI conf dir (empty: the conf dir holds no config)")
    name: str = Field("", description="the config's network name")
    sha256: str = Field("", description="SHA-256 of the file as it is on disk")
    cni_version: str = Field("", description="the config's cniVersion")
    plugins: list[str] = Field(default_factory=list, description="the chain's plugin types, in order")


class ConfigFile(_Model):
    file: str = Field(description="file name (in the conf dir, or its original name when quarantined)")
    sha256: str = Field(description="SHA-256 of the content")
    state: ConfigState = Field(description="Active, Ignored or Quarantined")


class Binary(_Model):
    name: str = Field(description="plugin binary in the CNI bin dir")
    sha256: str = Field(description="SHA-256 of the binary")


class SpecVersions(_Model):
    name: str = Field(description="plugin binary")
    versions: list[str] = Field(default_factory=list, description="CNI spec versions it reports to VERSION")


class Datapath(_Model):
    """The last datapath check: the active chain run for real in throwaway network namespaces."""

    revision: str = Field("", description="the revision the node was on when the check ran")
    passed: bool = Field(False, description="two throwaway pods got addresses from the pod CIDR and reached each other")
    reason: str = Field("", description="CamelCase outcome, e.g. Passed, PluginNotFound, NoConnectivity")
    message: str = Field("", description="what happened and what to do")
    checked_at: str = Field("", description="when the check finished (RFC 3339)")


class NodeNetworkStateStatus(_Model):
    """Written by the node's agent; read by the operator."""

    revision: str = Field("", description="the node's cni-operator.dev/revision label the agent acted on")
    active_config: ActiveConfig | None = Field(None, description="the config the runtime uses (lexically first)")
    configs: list[ConfigFile] = Field(default_factory=list, description="configs in the conf dir and quarantine")
    binaries: list[Binary] = Field(default_factory=list, description="plugin binaries in the CNI bin dir")
    spec_versions: list[SpecVersions] = Field(
        default_factory=list, description="CNI spec versions the active chain's binaries report"
    )
    drift: list[str] = Field(
        default_factory=list, description="differences from what the revision renders, e.g. a hand-edited config"
    )
    datapath: Datapath | None = Field(None, description="the last datapath check")
    last_report_time: str = Field("", description="when the agent last wrote this status (RFC 3339)")


class NodeNetworkStateSpec(_Model):
    """Empty: the object is a report. The name says which node it is about."""


class NodeNetworkState(_Model):
    api_version: str = API_VERSION
    kind: str = KIND
    metadata: dict[str, object] = Field(default_factory=dict)
    spec: NodeNetworkStateSpec = Field(default_factory=NodeNetworkStateSpec)
    status: NodeNetworkStateStatus | None = None
