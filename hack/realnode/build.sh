#!/usr/bin/env bash
# Builds what a sandbox real node runs, besides Debian's containerd and runc, into a cache folder keyed by the pins:
#   kubelet     k8s.io/kubernetes/cmd/kubelet from hack/controlplane's go.mod/go.sum, same ldflags as the control plane
#   crictl      sigs.k8s.io/cri-tools/cmd/crictl (reads the runtime's loaded CNI config for `sandbox status`)
#   pause       gcc -static of build/pause/linux/pause.c from the pinned k8s.io/kubernetes module source
#   cni/<ver>/  the reference plugins from github.com/containernetworking/plugins at the catalog's releases
# Usage: hack/realnode/build.sh     -> prints the folder on its last line
# Env:   CNI_OPERATOR_CACHE (default ~/.cache/cni-operator)
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
cp_dir=$(cd "$here/../controlplane" && pwd)
cache=${CNI_OPERATOR_CACHE:-$HOME/.cache/cni-operator}
kube_version=$(awk '$1=="k8s.io/kubernetes"{print $2; exit}' "$cp_dir/go.mod")
crictl_version=v1.37.0
cni_versions=(v1.8.0 v1.9.1)
cni_plugins=(main/bridge main/loopback main/ptp ipam/host-local ipam/static meta/portmap meta/bandwidth meta/tuning)
# Flannel for the real nodes, as far as the Go module proxy serves it:
# - flanneld v0.27.4 (github.com/flannel-io/flannel). v0.28.9 cannot be built: its dependency
#   github.com/tencentcloud/tencentcloud-sdk-go/tencentcloud/vpc@v1.3.149 is not served (403).
# - the flannel CNI plugin: github.com/flannel-io/cni-plugin is not served at all (403 for every version, so not
#   the catalog's v1.8.0-flannel1 either). Built instead from its previous home, containernetworking/plugins
#   v0.9.1, plugins/meta/flannel (the same plugin before it moved to flannel-io/cni-plugin in 2021).
flannel_version=v0.27.4
flannel_cni_from=v0.9.1
key=$(cat "$cp_dir/go.mod" "$cp_dir/go.sum" "$here/build.sh" | sha256sum | cut -c1-16)
out="$cache/realnode/$key"
bin="$out/bin"

complete() {
  for t in kubelet crictl pause; do [ -x "$bin/$t" ] || return 1; done
  for v in "${cni_versions[@]}"; do [ -x "$out/cni/$v/bridge" ] || return 1; done
  [ -x "$out/flannel/$flannel_version/flanneld" ] && [ -x "$out/flannel/cni/flannel" ]
}
if complete; then echo "$out"; exit 0; fi

command -v go >/dev/null || { echo "build.sh: 'go' not found; install Go 1.26 or newer" >&2; exit 1; }
command -v gcc >/dev/null || { echo "build.sh: 'gcc' not found: apt-get install gcc libc6-dev" >&2; exit 1; }
mkdir -p "$out.partial/bin" "$out.partial/work"
export GOFLAGS="-mod=mod -buildvcs=false" CGO_ENABLED=0

# kubelet: a copy of the control plane's module, so the pins are the same and hack/controlplane stays untouched.
if [ ! -x "$out.partial/bin/kubelet" ]; then
  echo "[realnode] building kubelet $kube_version ..." >&2
  start=$SECONDS
  cp "$cp_dir/go.mod" "$cp_dir/go.sum" "$out.partial/work/"
  minor=${kube_version#v1.}; minor=${minor%%.*}
  pkg=k8s.io/component-base/version
  ldflags="-s -w -X $pkg.gitVersion=$kube_version -X $pkg.gitMajor=1 -X $pkg.gitMinor=$minor -X $pkg.gitTreeState=clean"
  ldflags+=" -X $pkg.buildDate=2026-01-01T00:00:00Z -X $pkg.gitCommit=$kube_version"
  (cd "$out.partial/work" && go build -trimpath -ldflags "$ldflags" -o "$out.partial/bin/kubelet.tmp" k8s.io/kubernetes/cmd/kubelet)
  mv "$out.partial/bin/kubelet.tmp" "$out.partial/bin/kubelet"
  echo "[realnode] kubelet built in $((SECONDS - start))s" >&2
fi

if [ ! -x "$out.partial/bin/pause" ]; then
  src=$(cd "$out.partial/work" && cp "$cp_dir/go.mod" "$cp_dir/go.sum" . && go mod download -json k8s.io/kubernetes | awk -F'"' '$2=="Dir"{print $4}')
  echo "[realnode] building pause from $src/build/pause/linux/pause.c ..." >&2
  gcc -Os -static -Wall -Werror -DVERSION=v3.10-cni-operator -o "$out.partial/bin/pause" "$src/build/pause/linux/pause.c"
  strip "$out.partial/bin/pause"
fi

if [ ! -x "$out.partial/bin/crictl" ]; then
  echo "[realnode] building crictl $crictl_version ..." >&2
  GOBIN="$out.partial/bin" go install -trimpath -ldflags "-s -w" "sigs.k8s.io/cri-tools/cmd/crictl@$crictl_version"
fi

for v in "${cni_versions[@]}"; do
  dest="$out.partial/cni/$v"
  [ -x "$dest/bridge" ] && continue
  echo "[realnode] building containernetworking/plugins $v ..." >&2
  start=$SECONDS
  mkdir -p "$dest.tmp"
  pkgs=(); for p in "${cni_plugins[@]}"; do pkgs+=("github.com/containernetworking/plugins/plugins/$p@$v"); done
  GOBIN="$dest.tmp" go install -trimpath \
    -ldflags "-s -w -X github.com/containernetworking/plugins/pkg/utils/buildversion.BuildVersion=$v" "${pkgs[@]}"
  rm -rf "$dest"; mv "$dest.tmp" "$dest"
  echo "[realnode] plugins $v built in $((SECONDS - start))s" >&2
done

if [ ! -x "$out.partial/flannel/$flannel_version/flanneld" ]; then
  echo "[realnode] building flanneld $flannel_version ..." >&2
  start=$SECONDS
  mkdir -p "$out.partial/flannel/$flannel_version"
  # cgo: the udp backend's proxy is C
  CGO_ENABLED=1 GOBIN="$out.partial/flannel/$flannel_version.tmp" go install -trimpath \
    -ldflags "-s -w -X github.com/flannel-io/flannel/pkg/version.Version=$flannel_version" \
    "github.com/flannel-io/flannel@$flannel_version"
  mv "$out.partial/flannel/$flannel_version.tmp/flannel" "$out.partial/flannel/$flannel_version/flanneld"
  rm -rf "$out.partial/flannel/$flannel_version.tmp"
  echo "[realnode] flanneld built in $((SECONDS - start))s" >&2
fi
if [ ! -x "$out.partial/flannel/cni/flannel" ]; then
  echo "[realnode] building the flannel CNI plugin (containernetworking/plugins $flannel_cni_from) ..." >&2
  GOBIN="$out.partial/flannel/cni" go install -trimpath -ldflags "-s -w" \
    "github.com/containernetworking/plugins/plugins/meta/flannel@$flannel_cni_from"
fi

rm -rf "$out.partial/work" "$out"; mv "$out.partial" "$out"
echo "$out"
