"""What is on the node: configs (active, ignored, quarantined), plugin binaries and their CNI spec versions, and how
that differs from what the revision renders (drift)."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cni_operator.agent.cni import CniFailure, CniRuntime
from cni_operator.agent.conflist import ConfigError, ParsedConfig, config_files, load_config
from cni_operator.agent.datapath import required_binaries
from cni_operator.agent.files import sha256_file
from cni_operator.agent.quarantine import Quarantine
from cni_operator.api.nodestate import ConfigState

# Written by `install-binaries` into the bin dir: what it installed, so the agent can tell a replaced binary.
BINARY_MANIFEST = ".cni-operator-binaries.json"


@dataclass
class Inventory:
    active: ParsedConfig | None
    configs: list[dict[str, str]]
    binaries: dict[str, str]  # name -> sha256
    spec_versions: dict[str, list[str]] = field(default_factory=dict)
    drift: list[str] = field(default_factory=list)

    def as_status(self) -> dict[str, Any]:
        active = self.active
        return {
            "activeConfig": (
                {
                    "file": active.file,
                    "name": active.name,
                    "sha256": active.sha256,
                    "cniVersion": active.cni_version,
                    "plugins": active.plugins,
                }
                if active
                else None
            ),
            "configs": self.configs,
            "binaries": [{"name": name, "sha256": digest} for name, digest in sorted(self.binaries.items())],
            "specVersions": [{"name": n, "versions": v} for n, v in sorted(self.spec_versions.items())],
            "drift": self.drift,
        }


def parse_config(path: Path) -> ParsedConfig:
    digest = sha256_file(path)
    try:
        conflist = load_config(path)
    except ConfigError as err:
        return ParsedConfig(path.name, digest, error=str(err))
    return ParsedConfig(
        path.name,
        digest,
        name=str(conflist["name"]),
        cni_version=str(conflist["cniVersion"]),
        plugins=[str(p["type"]) for p in conflist["plugins"]],
    )


def binaries(bin_dir: Path) -> dict[str, str]:
    if not bin_dir.is_dir():
        return {}
    return {
        p.name: sha256_file(p)
        for p in sorted(bin_dir.iterdir())
        if p.is_file() and not p.name.startswith(".") and os.access(p, os.X_OK)
    }


def read_binary_manifest(bin_dir: Path) -> dict[str, str]:
    try:
        data = json.loads((bin_dir / BINARY_MANIFEST).read_text())
    except (OSError, json.JSONDecodeError):
        return {}
    return {str(k): str(v) for k, v in data.items()} if isinstance(data, dict) else {}


class VersionCache:
    """VERSION answers per binary content: a binary is executed again only when it changes."""

    def __init__(self) -> None:
        self._by_sha: dict[str, list[str]] = {}

    def versions(self, runtime: CniRuntime, name: str, digest: str) -> list[str]:
        if digest not in self._by_sha:
            try:
                self._by_sha[digest] = runtime.version(name)
            except CniFailure:
                self._by_sha[digest] = []
        return self._by_sha[digest]


def take_inventory(conf_dir: Path, bin_dir: Path, quarantine: Quarantine, versions: VersionCache) -> Inventory:
    files = [parse_config(p) for p in config_files(conf_dir)]
    configs = [
        {"file": c.file, "sha256": c.sha256, "state": (ConfigState.ACTIVE if i == 0 else ConfigState.IGNORED).value}
        for i, c in enumerate(files)
    ]
    configs += [
        {"file": e.name, "sha256": e.sha256, "state": ConfigState.QUARANTINED.value} for e in quarantine.entries()
    ]
    found = binaries(bin_dir)
    active = files[0] if files else None
    inventory = Inventory(active=active, configs=configs, binaries=found)
    drift = inventory.drift
    if active is not None and active.error:
        drift.append(f"the active config {active.file} is invalid ({active.error}): runtimes fail every pod network")
    if active is not None and not active.error:
        runtime = CniRuntime([bin_dir])
        chain = load_config(conf_dir / active.file)
        for name in required_binaries(chain):
            if name in found:
                inventory.spec_versions[name] = versions.versions(runtime, name, found[name])
                if chain["cniVersion"] not in inventory.spec_versions[name]:
                    drift.append(f"{name} does not support cniVersion {chain['cniVersion']} of {active.file}")
            else:
                drift.append(f"the active config {active.file} needs plugin binary {name}, missing from {bin_dir}")
    for name, digest in sorted(read_binary_manifest(bin_dir).items()):
        if name not in found:
            drift.append(f"binary {name} was installed but is gone from {bin_dir}")
        elif found[name] != digest:
            drift.append(f"binary {name} changed since install (sha256 {found[name][:12]}, installed {digest[:12]})")
    return inventory
