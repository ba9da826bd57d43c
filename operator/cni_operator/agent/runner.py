"""One node's agent: a level-based pass (install, quarantine, inventory, datapath check, report) run on every
change of its Node and on a timer. The API server is behind the `Cluster` protocol (agent/kube.py implements it),
so one process can run the agents of many sandbox nodes, each with its own settings and temporary roots.

Modes, from the node's `cni-operator.dev/revision` label:
- the label names a revision with a conflist ConfigMap (an agent-managed plugin), or is absent (new nodes take the
  agent's own revision): install that config, quarantine every other config, check, report.
- the label names another revision without one (the node moved to another plugin, e.g. a rollback of a swap):
  hand the node back: quarantine our config, restore what we quarantined, delete the report so the operator's
  gate no longer waits for an agent on this node.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from cni_operator.agent.conflist import (
    ConfigError,
    config_files,
    encode,
    fill_pod_cidrs,
    is_config_name,
    load_config,
)
from cni_operator.agent.datapath import DEFAULT_PREFIX, DatapathResult, now_rfc3339, run_check
from cni_operator.agent.files import atomic_write, remove_stale_tmp, sha256_bytes, sha256_file
from cni_operator.agent.inventory import Inventory, VersionCache, take_inventory
from cni_operator.agent.quarantine import Quarantine, files_to_quarantine
from cni_operator.api.vocabulary import NODE_REVISION

log = logging.getLogger("cni_operator.agent")
REVISION_LABEL = NODE_REVISION
CONFIGMAP_PREFIX = "cni-operator-conflist-"


@dataclass(frozen=True)
class AgentSettings:
    """Everything node-specific is a setting, so tests run agents against temporary roots."""

    node_name: str
    conf_dir: Path
    bin_dir: Path
    state_dir: Path
    revision: str = ""  # the agent's own revision: used while the node carries no revision label
    interval: float = 10.0  # local re-scan (hand edits, removed files) even without a Node change
    check_interval: float = 600.0  # re-run a passing datapath check this often
    retry_interval: float = 60.0  # re-run a failing one this often
    report_interval: float = 300.0  # rewrite an unchanged report this often (lastReportTime as a heartbeat)
    drift_retention: float = 3600.0  # how long a repaired drift stays listed
    netns_prefix: str = DEFAULT_PREFIX


@dataclass(frozen=True)
class NodeFacts:
    name: str
    uid: str
    labels: dict[str, str]
    pod_cidrs: list[str]


@dataclass(frozen=True)
class Target:
    """A revision's conflist ConfigMap: the template (with pod CIDR placeholders), its file name, extra keeps."""

    revision: str
    conflist: str
    file_name: str
    keep: list[str] = field(default_factory=list)
    # plugin types whose CNI CHECK the gate does not call (catalog `cni.skipCheck`, ConfigMap key `skipCheck`)
    skip_check: list[str] = field(default_factory=list)


class Cluster(Protocol):
    def node(self, name: str) -> NodeFacts: ...
    def target(self, revision: str) -> Target | None: ...
    def report(self, node: NodeFacts, status: dict[str, Any]) -> None: ...
    def delete_report(self, node_name: str) -> None: ...


@dataclass
class PassResult:
    mode: str  # Install, HandBack, Waiting
    status: dict[str, Any] | None
    actions: list[str]


