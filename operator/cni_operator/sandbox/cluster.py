"""A real, local Kubernetes control plane on 127.0.0.1: etcd, kube-apiserver, kube-controller-manager,
kube-scheduler and kwok, with fake nodes whose kubelets kwok simulates.

Every process the sandbox starts is recorded in `state.json` inside its folder, so that another process
(`cni-operator sandbox down`) can stop a sandbox left running in the background.
"""

from __future__ import annotations

import contextlib
import ctypes
import json
import os
import shutil
import signal
import socket
import ssl
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

import yaml

from cni_operator.api.vocabulary import SANDBOX_NODE
from cni_operator.sandbox import pki
from cni_operator.sandbox.binaries import control_plane_bin_dir
from cni_operator.sandbox.errors import SandboxError
from cni_operator.sandbox.nodes import FakeNode, fake_nodes
from cni_operator.sandbox.realnode import DEFAULT_SUBNET, RealNode, RealNodes, running_real_processes
from cni_operator.sandbox.realnode import teardown as teardown_real_nodes

STATE_FILE = "state.json"
_START_ORDER = ("etcd", "kube-apiserver", "kube-controller-manager", "kube-scheduler", "kwok")
_PR_SET_PDEATHSIG = 1


def default_state_dir() -> Path:
    """Where `cni-operator sandbox up` keeps its sandbox between commands."""
    cache = Path(os.environ.get("CNI_OPERATOR_CACHE", Path.home() / ".cache" / "cni-operator"))
    return cache / "sandbox" / "default"


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _die_with_parent() -> None:
    """Runs in the child before exec: the kernel sends SIGTERM to it when the test process dies, even by SIGKILL."""
    libc = ctypes.CDLL("libc.so.6", use_errno=True)
    libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)


@dataclass
class SandboxConfig:
    """What to start. `detached` processes outlive the Python process that started them (for `sandbox up`)."""

    state_dir: Path
    nodes: Sequence[FakeNode] = ()
    detached: bool = False
    quiet_build: bool = False
    startup_timeout: float = 120.0
    extra_apiserver_flags: Sequence[str] = field(default_factory=tuple)
    # Real kubelets on real containerd, next to the fake nodes (realnode.py); their addresses come from this subnet.
    real_nodes: Sequence[RealNode] = ()
    real_node_subnet: str = DEFAULT_SUBNET


