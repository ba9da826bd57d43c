"""The datapath check: run the active chain for real, as a runtime does, for two throwaway pods that must get
addresses from the node's pod CIDR and reach each other.

Isolation, so that the check never disturbs the node's real pods: the plugins run inside a throwaway *node*
namespace (`ip netns exec`), so the bridge, its gateway address, the routes and the ipMasq/portmap iptables rules
they create live there and vanish with it; the two pods are throwaway namespaces of their own; host-local gets a
throwaway data dir, so no lease of a real pod is read, taken or left behind. The chain is otherwise the active config
exactly: same binaries (CNI_PATH = the node's bin dir), same plugin options, same bridge name (it cannot collide: it
lives in the check's own namespace). Everything is removed in `finally`: DEL of the chain (as a runtime does after
a failed ADD too), then the namespaces, then the data dir.
"""

from __future__ import annotations

import copy
import ipaddress
import secrets
import shutil
from collections.abc import Collection
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from cni_operator.agent import netns
from cni_operator.agent.cni import CniFailure, CniRuntime, RuntimeConf, parse_result
from cni_operator.agent.conflist import ConfigError, pod_cidrs_by_family, validate_conflist

DEFAULT_PREFIX = "cnio-chk-"
POD_NAMESPACE_ARG = "cni-operator-datapath-check"


def now_rfc3339() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass(frozen=True)
class DatapathResult:
    passed: bool
    reason: str
    message: str
    revision: str = ""
    checked_at: str = field(default_factory=now_rfc3339)
    addresses: list[str] = field(default_factory=list)

    def as_status(self) -> dict[str, Any]:
        return {
            "revision": self.revision,
            "passed": self.passed,
            "reason": self.reason,
            "message": self.message,
            "checkedAt": self.checked_at,
        }


class _Failed(Exception):
    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


def isolate(conflist: dict[str, Any], data_dir: Path) -> dict[str, Any]:
    """The chain with host-local's lease store moved to the check's own dir (nothing else changes)."""
    isolated = copy.deepcopy(conflist)
    for plugin in isolated["plugins"]:
        ipam = plugin.get("ipam")
        if isinstance(ipam, dict) and ipam.get("type") == "host-local":
            ipam["dataDir"] = str(data_dir)
    return isolated


def required_binaries(conflist: dict[str, Any]) -> list[str]:
    """Every binary the chain runs: the plugin types and their IPAM plugins."""
    names: list[str] = []
    for plugin in conflist["plugins"]:
        for name in (plugin.get("type"), (plugin.get("ipam") or {}).get("type")):
            if isinstance(name, str) and name and name not in names:
                names.append(name)
    return names


def check_addresses(addresses: list[str], pod_cidrs: list[str]) -> None:
    """Every pod address lies in one of the node's pod CIDRs, and there is at least one."""
    networks = [ipaddress.ip_network(c, strict=False) for c in pod_cidrs]
    if not addresses:
        raise _Failed("NoAddress", "the chain's ADD result holds no address for the pod")
    for address in addresses:
        interface = ipaddress.ip_interface(address)
        if not any(interface.ip in network for network in networks):
            raise _Failed(
                "AddressOutsidePodCIDR",
                f"the pod got {address}, outside the node's pod CIDRs {', '.join(pod_cidrs)}: the config's IPAM "
                "ranges do not match Node.spec.podCIDRs (a hand-edited or stale config?)",
            )


def run_check(
    conflist: dict[str, Any],
    bin_dir: Path,
    pod_cidrs: list[str],
    work_dir: Path,
    *,
    revision: str = "",
    prefix: str = DEFAULT_PREFIX,
    skip_check: Collection[str] = (),
) -> DatapathResult:
    """One datapath check; never raises for a broken datapath (that is the result), always cleans up.
    `skip_check`: plugin types whose CHECK is not called (the release's `skipCheck`); the message says so."""
    try:
        addresses = _run(conflist, bin_dir, pod_cidrs, work_dir, prefix, skip_check)
    except _Failed as failed:
        return DatapathResult(False, failed.reason, str(failed), revision)
    except CniFailure as err:
        return DatapathResult(False, err.reason, str(err), revision)
    except netns.NetnsError as err:
        return DatapathResult(False, "NamespaceError", str(err), revision)
    skipped = sorted({p["type"] for p in conflist.get("plugins", []) if p.get("type") in skip_check})
    note = f"; CHECK not called for {', '.join(skipped)} (the release's skipCheck)" if skipped else ""
    return DatapathResult(
        True,
        "Passed",
        f"two pods got {', '.join(addresses)} from the pod CIDR and reached each other{note}",
        revision,
        addresses=addresses,
    )


