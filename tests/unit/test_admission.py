"""The API server's admission of a ClusterNetwork, offline (api.admission, api.cel): the steps and the functions.

Agreement with the real API server on a large corpus: tests/integration/test_admission_agreement.py.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from cni_operator.api.admission import Admission, ErrorKind, clusternetwork_admission, name_errors
from cni_operator.api.cel import compile_rule

REPO = Path(__file__).resolve().parents[2]
BASE: dict[str, Any] = {"plugin": "calico", "version": "v3.31.7", "podCIDRs": ["10.244.0.0/16"]}


def _errors(**changes: Any) -> dict[str, tuple[ErrorKind, str]]:
    admitted = clusternetwork_admission().admit_spec({**BASE, **changes})
    return {e.field: (e.kind, e.message) for e in admitted.errors}


@pytest.mark.parametrize(
    ("text", "valid"),
    [
        ("10.244.0.0/16", True),
        ("10.244.1.1/16", True),  # host bits are fine for netip.ParsePrefix
        ("0.0.0.0/0", True),
        ("fd00:10:244::/56", True),
        ("::/0", True),
        ("10.244.0.0/33", False),
        ("10.244.0.0", False),
        ("010.244.0.0/16", False),
        ("10.244.0.0/016", False),
        ("10.244.0.0/+16", False),
        ("10.244.0.0/255.255.0.0", False),
        ("::ffff:10.244.0.0/112", False),  # IPv4-mapped
        ("fe80::1%eth0/64", False),  # zone
        ("fd00::/129", False),
        ("10.244.0.0/16 ", False),
        ("", False),
    ],
)
def test_is_cidr_follows_go_netip(text: str, valid: bool) -> None:
    assert compile_rule("isCIDR(self)").holds(text) is valid


def test_ip_and_cidr_functions() -> None:
    assert compile_rule("cidr(self).ip().family() == 6").holds("fd00::/8")
    assert compile_rule("cidr(self).prefixLength() == 16").holds("10.244.1.1/16")
    assert compile_rule("cidr(self).masked() == cidr('10.244.0.0/16')").holds("10.244.1.1/16")
    assert compile_rule("cidr(self).containsIP('10.244.3.4') && !cidr(self).containsIP('10.245.0.1')").holds(
        "10.244.0.0/16"
    )
    assert compile_rule("cidr(self).containsCIDR('10.244.8.0/24')").holds("10.244.0.0/16")
    assert compile_rule("isIP(self) && ip(self).isLoopback()").holds("127.0.0.1")
    assert compile_rule("ip(self).isLinkLocalUnicast()").holds("fe80::1")
    assert compile_rule("!isIP(self)").holds("01.2.3.4")
    assert compile_rule("cidr(self).ip().family() == 4").holds("bad") is None  # an evaluation error


def test_matches_is_re2_so_dollar_does_not_match_before_a_newline() -> None:
    rule = compile_rule("self.matches('^(100|[1-9][0-9]?)%$')")
    assert rule.holds("10%") and not rule.holds("10%\n")
    assert _errors(version="v1.2.3\n")["spec.version"][0] is ErrorKind.INVALID


def test_defaults_fill_missing_nested_and_null_fields() -> None:
    value = clusternetwork_admission().admit_spec({**BASE, "mtu": None, "rollout": {"canary": {}}}).value
    assert value["mtu"] == "auto"
    assert value["rollout"]["canary"] == {"nodes": 1}
    assert value["rollout"]["maxUnavailable"] == 1
    assert value["rollout"]["healthGate"] == {"timeoutSeconds": 300, "requireDatapathCheck": True}
    assert value["multus"] == {"enabled": False}
    assert "encapsulation" not in clusternetwork_admission().admit_spec({**BASE, "encapsulation": None}).value


def test_a_null_required_field_is_missing() -> None:
    assert _errors(plugin=None)["spec.plugin"][0] is ErrorKind.REQUIRED


def test_blocking_errors_keep_the_cel_rules_from_running() -> None:
    # an unsupported enum value blocks: the mtu rule is not evaluated, as in the API server
    assert set(_errors(plugin="foo", mtu=1)) == {"spec.plugin"}
    # a pattern or range error does not block
    assert set(_errors(version="1.2", mtu=1)) == {"spec.version", "spec.mtu"}


def test_unknown_fields_are_named_with_a_suggestion() -> None:
    errors = _errors(podCIDR=["10.0.0.0/8"])
    kind, message = errors["spec.podCIDR"]
    assert kind is ErrorKind.UNKNOWN_FIELD and "did you mean podCIDRs?" in message
    kind, message = _errors(rollout={"surprise": 1})["spec.rollout.surprise"]
    assert "known fields here: canary, maxUnavailable" in message
    assert not _errors(settings={"anything": {"goes": [1]}})  # preserve-unknown-fields


def test_messages_name_the_fix() -> None:
    errors = _errors(mtu=100, plugin="Calico", podCIDRs=[])
    assert errors["spec.plugin"][1].startswith('unsupported value "Calico"; use one of: calico, flannel')
    assert errors["spec.podCIDRs"][1].startswith("needs at least 1 entry")
    assert _errors(mtu=100)["spec.mtu"][1] == "must be 'auto' or a number from 1280 to 9000; got 100"
    assert "e.g. v3.30.3" in _errors(version="3.30")["spec.version"][1]


def test_every_crd_rule_holds_on_every_example() -> None:
    admission = clusternetwork_admission()
    assert len(admission.rules()) >= 4
    for example in sorted((REPO / "examples").glob("*.yaml")):
        spec = yaml.safe_load(example.read_text())["spec"]
        assert admission.admit_spec(spec).admitted, example


def test_the_committed_crd_gives_the_same_admission() -> None:
    committed = Admission(yaml.safe_load((REPO / "crds" / "clusternetwork.yaml").read_text()))
    assert committed.rules() == clusternetwork_admission().rules()
    assert committed.schema == clusternetwork_admission().schema


def test_the_crd_holds_no_plugin_facts() -> None:
    for rule in clusternetwork_admission().rules():
        assert "self.plugin" not in rule, rule


def test_a_missing_spec_is_required() -> None:
    assert [e.field for e in clusternetwork_admission().admit_spec(None).errors] == ["spec"]


@pytest.mark.parametrize(("name", "ok"), [("default", True), ("prod.net-1", True), ("Prod", False), ("", False)])
def test_names_are_dns_subdomains(name: str, ok: bool) -> None:
    assert (not name_errors(name)) is ok
