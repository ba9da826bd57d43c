"""Real nodes for the sandbox: a real kubelet on a real containerd (Debian's, with Debian's runc) per node.

Each real node gets, on this one host:

- a network namespace `cnio-rn-<sandbox id>-<index>` with a veth on a sandbox bridge (`cnrb-<id>`, the host holds
  the subnet's last address) and the node's address, so two nodes' `cni0`, routes and iptables never collide, and
  pod traffic between nodes crosses a real link. Each node's namespace routes the other real nodes' pod CIDRs to
  them (the reference plugins have no tunnel: routes carry the pod subnets, as a flat L2 network would);
- a private mount namespace (held by a `sleep` process) in which per-node folders are bind-mounted over the paths a
  node's CNI, runtime and kubelet use: /etc/cni/net.d, /opt/cni/bin, /var/lib/cni, /var/lib/cni-operator,
  /var/lib/kubelet, /var/log/pods, /var/log/containers, /run/netns, /run/containerd. A DaemonSet's hostPath
  `/etc/cni/net.d` therefore is that node's own conf dir, exactly as on a cluster of machines;
- containerd (root, state, socket of its own; `restrict_oom_score_adj`, as this VM lacks CAP_SYS_RESOURCE) and the
  kubelet (client certificate `system:node:<name>` from the sandbox CA, serving certificate for its address, its own
  cgroupRoot), both entered into the two namespaces with nsenter;
- images imported from the OCI archives of `hack/images/build.py` (pause, busybox, the agent and the reference
  plugins), since there is no registry; the kubelet's image GC is off so they are never deleted.

One forwarder process (`forward.py`) makes the API server, which listens on the host's 127.0.0.1 only, reachable in
every node namespace at `127.0.0.1:<port>` (the kubelets) and at the `kubernetes` Service address `10.96.0.1:443`
(in-cluster clients: there is no kube-proxy).

Everything made is recorded in `realnodes.json` in the sandbox folder before it is made, so `teardown()` (from the
sandbox's stop, or from `cni-operator sandbox down` in another process) removes it all: pods (through the CRI, so
the CNI DEL runs), processes, shims and containers, cgroups, namespaces (and with them their mounts and links), the
bridge, the mount points it had to create on the host, and the kernel settings the kubelet changes.
"""

from __future__ import annotations

import contextlib
import hashlib
import ipaddress
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from cni_operator.api.vocabulary import SANDBOX_NODE
from cni_operator.sandbox.errors import SandboxError

STATE_FILE = "realnodes.json"
REAL_NODE_LABEL = "cni-operator.dev/sandbox-real-node"
SERVICE_IP = "10.96.0.1"
DEFAULT_SUBNET = "10.250.0.0/24"
PAUSE_IMAGE = "registry.k8s.io/pause:3.10"
_REPO_ROOT = Path(__file__).resolve().parents[3]
BUILD_SCRIPT = _REPO_ROOT / "hack" / "realnode" / "build.sh"
IMAGES_SCRIPT = _REPO_ROOT / "hack" / "images" / "build.py"
# Host paths a node's runtime, kubelet and CNI use -> the per-node folder bind-mounted over them.
NODE_MOUNTS = {
    "/etc/cni/net.d": "etc-cni-net.d",
    "/opt/cni/bin": "opt-cni-bin",
    "/var/lib/cni": "var-lib-cni",
    "/var/lib/cni-operator": "var-lib-cni-operator",
    "/var/lib/kubelet": "var-lib-kubelet",
    "/var/log/pods": "var-log-pods",
    "/var/log/containers": "var-log-containers",
    "/run/netns": "run-netns",
    "/run/containerd": "run-containerd",
    "/run/flannel": "run-flannel",  # flanneld's subnet.env, read by its CNI plugin
}
# Kernel settings the kubelet changes on start (they are global, not per namespace); restored on teardown.
KUBELET_SYSCTLS = ("vm/overcommit_memory", "kernel/panic", "kernel/panic_on_oops")
CGROUP_ROOT = Path("/sys/fs/cgroup")
_PR_SET_PDEATHSIG = 1


@dataclass(frozen=True)
class RealNode:
    """One real node: its name, its pod CIDR (set on the Node before the kubelet registers) and its address."""

    name: str
    pod_cidr: str
    address: str
    labels: dict[str, str] = field(default_factory=dict)


