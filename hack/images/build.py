#!/usr/bin/env python3
"""Build the images the sandbox's real nodes run, as one OCI archive, without Docker or a registry.

  registry.k8s.io/pause:3.10                    the static pause built by hack/realnode/build.sh
  docker.io/library/busybox:1.35                Debian's busybox-static, one symlink per applet (test pods)
  ghcr.io/cni-operator/cni-operator:v0.1.0      the operator and agent: the host's Python with cni-operator and its
                                                runtime dependencies, ip, ping and iptables (the agent's needs)
  ghcr.io/cni-operator/reference-plugins:<v>    the same layer, plus release <v>'s plugins (built from their Go
                                                module) in /usr/lib/cni, for `cni-operator agent install-binaries`
  ghcr.io/flannel-io/flannel:v0.27.4            flanneld v0.27.4 at /opt/bin/flanneld on that layer, plus cp
  ghcr.io/flannel-io/flannel-cni-plugin:v1.8.0-flannel1   the flannel CNI plugin at /flannel, plus cp; NOT upstream's
                                                binary: built from containernetworking/plugins v0.9.1 (see
                                                hack/realnode/build.sh: flannel-io/cni-plugin is not served)

The names are the catalog's (bundled-plugins/), so the rendered DaemonSets run them as they are, from the node's
store (imagePullPolicy IfNotPresent); the flannel images are added when hack/realnode/build.sh built them. All
images share one archive, `images.tar`, so the Python layer is stored, imported and unpacked once per node.

Usage: build.py --realnode DIR --out DIR     (prints the output folder on its last line)
The archive is kept in the cache, rebuilt only when an input changed, and never committed.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import re
import shutil
import subprocess
import sys
import sysconfig
import tempfile
from importlib import metadata
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from oci import Archive, Layer

REPO = Path(__file__).resolve().parents[2]
ARCHIVE = "images.tar"  # every image in one archive: the Python layer they share is imported once
PAUSE = "registry.k8s.io/pause:3.10"
BUSYBOX = "docker.io/library/busybox:1.35"
AGENT = "ghcr.io/cni-operator/cni-operator:v0.1.0"
PLUGINS = "ghcr.io/cni-operator/reference-plugins:{version}"
BUSYBOX_BIN = Path("/usr/bin/busybox")
# Host tools the agent's image needs (docs/agent.md: ip, ping, iptables for the plugins' ipMasq/portmap rules).
AGENT_TOOLS = ["/usr/bin/ip", "/sbin/ip", "/usr/bin/ping", "/usr/sbin/xtables-nft-multi", "/usr/bin/sh", "/bin/sh"]
IPTABLES_NAMES = ["iptables", "iptables-save", "iptables-restore", "ip6tables", "ip6tables-save", "ip6tables-restore"]


def busybox_image(archive: Archive) -> None:
    if not BUSYBOX_BIN.is_file():
        sys.exit(f"{BUSYBOX_BIN} missing: apt-get install -y busybox-static (scripts/setup.sh does it)")
    applets = subprocess.run([str(BUSYBOX_BIN), "--list"], capture_output=True, text=True, check=True).stdout.split()
    layer = Layer(files={"/bin/busybox": BUSYBOX_BIN}, dirs={"/tmp", "/etc", "/proc", "/sys", "/dev", "/root", "/run"})
    layer.symlinks["/var/run"] = "/run"
    layer.symlinks.update({f"/bin/{a}": "busybox" for a in applets if a != "busybox"})
    layer.data["/etc/passwd"] = (b"root:x:0:0:root:/root:/bin/sh\n", 0o644)
    layer.data["/etc/group"] = (b"root:x:0:\n", 0o644)
    archive.add(BUSYBOX, [layer], cmd=["sh"])


def pause_image(realnode: Path, archive: Archive) -> None:
    archive.add(PAUSE, [Layer(files={"/pause": realnode / "bin" / "pause"})], entrypoint=["/pause"])


def _ldd(path: Path) -> set[Path]:
    result = subprocess.run(["ldd", str(path)], capture_output=True, text=True, check=False)
    libs = set()
    for line in result.stdout.splitlines():
        m = re.search(r"(/\S+) \(0x", line)
        if m:
            libs.add(Path(m.group(1)))
    return libs


def _add_with_libs(layer: Layer, host: Path, image_path: str | None = None) -> set[Path]:
    """Add a host file (resolving symlinks) and return the shared libraries it needs."""
    real = host.resolve()
    layer.files[image_path or str(host)] = real
    return _ldd(real)


def _runtime_distributions() -> list[metadata.Distribution]:
    found: dict[str, metadata.Distribution] = {}
    todo = [req for req in metadata.requires("cni-operator") or [] if "extra ==" not in req]
    while todo:
        name = re.split(r"[ ;<>=!~\[(]", todo.pop(), maxsplit=1)[0].strip()
        key = re.sub(r"[-_.]+", "-", name).lower()
        if not key or key in found:
            continue
        try:
            dist = metadata.distribution(name)
        except metadata.PackageNotFoundError:
            continue  # a requirement for another platform or Python version
        found[key] = dist
        todo += [req for req in dist.requires or [] if "extra ==" not in req]
    return list(found.values())


def python_layer() -> Layer:
    """The host's Python (the interpreter, its standard library, the venv's site-packages without editable hooks),
    the agent's host tools, and every shared library they load."""
    layer = Layer(dirs={"/tmp", "/proc", "/sys", "/dev", "/run", "/etc"})
    layer.symlinks["/var/run"] = "/run"  # as on Debian: ip netns and the plugins use either name
    libs: set[Path] = set()
    # The interpreter keeps its host path: it finds its standard library relative to itself.
    py = Path(sys.base_prefix) / "bin" / f"python{sys.version_info.major}.{sys.version_info.minor}"
    libs |= _add_with_libs(layer, py, str(py))
    if str(py) != "/usr/bin/python3":
        layer.symlinks["/usr/bin/python3"] = str(py)
    stdlib = Path(sysconfig.get_paths(vars={"base": sys.base_prefix, "installed_base": sys.base_prefix})["stdlib"])
    skip = ("test", "tests", "__pycache__", "idlelib", "tkinter", "turtledemo", "ensurepip", "site-packages")
    skip += (
        "lib2to3",
        "pydoc_data",
        "distutils",
        f"config-{sys.version_info.major}.{sys.version_info.minor}-x86_64-linux-gnu",
    )
    layer.add_tree(str(stdlib), stdlib, skip=skip)
    target = f"{stdlib}/site-packages"
    # the runtime dependencies of cni-operator (its metadata's requirements, transitively), not the dev tools
    for dist in _runtime_distributions():
        for file in dist.files or []:
            host = Path(str(dist.locate_file(file)))
            if host.is_file() and "__pycache__" not in file.parts and not str(file).startswith(".."):
                layer.files[f"{target}/{file}"] = host
    # the package itself, not editable, and the catalog and templates it reads (CNI_OPERATOR_DATA)
    layer.add_tree(f"{target}/cni_operator", REPO / "operator" / "cni_operator", skip=("__pycache__",))
    layer.add_tree("/opt/cni-operator/bundled-plugins", REPO / "bundled-plugins")
    layer.add_tree("/opt/cni-operator/templates", REPO / "templates")
    layer.data["/usr/bin/cni-operator"] = (
        b"#!/usr/bin/python3\nimport sys\nfrom cni_operator.cli import main\nsys.exit(main())\n",
        0o755,
    )
    for so in [p for p in layer.files.values() if ".so" in p.name]:
        libs |= _ldd(so)
    for tool in AGENT_TOOLS:
        if Path(tool).exists():
            libs |= _add_with_libs(layer, Path(tool))
    for name in IPTABLES_NAMES:
        layer.symlinks[f"/usr/sbin/{name}"] = "xtables-nft-multi"
    xtables = Path("/usr/lib/x86_64-linux-gnu/xtables")
    if xtables.is_dir():
        layer.add_tree(str(xtables), xtables)
        for so in xtables.glob("*.so"):
            libs |= _ldd(so)
    seen: set[Path] = set()
    while libs - seen:
        lib = (libs - seen).pop()
        seen.add(lib)
        layer.files[str(lib)] = lib.resolve()
        libs |= _ldd(lib.resolve())
    layer.data["/etc/passwd"] = (b"root:x:0:0:root:/root:/bin/sh\n", 0o644)
    layer.data["/etc/group"] = (b"root:x:0:\n", 0o644)
    return layer


