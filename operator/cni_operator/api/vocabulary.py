"""The operator's words on the cluster: label, annotation and finalizer keys, and condition types.

Everything the operator writes onto objects it does not own (nodes) or renders (manifests) is named here, once, so
the pure layers, the I/O layer and the agent agree on every key. Prefix `cni-operator.dev/`.
"""

from __future__ import annotations

PREFIX = "cni-operator.dev"

# On rendered objects.
COMPONENT = f"{PREFIX}/component"
PLUGIN = f"{PREFIX}/plugin"
RELEASE = f"{PREFIX}/release"
REVISION = f"{PREFIX}/revision"
OWNER = f"{PREFIX}/owner"  # the ClusterNetwork an object belongs to
MANAGED_BY = "app.kubernetes.io/managed-by"
MANAGER = "cni-operator"

# On nodes: which revision's node workloads run there, and the move in progress (JSON, see plan.rollout.Move).
NODE_REVISION = f"{PREFIX}/revision"
MOVE_ANNOTATION = f"{PREFIX}/move"
SANDBOX_NODE = f"{PREFIX}/sandbox"  # nodes the test sandbox created

# On the ClusterNetwork.
FINALIZER = f"{PREFIX}/finalizer"
# Spec fields (comma-separated, e.g. "spec.encapsulation") whose refused change the user made safe by hand or
# accepts as is (plan/change.py); remove it once the change rolled out.
CONFIRM_CHANGE = f"{PREFIX}/confirm-change"

# Condition types (kstatus conventions: Ready, Progressing, Degraded; Compatible is version skew, positive polarity).
READY = "Ready"
PROGRESSING = "Progressing"
DEGRADED = "Degraded"
COMPATIBLE = "Compatible"