def real_nodes(
    count: int, pod_cidrs: Sequence[str], *, prefix: str = "sandbox-real", subnet: str = DEFAULT_SUBNET
) -> list[RealNode]:
    """`count` real nodes named `<prefix>-0`, ... with the given pod CIDRs and addresses .1, .2, ... of `subnet`."""
    hosts = list(ipaddress.ip_network(subnet).hosts())
    if count > len(hosts) - 1 or count > len(pod_cidrs):
        raise SandboxError(f"{count} real nodes do not fit {subnet} or the {len(pod_cidrs)} pod CIDRs left")
    return [RealNode(f"{prefix}-{i}", pod_cidrs[i], str(hosts[i])) for i in range(count)]


# -- prerequisites and binaries -------------------------------------------------------------------------------------


def missing_prerequisites() -> list[str]:
    """What this host lacks to run real nodes, each with how to get it."""
    problems = []
    if os.geteuid() != 0:
        problems.append("real nodes need root (network and mount namespaces, cgroups)")
    for tool, package in (
        ("containerd", "containerd"),
        ("ctr", "containerd"),
        ("runc", "runc"),
        ("ip", "iproute2"),
        ("nsenter", "util-linux"),
        ("unshare", "util-linux"),
        ("iptables", "iptables"),
        ("gcc", "gcc"),
    ):
        if not shutil.which(tool):
            problems.append(f"'{tool}' not found: apt-get install -y {package} (scripts/setup.sh does it)")
    if not Path("/usr/bin/busybox").is_file():
        problems.append("/usr/bin/busybox not found: apt-get install -y busybox-static (scripts/setup.sh does it)")
    return problems


def _run_build(args: list[str], what: str, quiet: bool) -> Path:
    result = subprocess.run(
        args, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL if quiet else sys.stderr, text=True, check=False
    )
    if result.returncode != 0:
        raise SandboxError(f"{what} failed (exit {result.returncode}): run it by hand to see why: {' '.join(args)}")
    return Path(result.stdout.strip().splitlines()[-1])


def realnode_dir(*, quiet: bool = False) -> Path:
    """kubelet, crictl, pause and the reference plugins (`hack/realnode/build.sh`, built once and cached), or the
    folder `CNI_OPERATOR_REALNODE_DIR` names."""
    override = os.environ.get("CNI_OPERATOR_REALNODE_DIR")
    folder = Path(override) if override else _run_build(["bash", str(BUILD_SCRIPT)], str(BUILD_SCRIPT), quiet)
    missing = [p for p in ("bin/kubelet", "bin/crictl", "bin/pause") if not (folder / p).is_file()]
    if missing:
        raise SandboxError(f"{folder} lacks {', '.join(missing)}: run hack/realnode/build.sh (scripts/setup.sh does)")
    return folder


def images_dir(realnode: Path, *, quiet: bool = False) -> Path:
    """The OCI archives of `hack/images/build.py` (built once per input and cached), or `CNI_OPERATOR_IMAGES_DIR`."""
    override = os.environ.get("CNI_OPERATOR_IMAGES_DIR")
    if override:
        return Path(override)
    cache = Path(os.environ.get("CNI_OPERATOR_CACHE", Path.home() / ".cache" / "cni-operator")) / "images"
    cache.mkdir(parents=True, exist_ok=True)
    args = [sys.executable, str(IMAGES_SCRIPT), "--realnode", str(realnode), "--out", str(cache)]
    return _run_build(args, str(IMAGES_SCRIPT), quiet)


# -- small helpers ---------------------------------------------------------------------------------------------------


def sandbox_id(state_dir: Path) -> str:
    """Six hex digits naming this sandbox's links and namespaces (interface names have 15 characters at most)."""
    return hashlib.sha256(str(state_dir.resolve()).encode()).hexdigest()[:6]


