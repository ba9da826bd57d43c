"""Find, by label, every object the operator manages for one ClusterNetwork, and prune what is no longer rendered."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Any

from kubernetes import dynamic
from kubernetes.client import ApiException

from cni_operator.api import vocabulary as L
from cni_operator.kube.apply import Applier

OWNER = L.OWNER

# Kinds the catalog's templates render, in the order deletion is safe (workloads before what they use).
MANAGED_KINDS: tuple[tuple[str, str], ...] = (
    ("apps/v1", "DaemonSet"),
    ("apps/v1", "Deployment"),
    ("policy/v1", "PodDisruptionBudget"),
    ("v1", "Service"),
    ("v1", "ConfigMap"),
    ("rbac.authorization.k8s.io/v1", "RoleBinding"),
    ("rbac.authorization.k8s.io/v1", "Role"),
    ("rbac.authorization.k8s.io/v1", "ClusterRoleBinding"),
    ("rbac.authorization.k8s.io/v1", "ClusterRole"),
    ("v1", "ServiceAccount"),
    ("apiextensions.k8s.io/v1", "CustomResourceDefinition"),
    ("v1", "Namespace"),
)
# Deleting these takes data or whole namespaces with them: only when the plugin itself goes away.
DESTRUCTIVE_KINDS = frozenset({"CustomResourceDefinition", "Namespace"})


def identity(obj: dict[str, Any]) -> tuple[str, str, str, str]:
    """(API group, kind, namespace, name): what makes two manifests the same object, whatever their version."""
    group = obj["apiVersion"].rpartition("/")[0]
    meta = obj["metadata"]
    return group, obj["kind"], meta.get("namespace") or "", meta["name"]


def owner_selector(owner: str) -> str:
    return f"{L.MANAGED_BY}={L.MANAGER},{OWNER}={owner}"


def inventory_kinds(*renderings: Iterable[dict[str, Any]], recorded: Iterable[str] = ()) -> list[tuple[str, str]]:
    """MANAGED_KINDS, then any other kind rendered now or recorded in status ("apiVersion/Kind") earlier, so that
    objects of a plugin's own kinds (e.g. Calico's BGPConfiguration) are pruned when no longer rendered."""
    kinds = list(MANAGED_KINDS)
    extra = [tuple(r.rsplit("/", 1)) for r in recorded] + [
        (obj["apiVersion"], obj["kind"]) for objects in renderings for obj in objects
    ]
    for api_version, kind in extra:
        if (api_version, kind) not in kinds:
            kinds.insert(0, (api_version, kind))  # custom objects go before the CRDs that define them
    return kinds


def managed_objects(applier: Applier, owner: str, kinds: Iterable[tuple[str, str]] = MANAGED_KINDS) -> Iterator[Any]:
    """Every object of `kinds` labelled as managed for `owner`, across namespaces (kinds not served are skipped)."""
    for api_version, kind in kinds:
        try:
            resource = applier.resource(api_version, kind)
        except dynamic.exceptions.ResourceNotFoundError:
            continue  # e.g. a plugin's CRD is gone, and with it every object of its kinds
        for item in resource.get(label_selector=owner_selector(owner)).items:
            obj: dict[str, Any] = item.to_dict()
            yield {**obj, "apiVersion": api_version, "kind": kind}  # list items carry neither


def delete(applier: Applier, obj: dict[str, Any]) -> bool:
    """Delete one object; False if it was already gone."""
    resource = applier.resource(obj["apiVersion"], obj["kind"])
    meta = obj["metadata"]
    try:
        resource.delete(
            name=meta["name"],
            namespace=meta.get("namespace") if resource.namespaced else None,
            body={"propagationPolicy": "Background"},
        )
    except ApiException as err:
        if err.status == 404:
            return False
        raise
    return True


def prune(
    applier: Applier,
    owner: str,
    keep: list[dict[str, Any]],
    *,
    kinds: Iterable[tuple[str, str]] = MANAGED_KINDS,
    include_destructive: bool = False,
    keep_revisions: Iterable[str] = (),
) -> list[str]:
    """Delete managed objects of `owner` that are not in `keep` and belong to no revision in `keep_revisions`;
    returns 'Kind name' of each deleted object."""
    wanted = {identity(obj) for obj in keep}
    revisions = set(keep_revisions)
    deleted = []
    for obj in managed_objects(applier, owner, kinds):
        if identity(obj) in wanted or obj["metadata"].get("labels", {}).get(L.REVISION) in revisions:
            continue
        if obj["kind"] in DESTRUCTIVE_KINDS and not include_destructive:
            continue
        if delete(applier, obj):
            deleted.append(f"{obj['kind']} {obj['metadata']['name']}")
    return deleted
