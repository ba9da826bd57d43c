#!/usr/bin/env bash
# The demo on a fresh machine: set-up (first run builds the control plane), then `cni-operator demo`.
# Extra arguments go to the demo, e.g. scripts/demo.sh --keep
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
export CNI_OPERATOR_CONTROLPLANE_BIN=$(cat .venv/controlplane-bin)
exec .venv/bin/cni-operator demo "$@"