def _sh(*args: str, check: bool = True, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(list(args), capture_output=True, text=True, check=False, timeout=timeout)
    if check and result.returncode != 0:
        raise SandboxError(f"{' '.join(args)} failed: {result.stderr.strip() or result.stdout.strip()}")
    return result


def _die_with_parent() -> None:
    import ctypes

    ctypes.CDLL("libc.so.6", use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)


# one thread, never ending, that forks the real nodes' processes (see RealNodes._spawn)
_SPAWNER = ThreadPoolExecutor(max_workers=1, thread_name_prefix="realnode-spawner")


def _alive(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] not in ("Z", "X")


def _kill(pid: int, timeout: float = 10.0) -> None:
    """SIGTERM `pid` (and its process group when it leads one), SIGKILL after `timeout`, reap it if it is ours."""
    for send in (os.killpg, os.kill):
        with contextlib.suppress(ProcessLookupError, PermissionError):
            send(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while _alive(pid) and time.monotonic() < deadline:
        with contextlib.suppress(ChildProcessError):
            os.waitpid(pid, os.WNOHANG)
        time.sleep(0.05)
    if _alive(pid):
        for send in (os.killpg, os.kill):
            with contextlib.suppress(ProcessLookupError, PermissionError):
                send(pid, signal.SIGKILL)
        with contextlib.suppress(ChildProcessError):
            os.waitpid(pid, 0)


def _cmdline(pid: int) -> list[str]:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace").split("\0")
    except OSError:
        return []


def _pids() -> list[int]:
    return [int(p.name) for p in Path("/proc").iterdir() if p.name.isdigit()]


def _cgroup_dirs(cgroup_root: str) -> list[Path]:
    """The folders of `cgroup_root` in every mounted hierarchy (cgroup v1 hybrid here: one per controller)."""
    if not CGROUP_ROOT.is_dir():
        return []
    found = [h / cgroup_root.lstrip("/") for h in CGROUP_ROOT.iterdir() if h.is_dir() and not h.is_symlink()]
    if (CGROUP_ROOT / "cgroup.controllers").exists():  # pure cgroup v2
        found = [CGROUP_ROOT / cgroup_root.lstrip("/")]
    return found


def _create_cgroup(cgroup_root: str) -> None:
    """The kubelet refuses a cgroupRoot that does not exist; cpuset children start empty in v1 and need their
    parent's cpus and mems before any process can join."""
    for folder in _cgroup_dirs(cgroup_root):
        folder.mkdir(exist_ok=True)
        for name in ("cpuset.cpus", "cpuset.mems"):
            parent = folder.parent / name
            if parent.exists() and not (folder / name).read_text().strip():
                (folder / name).write_text(parent.read_text())


def _cgroup_procs(cgroup_root: str) -> set[int]:
    pids: set[int] = set()
    for folder in _cgroup_dirs(cgroup_root):
        if folder.is_dir():
            for procs in folder.rglob("cgroup.procs"):
                with contextlib.suppress(OSError, ValueError):
                    pids |= {int(p) for p in procs.read_text().split()}
    return pids


def _remove_cgroup(cgroup_root: str) -> list[str]:
    left = []
    for folder in _cgroup_dirs(cgroup_root):
        if not folder.is_dir():
            continue
        for sub in sorted((p for p in folder.rglob("*") if p.is_dir()), key=lambda p: len(p.parts), reverse=True):
            with contextlib.suppress(OSError):
                sub.rmdir()
        try:
            folder.rmdir()
        except OSError:
            left.append(str(folder))
    return left


# -- the record ------------------------------------------------------------------------------------------------------


def read_record(state_dir: Path) -> dict[str, Any]:
    path = state_dir / STATE_FILE
    if not path.exists():
        return {}
    record: dict[str, Any] = json.loads(path.read_text())
    return record


def _write_record(state_dir: Path, record: dict[str, Any]) -> None:
    tmp = state_dir / (STATE_FILE + ".tmp")
    tmp.write_text(json.dumps(record, indent=2))
    tmp.rename(state_dir / STATE_FILE)


# -- start -----------------------------------------------------------------------------------------------------------


class RealNodes:
    """Starts the real nodes of one sandbox and records everything it makes (see the module's docstring)."""

    def __init__(
        self,
        state_dir: Path,
        nodes: Sequence[RealNode],
        *,
        detached: bool,
        subnet: str = DEFAULT_SUBNET,
        quiet_build: bool = False,
        log: Callable[[str], None] = lambda _msg: None,
    ) -> None:
        self.state_dir = state_dir
        self.nodes = list(nodes)
        self.detached = detached
        self.subnet = ipaddress.ip_network(subnet)
        self.quiet_build = quiet_build
        self.log = log
        self.id = sandbox_id(state_dir)
        self.bridge = f"cnrb-{self.id}"
        self.host_address = str(list(self.subnet.hosts())[-1])
        self.record: dict[str, Any] = {}
        self.timings: dict[str, float] = {}

    def netns(self, index: int) -> str:
        return f"cnio-rn-{self.id}-{index}"

    def node_dir(self, node: RealNode) -> Path:
        return self.state_dir / "real" / node.name

    def _save(self) -> None:
        _write_record(self.state_dir, self.record)

    def _spawn(self, key: str, args: list[str], log_name: str) -> subprocess.Popen[bytes]:
        log = (self.state_dir / "logs" / log_name).open("ab")

        def popen() -> subprocess.Popen[bytes]:
            return subprocess.Popen(
                args,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                preexec_fn=None if self.detached else _die_with_parent,
            )

        # The kernel's parent-death signal follows the *thread* that forked: nodes start in worker threads, so the
        # fork happens in one thread that lives as long as this process.
        proc: subprocess.Popen[bytes] = popen() if self.detached else _SPAWNER.submit(popen).result()
        log.close()
        self.record["pids"][key] = proc.pid
        self._save()
        return proc

    def start(self, ca: Any, api_port: int, create_node: Callable[[dict[str, Any]], None]) -> None:
        """Start every real node: `ca` issues their certificates, `create_node` registers their Node objects (with the
        pod CIDR) before the kubelets do, and they reach the API server through the forwarder on `api_port`."""
        problems = missing_prerequisites()
        if problems:
            raise SandboxError("real nodes cannot start:\n  " + "\n  ".join(problems))
        started = time.monotonic()
        teardown(self.state_dir)  # whatever an earlier, killed sandbox in this folder left
        tools = realnode_dir(quiet=self.quiet_build)
        images = images_dir(tools, quiet=self.quiet_build)
        self.timings["build"] = time.monotonic() - started
        self.record = {
            "id": self.id,
            "bridge": self.bridge,
            "subnet": str(self.subnet),
            "host_address": self.host_address,
            "tools": str(tools),
            "images": str(images),
            "netns": [],
            "created_dirs": [],
            "cgroups": [],
            "pids": {},
            "sysctls": {name: Path("/proc/sys", name).read_text().strip() for name in KUBELET_SYSCTLS},
            "nodes": [],
        }
        self._save()
        self._network()
        self._mount_points()
        forward_args = [sys.executable, "-m", "cni_operator.sandbox.forward", "--to", f"127.0.0.1:{api_port}"]
        for index, _node in enumerate(self.nodes):
            ns = f"/run/netns/{self.netns(index)}"
            forward_args += ["--listen", f"{ns}=127.0.0.1:{api_port}", "--listen", f"{ns}={SERVICE_IP}:443"]
        self._spawn("forwarder", forward_args, "real-forwarder.log")
        self.timings["network"] = time.monotonic() - started
        with ThreadPoolExecutor(max_workers=max(1, len(self.nodes))) as pool:
            list(
                pool.map(
                    lambda n: self._start_node(n[0], n[1], ca, api_port, tools, images, create_node),
                    enumerate(self.nodes),
                )
            )
        self.timings["nodes"] = time.monotonic() - started

    def _network(self) -> None:
        self.record["netns"] = [self.netns(i) for i in range(len(self.nodes))]
        self._save()
        prefix = self.subnet.prefixlen
        _sh("ip", "link", "add", self.bridge, "type", "bridge")
        _sh("ip", "addr", "add", f"{self.host_address}/{prefix}", "dev", self.bridge)
        _sh("ip", "link", "set", self.bridge, "up")
        for index, node in enumerate(self.nodes):
            ns, host_end = self.netns(index), f"cnrv-{self.id}-{index}"
            _sh("ip", "netns", "add", ns)
            _sh("ip", "link", "add", host_end, "type", "veth", "peer", "name", "eth0", "netns", ns)
            _sh("ip", "link", "set", host_end, "master", self.bridge, "up")
            inside = ["ip", "netns", "exec", ns]
            _sh(*inside, "ip", "addr", "add", f"{node.address}/{prefix}", "dev", "eth0")
            _sh(*inside, "ip", "link", "set", "eth0", "up")
            _sh(*inside, "ip", "link", "set", "lo", "up")
            _sh(*inside, "ip", "addr", "add", f"{SERVICE_IP}/32", "dev", "lo")
            _sh(*inside, "sysctl", "-qw", "net.ipv4.ip_forward=1")
            # A default route on the link, without a gateway: plugins that find "the node's interface" through it
            # (flanneld) find eth0, and nothing leaves the sandbox (only the host answers ARP on that link).
            _sh(*inside, "ip", "route", "add", "default", "dev", "eth0")
            for other in self.nodes:
                if other is not node:
                    _sh(*inside, "ip", "route", "add", other.pod_cidr, "via", other.address)
            # the host reaches every pod too (tests and `kubectl exec` need none of it, debugging does)
            _sh("ip", "route", "add", node.pod_cidr, "via", node.address)

    def _mount_points(self) -> None:
        """The host paths the per-node folders are mounted over must exist; those made here are removed at teardown."""
        for target in NODE_MOUNTS:
            path = Path(target)
            first_missing = None
            for candidate in [path, *path.parents]:
                if candidate.exists():
                    break
                first_missing = candidate
            if first_missing is not None:
                self.record["created_dirs"].append(str(first_missing))
                self._save()
                path.mkdir(parents=True)

    def _start_node(
        self,
        index: int,
        node: RealNode,
        ca: Any,
        api_port: int,
        tools: Path,
        images: Path,
        create_node: Callable[[dict[str, Any]], None],
    ) -> None:
        begin = time.monotonic()
        base = self.node_dir(node)
        shutil.rmtree(base, ignore_errors=True)
        for sub in [*NODE_MOUNTS.values(), "containerd/root", "containerd/state", "containerd/opt", "kubelet/pki"]:
            (base / sub).mkdir(parents=True, exist_ok=True)
        socket_path = base / "containerd.sock"
        cgroup_root = f"/cnio-rn-{self.id}-{index}"
        entry = {
            "name": node.name,
            "index": index,
            "address": node.address,
            "pod_cidr": node.pod_cidr,
            "netns": self.netns(index),
            "dir": str(base),
            "conf_dir": str(base / NODE_MOUNTS["/etc/cni/net.d"]),
            "bin_dir": str(base / NODE_MOUNTS["/opt/cni/bin"]),
            "socket": str(socket_path),
            "cgroup_root": cgroup_root,
        }
        self.record["nodes"].append(entry)
        self.record["cgroups"].append(cgroup_root)
        self._save()
        _create_cgroup(cgroup_root)

        # The mount namespace, held by a sleep that runs in the node's network namespace. Private first (nothing
        # propagates to or from the host), then shared within itself: containerd refuses a Bidirectional hostPath
        # (the agent's /var/run/netns) unless the mount holding it is shared, as on a systemd host.
        mounts = " && ".join(f"mount --bind {base / sub} {target}" for target, sub in NODE_MOUNTS.items())
        script = f"set -e; {mounts} && mount --make-rshared / && exec sleep infinity"
        holder = self._spawn(
            f"{node.name}/holder",
            [
                "nsenter",
                f"--net=/run/netns/{self.netns(index)}",
                "unshare",
                "--mount",
                "--propagation",
                "private",
                "sh",
                "-c",
                script,
            ],
            f"{node.name}-holder.log",
        )
        deadline = time.monotonic() + 10
        while _cmdline(holder.pid)[:1] != ["sleep"]:
            if holder.poll() is not None or time.monotonic() > deadline:
                raise SandboxError(
                    f"{node.name}: the namespace holder failed: " + self._log_tail(f"{node.name}-holder.log")
                )
            time.sleep(0.02)
        enter = ["nsenter", "-t", str(holder.pid), "-m", "-n", "--"]

        config = base / "containerd" / "config.toml"
        config.write_text(_containerd_config(base, socket_path))
        containerd = self._spawn(
            f"{node.name}/containerd", [*enter, "containerd", "--config", str(config)], f"{node.name}-containerd.log"
        )
        deadline = time.monotonic() + 30
        while not socket_path.exists() or _sh("ctr", "--address", str(socket_path), "version", check=False).returncode:
            if containerd.poll() is not None or time.monotonic() > deadline:
                raise SandboxError(
                    f"{node.name}: containerd did not start:\n" + self._log_tail(f"{node.name}-containerd.log")
                )
            time.sleep(0.1)
        for archive in sorted(images.glob("*.tar")):
            _sh("ctr", "--address", str(socket_path), "-n", "k8s.io", "images", "import", str(archive), timeout=300)
        self.timings[f"{node.name}/images"] = time.monotonic() - begin

        # certificates and kubeconfig
        client = ca.issue(f"kubelet-{node.name}", f"system:node:{node.name}", organization="system:nodes")
        serving = ca.issue(f"kubelet-{node.name}-serving", node.name, server=True, hosts=[node.name, node.address])
        kubeconfig = base / "kubelet" / "kubeconfig"
        kubeconfig.write_text(
            yaml.safe_dump(
                {
                    "apiVersion": "v1",
                    "kind": "Config",
                    "clusters": [
                        {
                            "name": "sandbox",
                            "cluster": {
                                "server": f"https://127.0.0.1:{api_port}",
                                "certificate-authority": str(ca.pair.cert),
                            },
                        }
                    ],
                    "users": [
                        {
                            "name": "kubelet",
                            "user": {"client-certificate": str(client.cert), "client-key": str(client.key)},
                        }
                    ],
                    "contexts": [{"name": "sandbox", "context": {"cluster": "sandbox", "user": "kubelet"}}],
                    "current-context": "sandbox",
                }
            )
        )
        kubelet_config = base / "kubelet" / "config.yaml"
        kubelet_config.write_text(
            yaml.safe_dump(_kubelet_config(node, socket_path, cgroup_root, serving, ca.pair.cert))
        )
        create_node(node_manifest(node))
        self._spawn(
            f"{node.name}/kubelet",
            [
                *enter,
                str(tools / "bin" / "kubelet"),
                f"--config={kubelet_config}",
                f"--kubeconfig={kubeconfig}",
                f"--hostname-override={node.name}",
                f"--node-ip={node.address}",
                f"--cert-dir={base / 'kubelet' / 'pki'}",
                "--v=1",
            ],
            f"{node.name}-kubelet.log",
        )
        self.timings[f"{node.name}/kubelet-started"] = time.monotonic() - begin

    def _log_tail(self, name: str, lines: int = 30) -> str:
        path = self.state_dir / "logs" / name
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:]) if path.exists() else ""


