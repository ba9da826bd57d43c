"""Version strings as the catalog and Kubernetes write them (v1.36.3, 1.36, containerd://2.1.4)."""

from __future__ import annotations

import re

_VERSION = re.compile(r"v?(\d+)\.(\d+)(?:\.(\d+))?")


def parse_version(text: str) -> tuple[int, int, int]:
    """(major, minor, patch) from 'v1.36.3', '1.36', 'v1.34.2-gke.100' or 'containerd://2.1.4'."""
    match = _VERSION.search(text.split("://", 1)[-1])
    if not match:
        raise ValueError(f"not a version: {text!r}")
    major, minor, patch = match.groups()
    return int(major), int(minor), int(patch or 0)


def minor_of(text: str) -> str:
    """'1.36' from 'v1.36.3'."""
    major, minor, _ = parse_version(text)
    return f"{major}.{minor}"


def runtime_of(container_runtime_version: str) -> tuple[str, str]:
    """('containerd', '2.1.4') from a node's containerRuntimeVersion 'containerd://2.1.4'."""
    name, _, version = container_runtime_version.partition("://")
    return name, version
