"""The agent against the sandbox's real API server: several simulated nodes in one process, each with its own roots,
real plugins in real namespaces, and NodeNetworkState reports the operator's gate can read."""

from __future__ import annotations

import json
import os
import secrets
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from kubernetes import client
from tests.agent.conftest import PREFIX, Roots, bridge_conflist
from tests.integration.conftest import wait_established
from tests.waiting import eventually

from cni_operator.agent.files import sha256_file
from cni_operator.agent.kube import KubeCluster
from cni_operator.agent.runner import CONFIGMAP_PREFIX, REVISION_LABEL, Agent, AgentSettings
from cni_operator.api.nodestate import GROUP, PLURAL, VERSION
from cni_operator.catalog.loader import default_catalog
from cni_operator.kube.apply import Applier
from cni_operator.render.engine import Renderer
from cni_operator.sandbox import FakeNode
from cni_operator.sandbox.cluster import create_nodes

pytestmark = pytest.mark.cluster
REPO = Path(__file__).resolve().parents[2]
FILE = "10-cni-operator-bridge.conflist"
FLANNEL = b'{"cniVersion":"1.0.0","name":"cbr0","plugins":[{"type":"flannel","delegate":{"isDefaultGateway":true}}]}\n'


@pytest.fixture(scope="session")
def nns_crd(api_client: Any) -> None:
    crd = yaml.safe_load((REPO / "crds" / "nodenetworkstate.yaml").read_text())
    Applier(api_client).apply(crd)
    wait_established(api_client, crd["metadata"]["name"])


class World:
    """Nodes, ConfigMaps and reports this test made, all removed at the end."""

    def __init__(self, api_client: Any) -> None:
        self.api_client = api_client
        self.core: Any = client.CoreV1Api(api_client)
        self.custom: Any = client.CustomObjectsApi(api_client)
        self.token = secrets.token_hex(3)
        self.nodes: list[str] = []
        self.config_maps: list[str] = []

    def node(self, index: int) -> FakeNode:
        node = FakeNode(name=f"{PREFIX}{self.token}-{index}", pod_cidr=f"10.250.{index}.0/24")
        create_nodes(self.api_client, [node])
        self.nodes.append(node.name)
        return node

    def revision(self, conflist: dict[str, Any] | str, keep: list[str] | None = None) -> str:
        revision = f"t{self.token}{len(self.config_maps)}"
        text = conflist if isinstance(conflist, str) else json.dumps(conflist)
        data = {"conflist.json": text, "conflistName": FILE, "keepConfigs": json.dumps(keep or [])}
        name = f"{CONFIGMAP_PREFIX}{revision}"
        self.core.create_namespaced_config_map("kube-system", {"metadata": {"name": name}, "data": data})
        self.config_maps.append(name)
        return revision

    def label(self, node: str, revision: str) -> None:
        self.core.patch_node(node, {"metadata": {"labels": {REVISION_LABEL: revision}}})

    def report(self, node: str) -> dict[str, Any] | None:
        try:
            found: dict[str, Any] = self.custom.get_cluster_custom_object(GROUP, VERSION, PLURAL, node)
        except client.ApiException as err:
            if err.status == 404:
                return None
            raise
        return found

    def clean_up(self) -> None:
        for name in self.config_maps:
            self.core.delete_namespaced_config_map(name, "kube-system")
        for name in self.nodes:
            self.core.delete_node(name)
            KubeCluster(self.api_client).delete_report(name)


@pytest.fixture
def world(api_client: Any, nns_crd: None) -> Iterator[World]:
    made = World(api_client)
    try:
        yield made
    finally:
        made.clean_up()


def agent(world: World, node: FakeNode, roots: Roots, **settings: Any) -> Agent:
    return Agent(
        AgentSettings(node.name, roots.conf_dir, roots.bin_dir, roots.state_dir, netns_prefix=PREFIX, **settings),
        KubeCluster(world.api_client),
    )