def node_manifest(node: RealNode) -> dict[str, Any]:
    """The Node as the sandbox creates it before its kubelet registers: the pod CIDR (no controller allocates them in
    the sandbox) and the sandbox's labels; no kwok annotation, so kwok leaves it alone."""
    return {
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {
            "name": node.name,
            "labels": {
                "kubernetes.io/hostname": node.name,
                "kubernetes.io/os": "linux",
                "kubernetes.io/arch": "amd64",
                "type": "real",
                SANDBOX_NODE: "true",
                REAL_NODE_LABEL: "true",
                **node.labels,
            },
        },
        "spec": {"podCIDR": node.pod_cidr, "podCIDRs": [node.pod_cidr]},
    }


def _containerd_config(base: Path, socket_path: Path) -> str:
    cri = 'plugins."io.containerd.grpc.v1.cri"'
    return f"""version = 2
root = "{base / "containerd" / "root"}"
state = "{base / "containerd" / "state"}"
disabled_plugins = ["io.containerd.snapshotter.v1.btrfs", "io.containerd.snapshotter.v1.zfs",
  "io.containerd.snapshotter.v1.devmapper", "io.containerd.snapshotter.v1.aufs"]

[grpc]
  address = "{socket_path}"

[plugins."io.containerd.internal.v1.opt"]
  path = "{base / "containerd" / "opt"}"

[{cri}]
  sandbox_image = "{PAUSE_IMAGE}"
  # this VM's bounding set lacks CAP_SYS_RESOURCE: runc cannot lower oom_score_adj below its own
  restrict_oom_score_adj = true
  disable_apparmor = true
  stream_server_address = "127.0.0.1"
  stream_server_port = "0"
  [{cri}.containerd]
    snapshotter = "overlayfs"
    default_runtime_name = "runc"
    [{cri}.containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [{cri}.containerd.runtimes.runc.options]
        SystemdCgroup = false
  [{cri}.cni]
    bin_dir = "/opt/cni/bin"
    conf_dir = "/etc/cni/net.d"
    max_conf_num = 1
"""


