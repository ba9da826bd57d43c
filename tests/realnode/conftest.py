"""Fixtures for the real-node tests: ONE sandbox for the whole folder, with one kwok node and two real nodes (a real
kubelet v1.36.3 on Debian's containerd each, in network namespaces of their own; sandbox/realnode.py), the real
operator running against it, and helpers to look at the nodes from the host.

A missing prerequisite (root, containerd, runc, busybox-static, Go for the builds) fails the tests with how to get
it; it never skips them. When the sandbox stops, everything its real nodes made must be gone: a leftover process,
namespace, link, mount or cgroup fails the session.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import yaml
from kubernetes import client

from cni_operator.sandbox import Sandbox, SandboxConfig, SandboxError, fake_nodes
from cni_operator.sandbox.nodes import node_pod_cidrs
from cni_operator.sandbox.realnode import leftovers, missing_prerequisites, read_record, real_nodes, runtime_info
from tests.integration.conftest import REPO, Networks, OperatorProcess, wait_established
from tests.waiting import eventually

FIGURES: list[str] = []
PROBE = Path(__file__).with_name("probe.py")
AGENT_IMAGE = "ghcr.io/cni-operator/cni-operator:v0.1.0"
BUSYBOX = "docker.io/library/busybox:1.35"
TEST_NAMESPACE = "default"


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """The plugin swap runs last: Flannel leaves its VXLAN device, routes and iptables chains in the nodes (see
    docs/realnode.md), and the other tests measure nodes that never ran it."""
    items.sort(key=lambda item: "tests/realnode/test_swap" in item.nodeid)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[None]:
    """Keep each phase's report on the item, so fixtures can tell whether the test failed."""
    report = yield
    setattr(item, f"rep_{report.when}", report)
    return report


def pytest_terminal_summary(terminalreporter: Any) -> None:
    """The measured figures of the real-node tests, printed whether the tests passed or not."""
    if FIGURES:
        terminalreporter.section("real-node figures")
        for line in FIGURES:
            terminalreporter.write_line(line)


def figure(line: str) -> None:
    FIGURES.append(line)
    print(line)


@dataclass
class RealNodeView:
    """A real node as the host sees it: its folders, its runtime socket, its namespace."""

    name: str
    address: str
    pod_cidr: str
    conf_dir: Path
    bin_dir: Path
    socket: str
    netns: str

    def binaries(self) -> dict[str, str]:
        return {
            p.name: hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(self.bin_dir.iterdir())
            if p.is_file() and not p.name.startswith(".")
        }


@dataclass
class RealCluster:
    box: Sandbox
    api_client: Any
    nodes: list[RealNodeView]
    tools: Path
    core: Any = field(init=False)

    def __post_init__(self) -> None:
        self.core = client.CoreV1Api(self.api_client)

    def release_binaries(self, version: str) -> dict[str, str]:
        """The checksums of the reference plugins hack/realnode/build.sh built from the Go module at `version`."""
        folder = self.tools / "cni" / version
        return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.iterdir())}

    def runtime(self, node: RealNodeView) -> dict[str, Any]:
        record = read_record(self.box.dir)
        entry = next(n for n in record["nodes"] if n["name"] == node.name)
        return runtime_info(record, entry)

    def exec(self, pod: str, command: list[str], namespace: str = TEST_NAMESPACE) -> str:
        """`kubectl exec`: through the API server to the pod's kubelet and its runtime's streaming server."""
        from kubernetes.stream import stream

        core = client.CoreV1Api(self.box.api_client())  # stream() patches the client it uses: a fresh one
        out: str = stream(
            core.connect_get_namespaced_pod_exec,
            pod,
            namespace,
            command=command,
            stderr=True,
            stdin=False,
            stdout=True,
            tty=False,
        )
        return out

    def revision(self, node: str) -> str:
        labels = self.core.read_node(node).metadata.labels or {}
        return str(labels.get("cni-operator.dev/revision", ""))


