#!/usr/bin/env bash
# Runs the whole Iris test suite on a fresh machine: installs what the tests need, then runs
# every test of the workspace (unit, property, integration, crash) and a short smoke of the
# benches where they exist.
set -euo pipefail
cd "$(dirname "$0")/.."

need_apt=()
# System packages the tests need, by the command that proves they are there.
# (Cluster-mode tests will add postgresql and redis-server here.)
if ((${#need_apt[@]})); then
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq "${need_apt[@]}"
fi

if cargo nextest --version >/dev/null 2>&1; then
  cargo nextest run --workspace --no-fail-fast "$@"
else
  cargo test --workspace --no-fail-fast "$@"
fi