def _kubelet_config(node: RealNode, socket_path: Path, cgroup_root: str, serving: Any, ca_cert: Path) -> dict[str, Any]:
    return {
        "apiVersion": "kubelet.config.k8s.io/v1beta1",
        "kind": "KubeletConfiguration",
        "address": node.address,
        "port": 10250,
        "readOnlyPort": 0,
        "healthzBindAddress": "127.0.0.1",
        "healthzPort": 10248,
        "tlsCertFile": str(serving.cert),
        "tlsPrivateKeyFile": str(serving.key),
        # the API server presents a client certificate from the sandbox CA (--kubelet-client-certificate)
        "authentication": {
            "anonymous": {"enabled": False},
            "webhook": {"enabled": False},
            "x509": {"clientCAFile": str(ca_cert)},
        },
        "authorization": {"mode": "AlwaysAllow"},
        "containerRuntimeEndpoint": f"unix://{socket_path}",
        "cgroupDriver": "cgroupfs",
        "cgroupRoot": cgroup_root,
        "failCgroupV1": False,
        "failSwapOn": False,
        "enforceNodeAllocatable": [],
        "evictionHard": {
            "memory.available": "50Mi",
            "nodefs.available": "1%",
            "imagefs.available": "1%",
            "nodefs.inodesFree": "1%",
        },
        # the images cannot be pulled back from anywhere: never collect them
        "imageGCHighThresholdPercent": 100,
        "imageGCLowThresholdPercent": 99,
        "imageMinimumGCAge": "876000h",
        "podLogsDir": "/var/log/pods",
        "protectKernelDefaults": False,
        "registerNode": True,
        "maxPods": 60,
        "serializeImagePulls": False,
        "resolvConf": "/etc/resolv.conf",
        "clusterDomain": "cluster.local",
        "nodeStatusUpdateFrequency": "4s",
        "nodeStatusReportFrequency": "1m",
        "syncFrequency": "10s",
        "kubeAPIQPS": 50,
        "kubeAPIBurst": 100,
        "runtimeRequestTimeout": "2m",
        "shutdownGracePeriod": "0s",
    }