class Sandbox:
    """Starts, waits for, and stops one local control plane. Use as a context manager or call start()/stop()."""

    def __init__(self, config: SandboxConfig) -> None:
        self.config = config
        self.dir = config.state_dir
        self.pki_dir = self.dir / "pki"
        self.log_dir = self.dir / "logs"
        self.kubeconfig = self.dir / "kubeconfig"
        self.ports: dict[str, int] = {}
        self.bin_dir = Path()
        self._procs: dict[str, subprocess.Popen[bytes]] = {}
        self._ca: pki.CertificateAuthority | None = None
        self.real: RealNodes | None = None
        self.timings: dict[str, float] = {}

    # -- lifecycle ---------------------------------------------------------------------------------------------

    def __enter__(self) -> Sandbox:
        self.start()
        return self

    def __exit__(self, *_: object) -> None:
        self.stop()

    def start(self) -> None:
        """Start every component, wait until all are healthy, create the fake nodes and wait until they are Ready."""
        if (self.dir / STATE_FILE).exists() and running_pids(self.dir):
            raise SandboxError(f"a sandbox is already running in {self.dir}: run 'cni-operator sandbox down' first")
        bin_dir = self.bin_dir = control_plane_bin_dir(quiet=self.config.quiet_build)
        # Every start is a fresh cluster: no objects, keys or logs of an earlier sandbox in this folder survive.
        for sub in (self.pki_dir, self.log_dir, self.dir / "etcd"):
            shutil.rmtree(sub, ignore_errors=True)
            sub.mkdir(parents=True)
        started = time.monotonic()
        try:
            self._start_all(bin_dir)
            self.timings["control-plane"] = time.monotonic() - started
            create_nodes(self.api_client(), self.config.nodes)
            if self.config.real_nodes:
                self._start_real_nodes()
            self._wait(self._nodes_ready, "the nodes to become Ready", "kwok")
            self.timings["ready"] = time.monotonic() - started
        except BaseException:
            self.stop()
            raise

    def _start_real_nodes(self) -> None:
        from kubernetes import client

        assert self._ca is not None
        core: Any = client.CoreV1Api(self.api_client())
        self.real = RealNodes(
            self.dir,
            self.config.real_nodes,
            detached=self.config.detached,
            subnet=self.config.real_node_subnet,
            quiet_build=self.config.quiet_build,
        )
        self.real.start(self._ca, self.ports["kube-apiserver"], core.create_node)
        self.timings.update({f"real/{k}": v for k, v in self.real.timings.items()})

    def stop(self) -> None:
        """Stop every process this sandbox started, newest first, and wait for each to exit."""
        left = teardown_real_nodes(self.dir)
        stop_pids({name: proc.pid for name, proc in self._procs.items()})
        for proc in self._procs.values():
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(timeout=1)
        self._procs.clear()
        (self.dir / STATE_FILE).unlink(missing_ok=True)
        if left:
            raise SandboxError("the real nodes left behind:\n  " + "\n  ".join(left))

    # -- start-up ----------------------------------------------------------------------------------------------

    def _start_all(self, bin_dir: Path) -> None:
        ca = self._ca = pki.CertificateAuthority(self.pki_dir)
        serving = ca.issue("apiserver", "kube-apiserver", server=True)
        sa = pki.service_account_keys(self.pki_dir)
        clients = {
            "admin": ca.issue("admin", "cni-operator-sandbox-admin", organization="system:masters"),
            "kube-controller-manager": ca.issue("kube-controller-manager", "system:kube-controller-manager"),
            "kube-scheduler": ca.issue("kube-scheduler", "system:kube-scheduler"),
            "kwok": ca.issue("kwok", "kwok-controller", organization="system:masters"),
        }
        self.ports = {name: free_port() for name in ("etcd", "etcd-peer", *_START_ORDER[1:])}
        server = f"https://127.0.0.1:{self.ports['kube-apiserver']}"
        kubeconfigs = {name: self._write_kubeconfig(name, server, ca.pair, pair) for name, pair in clients.items()}
        self.kubeconfig = kubeconfigs["admin"]

        etcd_url = f"http://127.0.0.1:{self.ports['etcd']}"
        peer_url = f"http://127.0.0.1:{self.ports['etcd-peer']}"
        self._spawn(
            "etcd",
            bin_dir,
            [
                "--name=sandbox",
                f"--data-dir={self.dir / 'etcd'}",
                f"--listen-client-urls={etcd_url}",
                f"--advertise-client-urls={etcd_url}",
                f"--listen-peer-urls={peer_url}",
                f"--initial-advertise-peer-urls={peer_url}",
                f"--initial-cluster=sandbox={peer_url}",
                "--unsafe-no-fsync=true",
                "--auto-compaction-retention=1",
                "--quota-backend-bytes=8589934592",
                "--log-level=warn",
            ],
        )
        self._wait(lambda: _http_ok(f"{etcd_url}/health"), "etcd to report healthy", "etcd")

        self._spawn(
            "kube-apiserver",
            bin_dir,
            [
                f"--etcd-servers={etcd_url}",
                "--bind-address=127.0.0.1",
                "--advertise-address=127.0.0.1",
                f"--secure-port={self.ports['kube-apiserver']}",
                f"--tls-cert-file={serving.cert}",
                f"--tls-private-key-file={serving.key}",
                f"--client-ca-file={ca.pair.cert}",
                "--authorization-mode=Node,RBAC",
                f"--service-account-key-file={sa.cert}",
                f"--service-account-signing-key-file={sa.key}",
                "--service-account-issuer=https://kubernetes.default.svc.cluster.local",
                "--service-cluster-ip-range=10.96.0.0/16",
                "--allow-privileged=true",
                "--endpoint-reconciler-type=none",
                "--max-requests-inflight=0",
                "--max-mutating-requests-inflight=0",
                "--enable-priority-and-fairness=false",
                f"--cert-dir={self.pki_dir / 'apiserver-generated'}",
                "--profiling=false",
                "--v=1",
                *self._kubelet_client_flags(ca),
                *self.config.extra_apiserver_flags,
            ],
        )
        ctx = self._admin_tls()
        self._wait(lambda: _http_ok(f"{server}/readyz", ctx), "kube-apiserver to report ready", "kube-apiserver")

        for name in ("kube-controller-manager", "kube-scheduler"):
            flags = [
                f"--kubeconfig={kubeconfigs[name]}",
                f"--authentication-kubeconfig={kubeconfigs[name]}",
                f"--authorization-kubeconfig={kubeconfigs[name]}",
                "--bind-address=127.0.0.1",
                f"--secure-port={self.ports[name]}",
                f"--cert-dir={self.pki_dir / (name + '-generated')}",
                "--authorization-always-allow-paths=/healthz,/readyz,/livez,/metrics",
                "--leader-elect=false",
                "--kube-api-qps=500",
                "--kube-api-burst=1000",
                "--v=1",
            ]
            if name == "kube-controller-manager":
                flags += [
                    f"--root-ca-file={ca.pair.cert}",
                    f"--service-account-private-key-file={sa.key}",
                    "--use-service-account-credentials=true",
                    "--node-monitor-grace-period=60s",
                    "--concurrent-daemonset-syncs=5",
                ]
            self._spawn(name, bin_dir, flags)
        for name in ("kube-controller-manager", "kube-scheduler"):
            url = f"https://127.0.0.1:{self.ports[name]}/healthz"
            self._wait(lambda url=url: _http_ok(url, _insecure_tls()), f"{name} to report healthy", name)  # type: ignore[misc]

        stages = self.dir / "kwok-stages.yaml"
        stages.write_text(_bundled_stages())
        self._spawn(
            "kwok",
            bin_dir,
            [
                f"--kubeconfig={kubeconfigs['kwok']}",
                f"--config={stages}",
                "--manage-all-nodes=false",
                "--manage-nodes-with-annotation-selector=kwok.x-k8s.io/node=fake",
                "--node-lease-duration-seconds=40",
                f"--server-address=127.0.0.1:{self.ports['kwok']}",
                "--node-ip=127.0.0.1",
            ],
        )
        self._wait(lambda: _http_ok(f"http://127.0.0.1:{self.ports['kwok']}/healthz"), "kwok to report healthy", "kwok")
        self._wait(self._service_accounts_ready, "the default service accounts", "kube-controller-manager")

    def _kubelet_client_flags(self, ca: pki.CertificateAuthority) -> list[str]:
        """Real kubelets serve on their node address with a certificate from the sandbox CA and accept the API
        server's client certificate (for logs, exec and port-forward)."""
        if not self.config.real_nodes:
            return []
        client_pair = ca.issue(
            "apiserver-kubelet-client", "kube-apiserver-kubelet-client", organization="system:masters"
        )
        return [
            "--kubelet-preferred-address-types=InternalIP",
            f"--kubelet-client-certificate={client_pair.cert}",
            f"--kubelet-client-key={client_pair.key}",
            f"--kubelet-certificate-authority={ca.pair.cert}",
        ]

    def _spawn(self, name: str, bin_dir: Path, args: list[str]) -> None:
        log = (self.log_dir / f"{name}.log").open("ab")
        proc = subprocess.Popen(
            [str(bin_dir / name), *args],
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            cwd=self.dir,
            start_new_session=True,
            preexec_fn=None if self.config.detached else _die_with_parent,
        )
        log.close()
        self._procs[name] = proc
        self._save_state()

    def _save_state(self) -> None:
        state = {
            "pids": {name: proc.pid for name, proc in self._procs.items()},
            "ports": self.ports,
            "kubeconfig": str(self.kubeconfig),
            "nodes": len(self.config.nodes),
            "started": time.time(),
        }
        (self.dir / STATE_FILE).write_text(json.dumps(state, indent=2))

    def _write_kubeconfig(self, user: str, server: str, ca: pki.KeyPair, client: pki.KeyPair) -> Path:
        config = {
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [{"name": "sandbox", "cluster": {"server": server, "certificate-authority": str(ca.cert)}}],
            "users": [{"name": user, "user": {"client-certificate": str(client.cert), "client-key": str(client.key)}}],
            "contexts": [{"name": "sandbox", "context": {"cluster": "sandbox", "user": user}}],
            "current-context": "sandbox",
        }
        path = self.dir / ("kubeconfig" if user == "admin" else f"{user}.kubeconfig")
        path.write_text(yaml.safe_dump(config, sort_keys=False))
        path.chmod(0o600)
        return path

    def _admin_tls(self) -> ssl.SSLContext:
        ctx = ssl.create_default_context(cafile=str(self.pki_dir / "ca.crt"))
        ctx.load_cert_chain(str(self.pki_dir / "admin.crt"), str(self.pki_dir / "admin.key"))
        return ctx

    def _wait(self, check: Callable[[], bool], what: str, component: str) -> None:
        """Poll `check` until it passes; fail fast, with the log's tail, if a component exits meanwhile."""
        deadline = time.monotonic() + self.config.startup_timeout
        while time.monotonic() < deadline:
            for name, proc in self._procs.items():
                if proc.poll() is not None:
                    raise SandboxError(
                        f"{name} exited with {proc.returncode} while waiting for {what}:\n" + self.log_tail(name)
                    )
            with contextlib.suppress(Exception):
                if check():
                    return
            time.sleep(0.2)
        raise SandboxError(
            f"timed out after {self.config.startup_timeout:.0f}s waiting for {what}:\n" + self.log_tail(component)
        )

    def log_tail(self, name: str, lines: int = 30) -> str:
        path = self.log_dir / f"{name}.log"
        if not path.exists():
            return f"({path} does not exist)"
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])

    # -- readiness ---------------------------------------------------------------------------------------------

    def api_client(self) -> Any:
        """A kubernetes ApiClient for the admin user."""
        from kubernetes import config

        return config.new_client_from_config(config_file=str(self.kubeconfig))  # type: ignore[no-untyped-call]

    def _service_accounts_ready(self) -> bool:
        from kubernetes import client

        core: Any = client.CoreV1Api(self.api_client())
        return all(
            any(sa.metadata.name == "default" for sa in core.list_namespaced_service_account(ns).items)
            for ns in ("default", "kube-system")
        )

    def _nodes_ready(self) -> bool:
        if not self.config.nodes and not self.config.real_nodes:
            return True
        from kubernetes import client

        core: Any = client.CoreV1Api(self.api_client())
        wanted = {node.name for node in self.config.nodes}
        # A real node is up once its kubelet reports; it turns Ready only when a CNI config is installed, which is
        # the operator's job (as with kubeadm: nodes stay NotReady until a network plugin runs).
        real = {node.name for node in self.config.real_nodes}
        reporting = {
            node.metadata.name
            for node in core.list_node(label_selector=f"{SANDBOX_NODE}=true").items
            if node.metadata.name in real
            and node.status.node_info
            and node.status.node_info.kubelet_version
            and any(c.type == "Ready" for c in (node.status.conditions or []))
        }
        if reporting != real:
            return False
        ready = {
            node.metadata.name
            for node in core.list_node(label_selector=f"{SANDBOX_NODE}=true").items
            if any(c.type == "Ready" and c.status == "True" for c in (node.status.conditions or []))
        }
        return wanted <= ready

    def pids(self) -> dict[str, int]:
        return {name: proc.pid for name, proc in self._procs.items()}