@pytest.fixture(scope="session")
def real_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RealCluster]:
    problems = missing_prerequisites()
    if problems:
        pytest.fail(
            "real-node prerequisites missing:\n  " + "\n  ".join(problems) + "\n(scripts/setup.sh installs them)",
            pytrace=False,
        )
    state_dir = tmp_path_factory.mktemp("realnode-sandbox")
    cidrs = list(node_pod_cidrs("10.244.0.0/16", 24))
    config = SandboxConfig(
        state_dir=state_dir,
        nodes=fake_nodes(1, prefix="kwok-node"),
        real_nodes=real_nodes(2, cidrs[1:3], prefix="real-node"),
    )
    box = Sandbox(config)
    started = time.monotonic()
    try:
        box.start()
    except SandboxError as err:
        pytest.fail(
            f"the real-node sandbox did not start: {err}\n"
            "scripts/setup.sh builds what it needs (hack/controlplane/build.sh, hack/realnode/build.sh, "
            "hack/images/build.py) and installs Debian's containerd, runc and busybox-static.",
            pytrace=False,
        )
    took = time.monotonic() - started
    t = box.timings
    nodes_took = t.get("real/nodes", 0) - t.get("real/network", 0)
    figure(
        f"sandbox with 1 kwok + 2 real nodes up in {took:.1f}s (control plane {t['control-plane']:.1f}s, "
        f"real nodes' containerd + image import + kubelet start {nodes_took:.1f}s)"
    )
    record = read_record(state_dir)
    views = [
        RealNodeView(
            n["name"], n["address"], n["pod_cidr"], Path(n["conf_dir"]), Path(n["bin_dir"]), n["socket"], n["netns"]
        )
        for n in sorted(record["nodes"], key=lambda n: n["index"])
    ]
    api = box.api_client()
    for kind in ("clusternetwork", "nodenetworkstate"):
        crd = yaml.safe_load((REPO / "crds" / f"{kind}.yaml").read_text())
        client.ApiextensionsV1Api(api).create_custom_resource_definition(crd)
        wait_established(api, crd["metadata"]["name"])
    try:
        yield RealCluster(box, api, views, Path(record["tools"]))
    finally:
        # `cni-operator sandbox down`, as a user stops a sandbox: it must leave nothing of the real nodes behind
        started = time.monotonic()
        down = subprocess.run(
            [sys.executable, "-m", "cni_operator.cli", "sandbox", "down", "--state-dir", str(state_dir)],
            capture_output=True,
            text=True,
            check=False,
            timeout=120,
        )
        figure(f"sandbox down (2 real nodes with their pods): {time.monotonic() - started:.1f}s")
        box.stop()
        left = leftovers(state_dir, record)
        assert down.returncode == 0, down.stdout + down.stderr
        assert not left, f"the real nodes left behind: {left}"


BROKEN_RELEASE = "v1.9.2"


