#!/usr/bin/env bash
# Builds the control-plane binaries into a cache folder keyed by the pins, and reuses them when the pins are unchanged.
# Usage: hack/controlplane/build.sh            -> prints the bin folder on its last line
# Env:   CNI_OPERATOR_CACHE (default ~/.cache/cni-operator)
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
cache=${CNI_OPERATOR_CACHE:-$HOME/.cache/cni-operator}
kube_version=$(awk '$1=="k8s.io/kubernetes"{print $2; exit}' "$here/go.mod")
key=$(cat "$here/go.mod" "$here/go.sum" "$here/build.sh" | sha256sum | cut -c1-16)
bin="$cache/controlplane/$key/bin"
tools=(etcd kube-apiserver kube-controller-manager kube-scheduler kwok kubectl)

complete() { for t in "${tools[@]}"; do [ -x "$bin/$t" ] || return 1; done; }
if complete; then echo "$bin"; exit 0; fi

command -v go >/dev/null || { echo "build.sh: 'go' not found; install Go 1.26 or newer" >&2; exit 1; }
mkdir -p "$bin.partial"
minor=${kube_version#v1.}; minor=${minor%%.*}
pkg=k8s.io/component-base/version
ldflags="-s -w -X $pkg.gitVersion=$kube_version -X $pkg.gitMajor=1 -X $pkg.gitMinor=$minor -X $pkg.gitTreeState=clean"
ldflags+=" -X $pkg.buildDate=2026-01-01T00:00:00Z -X $pkg.gitCommit=$kube_version"
cd "$here"
export GOFLAGS="-mod=mod -buildvcs=false" CGO_ENABLED=0
declare -A source=(
  [etcd]=go.etcd.io/etcd/server/v3
  [kube-apiserver]=k8s.io/kubernetes/cmd/kube-apiserver
  [kube-controller-manager]=k8s.io/kubernetes/cmd/kube-controller-manager
  [kube-scheduler]=k8s.io/kubernetes/cmd/kube-scheduler
  [kwok]=sigs.k8s.io/kwok/cmd/kwok
  [kubectl]=k8s.io/kubernetes/cmd/kubectl
)
n=0
for t in "${tools[@]}"; do
  n=$((n + 1))
  if [ -x "$bin.partial/$t" ]; then continue; fi
  echo "[$n/${#tools[@]}] building $t (${source[$t]}) ..." >&2
  start=$SECONDS
  go build -trimpath -ldflags "$ldflags" -o "$bin.partial/$t.tmp" "${source[$t]}"
  mv "$bin.partial/$t.tmp" "$bin.partial/$t"
  echo "[$n/${#tools[@]}] $t built in $((SECONDS - start))s" >&2
done
rm -rf "$bin"; mv "$bin.partial" "$bin"
echo "$bin"
