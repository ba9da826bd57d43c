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


_KUBERNETES = re.compile(r"v?(\d+)\.(\d+)(?:\.(\d+))?(?:[-+][0-9A-Za-z.+-]*)?")
KUBERNETES_MAJOR = 1


def parse_kubernetes_version(text: str, what: str = "Kubernetes version") -> tuple[int, int, int]:
    """(1, minor, patch) from a Kubernetes version a user wrote: v1.36.0, 1.36 or v1.36.0-rc.1, whole.

    ValueError names `what` (e.g. the CLI option) and says what to write: only major 1 exists."""
    match = _KUBERNETES.fullmatch(text.strip())
    if match is None or int(match.group(1)) != KUBERNETES_MAJOR:
        raise ValueError(f"{what}: {text!r} is not a Kubernetes version; write one such as v1.36.0 or 1.36")
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