@pytest.fixture(scope="session")
def catalog_with_broken_release(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The bundled catalog plus one test-only reference release, v1.9.2, whose conflist names `firewall`: a
    reference plugin no image installs (the plugins image is v1.9.1's, which was built without it). The operator
    of these tests reads this copy (CNI_OPERATOR_DATA); the real catalog stays untouched."""
    root = tmp_path_factory.mktemp("catalog")
    shutil.copytree(REPO / "bundled-plugins", root / "bundled-plugins")
    shutil.copytree(REPO / "templates", root / "templates")
    release = yaml.safe_load((REPO / "bundled-plugins" / "reference" / "v1.9.1.yaml").read_text())
    release.update(
        version=BROKEN_RELEASE,
        released="2026-12-01",
        notice="test-only: its conflist names the firewall plugin, which no image installs",
        upgradeFrom=["v1.8.0", "v1.9.1"],
    )
    (root / "bundled-plugins" / "reference" / f"{BROKEN_RELEASE}.yaml").write_text(yaml.safe_dump(release))
    conflist = root / "templates" / "reference" / "conflist.yaml.j2"
    conflist.write_text(
        conflist.read_text() + f'{{% if release.version == "{BROKEN_RELEASE}" %}}\n  - type: firewall\n{{% endif %}}\n'
    )
    return root


@pytest.fixture(scope="session")
def real_operator(
    real_cluster: RealCluster, tmp_path_factory: pytest.TempPathFactory, catalog_with_broken_release: Path
) -> Iterator[OperatorProcess]:
    process = OperatorProcess(
        real_cluster.box.kubeconfig,
        tmp_path_factory.mktemp("operator"),
        env={"CNI_OPERATOR_DATA": str(catalog_with_broken_release)},
    )
    process.start()
    try:
        yield process
    finally:
        process.stop()


@pytest.fixture
def networks(
    real_cluster: RealCluster, real_operator: OperatorProcess, request: pytest.FixtureRequest
) -> Iterator[Networks]:
    nets = Networks(real_cluster.api_client)
    logged = len(real_operator.logs())
    yield nets
    report = getattr(request.node, "rep_call", None)
    if report is not None and report.failed:
        print("operator log during the test (tail):\n" + real_operator.logs()[logged:][-15000:])
    for name in nets.created:
        if nets._exists(name):
            nets.patch_spec(name, {"nodeCleanup": "Remove"})
            nets.delete(name)


def wait_rolled_out(nets: Networks, name: str, timeout: float = 180.0) -> dict[str, Any]:
    """Ready at the current generation, every node on the current revision."""
    return eventually(
        lambda: nets.get(name),
        lambda cn: (
            (cn.get("status") or {}).get("phase") == "Ready"
            and cn["status"].get("observedGeneration") == cn["metadata"]["generation"]
        ),
        timeout,
        f"ClusterNetwork {name} rolled out",
    )


NNS = ("cni-operator.dev", "v1alpha1", "nodenetworkstates")


def node_reports(cluster: RealCluster) -> dict[str, dict[str, Any]]:
    custom = client.CustomObjectsApi(cluster.api_client)
    return {
        item["metadata"]["name"]: item.get("status") or {} for item in custom.list_cluster_custom_object(*NNS)["items"]
    }


def wait_datapath(cluster: RealCluster, revision: str, timeout: float = 90) -> dict[str, dict[str, Any]]:
    names = {n.name for n in cluster.nodes}
    return eventually(
        lambda: node_reports(cluster),
        lambda reports: all(
            (reports.get(n) or {}).get("datapath", {}).get("revision") == revision
            and reports[n]["datapath"].get("passed")
            for n in names
        ),
        timeout,
        f"every real node's agent passed its datapath check on {revision}",
    )


# -- pods ---------------------------------------------------------------------------------------------------------


def pod_manifest(name: str, node: str, image: str, command: list[str], **extra: Any) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "labels": {"app": "realnode-test"}},
        "spec": {
            "nodeName": node,
            "terminationGracePeriodSeconds": 1,
            "tolerations": [{"operator": "Exists"}],
            "containers": [{"name": "main", "image": image, "imagePullPolicy": "Never", "command": command, **extra}],
        },
    }


def pod_ready(pod: Any) -> bool:
    conditions = pod.status.conditions or [] if pod.status else []
    return bool(pod.status and pod.status.pod_ip) and any(c.type == "Ready" and c.status == "True" for c in conditions)


def delete_test_pods(core: Any, wait: bool = True) -> None:
    core.delete_collection_namespaced_pod(TEST_NAMESPACE, label_selector="app=realnode-test", grace_period_seconds=0)
    if wait:
        eventually(
            lambda: core.list_namespaced_pod(TEST_NAMESPACE, label_selector="app=realnode-test").items,
            lambda items: not items,
            60,
            "test pods deleted",
        )


# -- the disruption probe -----------------------------------------------------------------------------------------


class Probe:
    """Four probe pods, two on each real node (tests/realnode/probe.py): all-to-all ICMP and one long-lived TCP
    connection from every pod to every other, sampled every 100 ms through the whole operation."""

    def __init__(self, cluster: RealCluster, per_node: int = 2) -> None:
        self.cluster = cluster
        self.core = cluster.core
        self.per_node = per_node
        self.pods: dict[str, str] = {}  # name -> IP

    def start(self) -> None:
        data = {"probe.py": PROBE.read_text()}
        body = {"metadata": {"name": "realnode-probe"}, "data": data}
        try:
            self.core.create_namespaced_config_map(TEST_NAMESPACE, body)
        except client.ApiException as err:
            if err.status != 409:
                raise
            self.core.replace_namespaced_config_map("realnode-probe", TEST_NAMESPACE, body)
        for node in self.cluster.nodes:
            for i in range(self.per_node):
                manifest = pod_manifest(
                    f"probe-{node.name}-{i}",
                    node.name,
                    AGENT_IMAGE,
                    ["python3", "/probe/probe.py"],
                    volumeMounts=[{"name": "probe", "mountPath": "/probe"}],
                    readinessProbe={"tcpSocket": {"port": 8080}, "periodSeconds": 1},
                )
                manifest["spec"]["volumes"] = [{"name": "probe", "configMap": {"name": "realnode-probe"}}]
                self.core.create_namespaced_pod(TEST_NAMESPACE, manifest)
        names = [f"probe-{n.name}-{i}" for n in self.cluster.nodes for i in range(self.per_node)]
        pods = eventually(
            lambda: [self.core.read_namespaced_pod(n, TEST_NAMESPACE) for n in names],
            lambda items: all(pod_ready(p) for p in items),
            90,
            "probe pods Ready",
        )
        self.pods = {p.metadata.name: p.status.pod_ip for p in pods}
        peers = sorted(self.pods.values())
        for ip in peers:
            self._call(ip, "/start", {"peers": peers, "self": ip})

    def _call(self, ip: str, path: str, body: dict[str, Any] | None = None) -> Any:
        data = json.dumps(body).encode() if body is not None else None
        request = urllib.request.Request(f"http://{ip}:8080{path}", data=data, method="POST" if data else "GET")
        with urllib.request.urlopen(request, timeout=10) as response:  # noqa: S310 (a test pod's address)
            return json.loads(response.read())

    def stop(self) -> dict[str, Any]:
        """Stop sampling; the figures summed over every pair (and the worst gap of any pair)."""
        reports = {name: self._call(ip, "/stop", {}) for name, ip in self.pods.items()}
        icmp = [entry for r in reports.values() for entry in r["icmp"].values()]
        tcp = [entry for r in reports.values() for entry in r["tcp"].values()]
        return {
            "pairs": len(icmp),
            "icmp_sent": sum(e["sent"] for e in icmp),
            "icmp_lost": sum(max(0, e["sent"] - e["received"]) for e in icmp),
            "icmp_longest_gap": max(e["longest_gap"] for e in icmp),
            "tcp_connections": sum(e["connections"] for e in tcp),
            "tcp_broken": sum(e["broken"] for e in tcp),
            "tcp_round_trips": sum(e["round_trips"] for e in tcp),
            "tcp_longest_gap": max(e["longest_gap"] for e in tcp),
            "per_pod": reports,
        }


@dataclass
class NewPodAttempt:
    node: str
    created: float
    revision: str
    binaries: dict[str, str]
    ip: str = ""
    latency: float = 0.0
    error: str = ""


class NewPods:
    """Through the whole operation: a new busybox pod on every real node every few seconds, created by name on the
    node (so a cordon does not keep it away); records whether and how fast it got an address, the node's revision
    and the bin dir's checksums at the moment of creation."""

    def __init__(self, cluster: RealCluster, every: float = 2.0, timeout: float = 30.0) -> None:
        self.cluster = cluster
        self.every = every
        self.timeout = timeout
        self.attempts: list[NewPodAttempt] = []
        self._stop = False
        self._thread: Any = None

    def __enter__(self) -> NewPods:
        import threading

        self._thread = threading.Thread(target=self._loop, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop = True
        self._thread.join(timeout=self.timeout + 30)

    def _loop(self) -> None:
        from concurrent.futures import ThreadPoolExecutor

        n = 0
        with ThreadPoolExecutor(max_workers=8) as pool:
            futures = []
            while not self._stop:
                for node in self.cluster.nodes:
                    n += 1
                    futures.append(pool.submit(self._one, node, n))
                time.sleep(self.every)
            for future in futures:
                future.result()

    def _one(self, node: RealNodeView, n: int) -> None:
        core = client.CoreV1Api(self.cluster.box.api_client())
        name = f"new-{node.name}-{n}"
        attempt = NewPodAttempt(node.name, time.monotonic(), self.cluster.revision(node.name), node.binaries())
        self.attempts.append(attempt)
        core.create_namespaced_pod(TEST_NAMESPACE, pod_manifest(name, node.name, BUSYBOX, ["sleep", "3600"]))
        deadline = attempt.created + self.timeout
        while time.monotonic() < deadline:
            try:
                pod = core.read_namespaced_pod(name, TEST_NAMESPACE)
            except client.ApiException as err:
                if err.status != 404:
                    raise
                attempt.error = "gone before it was Ready (evicted by a drain)"
                return
            if pod_ready(pod):
                attempt.ip = pod.status.pod_ip
                attempt.latency = time.monotonic() - attempt.created
                break
            time.sleep(0.1)
        else:
            events = core.list_namespaced_event(TEST_NAMESPACE, field_selector=f"involvedObject.name={name}").items
            attempt.error = "; ".join(e.message for e in events if e.type == "Warning")[-300:] or "not Ready in time"
        try:
            core.delete_namespaced_pod(name, TEST_NAMESPACE, grace_period_seconds=0)
        except client.ApiException as err:
            if err.status != 404:
                raise


def host_agent_check(node: RealNodeView, state_dir: Path, skip: str = "") -> dict[str, Any]:
    """`cni-operator agent check` of a real node's active config and installed binaries, from the host (the check
    runs the plugins in throwaway namespaces of its own, never in the node's)."""
    command = [
        sys.executable,
        "-m",
        "cni_operator.cli",
        "agent",
        "check",
        "--conf-dir",
        str(node.conf_dir),
        "--bin-dir",
        str(node.bin_dir),
        "--state-dir",
        str(state_dir),
        "--pod-cidr",
        node.pod_cidr,
        "--netns-prefix",
        "cnio-rnt-",
    ]
    if skip:
        command += ["--skip-check", skip]
    result = subprocess.run(command, capture_output=True, text=True, check=False, timeout=60)
    report: dict[str, Any] = json.loads(result.stdout)
    return report
