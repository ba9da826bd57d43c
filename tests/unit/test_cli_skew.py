"""`cni-operator skew --kubernetes-version V`: the offline answer for a planned Kubernetes upgrade."""

from __future__ import annotations

from pathlib import Path

import pytest

from cni_operator.cli import main


def _rows(output: str, plugin: str) -> list[str]:
    return [line for line in output.splitlines() if f" {plugin} " in line]


def test_offline_table_says_what_keeps_working_and_what_to_upgrade_first(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["skew", "--kubernetes-version", "v1.36.0"]) == 0
    output = capsys.readouterr().out
    calico = _rows(output, "calico")
    assert len(calico) == 3
    assert "v3.31.7" in calico[1] and "does not work" in calico[1]
    assert "upgrade calico to v3.32.1 (v3.31.7 -> v3.32.1) before moving Kubernetes to 1.36" in calico[1]
    assert "v3.32.1" in calico[2] and "works" in calico[2] and "does not" not in calico[2]
    assert all("does not work" in row for row in _rows(output, "weave-net"))
    assert "kubelets may stay at 1.33 to 1.36" in output


def test_offline_filters_by_plugin(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["skew", "--kubernetes-version", "1.34", "--plugin", "flannel"]) == 0
    output = capsys.readouterr().out
    assert len(_rows(output, "flannel")) == 2 and not _rows(output, "calico")
    assert "does not work" not in output  # flannel v0.27.4 and v0.28.9 both support 1.34


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--kubernetes-version", "latest"], "--kubernetes-version: 'latest' is not a Kubernetes version"),
        (["--kubernetes-version", "1.36", "--plugin", "nope"], "--plugin: the catalog has no plugin 'nope'"),
    ],
)
def test_bad_input_names_the_option(argv: list[str], message: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["skew", *argv]) == 1
    assert message in capsys.readouterr().err


def test_live_mode_without_a_kubeconfig_says_how(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.delenv("KUBECONFIG", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))
    assert main(["skew"]) == 1
    assert "pass --kubeconfig or set KUBECONFIG, or pass --kubernetes-version" in capsys.readouterr().err


@pytest.mark.parametrize("version", ["1.1", "v1.0.0", "1.2.3-rc.1"])
def test_old_versions_never_print_negative_minors(version: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["skew", "--kubernetes-version", version]) == 0
    output = capsys.readouterr().out
    assert ".-" not in output
    assert "kubelets may stay at 1.0 to" in output


@pytest.mark.parametrize("version", ["2.0", "v1.36.x", "1", "1.-2", "v1.36.0.1"])
def test_odd_versions_are_refused_by_name(version: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["skew", "--kubernetes-version", version]) == 1
    err = capsys.readouterr().err
    assert f"--kubernetes-version: {version!r} is not a Kubernetes version" in err and "Traceback" not in err
