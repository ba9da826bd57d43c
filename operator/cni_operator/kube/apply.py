"""Server-side apply of rendered objects through the dynamic client, under one field manager."""

from __future__ import annotations

from typing import Any

from kubernetes import dynamic
from kubernetes.client import ApiClient

FIELD_MANAGER = "cni-operator"


class Applier:
    """Applies manifests of any kind; discovery is cached and refreshed when a kind is new (e.g. after a CRD)."""

    def __init__(self, api_client: ApiClient, field_manager: str = FIELD_MANAGER) -> None:
        self.client = dynamic.DynamicClient(api_client)  # type: ignore[no-untyped-call]
        self.field_manager = field_manager

    def resource(self, api_version: str, kind: str) -> Any:
        try:
            return self.client.resources.get(api_version=api_version, kind=kind)
        except dynamic.exceptions.ResourceNotFoundError:
            self.client.resources.invalidate_cache()
            return self.client.resources.get(api_version=api_version, kind=kind)

    def apply(self, obj: dict[str, Any], *, dry_run: bool = False) -> Any:
        """Server-side apply `obj` (force: this manager owns what it renders)."""
        resource = self.resource(obj["apiVersion"], obj["kind"])
        kwargs: dict[str, Any] = {"field_manager": self.field_manager, "force_conflicts": True}
        if dry_run:
            kwargs["dry_run"] = "All"
        namespace = obj["metadata"].get("namespace") if resource.namespaced else None
        return resource.server_side_apply(body=obj, name=obj["metadata"]["name"], namespace=namespace, **kwargs)