def create_nodes(api_client: Any, nodes: Sequence[FakeNode], *, workers: int = 8) -> None:
    """Register fake nodes, in parallel for large counts; kwok then keeps them Ready."""
    from concurrent.futures import ThreadPoolExecutor

    from kubernetes import client

    core = client.CoreV1Api(api_client)
    server_version = client.VersionApi(api_client).get_code().git_version
    with ThreadPoolExecutor(max_workers=workers) as pool:
        list(pool.map(lambda node: core.create_node(node.manifest(server_version)), nodes))


def _bundled_stages() -> str:
    folder = resources.files("cni_operator.sandbox") / "stages"
    return "\n---\n".join(folder.joinpath(name).read_text() for name in ("node.yaml", "pod.yaml"))


def _http_ok(url: str, ctx: ssl.SSLContext | None = None) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2, context=ctx) as response:  # noqa: S310 (our own 127.0.0.1)
            return bool(response.status == 200)
    except (urllib.error.URLError, OSError):
        return False


def _insecure_tls() -> ssl.SSLContext:
    """kube-controller-manager and kube-scheduler serve /healthz with a self-signed certificate they generate."""
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    return ctx


# -- working with a sandbox by its folder (for the CLI) -----------------------------------------------------------


def read_state(state_dir: Path) -> dict[str, Any]:
    path = state_dir / STATE_FILE
    if not path.exists():
        raise SandboxError(f"no sandbox in {state_dir}: start one with 'cni-operator sandbox up'")
    state: dict[str, Any] = json.loads(path.read_text())
    return state


