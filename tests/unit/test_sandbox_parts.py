"""The sandbox's own pieces, without a control plane: certificates, fake nodes, process bookkeeping."""

from __future__ import annotations

import ipaddress
import json
import subprocess
import time
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from cni_operator.sandbox import SandboxError, fake_nodes, pki
from cni_operator.sandbox.binaries import control_plane_bin_dir
from cni_operator.sandbox.cluster import STATE_FILE, running_pids, stop_state_dir


def test_issued_certificates_chain_to_the_ca(tmp_path: Path) -> None:
    ca = pki.CertificateAuthority(tmp_path)
    server = ca.issue("apiserver", "kube-apiserver", server=True)
    admin = ca.issue("admin", "someone", organization="system:masters")
    ca_cert = x509.load_pem_x509_certificate(ca.pair.cert.read_bytes())
    for pair in (server, admin):
        cert = x509.load_pem_x509_certificate(pair.cert.read_bytes())
        cert.verify_directly_issued_by(ca_cert)
        assert pair.key.stat().st_mode & 0o777 == 0o600
    served = x509.load_pem_x509_certificate(server.cert.read_bytes())
    sans = served.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert ipaddress.ip_address("127.0.0.1") in sans.get_values_for_type(x509.IPAddress)
    client = x509.load_pem_x509_certificate(admin.cert.read_bytes())
    assert client.subject.get_attributes_for_oid(NameOID.ORGANIZATION_NAME)[0].value == "system:masters"
    usage = client.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert list(usage) == [ExtendedKeyUsageOID.CLIENT_AUTH]


def test_service_account_keys_are_a_matching_pair(tmp_path: Path) -> None:
    from cryptography.hazmat.primitives import serialization

    pair = pki.service_account_keys(tmp_path)
    private = serialization.load_pem_private_key(pair.key.read_bytes(), password=None)
    public = serialization.load_pem_public_key(pair.cert.read_bytes())
    assert isinstance(private, ec.EllipticCurvePrivateKey)
    assert private.public_key().public_numbers() == public.public_numbers()  # type: ignore[union-attr]


def test_fake_nodes_get_consecutive_disjoint_pod_cidrs() -> None:
    nodes = fake_nodes(300, cluster_cidr="10.0.0.0/8", node_mask=24)
    networks = [ipaddress.ip_network(n.pod_cidr) for n in nodes]
    assert networks[0] == ipaddress.ip_network("10.0.0.0/24")
    assert networks[299] == ipaddress.ip_network("10.1.43.0/24")
    assert len({n.name for n in nodes}) == 300
    assert nodes[0].name == "sandbox-node-000"


def test_too_many_nodes_for_the_cidr_is_a_clear_error() -> None:
    with pytest.raises(SandboxError, match="--pod-cidr"):
        fake_nodes(257, cluster_cidr="10.244.0.0/16", node_mask=24)


def test_node_manifest_carries_node_info_and_kwok_annotation() -> None:
    node = fake_nodes(1, kubelet_version="v1.34.2", container_runtime_version="cri-o://1.34.0")[0]
    manifest = node.manifest("v1.36.3")
    assert manifest["metadata"]["annotations"]["kwok.x-k8s.io/node"] == "fake"
    assert manifest["status"]["nodeInfo"]["kubeletVersion"] == "v1.34.2"
    assert manifest["status"]["nodeInfo"]["containerRuntimeVersion"] == "cri-o://1.34.0"
    assert fake_nodes(1)[0].manifest("v1.36.3")["status"]["nodeInfo"]["kubeletVersion"] == "v1.36.3"


def test_stop_state_dir_ends_recorded_process_groups(tmp_path: Path) -> None:
    procs = {name: subprocess.Popen(["sleep", "300"], start_new_session=True) for name in ("etcd", "kube-apiserver")}
    (tmp_path / STATE_FILE).write_text(json.dumps({"pids": {n: p.pid for n, p in procs.items()}}))
    assert set(running_pids(tmp_path)) == {"etcd", "kube-apiserver"}
    started = time.monotonic()
    assert stop_state_dir(tmp_path) == ["etcd", "kube-apiserver"]
    assert time.monotonic() - started < 5
    for proc in procs.values():
        assert proc.wait(timeout=5) is not None
    assert running_pids(tmp_path) == {}
    assert not (tmp_path / STATE_FILE).exists()


def test_missing_binaries_in_override_folder_name_the_fix(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CNI_OPERATOR_CONTROLPLANE_BIN", str(tmp_path))
    with pytest.raises(SandboxError, match=r"lacks etcd, kube-apiserver.*build\.sh"):
        control_plane_bin_dir()
