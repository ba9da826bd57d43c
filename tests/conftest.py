"""Shared fixtures: one real sandbox control plane for the whole test session."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from cni_operator.sandbox import Sandbox, SandboxConfig, SandboxError, fake_nodes

SANDBOX_NODES = int(os.environ.get("CNI_OPERATOR_TEST_NODES", "3"))


@pytest.fixture(scope="session")
def sandbox(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Sandbox]:
    """A running control plane with fake nodes; a missing or unbuildable binary fails the test, never skips it."""
    state_dir: Path = tmp_path_factory.mktemp("sandbox")
    box = Sandbox(SandboxConfig(state_dir=state_dir, nodes=fake_nodes(SANDBOX_NODES), quiet_build=False))
    try:
        box.start()
    except SandboxError as err:
        pytest.fail(
            f"the sandbox control plane did not start: {err}\n"
            "Build it with hack/controlplane/build.sh (needs Go 1.26 and the Go module proxy), "
            "or run the whole suite through scripts/test.sh, which does every set-up step.",
            pytrace=False,
        )
    try:
        yield box
    finally:
        box.stop()


@pytest.fixture(scope="session")
def api_client(sandbox: Sandbox) -> Any:
    """A kubernetes ApiClient authenticated as the sandbox's admin."""
    return sandbox.api_client()
