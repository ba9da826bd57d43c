"""Pure conflist logic: filling the node's pod CIDRs in, and reading configs the way container runtimes do.

Runtimes (containerd through go-cni, CRI-O through ocicni) load `.conf`, `.conflist` and `.json` files from the conf
dir in lexical order and use the first as the default network; containerd fails on an invalid first file, CRI-O
skips it. The agent reports the lexically first config file as active, which is what containerd does and what
CRI-O does whenever that file is valid.
"""

from __future__ import annotations

import ipaddress
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

CONFIG_SUFFIXES = (".conf", ".conflist", ".json")
PLACEHOLDER_V4 = "__NODE_POD_CIDR_V4__"
PLACEHOLDER_V6 = "__NODE_POD_CIDR_V6__"


class ConfigError(ValueError):
    """A conflist that cannot be installed or run; the message says what is wrong."""


def is_config_name(name: str) -> bool:
    """The names runtimes load: hidden files (our temporary files) are not configs even with a config suffix."""
    return name.endswith(CONFIG_SUFFIXES) and not name.startswith(".")


def config_files(conf_dir: Path) -> list[Path]:
    """Config files in runtime order (lexical, by file name); directories such as multus.d are not configs."""
    if not conf_dir.is_dir():
        return []
    return sorted((p for p in conf_dir.iterdir() if p.is_file() and is_config_name(p.name)), key=lambda p: p.name)


def pod_cidrs_by_family(pod_cidrs: list[str]) -> dict[int, str]:
    """{4: '10.244.1.0/24', 6: 'fd00::/64'} from Node.spec.podCIDRs (validated, normalised)."""
    found: dict[int, str] = {}
    for cidr in pod_cidrs:
        try:
            network = ipaddress.ip_network(cidr, strict=False)
        except ValueError as err:
            raise ConfigError(f"pod CIDR {cidr!r} is not a CIDR: {err}") from err
        found.setdefault(network.version, str(network))
    return found


def fill_pod_cidrs(template: str, pod_cidrs: list[str]) -> dict[str, Any]:
    """The node's conflist: the template's placeholders replaced by the node's pod CIDRs.

    Refuses (ConfigError) when the template asks for a family the node has no pod CIDR of, rather than write a
    config whose IPAM cannot work."""
    try:
        conflist = json.loads(template)
    except json.JSONDecodeError as err:
        raise ConfigError(f"the conflist is not JSON: {err}") from err
    families = pod_cidrs_by_family(pod_cidrs)
    wanted = {PLACEHOLDER_V4: 4, PLACEHOLDER_V6: 6}

    def fill(node: Any) -> Any:
        if isinstance(node, dict):
            return {key: fill(value) for key, value in node.items()}
        if isinstance(node, list):
            return [fill(item) for item in node]
        if isinstance(node, str) and node in wanted:
            family = wanted[node]
            if family not in families:
                raise ConfigError(
                    f"the conflist needs an IPv{family} pod CIDR but the node has {pod_cidrs or 'none'}: "
                    "kube-controller-manager must allocate node CIDRs of every family in the ClusterNetwork's podCIDRs"
                )
            return families[family]
        return node

    filled: dict[str, Any] = fill(conflist)
    validate_conflist(filled)
    return filled


def validate_conflist(conflist: Any) -> None:
    """The checks a runtime makes before it runs a chain (CNI spec 1.0 network configuration list)."""
    if not isinstance(conflist, dict):
        raise ConfigError("a conflist must be a JSON object")
    for key in ("cniVersion", "name"):
        if not isinstance(conflist.get(key), str) or not conflist[key]:
            raise ConfigError(f"the conflist needs a string {key!r}")
    plugins = conflist.get("plugins")
    if not isinstance(plugins, list) or not plugins:
        raise ConfigError("the conflist needs a non-empty 'plugins' list")
    for index, plugin in enumerate(plugins):
        if not isinstance(plugin, dict) or not isinstance(plugin.get("type"), str) or not plugin["type"]:
            raise ConfigError(f"plugins[{index}] needs a string 'type'")
        if "/" in plugin["type"]:
            raise ConfigError(f"plugins[{index}].type {plugin['type']!r} must be a binary name, not a path")


def encode(conflist: dict[str, Any]) -> bytes:
    """The bytes the agent writes: stable, so equal configs have equal checksums on every node."""
    return (json.dumps(conflist, indent=2, sort_keys=False) + "\n").encode()


def load_config(path: Path) -> dict[str, Any]:
    """A config file as a conflist; a single-plugin `.conf` (pre-1.0 spec) is wrapped as runtimes do."""
    try:
        data = json.loads(path.read_bytes())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise ConfigError(f"{path.name}: cannot be read as JSON: {err}") from err
    if isinstance(data, dict) and "plugins" not in data and "type" in data:
        single = {key: value for key, value in data.items() if key not in ("cniVersion", "name")}
        data = {"cniVersion": data.get("cniVersion", ""), "name": data.get("name", ""), "plugins": [single]}
    validate_conflist(data)
    return data  # type: ignore[no-any-return]


@dataclass(frozen=True)
class ParsedConfig:
    """What the inventory reports about a config file."""

    file: str
    sha256: str
    name: str = ""
    cni_version: str = ""
    plugins: list[str] = field(default_factory=list)
    error: str = ""