def python_images(realnode: Path, archive: Archive, versions: list[str]) -> Layer:
    base = python_layer()
    env = {"CNI_OPERATOR_DATA": "/opt/cni-operator", "PYTHONDONTWRITEBYTECODE": "1"}
    archive.add(AGENT, [base], entrypoint=["cni-operator"], env=env)
    for version in versions:
        plugins = Layer()
        plugins.add_tree("/usr/lib/cni", realnode / "cni" / version)
        archive.add(PLUGINS.format(version=version), [base, plugins], entrypoint=["cni-operator"], env=env)
    return base


FLANNEL = {
    # the catalog's image names for flannel v0.27.4 (bundled-plugins/flannel/v0.27.4.yaml)
    "v0.27.4": ("ghcr.io/flannel-io/flannel:v0.27.4", "ghcr.io/flannel-io/flannel-cni-plugin:v1.8.0-flannel1"),
}


def flannel_images(realnode: Path, archive: Archive, base: Layer) -> list[str]:
    """flanneld at /opt/bin/flanneld on the agent's base layer (it brings iptables and the C library flanneld's cgo
    needs) plus `cp`; the flannel CNI plugin at /flannel with `cp`, for the init container (templates/flannel)."""
    names = []
    cni = realnode / "flannel" / "cni" / "flannel"
    for version, (flannel, cni_plugin) in FLANNEL.items():
        flanneld = realnode / "flannel" / version / "flanneld"
        if not flanneld.is_file() or not cni.is_file():
            continue
        layer = Layer(files={"/opt/bin/flanneld": flanneld, "/bin/busybox": BUSYBOX_BIN})
        layer.symlinks["/bin/cp"] = "busybox"
        layer.dirs |= {"/run/flannel", "/etc/kube-flannel"}
        for lib in _ldd(flanneld):
            layer.files[str(lib)] = lib.resolve()
        archive.add(flannel, [base, layer], entrypoint=["/opt/bin/flanneld"])
        plugin = Layer(files={"/flannel": cni, "/bin/busybox": BUSYBOX_BIN})
        plugin.symlinks["/bin/cp"] = "busybox"
        archive.add(cni_plugin, [plugin], cmd=["cp", "-f", "/flannel", "/opt/cni/bin/flannel"])
        names += [flannel, cni_plugin]
    return names