def test_agents_of_two_nodes_in_one_process_install_quarantine_check_and_report(world: World, make_roots: Any) -> None:
    revision = world.revision(bridge_conflist())
    nodes = [world.node(1), world.node(2)]
    roots = [make_roots("a"), make_roots("b")]
    (roots[0].conf_dir / "05-flannel.conflist").write_bytes(FLANNEL)
    for node in nodes:
        world.label(node.name, revision)
    for node, root in zip(nodes, roots, strict=True):
        agent(world, node, root).sync()
    for node, root in zip(nodes, roots, strict=True):
        installed = json.loads((root.conf_dir / FILE).read_text())
        assert installed["plugins"][0]["ipam"]["ranges"] == [[{"subnet": node.pod_cidr}]]
        assert [p.name for p in root.conf_dir.iterdir()] == [FILE]
        report = world.report(node.name)
        assert report is not None
        owner = report["metadata"]["ownerReferences"][0]
        assert (owner["kind"], owner["name"]) == ("Node", node.name)
        status = report["status"]
        assert status["revision"] == revision
        datapath = status["datapath"]
        assert (datapath["revision"], datapath["passed"], datapath["reason"]) == (revision, True, "Passed"), datapath
        assert node.pod_cidr.rsplit(".", 2)[0] in datapath["message"]
        active = status["activeConfig"]
        assert (active["file"], active["sha256"]) == (FILE, sha256_file(root.conf_dir / FILE))
        assert (active["plugins"], active["cniVersion"]) == (["bridge", "portmap"], "1.0.0")
        assert {b["name"] for b in status["binaries"]} >= {"bridge", "host-local", "portmap", "bandwidth"}
        versions = {v["name"]: v["versions"] for v in status["specVersions"]}
        assert "1.0.0" in versions["bridge"] and "1.0.0" in versions["host-local"]
        assert status["drift"] == []
        assert status["lastReportTime"].endswith("Z")
    configs_a = {(c["file"], c["state"]) for c in world.report(nodes[0].name)["status"]["configs"]}  # type: ignore[index]
    assert configs_a == {(FILE, "Active"), ("05-flannel.conflist", "Quarantined")}


def test_drift_and_broken_configs_show_in_the_report(world: World, make_roots: Any) -> None:
    good = world.revision(bridge_conflist())
    wrong_subnet = world.revision(bridge_conflist("10.99.0.0/24"))
    node, roots = world.node(3), make_roots("drift")
    world.label(node.name, good)
    node_agent = agent(world, node, roots)
    node_agent.sync()
    rendered = (roots.conf_dir / FILE).read_bytes()

    # A hand edit: reported as drift, and the rendered config restored.
    (roots.conf_dir / FILE).write_text(json.dumps(bridge_conflist("10.98.0.0/24")))
    node_agent.sync()
    status = world.report(node.name)["status"]  # type: ignore[index]
    assert any(f"{FILE} was changed on the node" in d and "restored" in d for d in status["drift"]), status["drift"]
    assert (roots.conf_dir / FILE).read_bytes() == rendered

    # A missing binary: drift, and the datapath check fails with the reason.
    (roots.bin_dir / "portmap").unlink()
    node_agent.sync()
    status = world.report(node.name)["status"]  # type: ignore[index]
    assert any("needs plugin binary portmap" in d for d in status["drift"]), status["drift"]
    assert any("binary portmap was installed but is gone" in d for d in status["drift"])
    assert (status["datapath"]["passed"], status["datapath"]["reason"]) == (False, "PluginNotFound")

    # A revision whose config has the wrong subnet: the gate's fields say so.
    world.label(node.name, wrong_subnet)
    node_agent.sync()
    datapath = world.report(node.name)["status"]["datapath"]  # type: ignore[index]
    assert (datapath["revision"], datapath["passed"]) == (wrong_subnet, False)
    assert datapath["reason"] in ("PluginNotFound", "AddressOutsidePodCIDR")  # portmap is still missing
    (roots.bin_dir / "portmap").write_bytes((Path("/usr/lib/cni") / "portmap").read_bytes())
    (roots.bin_dir / "portmap").chmod(0o755)
    node_agent.sync()
    datapath = world.report(node.name)["status"]["datapath"]  # type: ignore[index]
    assert (datapath["reason"], datapath["passed"]) == ("AddressOutsidePodCIDR", False)
    assert "10.99.0." in datapath["message"] and node.pod_cidr in datapath["message"]


def test_leaving_for_another_plugin_restores_its_configs_and_coming_back_quarantines_them(
    world: World, roots: Roots
) -> None:
    ours = world.revision(bridge_conflist())
    node = world.node(4)
    (roots.conf_dir / "05-flannel.conflist").write_bytes(FLANNEL)
    world.label(node.name, ours)
    node_agent = agent(world, node, roots)
    node_agent.sync()
    assert [p.name for p in roots.conf_dir.iterdir()] == [FILE]
    assert world.report(node.name) is not None

    world.label(node.name, "flannel0rev")  # a revision of another plugin: no conflist ConfigMap
    result = node_agent.sync()
    assert result.mode == "HandBack"
    assert [p.name for p in roots.conf_dir.iterdir()] == ["05-flannel.conflist"]
    assert (roots.conf_dir / "05-flannel.conflist").read_bytes() == FLANNEL
    assert world.report(node.name) is None, "no report: the operator's gate must not wait for an agent here"

    world.label(node.name, ours)
    node_agent.sync()
    assert [p.name for p in roots.conf_dir.iterdir()] == [FILE]
    states = {(c["file"], c["state"]) for c in world.report(node.name)["status"]["configs"]}  # type: ignore[index]
    assert states == {(FILE, "Active"), ("05-flannel.conflist", "Quarantined")}


