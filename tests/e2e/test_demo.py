"""The README's first command ends in `cni-operator demo`: it must finish on its own and leave nothing behind."""

from __future__ import annotations

import re
import subprocess
import sys

import psutil
import pytest

pytestmark = pytest.mark.cluster


def _processes_using(folder: str) -> list[str]:
    """Processes whose command line names the demo's own folder (another demo on the machine is not ours)."""
    found = []
    for proc in psutil.process_iter(["cmdline"]):
        cmdline = " ".join(proc.info["cmdline"] or [])
        if folder in cmdline and proc.pid != psutil.Process().pid:
            found.append(cmdline)
    return found


def test_demo_rolls_out_flannel_and_cleans_up() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "cni_operator.cli", "demo", "--nodes", "2"],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-5000:]
    assert "RolloutComplete" in output
    assert "runs on all 2 nodes" in output
    assert "What to try next" in output
    assert "kubectl patch cnet default" in output
    folder = re.search(r"/\S*cni-operator-demo-[^/\s]+", output)
    assert folder, "the demo names its folder (the operator's log is in it)"
    assert _processes_using(folder.group()) == [], "the demo stopped every process it started"
