"""Find, or build once and cache, the control-plane binaries the sandbox runs."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from cni_operator.sandbox.errors import SandboxError

TOOLS = ("etcd", "kube-apiserver", "kube-controller-manager", "kube-scheduler", "kwok", "kubectl")
_REPO_ROOT = Path(__file__).resolve().parents[3]
BUILD_SCRIPT = _REPO_ROOT / "hack" / "controlplane" / "build.sh"


def control_plane_bin_dir(*, quiet: bool = False) -> Path:
    """Return the folder holding the binaries, building them through `hack/controlplane/build.sh` when needed.

    `CNI_OPERATOR_CONTROLPLANE_BIN` points at an existing folder instead (for example one shared between clones).
    The build prints its progress on stderr, which we pass through so a first, long build is visibly alive.
    """
    override = os.environ.get("CNI_OPERATOR_CONTROLPLANE_BIN")
    if override:
        bin_dir = Path(override)
    else:
        if not BUILD_SCRIPT.exists():
            raise SandboxError(
                f"{BUILD_SCRIPT} not found: run from a clone of cni-operator, or set CNI_OPERATOR_CONTROLPLANE_BIN "
                "to a folder holding " + ", ".join(TOOLS)
            )
        result = subprocess.run(
            ["bash", str(BUILD_SCRIPT)],
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL if quiet else sys.stderr,
            text=True,
            check=False,
        )
        if result.returncode != 0:
            raise SandboxError(f"{BUILD_SCRIPT} failed (exit {result.returncode}); its output above says why")
        bin_dir = Path(result.stdout.strip().splitlines()[-1])
    missing = [tool for tool in TOOLS if not (bin_dir / tool).is_file()]
    if missing:
        raise SandboxError(f"{bin_dir} lacks {', '.join(missing)}: run hack/controlplane/build.sh")
    return bin_dir