def test_an_unlabelled_node_gets_the_agents_own_revision(world: World, roots: Roots) -> None:
    """New nodes carry no revision label yet; the target revision's DaemonSet adopts them, and its agent installs."""
    ours = world.revision(bridge_conflist())
    node = world.node(6)
    result = agent(world, node, roots, revision=ours).sync()
    assert result.mode == "Install"
    status = world.report(node.name)["status"]  # type: ignore[index]
    assert (status["revision"], status["datapath"]["revision"], status["datapath"]["passed"]) == (ours, ours, True)
    other = agent(world, node, roots, revision="").sync()  # no label, no own revision: nothing to install
    assert other.mode == "Waiting"


def test_agent_run_process_with_only_the_rendered_rbac(
    world: World, roots: Roots, api_client: Any, sandbox: Any
) -> None:
    """`cni-operator agent run` as a real process, as the rendered agent ServiceAccount: installs and reports, follows
    its node to the rendered reference revision (whose bandwidth CHECK panics on Debian's plugins), stops on
    SIGTERM."""
    spec = yaml.safe_load((REPO / "examples" / "reference.yaml").read_text())["spec"]
    spec["podCIDRs"] = [f"10.{200 + int(world.token[:2], 16) % 50}.0.0/16"]  # a revision no other test renders
    rendering = Renderer(default_catalog()).render(spec, kubernetes_version="v1.35.0")
    objects = [o for o in rendering.objects if o["kind"] != "DaemonSet"]  # RBAC and the conflist ConfigMap
    applier = Applier(api_client)
    for obj in objects:
        applier.apply(obj)
    ours = world.revision(bridge_conflist())
    node = world.node(5)
    world.label(node.name, ours)
    token = world.core.create_namespaced_service_account_token(
        "cni-operator-agent", "kube-system", {"spec": {"expirationSeconds": 600}}
    ).status.token
    kubeconfig = yaml.safe_load(Path(sandbox.kubeconfig).read_text())
    kubeconfig["users"] = [{"name": "agent", "user": {"token": token}}]
    kubeconfig["contexts"][0]["context"]["user"] = "agent"
    kubeconfig_path = roots.root / "agent.kubeconfig"
    kubeconfig_path.write_text(yaml.safe_dump(kubeconfig))
    log_path = roots.root / "agent.log"
    command = [sys.executable, "-m", "cni_operator.cli", "agent", "run", "--node-name", node.name]
    command += ["--conf-dir", str(roots.conf_dir), "--bin-dir", str(roots.bin_dir), "--state-dir", str(roots.state_dir)]
    command += ["--kubeconfig", str(kubeconfig_path), "--netns-prefix", PREFIX, "--interval", "1"]
    with log_path.open("wb") as log:
        proc = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env=os.environ.copy())
    try:
        eventually(
            lambda: world.report(node.name),
            lambda r: r is not None and (r.get("status") or {}).get("datapath", {}).get("revision") == ours,
            timeout=60,
            what="the agent's first report",
        )
        assert world.report(node.name)["status"]["datapath"]["passed"] is True  # type: ignore[index]
        world.label(node.name, rendering.revision)
        datapath = eventually(
            lambda: (world.report(node.name) or {}).get("status", {}).get("datapath") or {},
            lambda d: d.get("revision") == rendering.revision,
            timeout=60,
            what="a report for the rendered reference revision",
        )
        assert (datapath["passed"], datapath["reason"]) == (False, "CheckFailed"), datapath
        assert "bandwidth CHECK" in datapath["message"]
        rendered = json.loads((roots.conf_dir / FILE).read_text())
        assert [p["type"] for p in rendered["plugins"]] == ["bridge", "portmap", "bandwidth"]
        assert rendered["plugins"][0]["ipam"]["ranges"] == [[{"subnet": node.pod_cidr}]]
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=20) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        logs = log_path.read_text(errors="replace")
        print(logs[-10000:])
        for obj in reversed(objects):
            applier.resource(obj["apiVersion"], obj["kind"]).delete(
                name=obj["metadata"]["name"], namespace=obj["metadata"].get("namespace")
            )
    assert "Forbidden" not in logs and "forbidden" not in logs