# -- status ----------------------------------------------------------------------------------------------------------


def runtime_info(record: dict[str, Any], node: dict[str, Any]) -> dict[str, Any]:
    """`crictl info` of a node's containerd: the CNI config it loaded and whether its network is ready."""
    crictl = Path(record["tools"]) / "bin" / "crictl"
    result = _sh(str(crictl), f"--runtime-endpoint=unix://{node['socket']}", "info", check=False, timeout=15)
    if result.returncode != 0:
        return {"error": result.stderr.strip()}
    info: dict[str, Any] = json.loads(result.stdout)
    networks = [n for n in (info.get("cniconfig") or {}).get("Networks") or [] if n["Config"]["Name"] != "cni-loopback"]
    conditions = {c["type"]: c for c in (info.get("status") or {}).get("conditions") or []}
    loaded = networks[0]["Config"] if networks else None
    return {
        "network_ready": conditions.get("NetworkReady", {}).get("status") is True,
        "network_message": conditions.get("NetworkReady", {}).get("message", ""),
        "loaded_config": loaded["Name"] if loaded else None,
        "loaded_plugins": [p["Network"]["type"] for p in loaded["Plugins"]] if loaded else [],
        "loaded_source": loaded.get("Source") if loaded else None,
        "last_load_status": info.get("lastCNILoadStatus"),
    }


