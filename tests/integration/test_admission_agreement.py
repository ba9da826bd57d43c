"""`cni-operator validate` admits and refuses exactly what the real API server does with the committed CRD.

One corpus of specs, a few dozen picked by hand at the edges of every rule plus a seeded batch that hypothesis
generates, goes through both: the sandbox's kube-apiserver (create with dryRun=All and fieldValidation=Strict, as
kubectl sends it) and `cni-operator validate -o json` on one multi-document file. They must agree on admitted vs
refused for every spec, and every field the API server names in a refusal must be named by validate too.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
import yaml
from kubernetes import client

from cni_operator.cli import main
from tests.integration.conftest import GROUP, PLURAL, VERSION
from tests.specs import corpus

pytestmark = pytest.mark.cluster

# -- the two judges ------------------------------------------------------------------------------------------------


def _object(name: str, spec: dict[str, Any]) -> dict[str, Any]:
    return {"apiVersion": f"{GROUP}/{VERSION}", "kind": "ClusterNetwork", "metadata": {"name": name}, "spec": spec}


_UNKNOWN = re.compile(r'unknown field "([^"]+)"')


def api_server(custom: Any, name: str, spec: dict[str, Any]) -> tuple[bool, set[str], str]:
    """(admitted, fields named, message) from a dry-run create."""
    try:
        custom.create_cluster_custom_object(
            GROUP, VERSION, PLURAL, _object(name, spec), dry_run="All", field_validation="Strict"
        )
    except client.ApiException as err:
        if err.status not in (400, 422):
            raise
        body = json.loads(err.body)
        message = str(body.get("message", ""))
        fields = {c.get("field", "") for c in (body.get("details") or {}).get("causes", [])}
        fields |= set(_UNKNOWN.findall(message))
        return False, {f for f in fields if f and f != "<nil>"}, message
    return True, set(), ""


def test_validate_agrees_with_the_api_server(
    clusternetwork_crd: Any, api_client: Any, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    cases = corpus()
    names = [f"case-{index:03d}" for index in range(len(cases))]
    file = tmp_path / "corpus.yaml"
    file.write_text(yaml.safe_dump_all([_object(n, spec) for n, (_, spec) in zip(names, cases, strict=True)]))
    capsys.readouterr()
    main(["validate", "-o", "json", "-f", str(file)])
    offline = {r["name"]: r for r in json.loads(capsys.readouterr().out)["networks"]}
    assert sorted(offline) == names

    custom = client.CustomObjectsApi(api_client)
    disagreements = []
    admitted_count = 0
    for name, (what, spec) in zip(names, cases, strict=True):
        admitted, fields, message = api_server(custom, name, spec)
        result = offline[name]
        named = {p["field"] for p in result["problems"] if p["stage"] == "admission"}
        admitted_count += admitted
        if admitted != result["admitted"] or not fields <= named:
            disagreements.append(
                f"{name} ({what}) spec={json.dumps(spec)}\n"
                f"  API server: {'admitted' if admitted else 'refused'} {sorted(fields)} {message}\n"
                f"  validate:   {'admitted' if result['admitted'] else 'refused'} {result['problems']}"
            )
    assert not disagreements, f"{len(disagreements)} of {len(cases)} disagree:\n" + "\n".join(disagreements)
    # the corpus exercises both outcomes in earnest
    assert 0.2 < admitted_count / len(cases) < 0.8, admitted_count
