"""Label and annotation keys the operator puts on what it renders and on nodes (prefix cni-operator.dev/)."""

PREFIX = "cni-operator.dev"
COMPONENT = f"{PREFIX}/component"
PLUGIN = f"{PREFIX}/plugin"
RELEASE = f"{PREFIX}/release"
REVISION = f"{PREFIX}/revision"
MANAGED_BY = "app.kubernetes.io/managed-by"
MANAGER = "cni-operator"
# On nodes: which revision's node workloads should run there.
NODE_REVISION = f"{PREFIX}/revision"
