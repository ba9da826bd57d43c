#!/usr/bin/env bash
# The whole test suite on a fresh machine: set-up, static checks, then pytest (unit, integration, e2e, agent,
# realnode).
# Extra arguments go to pytest, e.g. scripts/test.sh tests/unit -k render
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
export CNI_OPERATOR_CONTROLPLANE_BIN=$(cat .venv/controlplane-bin)
export CNI_OPERATOR_REALNODE_DIR=$(cat .venv/realnode-bin) CNI_OPERATOR_IMAGES_DIR=$(cat .venv/realnode-images)
printf '\033[1m==> ruff, mypy --strict, import contracts\033[0m\n' >&2
.venv/bin/ruff check operator tests bench
.venv/bin/ruff format --check operator tests bench
.venv/bin/mypy
.venv/bin/lint-imports
printf '\033[1m==> pytest\033[0m\n' >&2
exec .venv/bin/pytest "$@"