def status(state_dir: Path) -> list[dict[str, Any]]:
    """Per real node: name, address, pod CIDR, conf dir, processes' memory and the runtime's loaded CNI config."""
    record = read_record(state_dir)
    rows = []
    for node in sorted(record.get("nodes", []), key=lambda n: str(n["name"])):  # the same order every time
        rss = 0
        procs = {k.split("/", 1)[1]: pid for k, pid in record["pids"].items() if k.startswith(node["name"] + "/")}
        alive = {k: _alive(pid) for k, pid in procs.items()}
        for key, pid in procs.items():
            if alive[key] and key != "holder":
                with contextlib.suppress(OSError, ValueError):
                    rss += int(Path(f"/proc/{pid}/statm").read_text().split()[1]) * os.sysconf("SC_PAGE_SIZE")
        rows.append({**node, "processes": alive, "rss": rss, **runtime_info(record, node)})
    return rows


def running_real_processes(state_dir: Path) -> list[str]:
    """The recorded real-node processes (`<node>/kubelet`, ..., `forwarder`) still alive."""
    return sorted(name for name, pid in read_record(state_dir).get("pids", {}).items() if _alive(pid))


# -- teardown --------------------------------------------------------------------------------------------------------


def teardown(state_dir: Path) -> list[str]:
    """Remove everything `RealNodes.start` recorded in `state_dir`; return what could not be removed (empty: all)."""
    record = read_record(state_dir)
    if not record:
        return []
    pids: dict[str, int] = record.get("pids", {})
    nodes = record.get("nodes", [])
    # 1. kubelets first, so nothing restarts the pods
    for node in nodes:
        pid = pids.get(f"{node['name']}/kubelet")
        if pid:
            _kill(pid)
    # 2. every pod through the CRI: stops the containers and runs the CNI DEL (leases, veths, iptables rules)
    crictl = Path(record.get("tools", "")) / "bin" / "crictl"

    def remove_pods(node: dict[str, Any]) -> None:
        cid = pids.get(f"{node['name']}/containerd")
        if cid and _alive(cid) and crictl.is_file():
            endpoint = f"--runtime-endpoint=unix://{node['socket']}"
            with contextlib.suppress(subprocess.TimeoutExpired):
                _sh(str(crictl), endpoint, "--timeout=20s", "rmp", "--all", "--force", check=False, timeout=60)

    with ThreadPoolExecutor(max_workers=max(1, len(nodes))) as pool:
        list(pool.map(remove_pods, nodes))
    # 3. containerd, then whatever it left: shims (they outlive containerd by design) and processes in the cgroups
    for node in nodes:
        pid = pids.get(f"{node['name']}/containerd")
        if pid:
            _kill(pid)
    for node in nodes:
        for pid in _pids():
            if node["socket"] in " ".join(_cmdline(pid)) or node["dir"] in " ".join(_cmdline(pid)[:1]):
                _kill(pid, timeout=2)
        for pid in _cgroup_procs(node["cgroup_root"]):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
    # 4. the namespace holders and the forwarder: the mount namespaces, with their bind mounts, go with the last process
    for key, pid in pids.items():
        if key.endswith("/holder") or key == "forwarder":
            _kill(pid, timeout=3)
    left: list[str] = []
    deadline = time.monotonic() + 10
    for node in nodes:
        while _cgroup_procs(node["cgroup_root"]) and time.monotonic() < deadline:
            time.sleep(0.1)
    for cgroup in record.get("cgroups", []):
        left += _remove_cgroup(cgroup)
    # 5. namespaces (their veths and every pod's go with them), then the bridge (and the host's routes through it)
    for node in nodes:
        host_end = f"cnrv-{record['id']}-{node['index']}"
        if Path("/sys/class/net", host_end).exists():
            _sh("ip", "link", "del", host_end, check=False)
    for ns in record.get("netns", []):
        if Path("/run/netns", ns).exists():
            result = _sh("ip", "netns", "del", ns, check=False)
            if result.returncode:
                left.append(f"netns {ns}: {result.stderr.strip()}")
    if record.get("bridge") and Path("/sys/class/net", record["bridge"]).exists():
        _sh("ip", "link", "del", record["bridge"], check=False)
    for name in record.get("sysctls", {}) or {}:
        with contextlib.suppress(OSError):
            Path("/proc/sys", name).write_text(record["sysctls"][name])
    for created in sorted(record.get("created_dirs", []), key=len, reverse=True):
        path = Path(created)
        for sub in (
            sorted((p for p in path.rglob("*") if p.is_dir()), key=lambda p: len(p.parts), reverse=True)
            if path.is_dir()
            else []
        ):
            with contextlib.suppress(OSError):
                sub.rmdir()
        with contextlib.suppress(OSError):
            path.rmdir()
        if path.exists():
            left.append(f"{path} (not empty)")
    left += leftovers(state_dir, record)
    if not left:
        (state_dir / STATE_FILE).unlink(missing_ok=True)
    return left


