"""A local, real Kubernetes control plane for the demo and the tests (see cluster.py)."""

from cni_operator.sandbox.cluster import Sandbox, SandboxConfig, default_state_dir, sandbox
from cni_operator.sandbox.errors import SandboxError
from cni_operator.sandbox.nodes import FakeNode, fake_nodes

__all__ = ["FakeNode", "Sandbox", "SandboxConfig", "SandboxError", "default_state_dir", "fake_nodes", "sandbox"]
