#!/usr/bin/env bash
# Runs the whole Iris test suite on a fresh machine: installs what the tests need, then runs
# every test of the workspace (unit, property, integration, crash) and a short smoke of the
# benches where they exist.
set -euo pipefail
cd "$(dirname "$0")/.."

need_apt=()
# System packages the tests need, by the command that proves they are there: the cluster-mode
# tests start real PostgreSQL servers (initdb/pg_ctl from Debian's postgresql) and a real Redis
# Cluster (redis-server and redis-cli from Debian's redis-server).
ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || need_apt+=(postgresql)
command -v redis-server >/dev/null 2>&1 || need_apt+=(redis-server)
command -v redis-cli >/dev/null 2>&1 || need_apt+=(redis-tools)
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