class Agent:
    def __init__(self, settings: AgentSettings, cluster: Cluster) -> None:
        self.settings = settings
        self.cluster = cluster
        self.quarantine = Quarantine(settings.state_dir / "quarantine")
        self.versions = VersionCache()
        self.datapath: DatapathResult | None = None
        self._checked: tuple[str, str, str] | None = None  # (revision, active config, binaries) of the last check
        self._checked_at = 0.0
        self._drift_log: list[tuple[float, str]] = []
        self._last_report: tuple[float, str] | None = None

    # -- state that survives restarts ------------------------------------------------------------------------------

    @property
    def _installed_path(self) -> Path:
        return self.settings.state_dir / "installed.json"

    def _installed(self) -> dict[str, str]:
        try:
            data = json.loads(self._installed_path.read_text())
        except (OSError, json.JSONDecodeError):
            return {}
        return {str(k): str(v) for k, v in data.items()} if isinstance(data, dict) else {}

    def _record_installed(self, file_name: str, digest: str, revision: str) -> None:
        self.settings.state_dir.mkdir(parents=True, exist_ok=True)
        record = {"file": file_name, "sha256": digest, "revision": revision}
        atomic_write(self._installed_path, json.dumps(record).encode())

    # -- one pass ------------------------------------------------------------------------------------------------

    def sync(self, *, final: bool = False) -> PassResult:
        """One level-based pass; `final` (on shutdown) hands back when due but runs no datapath check."""
        s = self.settings
        node = self.cluster.node(s.node_name)
        revision = node.labels.get(REVISION_LABEL) or s.revision
        target = self.cluster.target(revision) if revision else None
        if target is None:
            if revision and revision != s.revision:
                return self._hand_back(revision)
            if not revision:
                return self._wait(node, "", f"the node has no {REVISION_LABEL} label and the agent no --revision")
            return self._wait(node, revision, f"no ConfigMap {CONFIGMAP_PREFIX}{revision} in the cluster yet")
        return self._install(node, target, run_datapath=not final)

    def _wait(self, node: NodeFacts, revision: str, why: str) -> PassResult:
        """Nothing to install yet (the operator has not applied the revision): report what is there, touch nothing."""
        inventory = take_inventory(self.settings.conf_dir, self.settings.bin_dir, self.quarantine, self.versions)
        inventory.drift.append(why)
        status = self._status(revision, inventory)
        self._report(node, status)
        return PassResult("Waiting", status, [])

    def _install(self, node: NodeFacts, target: Target, *, run_datapath: bool) -> PassResult:
        s = self.settings
        actions: list[str] = []
        s.conf_dir.mkdir(parents=True, exist_ok=True)
        for name in remove_stale_tmp(s.conf_dir):
            actions.append(f"removed {name} left by an interrupted install")
        self.quarantine.clean_staging()
        try:
            if "/" in target.file_name or not is_config_name(target.file_name):
                raise ConfigError(f"conflistName {target.file_name!r} must be a .conf/.conflist/.json file name")
            rendered = encode(fill_pod_cidrs(target.conflist, node.pod_cidrs))
        except ConfigError as err:
            inventory = take_inventory(s.conf_dir, s.bin_dir, self.quarantine, self.versions)
            inventory.drift.append(f"cannot render {target.file_name} for this node: {err}")
            self.datapath = DatapathResult(False, "InvalidConfig", str(err), target.revision)
            status = self._status(target.revision, inventory)
            self._report(node, status)
            return PassResult("Install", status, actions)
        digest = sha256_bytes(rendered)
        path = s.conf_dir / target.file_name
        on_disk = sha256_file(path) if path.is_file() else ""
        if on_disk != digest:
            installed = self._installed()
            if on_disk and installed.get("file") == target.file_name and installed.get("sha256") != on_disk:
                self._note_drift(
                    f"{target.file_name} was changed on the node (sha256 {on_disk[:12]}, installed "
                    f"{installed.get('sha256', '')[:12]}): restored the rendered config of revision {target.revision}"
                )
            atomic_write(path, rendered)
            actions.append(f"installed {target.file_name} (sha256 {digest[:12]})")
        if self._installed().get("sha256") != digest or self._installed().get("revision") != target.revision:
            self._record_installed(target.file_name, digest, target.revision)
        for entry in self.quarantine.entries():
            if entry.name == target.file_name:  # our own, put away by an earlier hand-back: rendered afresh above
                self.quarantine.drop(entry)
        keep = {target.file_name, *target.keep}
        for name in files_to_quarantine([p.name for p in config_files(s.conf_dir)], keep):
            self.quarantine.put(s.conf_dir / name, target.revision)
            actions.append(f"quarantined {name}")
        inventory = take_inventory(s.conf_dir, s.bin_dir, self.quarantine, self.versions)
        active = inventory.active
        if active is not None and active.file == target.file_name and active.sha256 != digest:
            inventory.drift.append(f"{active.file} differs from the rendered config (sha256 {active.sha256[:12]})")
        key = (target.revision, active.sha256 if active else "", json.dumps(inventory.binaries, sort_keys=True))
        if run_datapath and self._check_due(key):
            self._run_datapath(key, node, target.skip_check)
            actions.append(f"datapath check: {self.datapath.reason if self.datapath else '?'}")
        for action in actions:
            log.info("%s: %s", s.node_name, action)
        status = self._status(target.revision, inventory)
        self._report(node, status)
        return PassResult("Install", status, actions)

    def _hand_back(self, revision: str) -> PassResult:
        """The node left the agent's plugins: our config goes to quarantine, the previous plugin's come back."""
        s = self.settings
        actions: list[str] = []
        ours = self._installed().get("file", "")
        if ours and (s.conf_dir / ours).is_file():
            self.quarantine.put(s.conf_dir / ours, revision)
            actions.append(f"quarantined our {ours}")
        restored, conflicts = self.quarantine.restore_all(s.conf_dir, skip={ours})
        actions += [f"restored {name}" for name in restored]
        actions += [f"kept {name} in quarantine: the conf dir holds a newer one" for name in conflicts]
        self.cluster.delete_report(s.node_name)
        self._last_report = None
        for action in actions:
            log.info("%s: %s", s.node_name, action)
        return PassResult("HandBack", None, actions)

    # -- datapath ----------------------------------------------------------------------------------------------

    def _check_due(self, key: tuple[str, str, str]) -> bool:
        """Check again when the revision, the active config or a binary changed, or when the last result aged."""
        if self.datapath is None or self._checked != key:
            return True
        age = time.time() - self._checked_at
        return age >= (self.settings.check_interval if self.datapath.passed else self.settings.retry_interval)

    def _run_datapath(self, key: tuple[str, str, str], node: NodeFacts, skip_check: list[str]) -> None:
        self.datapath = check_active_config(
            self.settings.conf_dir,
            self.settings.bin_dir,
            node.pod_cidrs,
            self.settings.state_dir,
            revision=key[0],
            prefix=self.settings.netns_prefix,
            skip_check=skip_check,
        )
        self._checked = key
        self._checked_at = time.time()
        if self.datapath.reason == "TryAgainLater":
            self._checked = None  # the plugin asked for a retry: next pass

    # -- report ------------------------------------------------------------------------------------------------

    def _note_drift(self, message: str) -> None:
        self._drift_log.append((time.time(), f"{now_rfc3339()}: {message}"))

    def _status(self, revision: str, inventory: Inventory) -> dict[str, Any]:
        horizon = time.time() - self.settings.drift_retention
        self._drift_log = [(t, m) for t, m in self._drift_log if t >= horizon]
        status = inventory.as_status()
        status["drift"] = [m for _, m in self._drift_log] + inventory.drift
        status["revision"] = revision
        status["datapath"] = self.datapath.as_status() if self.datapath else None
        return status

    def _report(self, node: NodeFacts, status: dict[str, Any]) -> None:
        """Write the report when it changed, or as a heartbeat every report_interval."""
        fingerprint = json.dumps(status, sort_keys=True)
        now = time.time()
        if (
            self._last_report is not None
            and self._last_report[1] == fingerprint
            and now - self._last_report[0] < self.settings.report_interval
        ):
            return
        self.cluster.report(node, {**status, "lastReportTime": now_rfc3339()})
        self._last_report = (now, fingerprint)

    # -- loop --------------------------------------------------------------------------------------------------

    def run(self, stop: threading.Event, changed: threading.Event | None = None) -> None:
        """Pass after pass until `stop`; `changed` (set by a Node watch) starts the next pass early. A final pass
        on the way out hands the node back when it has left the agent's plugins (the DaemonSet pod is deleted
        then). Whoever sets `stop` sets `changed` too, so a waiting agent wakes at once."""
        while not stop.is_set():
            try:
                self.sync()
            except Exception:  # a failed pass is retried on the next one; the agent must keep running
                log.exception("%s: pass failed", self.settings.node_name)
            woke = changed.wait(self.settings.interval) if changed else stop.wait(self.settings.interval)
            if changed is not None and woke:
                changed.clear()
        try:
            self.sync(final=True)
        except Exception:
            log.exception("%s: final pass failed", self.settings.node_name)


def check_active_config(
    conf_dir: Path,
    bin_dir: Path,
    pod_cidrs: list[str],
    state_dir: Path,
    *,
    revision: str = "",
    prefix: str,
    skip_check: list[str] | None = None,
) -> DatapathResult:
    """The datapath check of whatever config the runtime uses now (the lexically first)."""
    files = config_files(conf_dir)
    if not files:
        return DatapathResult(False, "NoActiveConfig", f"{conf_dir} holds no CNI config", revision)
    try:
        conflist = load_config(files[0])
    except ConfigError as err:
        return DatapathResult(False, "InvalidConfig", str(err), revision)
    return run_check(
        conflist, bin_dir, pod_cidrs, state_dir, revision=revision, prefix=prefix, skip_check=skip_check or ()
    )
