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
# The minimal Python client (clients/python, standard library only) checks the golden wire
# fixtures and talks to a live server from the Rust tests; they fail, not skip, without it.
command -v python3 >/dev/null 2>&1 || need_apt+=(python3)
if ((${#need_apt[@]})); then
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq "${need_apt[@]}"
fi

# One PostgreSQL pair and one Redis Cluster for the whole run (tests that kill servers start
# their own): `iris-testkit` writes where they are and stops them when this script exits (its
# stdin, a pipe we hold, closes).
work=$(mktemp -d)
cargo build -q -p iris-testkit --bin iris-testkit
mkfifo "$work/ctl"
target/debug/iris-testkit "$work/env" <"$work/ctl" &
testkit_pid=$!
exec 9>"$work/ctl"
cleanup() { exec 9>&-; wait "$testkit_pid" 2>/dev/null || true; rm -rf "$work"; }
trap cleanup EXIT
for _ in $(seq 1 600); do [[ -s "$work/env" ]] && break; sleep 0.1; done
[[ -s "$work/env" ]] || { echo "test servers did not start" >&2; exit 1; }
# shellcheck disable=SC1091
source "$work/env"

if cargo nextest --version >/dev/null 2>&1; then
  status=0
  # 1. Everything, server-level tests on the embedded store (store-level tests cover both engines).
  cargo nextest run --workspace --no-fail-fast "$@" || status=1
  # 2. The server-level suites again in cluster mode: PostgreSQL (2 shards) + Redis Cluster.
  #    Tests of the binary's own process (kill -9, benches, the cluster failure tests) and of
  #    fault injection around a given store do not depend on the engine and are not repeated.
  IRIS_TEST_ENGINE=cluster cargo nextest run -p iris-server -p iris --no-fail-fast \
    -E 'kind(test) and not (binary(crash) | binary(cluster) | binary(bench_smoke) | binary(fire_smoke) | binary(redis_bus) | binary(faults) | binary(shutdown) | binary(slow_consumer) | binary(presence_hotspot))' \
    "$@" || status=1
  # 3. The web client: committed build matches its sources, unit tests, browser tests.
  bash scripts/web-test.sh || status=1
  exit "$status"
else
  status=0
  cargo test --workspace --no-fail-fast "$@" || status=1
  bash scripts/web-test.sh || status=1
  exit "$status"
fi
