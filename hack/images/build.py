#!/usr/bin/env python3
"""Build the images the sandbox's real nodes run, as OCI archives, without Docker or a registry.

  pause.tar              registry.k8s.io/pause:3.10          the static pause built by hack/realnode/build.sh
  busybox.tar            docker.io/library/busybox:1.35      Debian's busybox-static, one symlink per applet
  cni-operator.tar       ghcr.io/cni-operator/cni-operator:v0.1.0          Python + the installed package + ip,
                                                                            ping, iptables (the agent's needs)
  reference-plugins-<v>.tar  ghcr.io/cni-operator/reference-plugins:<v>    the same, plus the plugins of release
                                                                            <v> built from their Go module in
                                                                            /usr/lib/cni

Usage: build.py --realnode DIR --out DIR [--only NAME,...]   (prints the output folder on its last line)
The archives are kept in the cache and rebuilt only when an input changed; they are never committed.
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
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from oci import Layer, write_image

REPO = Path(__file__).resolve().parents[2]
PAUSE = "registry.k8s.io/pause:3.10"
BUSYBOX = "docker.io/library/busybox:1.35"
AGENT = "ghcr.io/cni-operator/cni-operator:v0.1.0"
PLUGINS = "ghcr.io/cni-operator/reference-plugins:{version}"
BUSYBOX_BIN = Path("/usr/bin/busybox")
# Host tools the agent's image needs (docs/agent.md: ip, ping, iptables for the plugins' ipMasq/portmap rules).
AGENT_TOOLS = ["/usr/bin/ip", "/sbin/ip", "/usr/bin/ping", "/usr/sbin/xtables-nft-multi", "/usr/bin/sh", "/bin/sh"]
IPTABLES_NAMES = ["iptables", "iptables-save", "iptables-restore", "ip6tables", "ip6tables-save", "ip6tables-restore"]


def busybox_image(out: Path) -> None:
    if not BUSYBOX_BIN.is_file():
        sys.exit(f"{BUSYBOX_BIN} missing: apt-get install -y busybox-static (scripts/setup.sh does it)")
    applets = subprocess.run([str(BUSYBOX_BIN), "--list"], capture_output=True, text=True, check=True).stdout.split()
    layer = Layer(files={"/bin/busybox": BUSYBOX_BIN}, dirs={"/tmp", "/etc", "/proc", "/sys", "/dev", "/root"})
    layer.symlinks.update({f"/bin/{a}": "busybox" for a in applets if a != "busybox"})
    layer.data["/etc/passwd"] = (b"root:x:0:0:root:/root:/bin/sh\n", 0o644)
    layer.data["/etc/group"] = (b"root:x:0:\n", 0o644)
    write_image(out / "busybox.tar", BUSYBOX, [layer], cmd=["sh"])


def pause_image(realnode: Path, out: Path) -> None:
    layer = Layer(files={"/pause": realnode / "bin" / "pause"})
    write_image(out / "pause.tar", PAUSE, [layer], entrypoint=["/pause"])


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


def python_layer() -> Layer:
    """The host's Python (the interpreter, its standard library, the venv's site-packages without editable hooks),
    the agent's host tools, and every shared library they load."""
    layer = Layer(dirs={"/tmp", "/proc", "/sys", "/dev", "/run", "/var/run", "/etc"})
    libs: set[Path] = set()
    # The interpreter keeps its host path: it finds its standard library relative to itself.
    py = Path(sys.base_prefix) / "bin" / f"python{sys.version_info.major}.{sys.version_info.minor}"
    libs |= _add_with_libs(layer, py, str(py))
    if str(py) != "/usr/bin/python3":
        layer.symlinks["/usr/bin/python3"] = str(py)
    stdlib = Path(sysconfig.get_paths(vars={"base": sys.base_prefix, "installed_base": sys.base_prefix})["stdlib"])
    layer.add_tree(
        str(stdlib), stdlib, skip=("test", "__pycache__", "idlelib", "tkinter", "ensurepip", "site-packages")
    )
    site = Path(sysconfig.get_paths()["purelib"])
    target = f"{stdlib}/site-packages"
    skip = ("__pycache__", "pip", "setuptools", "_pytest", "pytest", "mypy", "hypothesis", "ruff", "importlinter")
    layer.add_tree(target, site, skip=skip)
    for path in list(layer.files):
        name = Path(path).name
        if "__editable__" in name or name.startswith("cni_operator") or name.endswith(".pth"):
            del layer.files[path]
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


def python_images(realnode: Path, out: Path, versions: list[str]) -> None:
    base = python_layer()
    env = {"CNI_OPERATOR_DATA": "/opt/cni-operator", "PYTHONDONTWRITEBYTECODE": "1"}
    write_image(out / "cni-operator.tar", AGENT, [base], entrypoint=["cni-operator"], env=env)
    for version in versions:
        plugins = Layer()
        plugins.add_tree("/usr/lib/cni", realnode / "cni" / version)
        write_image(
            out / f"reference-plugins-{version}.tar",
            PLUGINS.format(version=version),
            [base, plugins],
            entrypoint=["cni-operator"],
            env=env,
        )


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
    wanted = ["pause.tar", "busybox.tar", "cni-operator.tar"] + [f"reference-plugins-{v}.tar" for v in versions]
    if all((out / w).is_file() for w in wanted):
        print(out)
        return
    tmp = Path(tempfile.mkdtemp(prefix=".partial-", dir=args.out if args.out.exists() else None))
    try:
        pause_image(args.realnode, tmp)
        busybox_image(tmp)
        python_images(args.realnode, tmp, versions)
        (tmp / "images.json").write_text(
            json.dumps({"pause": PAUSE, "busybox": BUSYBOX, "agent": AGENT, "plugins": PLUGINS}, indent=2)
        )
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
