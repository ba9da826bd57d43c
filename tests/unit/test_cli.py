"""The offline commands a GitOps pipeline runs: validate and render."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from cni_operator.cli import main

REPO = Path(__file__).resolve().parents[2]
EXAMPLES = sorted((REPO / "examples").glob("*.yaml"))


def test_every_example_validates(capsys: pytest.CaptureFixture[str]) -> None:
    assert EXAMPLES, "examples/ holds a ClusterNetwork per plugin"
    assert main(["validate", "-f", *map(str, EXAMPLES)]) == 0
    assert capsys.readouterr().err.count(": valid") == len(EXAMPLES)


def test_invalid_file_exits_non_zero_naming_field_and_fix(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text(
        "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: unrelated}\n---\n"
        "apiVersion: cni-operator.dev/v1alpha1\nkind: ClusterNetwork\nmetadata: {name: prod}\n"
        "spec: {plugin: flannel, version: v0.28.9, podCIDRs: [10.244.0.0/16], encryption: IPsec}\n"
    )
    assert main(["validate", "-f", str(bad)]) == 1
    err = capsys.readouterr().err
    assert "ClusterNetwork prod is invalid" in err
    assert "spec.networkPolicy: " in err and "networkPolicy: false" in err
    assert "spec.encryption: " in err


def test_wrong_api_version_and_broken_yaml_are_clear(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    wrong = tmp_path / "wrong.yaml"
    wrong.write_text("apiVersion: cni-operator.dev/v1\nkind: ClusterNetwork\nmetadata: {name: x}\nspec: {}\n")
    assert main(["validate", "-f", str(wrong)]) == 1
    assert "apiVersion must be cni-operator.dev/v1alpha1" in capsys.readouterr().err
    broken = tmp_path / "broken.yaml"
    broken.write_text("spec: [unclosed\n")
    assert main(["validate", "-f", str(broken)]) == 1
    assert "not valid YAML" in capsys.readouterr().err


def test_render_prints_the_manifests(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["render", "-f", str(REPO / "examples" / "flannel.yaml"), "--kubernetes-version", "v1.35.4"]) == 0
    output = capsys.readouterr().out
    assert output.startswith("# revision ")
    objects = [doc for doc in yaml.safe_load_all(output) if doc]
    kinds = {obj["kind"] for obj in objects}
    assert {"DaemonSet", "ConfigMap", "ClusterRole", "ServiceAccount"} <= kinds
    assert all(obj["metadata"]["labels"]["cni-operator.dev/plugin"] == "flannel" for obj in objects)


def test_render_refuses_an_invalid_spec(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text(
        "apiVersion: cni-operator.dev/v1alpha1\nkind: ClusterNetwork\nmetadata: {name: x}\n"
        "spec: {plugin: calico, version: v0.0.1, podCIDRs: [10.244.0.0/16]}\n"
    )
    assert main(["render", "-f", str(bad)]) == 1
    assert "spec.version: the catalog has no calico release v0.0.1" in capsys.readouterr().err
