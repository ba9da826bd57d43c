"""User errors never end in a traceback: every spec of the shared corpus (tests/specs.py), valid or not, gets
`render` and `validate` to exit 0 or 1 with a message, never an exception."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from cni_operator.cli import main
from tests.specs import corpus


@pytest.mark.parametrize("command", ["validate", "render"])
def test_no_spec_ends_in_a_traceback(command: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    codes = []
    for index, (_, spec) in enumerate(corpus()):
        file = tmp_path / f"case-{index}.yaml"
        document = {"apiVersion": "cni-operator.dev/v1alpha1", "kind": "ClusterNetwork", "metadata": {"name": "x"}}
        file.write_text(yaml.safe_dump({**document, "spec": spec}))
        codes.append(main([command, "-f", str(file)]))
        err = capsys.readouterr().err
        assert codes[-1] in (0, 1) and "Traceback" not in err
        if codes[-1] == 1:
            assert "spec" in err, err  # the message names the field
    assert 0 in codes and 1 in codes
