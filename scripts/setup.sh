#!/usr/bin/env bash
# Everything the demo and the tests need on a fresh machine, each step skipped when already done:
# Debian packages, the Python venv with the project installed, and the control-plane binaries (built once, cached).
set -euo pipefail
cd "$(dirname "$0")/.."

step() { printf '\033[1m==> %s\033[0m\n' "$*" >&2; }

# Debian packages: iproute2 for network namespaces, iputils-ping and containernetworking-plugins for the node agent's
# datapath tests.
# The sandbox's real nodes (tests/realnode) add containerd and runc (Debian's), busybox-static (the test pods'
# image) and gcc (the static pause binary).
missing=()
command -v ip >/dev/null || missing+=(iproute2)
command -v ping >/dev/null || missing+=(iputils-ping)
[ -x /usr/lib/cni/bridge ] || missing+=(containernetworking-plugins)
command -v containerd >/dev/null || missing+=(containerd)
command -v runc >/dev/null || missing+=(runc)
[ -x /usr/bin/busybox ] || missing+=(busybox-static)
command -v gcc >/dev/null || missing+=(gcc libc6-dev)
command -v iptables >/dev/null || missing+=(iptables)
if ((${#missing[@]})); then
  step "installing Debian packages: ${missing[*]}"
  sudo=""; [ "$(id -u)" -eq 0 ] || sudo="sudo"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${missing[@]}" >/dev/null
fi

# Python: a venv in .venv with the project (editable) and its dev tools; reinstalled when pyproject.toml changes.
python=${PYTHON:-python3}
stamp=.venv/.installed-$(sha256sum pyproject.toml | cut -c1-16)
if [ ! -e "$stamp" ]; then
  step "creating .venv and installing cni-operator with its dev tools"
  [ -x .venv/bin/python ] || "$python" -m venv .venv
  .venv/bin/pip install -q --upgrade pip
  .venv/bin/pip install -q -e '.[dev]'
  rm -f .venv/.installed-*; touch "$stamp"
fi

# The control plane: kube-apiserver, kube-controller-manager, kube-scheduler, etcd, kwok (first build: ~10-20 min).
step "control-plane binaries (built once into ${CNI_OPERATOR_CACHE:-~/.cache/cni-operator})"
bin=$(hack/controlplane/build.sh | tail -n 1)
echo "$bin" > .venv/controlplane-bin

# Real nodes: kubelet (same pins as the control plane), crictl, the static pause and the reference plugins at the
# catalog's releases, built from Go modules (hack/realnode/build.sh); then the OCI image archives the real nodes
# import (hack/images/build.py: pause, busybox, the agent and the plugins images). Both cached under the same root.
step "real-node binaries and images (built once into ${CNI_OPERATOR_CACHE:-~/.cache/cni-operator})"
realnode=$(hack/realnode/build.sh | tail -n 1)
echo "$realnode" > .venv/realnode-bin
cache=${CNI_OPERATOR_CACHE:-$HOME/.cache/cni-operator}
mkdir -p "$cache/images"
.venv/bin/python hack/images/build.py --realnode "$realnode" --out "$cache/images" | tail -n 1 > .venv/realnode-images
