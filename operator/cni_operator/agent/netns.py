"""Network namespaces through iproute2 (`ip netns`), as runtimes and the CNI plugins' own tests make them."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

NETNS_DIR = Path("/var/run/netns")
PREREQUISITES = {
    "ip": "iproute2 (Debian: apt-get install -y iproute2)",
    "ping": "iputils-ping (Debian: apt-get install -y iputils-ping)",
}


class NetnsError(RuntimeError):
    pass


def missing_prerequisites() -> list[str]:
    """What the datapath check needs on PATH and lacks, each with how to get it."""
    return [f"{tool}: {how}" for tool, how in PREREQUISITES.items() if shutil.which(tool) is None]


def _ip(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["ip", *args], capture_output=True, text=True, timeout=30, check=False)


def add(name: str) -> Path:
    proc = _ip("netns", "add", name)
    if proc.returncode != 0:
        raise NetnsError(f"ip netns add {name}: {proc.stderr.strip()} (needs root or CAP_SYS_ADMIN)")
    return path(name)


def delete(name: str) -> None:
    """Delete a namespace; its interfaces (veth ends, bridges) go with it. Missing is fine (idempotent clean-up)."""
    if name not in list_names():
        return
    proc = _ip("netns", "del", name)
    if proc.returncode != 0:
        raise NetnsError(f"ip netns del {name}: {proc.stderr.strip()}")


def list_names(prefix: str = "") -> list[str]:
    proc = _ip("netns", "list")
    names = [line.split()[0] for line in proc.stdout.splitlines() if line.strip()]
    return sorted(n for n in names if n.startswith(prefix))


def path(name: str) -> Path:
    return NETNS_DIR / name


def exec_prefix(name: str) -> list[str]:
    return ["ip", "netns", "exec", name]


def run_in(name: str, *command: str, timeout: float = 30) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*exec_prefix(name), *command], capture_output=True, text=True, timeout=timeout, check=False)


def link_up(name: str, ifname: str) -> None:
    proc = run_in(name, "ip", "link", "set", ifname, "up")
    if proc.returncode != 0:
        raise NetnsError(f"{name}: ip link set {ifname} up: {proc.stderr.strip()}")


def ping(name: str, address: str, attempts: int = 3) -> tuple[bool, str]:
    """One echo from namespace `name` to `address`, retried briefly (the first may wait for neighbour discovery)."""
    output = ""
    for _ in range(attempts):
        proc = run_in(name, "ping", "-c1", "-W1", address, timeout=10)
        if proc.returncode == 0:
            return True, ""
        output = (proc.stdout + proc.stderr).strip()
    return False, output.splitlines()[-1] if output else "no output"