def running_pids(state_dir: Path) -> dict[str, int]:
    """The recorded processes of the sandbox in `state_dir` that are still alive."""
    try:
        pids: dict[str, int] = read_state(state_dir)["pids"]
    except SandboxError:
        return {}
    return {name: pid for name, pid in pids.items() if _alive(pid)}


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # a zombie child counts as gone
    with contextlib.suppress(OSError):
        stat = Path(f"/proc/{pid}/stat").read_text()
        return stat.rsplit(")", 1)[1].split()[0] != "Z"
    return True


def stop_pids(pids: dict[str, int], timeout: float = 10.0) -> None:
    """SIGTERM each process group, newest component first; SIGKILL what is still alive after `timeout`."""
    extras = [name for name in pids if name not in _START_ORDER]  # e.g. an operator the demo started
    order = extras + [name for name in reversed(_START_ORDER) if name in pids]
    for name in order:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(pids[name], signal.SIGTERM)
    deadline = time.monotonic() + timeout
    for name in order:
        while _alive(pids[name]) and time.monotonic() < deadline:
            with contextlib.suppress(ChildProcessError):
                os.waitpid(pids[name], os.WNOHANG)
            time.sleep(0.05)
        if _alive(pids[name]):
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(pids[name], signal.SIGKILL)


def stop_state_dir(state_dir: Path) -> list[str]:
    """Stop a sandbox that another process started; returns the names of the processes that were running."""
    alive = running_pids(state_dir)
    real = running_real_processes(state_dir)
    left = teardown_real_nodes(state_dir)
    stop_pids(alive)
    (state_dir / STATE_FILE).unlink(missing_ok=True)
    if left:
        raise SandboxError("the real nodes left behind:\n  " + "\n  ".join(left))
    return sorted(alive) + real


@contextlib.contextmanager
def sandbox(state_dir: Path, node_count: int = 3, **kwargs: Any) -> Iterator[Sandbox]:
    """Convenience: a sandbox with `node_count` default fake nodes, stopped on exit."""
    with Sandbox(SandboxConfig(state_dir=state_dir, nodes=fake_nodes(node_count), **kwargs)) as box:
        yield box
