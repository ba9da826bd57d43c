"""Fixtures for the node agent's tests: Debian's real CNI plugins run in real network namespaces.

Every namespace, interface and file a test makes is removed afterwards, also when the test fails; a test that left
any `cnio-test-*` namespace or link behind fails in teardown (after the clean-up), so a leak cannot go unnoticed.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from cni_operator.agent import netns
from cni_operator.agent.files import install_binaries
from cni_operator.agent.inventory import BINARY_MANIFEST

PREFIX = "cnio-test-"
SYSTEM_CNI = Path("/usr/lib/cni")
BINARIES = ["bridge", "host-local", "loopback", "portmap", "bandwidth", "tuning"]


def _links(prefix: str = "") -> list[str]:
    """Links of the host's (the test process's) network namespace."""
    out = subprocess.run(["ip", "-o", "link", "show"], capture_output=True, text=True, check=False).stdout
    names = [line.split(":")[1].strip().split("@")[0] for line in out.splitlines() if ":" in line]
    return [n for n in names if n.startswith(prefix)]


@pytest.fixture(scope="session")
def cni_prerequisites() -> None:
    """Root, iproute2, ping and Debian's containernetworking-plugins: fail (never skip) with how to get them."""
    problems = []
    if os.geteuid() != 0:
        problems.append("the agent tests create network namespaces: run them as root")
    problems += netns.missing_prerequisites()
    missing = [b for b in BINARIES if not (SYSTEM_CNI / b).is_file()]
    if missing:
        problems.append(
            f"{SYSTEM_CNI} lacks {', '.join(missing)}: apt-get install -y containernetworking-plugins "
            "(scripts/setup.sh does it)"
        )
    if problems:
        pytest.fail("agent test prerequisites missing:\n  " + "\n  ".join(problems), pytrace=False)


@pytest.fixture(autouse=True)
def no_leaks(cni_prerequisites: None) -> Iterator[None]:
    """Clean up whatever a test left named cnio-test-*, then fail if there was anything, or if the host namespace
    gained any link (a plugin run outside the check's own node namespace would add cni0 or a veth there)."""
    host_links = set(_links())
    yield
    leaked_ns = netns.list_names(PREFIX)
    leaked_links = _links(PREFIX)
    for name in leaked_ns:
        subprocess.run(["ip", "netns", "del", name], check=False)
    for name in _links(PREFIX):
        subprocess.run(["ip", "link", "del", name], check=False)
    new_host_links = sorted(set(_links()) - host_links)
    assert not leaked_ns and not leaked_links, f"left behind: namespaces {leaked_ns}, links {leaked_links}"
    assert not new_host_links, f"the test added links to the host namespace: {new_host_links}"


@dataclass(frozen=True)
class Roots:
    """A node's CNI dirs under one temporary root."""

    root: Path
    conf_dir: Path
    bin_dir: Path
    state_dir: Path


@pytest.fixture
def make_roots() -> Iterator[Any]:
    """Factory of node roots (binaries installed from /usr/lib/cni); all removed afterwards."""
    made: list[Path] = []

    def make(name: str = "node") -> Roots:
        root = Path(tempfile.mkdtemp(prefix=f"{PREFIX}{name}-"))
        made.append(root)
        roots = Roots(root, root / "etc/cni/net.d", root / "opt/cni/bin", root / "var/lib/cni-operator")
        roots.conf_dir.mkdir(parents=True)
        install_binaries(SYSTEM_CNI, roots.bin_dir, BINARIES, manifest=BINARY_MANIFEST)
        return roots

    try:
        yield make
    finally:
        for root in made:
            shutil.rmtree(root, ignore_errors=True)


@pytest.fixture
def roots(make_roots: Any) -> Roots:
    made: Roots = make_roots()
    return made


def bridge_conflist(
    subnet: str = "__NODE_POD_CIDR_V4__", *, bridge: str = "cni0", chain: bool = True
) -> dict[str, Any]:
    """The reference chain's bridge + host-local (and portmap), without bandwidth: Debian's bandwidth 1.1.1 panics
    on CHECK without limits (containernetworking/plugins#1221, fixed in v1.9.1)."""
    plugins: list[dict[str, Any]] = [
        {
            "type": "bridge",
            "bridge": "cni0",
            "isGateway": True,
            "ipMasq": True,
            "hairpinMode": True,
            "ipam": {"type": "host-local", "ranges": [[{"subnet": subnet}]], "routes": [{"dst": "0.0.0.0/0"}]},
        }
    ]
    if chain:
        plugins.append({"type": "portmap", "capabilities": {"portMappings": True}})
    return {"cniVersion": "1.0.0", "name": "cni-operator-bridge", "plugins": plugins}