def _key(realnode: Path) -> str:
    h = hashlib.sha256()
    for path in sorted(Path(__file__).parent.glob("*.py")):
        h.update(path.read_bytes())
    h.update(str(realnode).encode())
    for root in ("operator/cni_operator", "bundled-plugins", "templates"):
        for path in sorted((REPO / root).rglob("*")):
            # the sandbox never runs in a pod: editing it does not rebuild the images
            if path.is_file() and "__pycache__" not in path.parts and "sandbox" not in path.parts:
                h.update(str(path.relative_to(REPO)).encode())
                h.update(path.read_bytes())
    h.update(sys.version.encode())
    return h.hexdigest()[:16]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--realnode", type=Path, required=True, help="the folder hack/realnode/build.sh printed")
    parser.add_argument("--out", type=Path, required=True, help="cache folder; archives go to <out>/<key>/")
    parser.add_argument("--versions", default="v1.8.0,v1.9.1")
    args = parser.parse_args()
    out = args.out / _key(args.realnode)
    versions = args.versions.split(",")
    if (out / ARCHIVE).is_file():
        print(out)
        return
    tmp = Path(tempfile.mkdtemp(prefix=".partial-", dir=args.out if args.out.exists() else None))
    try:
        archive = Archive()
        pause_image(args.realnode, archive)
        busybox_image(archive)
        base = python_images(args.realnode, archive, versions)
        flannel = flannel_images(args.realnode, archive, base)
        archive.write(tmp / ARCHIVE)
        names = {"pause": PAUSE, "busybox": BUSYBOX, "agent": AGENT}
        names |= {f"plugins-{v}": PLUGINS.format(version=v) for v in versions}
        names |= {f"flannel-{i}": n for i, n in enumerate(flannel)}
        (tmp / "images.json").write_text(json.dumps(names, indent=2))
        # one set of archives per cache: older keys are only disk space
        for old in args.out.iterdir():
            if old.is_dir() and old != tmp and len(old.name) == 16:
                shutil.rmtree(old, ignore_errors=True)
        out.parent.mkdir(parents=True, exist_ok=True)
        tmp.rename(out)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    print(out)


if __name__ == "__main__":
    main()
