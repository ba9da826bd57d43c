"""Every object every plugin release renders is accepted by the real API server (server-side apply, dry run).

Namespaces and CustomResourceDefinitions are applied for real first, as a cluster would have them before the rest.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
from kubernetes.client import ApiException

from cni_operator.catalog.loader import default_catalog
from cni_operator.kube.apply import Applier
from tests.integration.conftest import wait_established
from tests.rendering import cases, render

pytestmark = pytest.mark.cluster
CATALOG = default_catalog()
CASES = cases(CATALOG)
_PREREQUISITES = ("Namespace", "CustomResourceDefinition")


@pytest.mark.parametrize(("name", "spec"), CASES, ids=[name for name, _ in CASES])
def test_rendered_objects_pass_server_side_dry_run(
    api_client: Any, applier: Applier, name: str, spec: dict[str, Any]
) -> None:
    objects = render(CATALOG, spec).objects
    for obj in objects:
        if obj["kind"] in _PREREQUISITES:
            applier.apply(obj)
            if obj["kind"] == "CustomResourceDefinition":
                wait_established(api_client, obj["metadata"]["name"])
    rejected = []
    for obj in objects:
        try:
            applier.apply(obj, dry_run=True)
        except ApiException as err:
            message = json.loads(err.body).get("message", err.body) if err.body else str(err)
            rejected.append(f"{obj['kind']} {obj['metadata']['name']}: {message}")
    assert not rejected, "\n".join(rejected)
