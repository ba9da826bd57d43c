"""The offline commands a GitOps pipeline runs: validate and render."""

from __future__ import annotations

import json
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


def _network(tmp_path: Path, spec: str, name: str = "prod") -> Path:
    file = tmp_path / f"{name or 'unnamed'}.yaml"
    metadata = f"metadata: {{name: {name}}}\n" if name else "metadata: {}\n"
    file.write_text(f"apiVersion: cni-operator.dev/v1alpha1\nkind: ClusterNetwork\n{metadata}spec: {spec}\n")
    return file


def test_validate_says_who_refuses_and_names_field_and_fix(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bad = _network(
        tmp_path,
        "{plugin: flannel, version: '3.31', podCIDRs: [10.244.0.0/16], mtu: 100, rollout: {maxUnavailable: 150%}}",
    )
    assert main(["validate", "-f", str(bad)]) == 1
    err = capsys.readouterr().err
    assert "the API server refuses it (kubectl apply fails):" in err
    assert "spec.mtu: must be 'auto' or a number from 1280 to 9000; got 100" in err
    assert "spec.rollout.maxUnavailable: must be a count of at least 1 or a percentage from 1% to 100%" in err
    assert 'spec.version: "3.31" does not have the form' in err and "e.g. v3.30.3" in err
    admitted = _network(tmp_path, "{plugin: flannel, version: v0.28.9, podCIDRs: [0.0.0.0/0]}", name="wide")
    assert main(["validate", "-f", str(admitted)]) == 1
    err = capsys.readouterr().err
    assert "the API server stores it, and the operator refuses to roll it out:" in err
    assert "spec.podCIDRs[0]: 0.0.0.0/0 is every IPv4 address" in err
    assert "spec.networkPolicy: flannel v0.28.9 does not enforce NetworkPolicy" in err


def test_validate_prints_warnings_and_passes_unless_asked(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    file = _network(
        tmp_path,
        "{plugin: flannel, version: v0.28.9, podCIDRs: [10.244.0.0/16], networkPolicy: false, mtu: 1400, "
        "encapsulation: None}",
    )
    assert main(["validate", "-f", str(file)]) == 0
    err = capsys.readouterr().err
    assert "valid (1 warning)" in err
    assert "warning: spec.mtu: flannel v0.28.9: flannel applies a fixed MTU with its vxlan backend only" in err
    assert main(["validate", "--warnings-as-errors", "-f", str(file)]) == 1


def test_validate_json_output(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    good = _network(tmp_path, "{plugin: calico, version: v3.31.7, podCIDRs: [10.244.0.0/16], networkPolicy: false}")
    unnamed = _network(tmp_path, "{plugin: calico, version: v3.31.7, podCIDRs: [10.244.0.0/16]}", name="")
    assert main(["validate", "-o", "json", "-f", str(good), str(unnamed)]) == 1
    first, second = json.loads(capsys.readouterr().out)["networks"]
    assert first["name"] == "prod" and first["valid"] and first["admitted"] and first["problems"] == []
    assert [w["field"] for w in first["warnings"]] == ["spec.networkPolicy"]
    assert not second["admitted"]
    assert second["problems"][0]["field"] == "metadata.name" and second["problems"][0]["stage"] == "admission"


@pytest.mark.parametrize("version", ["latest", "v2.0.0", "1", "1.36.x", "", "v1.-2"])
def test_render_refuses_odd_kubernetes_versions_by_name(version: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["render", "-f", str(REPO / "examples" / "flannel.yaml"), "--kubernetes-version", version]) == 1
    err = capsys.readouterr().err
    assert f"--kubernetes-version: {version!r} is not a Kubernetes version; write one such as v1.36.0" in err


@pytest.mark.parametrize(
    ("cidr", "says"),
    [
        ("0.0.0.0/0", "0.0.0.0/0 is every IPv4 address"),
        ("127.0.0.0/8", "loopback"),
        ("224.0.0.0/24", "multicast"),
        ("10.244.0.0/28", "smaller than one per-node block"),
    ],
)
def test_render_refuses_pod_ranges_that_cannot_work(
    tmp_path: Path, cidr: str, says: str, capsys: pytest.CaptureFixture[str]
) -> None:
    file = _network(tmp_path, f"{{plugin: cilium, version: v1.19.6, podCIDRs: ['{cidr}']}}")
    assert main(["render", "-f", str(file)]) == 1
    err = capsys.readouterr().err
    assert "spec.podCIDRs[0]: " in err and says in err and "Traceback" not in err


def test_render_picks_the_multus_release_that_suits_the_kubernetes_version(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    file = _network(tmp_path, "{plugin: calico, version: v3.31.7, podCIDRs: [10.244.0.0/16], multus: {enabled: true}}")
    assert main(["render", "-f", str(file), "--kubernetes-version", "v1.32.4"]) == 0
    assert "multus-cni:v4.2.4-thick" in capsys.readouterr().out  # v4.3.0 does not support 1.32
    assert main(["render", "-f", str(file), "--kubernetes-version", "1.36"]) == 0
    assert "multus-cni:v4.3.0-thick" in capsys.readouterr().out