def _run(
    conflist: dict[str, Any],
    bin_dir: Path,
    pod_cidrs: list[str],
    work_dir: Path,
    prefix: str,
    skip_check: Collection[str] = (),
) -> list[str]:
    missing = netns.missing_prerequisites()
    if missing:
        raise _Failed("MissingPrerequisite", "the datapath check needs " + "; ".join(missing))
    try:
        validate_conflist(conflist)
        families = pod_cidrs_by_family(pod_cidrs)
    except ConfigError as err:
        raise _Failed("InvalidConfig", str(err)) from err
    if not families:
        raise _Failed("NoPodCIDR", "the node has no Node.spec.podCIDRs: kube-controller-manager allocates them")
    token = secrets.token_hex(4)
    node_ns = f"{prefix}{token}-node"
    check_dir = work_dir / f"datapath-{token}"
    runtime = CniRuntime([bin_dir], exec_prefix=netns.exec_prefix(node_ns))
    for name in required_binaries(conflist):
        runtime.find(name)  # PluginNotFound before anything is created
    chain = isolate(conflist, check_dir / "ipam")
    pods = [
        RuntimeConf(
            container_id=f"{prefix}{token}-{side}",
            netns=str(netns.path(f"{prefix}{token}-{side}")),
            ifname="eth0",
            args={"IgnoreUnknown": "1", "K8S_POD_NAMESPACE": POD_NAMESPACE_ARG, "K8S_POD_NAME": f"{token}-{side}"},
        )
        for side in ("a", "b")
    ]
    created: list[str] = []
    added: list[tuple[RuntimeConf, dict[str, Any] | None]] = []
    try:
        check_dir.mkdir(parents=True)
        for name in (node_ns, *(Path(p.netns).name for p in pods)):
            netns.add(name)
            created.append(name)
            netns.link_up(name, "lo")
        results = []
        for pod in pods:
            added.append((pod, None))  # DEL also after a failed ADD, as runtimes do
            result = runtime.add(chain, pod)
            added[-1] = (pod, result)
            results.append(parse_result(result))
        addresses = [r.container_addresses() for r in results]
        for pod_addresses in addresses:
            check_addresses(pod_addresses, pod_cidrs)
        for pod, (_, cached) in zip(pods, added, strict=True):
            try:
                runtime.check(chain, pod, cached or {}, skip=skip_check)
            except CniFailure as err:
                raise _Failed("CheckFailed", f"CNI CHECK failed after a successful ADD: {err}") from err
        for source, target, target_addresses in (
            (pods[0], pods[1], addresses[1]),
            (pods[1], pods[0], addresses[0]),
        ):
            for address in target_addresses:
                ip = str(ipaddress.ip_interface(address).ip)
                ok, output = netns.ping(Path(source.netns).name, ip)
                if not ok:
                    raise _Failed(
                        "NoConnectivity",
                        f"pod {source.container_id} cannot reach pod {target.container_id} at {ip}: {output}",
                    )
        return [a for pod_addresses in addresses for a in pod_addresses]
    finally:
        _clean_up(runtime, chain, added, created, check_dir)


def _clean_up(
    runtime: CniRuntime,
    chain: dict[str, Any],
    added: list[tuple[RuntimeConf, dict[str, Any] | None]],
    created: list[str],
    check_dir: Path,
) -> None:
    """DEL what was added, then remove the namespaces (and with them every interface) and the lease dir."""
    for pod, cached in reversed(added):
        runtime.delete(chain, pod, cached)  # failures are returned: the namespaces go below, interfaces with them
    errors = []
    for name in reversed(created):
        try:
            netns.delete(name)
        except netns.NetnsError as err:
            errors.append(str(err))
    shutil.rmtree(check_dir, ignore_errors=True)
    if errors:
        raise netns.NetnsError("; ".join(errors))