def leftovers(state_dir: Path, record: dict[str, Any] | None = None) -> list[str]:
    """What of this sandbox's real nodes still exists on the host: processes, namespaces, links, mounts, cgroups."""
    record = record if record is not None else read_record(state_dir)
    if not record:
        return []
    found = []
    marker = str((state_dir / "real").resolve())
    for pid in _pids():
        if pid != os.getpid() and any(marker in arg for arg in _cmdline(pid)):
            found.append(f"process {pid}: {' '.join(_cmdline(pid))[:120]}")
    for key, pid in record.get("pids", {}).items():
        if _alive(pid) and pid != os.getpid():
            found.append(f"process {key} ({pid})")
    netns = _sh("ip", "netns", "list", check=False).stdout
    found += [f"netns {line.split()[0]}" for line in netns.splitlines() if line.startswith(f"cnio-rn-{record['id']}")]
    links = _sh("ip", "-o", "link", "show", check=False).stdout
    for line in links.splitlines():
        name = line.split(":")[1].strip().split("@")[0]
        if record["id"] in name and name.startswith(("cnrb-", "cnrv-")):
            found.append(f"link {name}")
    with contextlib.suppress(OSError):
        for line in Path("/proc/self/mountinfo").read_text().splitlines():
            if marker in line:
                found.append(f"mount {line.split()[4]}")
    for cgroup in record.get("cgroups", []):
        found += [f"cgroup {d}" for d in _cgroup_dirs(cgroup) if d.exists()]
    return found
