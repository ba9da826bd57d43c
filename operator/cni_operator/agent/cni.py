"""A small CNI runtime: runs a conflist's plugin chain as containerd and CRI-O do (libcni semantics, CNI spec 1.0).

Per call: the verb and container in environment variables (CNI_COMMAND, CNI_CONTAINERID, CNI_NETNS, CNI_IFNAME,
CNI_ARGS, CNI_PATH), the plugin's config on stdin with the list's `name` and `cniVersion` injected, `prevResult`
chained from the plugin before (ADD), the cached ADD result for CHECK and DEL, DEL in reverse order, and CHECK
skipped below spec 0.4.0 or with `disableCheck`. A plugin's error object {code, msg, details} becomes a PluginError
whose reason names the spec's error code. Parsing and error mapping are pure; only `CniRuntime.exec` runs things.
"""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Collection, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

# CNI SPEC.md "Error" table; 8 is libcni's ErrInvalidNetNS; 100+ are plugin-specific; 999 is libcni's internal.
ERROR_CODES = {
    1: "IncompatibleCNIVersion",
    2: "UnsupportedField",
    3: "UnknownContainer",
    4: "InvalidEnvironmentVariables",
    5: "IOFailure",
    6: "DecodeFailure",
    7: "InvalidNetworkConfig",
    8: "InvalidNetNS",
    11: "TryAgainLater",
    50: "PluginNotAvailable",
    51: "PluginNotAvailableLimitedConnectivity",
    999: "InternalError",
}


def error_name(code: int) -> str:
    if code in ERROR_CODES:
        return ERROR_CODES[code]
    return "PluginSpecificError" if code >= 100 else f"ReservedErrorCode{code}"


def version_tuple(version: str) -> tuple[int, ...]:
    try:
        return tuple(int(part) for part in version.split("."))
    except ValueError:
        return (0,)


class CniFailure(Exception):
    """A chain step failed; `reason` is CamelCase for status, the message says which plugin and what to do."""

    reason = "PluginFailed"


class PluginNotFound(CniFailure):
    reason = "PluginNotFound"


class PluginError(CniFailure):
    """The plugin answered with a CNI error object."""

    reason = "PluginError"

    def __init__(self, plugin: str, command: str, code: int, msg: str, details: str = "") -> None:
        self.plugin, self.command, self.code, self.msg, self.details = plugin, command, code, msg, details
        if code == 11:
            self.reason = "TryAgainLater"  # transient by the spec's own word: the agent retries on its next pass
        detail = f" ({details})" if details else ""
        super().__init__(f"{plugin} {command} failed with CNI error {code} {error_name(code)}: {msg}{detail}")


class PluginCrashed(CniFailure):
    """Non-zero exit without an error object (a panic, a signal): the plugin itself is broken."""

    reason = "PluginCrashed"


class BadResult(CniFailure):
    reason = "InvalidResult"


# -- results (spec 0.3.0 and later; 0.1.0/0.2.0 ip4/ip6 are converted) ----------------------------------------------


class _Lenient(BaseModel):
    model_config = ConfigDict(extra="allow", populate_by_name=True)


class Interface(_Lenient):
    name: str
    mac: str = ""
    sandbox: str = ""


class IPConfig(_Lenient):
    address: str
    gateway: str = ""
    interface: int | None = None


class Route(_Lenient):
    dst: str
    gw: str = ""


class CniResult(_Lenient):
    cni_version: str = Field("", alias="cniVersion")
    interfaces: list[Interface] = Field(default_factory=list)
    ips: list[IPConfig] = Field(default_factory=list)
    routes: list[Route] = Field(default_factory=list)
    dns: dict[str, Any] = Field(default_factory=dict)

    def container_addresses(self) -> list[str]:
        """Addresses (CIDR notation) on interfaces inside a sandbox, or every address when none says where."""
        inside = {i for i, iface in enumerate(self.interfaces) if iface.sandbox}
        return [ip.address for ip in self.ips if not inside or ip.interface in inside or ip.interface is None]


def parse_result(raw: dict[str, Any]) -> CniResult:
    """A plugin's ADD result as the spec defines it; 0.1.0/0.2.0 `ip4`/`ip6` become `ips`."""
    data = dict(raw)
    if "ips" not in data and ("ip4" in data or "ip6" in data):
        data["ips"] = [
            {"address": data[key]["ip"], "gateway": data[key].get("gateway", "")}
            for key in ("ip4", "ip6")
            if isinstance(data.get(key), dict) and "ip" in data[key]
        ]
    try:
        return CniResult.model_validate(data)
    except ValidationError as err:
        raise BadResult(f"the result does not follow the CNI spec: {err}") from err


def parse_error(stdout: bytes) -> tuple[int, str, str] | None:
    """(code, msg, details) from a plugin's error object on stdout, or None when stdout holds none."""
    try:
        data = json.loads(stdout)
    except (json.JSONDecodeError, UnicodeDecodeError):
        return None
    if not isinstance(data, dict) or not isinstance(data.get("code"), int):
        return None
    return data["code"], str(data.get("msg", "")), str(data.get("details", ""))


# -- running plugins ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class RuntimeConf:
    """One attachment: the container, its network namespace and interface, CNI_ARGS and capability arguments."""

    container_id: str
    netns: str
    ifname: str = "eth0"
    args: dict[str, str] = field(default_factory=dict)
    capability_args: dict[str, Any] = field(default_factory=dict)


