"""Rendering: golden files for every plugin release, the contract every object keeps, and injection safety.

Regenerate the golden files with UPDATE_GOLDEN=1 scripts/test.sh tests/unit/test_render.py, and review the diff.
"""

from __future__ import annotations

import json
import os
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cni_operator.api import vocabulary as L
from cni_operator.catalog.loader import Catalog, default_catalog
from cni_operator.plan.validate import ValidatedSpec, validate
from cni_operator.render.engine import Renderer
from tests.rendering import GOLDEN, KUBERNETES_VERSION, as_yaml, cases, render

CATALOG = default_catalog()
CASES = cases(CATALOG)


def test_every_plugin_and_release_has_a_case() -> None:
    names = {name for name, _ in CASES}
    for plugin in CATALOG.plugins():
        releases = CATALOG.releases_of(plugin)
        assert len(releases) >= 2, f"{plugin} needs at least two releases to test upgrades"
        prefix = f"calico-{plugin}" if plugin == CATALOG.overlay_plugin() else plugin
        assert {f"{prefix}-{r.version}" for r in releases} <= names
    assert {"calico", "flannel", "cilium", "weave-net", "multus", "reference"} <= set(CATALOG.plugins())


@pytest.mark.parametrize(("name", "spec"), CASES, ids=[name for name, _ in CASES])
def test_golden(name: str, spec: dict[str, Any]) -> None:
    text = as_yaml(render(CATALOG, spec))
    path = GOLDEN / f"{name}.yaml"
    if os.environ.get("UPDATE_GOLDEN"):
        path.write_text(text)
    assert path.exists(), f"{path} missing: run UPDATE_GOLDEN=1 scripts/test.sh tests/unit/test_render.py"
    assert text == path.read_text(), f"{name} renders differently from {path}; if intended, regenerate and review"


@pytest.mark.parametrize(("name", "spec"), CASES, ids=[name for name, _ in CASES])
def test_objects_keep_the_contract(name: str, spec: dict[str, Any]) -> None:
    rendering = render(CATALOG, spec)
    seen = set()
    for obj in rendering.objects:
        meta = obj["metadata"]
        ident = (obj["apiVersion"].split("/")[0], obj["kind"], meta.get("namespace"), meta["name"])
        assert ident not in seen, f"{ident} rendered twice"
        seen.add(ident)
        labels = meta["labels"]
        assert labels[L.MANAGED_BY] == L.MANAGER
        assert labels[L.PLUGIN] in {rendering.release.plugin, *(o.plugin for o in rendering.overlays)}
        if obj["kind"] == "DaemonSet":
            assert meta["name"].endswith(rendering.revision)
            selector = obj["spec"]["selector"]["matchLabels"]
            pod_labels = obj["spec"]["template"]["metadata"]["labels"]
            assert selector.items() <= pod_labels.items(), "selector must match the pod template"
            pod = obj["spec"]["template"]["spec"]
            volumes = {v["name"] for v in pod.get("volumes", [])}
            for container in pod.get("initContainers", []) + pod["containers"]:
                for mount in container.get("volumeMounts", []):
                    assert mount["name"] in volumes, f"{meta['name']}/{container['name']} mounts {mount['name']}"
                for env in container.get("env", []):
                    assert "value" not in env or isinstance(env["value"], str), f"env {env['name']} is not a string"
    json.dumps(rendering.conflist)  # serialisable


def test_revision_is_stable_and_tracks_node_relevant_changes() -> None:
    spec = CASES[0][1]
    first = render(CATALOG, spec)
    assert render(CATALOG, spec).revision == first.revision
    tuned = {**spec, "rollout": {"maxUnavailable": 3, "paused": True}}
    assert render(CATALOG, tuned).revision == first.revision, "rollout settings do not make a new revision"
    resized = {**spec, "mtu": 1400}
    assert render(CATALOG, resized).revision != first.revision


def test_target_revision_adopts_unlabelled_nodes_and_old_revisions_do_not() -> None:
    validated = validate(CASES[0][1], CATALOG)
    renderer = Renderer(CATALOG)
    for adopt in (True, False):
        rendering = renderer.render(validated, kubernetes_version=KUBERNETES_VERSION, adopt_unlabelled_nodes=adopt)
        daemonsets = [o for o in rendering.objects if o["kind"] == "DaemonSet"]
        assert daemonsets
        for ds in daemonsets:
            terms = ds["spec"]["template"]["spec"]["affinity"]["nodeAffinity"][
                "requiredDuringSchedulingIgnoredDuringExecution"
            ]["nodeSelectorTerms"]
            operators = {e["operator"] for t in terms for e in t["matchExpressions"] if e["key"] == L.NODE_REVISION}
            assert operators == ({"In", "DoesNotExist"} if adopt else {"In"})


# -- injection: user values are data, never YAML -------------------------------------------------------------------

NASTY = st.one_of(
    st.sampled_from(
        [
            'x"\nprivileged: true\n',
            "x\n  - name: evil\n    image: evil",
            "}\n{kind: Secret",
            "a: b",
            "- item",
            "{{ revision }}",
            "'; rm -rf /",
            "x\n---\napiVersion: v1\nkind: Secret\n",
            "&anchor *alias !!python/object",
            "null",
            "true",
        ]
    ),
    st.text(alphabet=st.characters(codec="utf-8", exclude_categories=["Cs"]), min_size=1, max_size=40),
)


def _shape(node: Any, path: str = "") -> set[str]:
    """Every key path in a document, with the type of each leaf: the structure a value must not change."""
    if isinstance(node, dict):
        return {p for key, value in node.items() for p in _shape(value, f"{path}.{key}")} | {path + "{}"}
    if isinstance(node, list):
        return {p for i, value in enumerate(node) for p in _shape(value, f"{path}[{i}]")} | {path + "[]"}
    return {f"{path}:{type(node).__name__}"}


def _shapes(catalog: Catalog, validated: ValidatedSpec) -> tuple[list[set[str]], set[str]]:
    rendering = Renderer(catalog).render(validated, kubernetes_version=KUBERNETES_VERSION)
    return [_shape(obj) for obj in rendering.objects], _shape(rendering.conflist)


def _with_strings(validated: ValidatedSpec, value: str) -> ValidatedSpec:
    """Every free-text setting replaced by `value`, past its pattern checks: the renderer must hold on its own.
    (Enumerated settings and pod CIDRs cannot carry text: validation allows only their fixed or parsed forms.)"""
    schema = validated.release.settings_schema.get("properties", {})
    free_text = {key for key, prop in schema.items() if prop.get("type") == "string" and "enum" not in prop}
    settings = {k: (value if k in free_text else v) for k, v in validated.settings.items()}
    return ValidatedSpec(spec=validated.spec, release=validated.release, settings=settings, overlays=validated.overlays)


@pytest.mark.parametrize(("name", "spec"), CASES[::2], ids=[name for name, _ in CASES[::2]])
@settings(max_examples=10, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(value=NASTY)
def test_user_strings_cannot_change_the_structure(name: str, spec: dict[str, Any], value: str) -> None:
    validated = validate(spec, CATALOG)
    benign_objects, benign_conflist = _shapes(CATALOG, _with_strings(validated, "benign"))
    nasty = Renderer(CATALOG).render(_with_strings(validated, value), kubernetes_version=KUBERNETES_VERSION)
    assert [_shape(obj) for obj in nasty.objects] == benign_objects
    assert _shape(nasty.conflist) == benign_conflist
    dumped = yaml.safe_dump_all(nasty.objects)
    assert list(yaml.safe_load_all(dumped)) == nasty.objects
