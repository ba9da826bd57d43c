"""Pieces of the real nodes and of the catalog's skipCheck that need no cluster and no root."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from pydantic import ValidationError

from cni_operator.catalog.loader import default_catalog
from cni_operator.catalog.model import CniFacts
from cni_operator.sandbox import SandboxError, pki
from cni_operator.sandbox.realnode import (
    NODE_MOUNTS,
    REAL_NODE_LABEL,
    leftovers,
    node_manifest,
    real_nodes,
    sandbox_id,
    teardown,
)

REPO = Path(__file__).resolve().parents[2]


def test_reference_v180_skips_bandwidth_check_with_its_source_and_v191_does_not() -> None:
    catalog = default_catalog()
    v180 = catalog.get("reference", "v1.8.0").cni.skip_check
    assert [(s.plugin, s.source) for s in v180] == [
        ("bandwidth", "https://github.com/containernetworking/plugins/issues/1221")
    ]
    assert catalog.get("reference", "v1.9.1").cni.skip_check == []


def test_skip_check_must_name_an_installed_binary() -> None:
    facts = {"binaries": ["bridge"], "conflistName": "10-x.conflist", "cniVersion": "1.0.0", "specVersions": ["1.0.0"]}
    with pytest.raises(ValidationError, match="not among the release's binaries"):
        CniFacts.model_validate({**facts, "skipCheck": [{"plugin": "bandwidth", "reason": "r", "source": "s"}]})


def test_rendered_configmap_carries_skip_check_only_where_the_release_has_one() -> None:
    golden = {v: (REPO / "tests" / "golden" / f"reference-{v}.yaml").read_text() for v in ("v1.8.0", "v1.9.1")}
    maps = {
        v: next(d for d in yaml.safe_load_all(text) if d and d["kind"] == "ConfigMap") for v, text in golden.items()
    }
    assert maps["v1.8.0"]["data"]["skipCheck"] == '["bandwidth"]'
    assert "skipCheck" not in maps["v1.9.1"]["data"]


def test_real_nodes_get_addresses_and_cidrs_in_order_and_no_kwok_annotation() -> None:
    nodes = real_nodes(2, ["10.244.3.0/24", "10.244.4.0/24"], prefix="rn")
    assert [(n.name, n.address, n.pod_cidr) for n in nodes] == [
        ("rn-0", "10.250.0.1", "10.244.3.0/24"),
        ("rn-1", "10.250.0.2", "10.244.4.0/24"),
    ]
    manifest = node_manifest(nodes[0])
    assert manifest["spec"]["podCIDRs"] == ["10.244.3.0/24"]
    assert manifest["metadata"]["labels"][REAL_NODE_LABEL] == "true"
    assert "annotations" not in manifest["metadata"]  # kwok manages only kwok.x-k8s.io/node=fake
    with pytest.raises(SandboxError):
        real_nodes(3, ["10.244.3.0/24"])


def test_every_node_path_a_hostpath_can_name_is_private_to_the_node() -> None:
    for path in (
        "/etc/cni/net.d",
        "/opt/cni/bin",
        "/var/lib/cni",
        "/var/run/netns".replace("/var", ""),
        "/run/flannel",
    ):
        assert path in NODE_MOUNTS


def test_link_names_fit_the_kernel_limit(tmp_path: Path) -> None:
    ident = sandbox_id(tmp_path)
    assert len(f"cnrb-{ident}") <= 15 and len(f"cnrv-{ident}-99") <= 15


def test_teardown_without_a_record_is_a_no_op(tmp_path: Path) -> None:
    assert teardown(tmp_path) == []
    assert leftovers(tmp_path) == []


def test_kubelet_serving_certificate_names_the_node_address(tmp_path: Path) -> None:
    from cryptography import x509

    ca = pki.CertificateAuthority(tmp_path)
    pair = ca.issue("kubelet", "rn-0", server=True, hosts=["rn-0", "10.250.0.1"])
    cert = x509.load_pem_x509_certificate(pair.cert.read_bytes())
    sans = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert [str(ip) for ip in sans.get_values_for_type(x509.IPAddress)] == ["10.250.0.1"]
    assert sans.get_values_for_type(x509.DNSName) == ["rn-0"]