def plugin_config(
    conflist: dict[str, Any], plugin: dict[str, Any], rt: RuntimeConf, prev_result: dict[str, Any] | None
) -> dict[str, Any]:
    """The stdin of one plugin call (libcni buildOneConfig): name, cniVersion, prevResult and runtimeConfig."""
    conf = dict(plugin)
    conf["name"] = conflist["name"]
    conf["cniVersion"] = conflist["cniVersion"]
    if prev_result is not None:
        conf["prevResult"] = prev_result
    capabilities = plugin.get("capabilities") or {}
    runtime_config = {key: value for key, value in rt.capability_args.items() if capabilities.get(key)}
    if runtime_config:
        conf["runtimeConfig"] = runtime_config
    return conf


def cni_args(args: dict[str, str]) -> str:
    return ";".join(f"{key}={value}" for key, value in args.items())


class CniRuntime:
    """Executes plugins from `bin_dirs` (CNI_PATH), optionally through a prefix such as `ip netns exec NODE`."""

    def __init__(self, bin_dirs: Sequence[Path], exec_prefix: Sequence[str] = (), timeout: float = 60.0) -> None:
        self.bin_dirs = list(bin_dirs)
        self.exec_prefix = list(exec_prefix)
        self.timeout = timeout

    def find(self, plugin_type: str) -> Path:
        for directory in self.bin_dirs:
            candidate = directory / plugin_type
            if candidate.is_file() and os.access(candidate, os.X_OK):
                return candidate
        raise PluginNotFound(
            f'failed to find plugin "{plugin_type}" in path {[str(d) for d in self.bin_dirs]}: install it '
            "(cni-operator agent install-binaries) or fix the config's plugin type"
        )

    def exec(
        self, command: str, plugin_type: str, stdin: dict[str, Any] | None, rt: RuntimeConf | None
    ) -> dict[str, Any] | None:
        """One plugin call; the parsed JSON stdout on success (None when empty), CniFailure otherwise."""
        binary = self.find(plugin_type)
        env = {
            "PATH": os.environ.get("PATH", "/usr/sbin:/usr/bin:/sbin:/bin"),
            "CNI_COMMAND": command,
            "CNI_PATH": os.pathsep.join(str(d) for d in self.bin_dirs),
        }
        if rt is not None:
            env.update({"CNI_CONTAINERID": rt.container_id, "CNI_IFNAME": rt.ifname, "CNI_ARGS": cni_args(rt.args)})
            if rt.netns:
                env["CNI_NETNS"] = rt.netns
        try:
            proc = subprocess.run(
                [*self.exec_prefix, str(binary)],
                input=json.dumps(stdin if stdin is not None else {}).encode(),
                env=env,
                capture_output=True,
                timeout=self.timeout,
                check=False,
            )
        except subprocess.TimeoutExpired as err:
            raise PluginCrashed(f"{plugin_type} {command} did not finish within {self.timeout:.0f}s") from err
        if proc.returncode != 0:
            parsed = parse_error(proc.stdout)
            if parsed is not None:
                raise PluginError(plugin_type, command, *parsed)
            output = (proc.stderr or proc.stdout).decode(errors="replace").strip().splitlines()
            first = output[0] if output else "no output"
            raise PluginCrashed(
                f"{plugin_type} {command} exited with status {proc.returncode} without a CNI error object: {first}"
            )
        if not proc.stdout.strip():
            return None
        try:
            result = json.loads(proc.stdout)
        except json.JSONDecodeError as err:
            raise BadResult(f"{plugin_type} {command} printed no JSON result: {err}") from err
        if not isinstance(result, dict):
            raise BadResult(f"{plugin_type} {command} printed {type(result).__name__}, not a JSON object")
        return result

    def version(self, plugin_type: str) -> list[str]:
        """The spec versions a binary supports (VERSION verb; no container)."""
        result = self.exec("VERSION", plugin_type, {"cniVersion": "0.4.0"}, None) or {}
        versions = result.get("supportedVersions", [])
        return [str(v) for v in versions] if isinstance(versions, list) else []

    def add(self, conflist: dict[str, Any], rt: RuntimeConf) -> dict[str, Any]:
        """ADD the whole chain; returns the final result (what a runtime caches for CHECK and DEL)."""
        prev: dict[str, Any] | None = None
        for plugin in conflist["plugins"]:
            result = self.exec("ADD", plugin["type"], plugin_config(conflist, plugin, rt, prev), rt)
            if result is None:
                raise BadResult(f"{plugin['type']} ADD returned no result")
            prev = result
        assert prev is not None  # a validated conflist has plugins
        parse_result(prev)
        return prev

    def check(
        self, conflist: dict[str, Any], rt: RuntimeConf, cached: dict[str, Any], skip: Collection[str] = ()
    ) -> bool:
        """CHECK the chain against the cached ADD result; False when the config does not support CHECK. Plugins
        whose type is in `skip` are not called (the catalog's `skipCheck`: their CHECK is known broken upstream)."""
        if conflist.get("disableCheck") or version_tuple(conflist["cniVersion"]) < (0, 4, 0):
            return False
        for plugin in conflist["plugins"]:
            if plugin["type"] in skip:
                continue
            self.exec("CHECK", plugin["type"], plugin_config(conflist, plugin, rt, cached), rt)
        return True

    def delete(self, conflist: dict[str, Any], rt: RuntimeConf, cached: dict[str, Any] | None) -> list[CniFailure]:
        """DEL the chain in reverse order. Every plugin is called even when one fails, so as much as possible is
        released; the failures are returned, not raised, because DEL runs in clean-up paths."""
        failures: list[CniFailure] = []
        with_prev = version_tuple(conflist["cniVersion"]) >= (0, 4, 0)
        for plugin in reversed(conflist["plugins"]):
            try:
                self.exec("DEL", plugin["type"], plugin_config(conflist, plugin, rt, cached if with_prev else None), rt)
            except CniFailure as err:
                failures.append(err)
        return failures
