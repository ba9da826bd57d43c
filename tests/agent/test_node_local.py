"""The agent on one node without the API server: atomic installs, quarantine, the CNI runtime and the datapath
check, with Debian's real plugins in real network namespaces."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys

import pytest
from tests.agent.conftest import BINARIES, PREFIX, SYSTEM_CNI, Roots, bridge_conflist

from cni_operator.agent import cni
from cni_operator.agent.conflist import ConfigError, config_files, encode, fill_pod_cidrs
from cni_operator.agent.datapath import run_check
from cni_operator.agent.files import FAULT_ENV, FAULT_KILL_BEFORE_RENAME, atomic_write, remove_stale_tmp, sha256_file
from cni_operator.agent.inventory import BINARY_MANIFEST
from cni_operator.agent.quarantine import Quarantine, files_to_quarantine
from cni_operator.agent.runner import check_active_config

CLI = [sys.executable, "-m", "cni_operator.cli"]
POD_CIDR = "10.244.1.0/24"


# -- pure pieces -----------------------------------------------------------------------------------------------


def test_placeholders_are_filled_per_family_and_a_missing_family_is_refused() -> None:
    template = json.dumps(
        {
            "cniVersion": "1.0.0",
            "name": "n",
            "plugins": [{"type": "bridge", "ipam": {"ranges": [[{"subnet": "__NODE_POD_CIDR_V4__"}]]}}],
        }
    )
    filled = fill_pod_cidrs(template, ["fd00:10:244:1::/64", "10.244.7.0/24"])
    assert filled["plugins"][0]["ipam"]["ranges"] == [[{"subnet": "10.244.7.0/24"}]]
    with pytest.raises(ConfigError, match="needs an IPv4 pod CIDR"):
        fill_pod_cidrs(template, ["fd00:10:244:1::/64"])
    dual = template.replace("]]}}", '], [{"subnet": "__NODE_POD_CIDR_V6__"}]]}}')
    with pytest.raises(ConfigError, match="needs an IPv6 pod CIDR"):
        fill_pod_cidrs(dual, ["10.244.7.0/24"])


def test_plugin_stdin_injects_name_version_prev_result_and_declared_capabilities_only() -> None:
    conflist = {"cniVersion": "1.0.0", "name": "net", "plugins": [{"type": "portmap", "capabilities": {"a": True}}]}
    rt = cni.RuntimeConf("c1", "/var/run/netns/x", capability_args={"a": [1], "b": [2]})
    conf = cni.plugin_config(conflist, conflist["plugins"][0], rt, {"ips": []})
    assert conf == {
        "type": "portmap",
        "capabilities": {"a": True},
        "name": "net",
        "cniVersion": "1.0.0",
        "prevResult": {"ips": []},
        "runtimeConfig": {"a": [1]},
    }
    assert "prevResult" not in cni.plugin_config(conflist, conflist["plugins"][0], rt, None)


def test_error_objects_and_codes_are_mapped() -> None:
    assert cni.parse_error(b'{"code": 7, "msg": "bad", "details": "x"}') == (7, "bad", "x")
    assert cni.parse_error(b"panic: boom") is None
    assert [cni.error_name(c) for c in (1, 3, 7, 11, 50, 120, 999)] == [
        "IncompatibleCNIVersion",
        "UnknownContainer",
        "InvalidNetworkConfig",
        "TryAgainLater",
        "PluginNotAvailable",
        "PluginSpecificError",
        "InternalError",
    ]
    assert cni.PluginError("p", "ADD", 11, "busy").reason == "TryAgainLater"
    assert cni.PluginError("p", "ADD", 7, "bad").reason == "PluginError"
    old = cni.parse_result({"cniVersion": "0.2.0", "ip4": {"ip": "10.1.0.5/24", "gateway": "10.1.0.1"}})
    assert old.container_addresses() == ["10.1.0.5/24"]


# -- real plugins ----------------------------------------------------------------------------------------------


def test_runtime_speaks_to_real_plugins_version_and_error_objects(roots: Roots) -> None:
    runtime = cni.CniRuntime([roots.bin_dir])
    assert "1.0.0" in runtime.version("bridge")
    # Rejected by the plugin's skel before it touches any interface: safe to run in the host namespace.
    future = {"cniVersion": "9.9.9", "name": "x", "plugins": [{"type": "bridge", "ipam": {"type": "host-local"}}]}
    rt = cni.RuntimeConf(f"{PREFIX}no-netns", f"/var/run/netns/{PREFIX}does-not-exist")
    with pytest.raises(cni.PluginError) as raised:
        runtime.add(future, rt)
    assert (raised.value.code, raised.value.plugin) == (1, "bridge")
    assert "IncompatibleCNIVersion" in str(raised.value) and "9.9.9" in str(raised.value)
    with pytest.raises(cni.PluginNotFound, match='"nosuch"'):
        runtime.version("nosuch")


def test_install_binaries_cli_is_atomic_verified_and_idempotent(roots: Roots) -> None:
    target = roots.root / "fresh-bin"
    args = [*CLI, "agent", "install-binaries", "--from", str(SYSTEM_CNI), "--to", str(target)]
    first = subprocess.run([*args, "--binaries", ",".join(BINARIES)], capture_output=True, text=True, check=True)
    assert first.stdout.count(": installed sha256:") == len(BINARIES)
    for name in BINARIES:
        assert sha256_file(target / name) == sha256_file(SYSTEM_CNI / name)
        assert (target / name).stat().st_mode & 0o777 == 0o755
    manifest = json.loads((target / BINARY_MANIFEST).read_text())
    assert manifest == {name: sha256_file(SYSTEM_CNI / name) for name in BINARIES}
    again = subprocess.run([*args, "--binaries", ",".join(BINARIES)], capture_output=True, text=True, check=True)
    assert again.stdout.count(": unchanged sha256:") == len(BINARIES)
    assert sorted(p.name for p in target.iterdir()) == sorted([*BINARIES, BINARY_MANIFEST])  # no temporary left
    missing = subprocess.run([*args, "--binaries", "bridge,nosuch"], capture_output=True, text=True, check=False)
    assert missing.returncode == 1 and "nosuch" in missing.stderr


def test_crash_between_write_and_rename_leaves_the_previous_config_in_force(roots: Roots) -> None:
    target = roots.conf_dir / "10-cni-operator-bridge.conflist"
    good = encode(fill_pod_cidrs(json.dumps(bridge_conflist()), [POD_CIDR]))
    atomic_write(target, good)
    broken = encode(bridge_conflist("10.99.0.0/24"))
    code = (
        "import sys; from pathlib import Path; from cni_operator.agent.files import atomic_write; "
        "atomic_write(Path(sys.argv[1]), Path(sys.argv[2]).read_bytes())"
    )
    new_file = roots.root / "new.conflist"
    new_file.write_bytes(broken)
    crashed = subprocess.run(
        [sys.executable, "-c", code, str(target), str(new_file)],
        env={**os.environ, FAULT_ENV: FAULT_KILL_BEFORE_RENAME},
        check=False,
    )
    assert crashed.returncode == -signal.SIGKILL
    leftovers = [p for p in roots.conf_dir.iterdir() if p != target]
    assert len(leftovers) == 1 and leftovers[0].read_bytes() == broken, "the new content was written, not renamed"
    assert target.read_bytes() == good
    assert config_files(roots.conf_dir) == [target], "a runtime would load only the previous config"
    result = check_active_config(roots.conf_dir, roots.bin_dir, [POD_CIDR], roots.state_dir, prefix=PREFIX)
    assert result.passed, result.message
    assert remove_stale_tmp(roots.conf_dir) == [leftovers[0].name]
    assert list(roots.conf_dir.iterdir()) == [target]


def test_bridge_host_local_chain_passes_with_two_namespaces_pinging_each_other(roots: Roots) -> None:
    conflist = fill_pod_cidrs(json.dumps(bridge_conflist()), [POD_CIDR])
    result = run_check(conflist, roots.bin_dir, [POD_CIDR], roots.state_dir, revision="r1", prefix=PREFIX)
    assert result.passed, result.message
    assert result.reason == "Passed" and result.revision == "r1"
    assert len(result.addresses) == 2 and all(a.startswith("10.244.1.") for a in result.addresses)
    assert list(roots.state_dir.iterdir()) == [], "the check's lease dir is removed"


@pytest.mark.parametrize(
    ("break_it", "reason", "words"),
    [
        ("wrong-subnet", "AddressOutsidePodCIDR", ["10.99.0.", "outside the node's pod CIDRs 10.244.1.0/24"]),
        ("invalid-subnet", "PluginError", ["bridge ADD failed with CNI error", "10.244.1.0/33"]),
        ("missing-binary", "PluginNotFound", ['failed to find plugin "portmap"', "install-binaries"]),
        ("missing-ipam", "PluginNotFound", ['"host-local"']),
    ],
)
def test_a_broken_config_fails_with_a_clear_reason(roots: Roots, break_it: str, reason: str, words: list[str]) -> None:
    subnet = {"wrong-subnet": "10.99.0.0/24", "invalid-subnet": "10.244.1.0/33"}.get(break_it, POD_CIDR)
    conflist = bridge_conflist(subnet)
    if break_it == "missing-binary":
        (roots.bin_dir / "portmap").unlink()
    if break_it == "missing-ipam":
        (roots.bin_dir / "host-local").unlink()
    result = run_check(conflist, roots.bin_dir, [POD_CIDR], roots.state_dir, prefix=PREFIX)
    assert not result.passed
    assert result.reason == reason, result.message
    for word in words:
        assert word in result.message


def test_debian_bandwidth_panics_on_check_and_the_check_says_so(roots: Roots) -> None:
    """The reference chain as rendered (bridge, portmap, bandwidth) on Debian's 1.1.1 plugins: bandwidth CHECK
    without limits dereferences nil (containernetworking/plugins#1221); the gate must catch it, and does."""
    conflist = bridge_conflist(POD_CIDR)
    conflist["plugins"].append({"type": "bandwidth", "capabilities": {"bandwidth": True}})
    result = run_check(conflist, roots.bin_dir, [POD_CIDR], roots.state_dir, prefix=PREFIX)
    assert (result.passed, result.reason) == (False, "CheckFailed")
    assert "bandwidth CHECK exited with status 2" in result.message and "nil pointer" in result.message
    # the catalog's per-release skipCheck: only bandwidth's CHECK is left out, the rest of the chain is checked
    skipped = run_check(conflist, roots.bin_dir, [POD_CIDR], roots.state_dir, prefix=PREFIX, skip_check=["bandwidth"])
    assert skipped.passed, skipped.message
    assert "CHECK not called for bandwidth" in skipped.message
    conflist["disableCheck"] = True  # the spec's opt-out: the runtime then skips CHECK, and so does the agent
    assert run_check(conflist, roots.bin_dir, [POD_CIDR], roots.state_dir, prefix=PREFIX).passed


def test_check_cli_prints_the_result_and_exits_1_on_failure(roots: Roots) -> None:
    atomic_write(roots.conf_dir / "10-test.conflist", encode(bridge_conflist(POD_CIDR)))
    base = [*CLI, "agent", "check", "--conf-dir", str(roots.conf_dir), "--bin-dir", str(roots.bin_dir)]
    base += ["--state-dir", str(roots.state_dir), "--netns-prefix", PREFIX]
    ok = subprocess.run([*base, "--pod-cidr", POD_CIDR], capture_output=True, text=True, check=False)
    assert ok.returncode == 0, ok.stderr
    assert json.loads(ok.stdout)["passed"] is True
    wrong = subprocess.run([*base, "--pod-cidr", "10.244.2.0/24"], capture_output=True, text=True, check=False)
    assert wrong.returncode == 1
    assert json.loads(wrong.stdout)["reason"] == "AddressOutsidePodCIDR"


def test_quarantine_and_restore_round_trip(roots: Roots) -> None:
    foreign = {"00-multus.conf": b'{"cniVersion":"0.3.1","name":"m","type":"multus-shim"}\n'}
    foreign["10-calico.conflist"] = b'{"cniVersion":"1.0.0","name":"k8s-pod-network","plugins":[{"type":"calico"}]}'
    for name, data in foreign.items():
        (roots.conf_dir / name).write_bytes(data)
    (roots.conf_dir / "multus.d").mkdir()
    (roots.conf_dir / "README").write_text("not a config")
    ours = "10-cni-operator-bridge.conflist"
    atomic_write(roots.conf_dir / ours, encode(bridge_conflist(POD_CIDR)))
    quarantine = Quarantine(roots.state_dir / "quarantine")
    names = [p.name for p in config_files(roots.conf_dir)]
    assert files_to_quarantine(names, {ours}) == ["00-multus.conf", "10-calico.conflist"]
    for name in files_to_quarantine(names, {ours}):
        quarantine.put(roots.conf_dir / name, "r1")
    assert config_files(roots.conf_dir) == [roots.conf_dir / ours]
    assert {p.name for p in roots.conf_dir.iterdir()} == {ours, "multus.d", "README"}
    assert {(e.name, e.revision) for e in quarantine.entries()} == {
        ("00-multus.conf", "r1"),
        ("10-calico.conflist", "r1"),
    }
    (roots.conf_dir / "10-calico.conflist").write_bytes(foreign["10-calico.conflist"])
    quarantine.put(roots.conf_dir / "10-calico.conflist", "r1")  # the same content again: stored once
    assert len(quarantine.entries()) == 2
    restored, conflicts = quarantine.restore_all(roots.conf_dir)
    assert (restored, conflicts) == (["00-multus.conf", "10-calico.conflist"], [])
    for name, data in foreign.items():
        assert (roots.conf_dir / name).read_bytes() == data
    assert quarantine.entries() == []


def test_restore_never_overwrites_a_config_the_plugin_rewrote(roots: Roots) -> None:
    (roots.conf_dir / "10-flannel.conflist").write_text('{"old": true}')
    quarantine = Quarantine(roots.state_dir / "quarantine")
    quarantine.put(roots.conf_dir / "10-flannel.conflist", "r1")
    (roots.conf_dir / "10-flannel.conflist").write_text('{"new": true}')
    restore = [*CLI, "agent", "restore", "--conf-dir", str(roots.conf_dir), "--state-dir", str(roots.state_dir)]
    result = subprocess.run(restore, capture_output=True, text=True, check=False)
    assert result.returncode == 1 and "kept 10-flannel.conflist in quarantine" in result.stderr
    assert (roots.conf_dir / "10-flannel.conflist").read_text() == '{"new": true}'
    (roots.conf_dir / "10-flannel.conflist").unlink()
    result = subprocess.run([*restore, "10-flannel.conflist"], capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stderr
    assert (roots.conf_dir / "10-flannel.conflist").read_text() == '{"old": true}'
