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

# The media tests keep blobs in a real S3 API: a single-node Garage (crates.io `garage`, run as
# its own process by iris-testkit). Building it takes ~10 minutes, so only when it is missing.
if ! command -v garage >/dev/null 2>&1 && [[ ! -x "${CARGO_HOME:-$HOME/.cargo}/bin/garage" ]]; then
  cargo install garage --locked
fi

# One build for the whole run: every test binary and the test kit's own binary, with the
# workspace's single feature set. Both nextest passes below then reuse it as it is (the second
# pass selects packages with a filter, not with `-p`, so cargo resolves nothing differently).
cargo build --workspace --tests --bins

# One PostgreSQL pair and one Redis Cluster for the whole run (tests that kill servers start
# their own): `iris-testkit` writes where they are and stops them when this script exits (its
# stdin, a pipe we hold, closes).
work=$(mktemp -d)
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

# The caller's filter expressions (`-E EXPR`, `--filterset EXPR`), kept apart from the other
# arguments: nextest runs the union of several `-E`, so the cluster pass intersects its own
# set with them instead (`scripts/test.sh -E 'binary(groups)'` runs groups in both passes).
user_filter=""
rest=()
while (($#)); do
  case "$1" in
    -E | --filterset | --filter-expr) user_filter="${user_filter:+$user_filter | }($2)"; shift 2 ;;
    -E=* | --filterset=* | --filter-expr=*) user_filter="${user_filter:+$user_filter | }(${1#*=})"; shift ;;
    *) rest+=("$1"); shift ;;
  esac
done

if cargo nextest --version >/dev/null 2>&1; then
  status=0
  # 1. Everything, server-level tests on the embedded store (store-level tests cover both engines).
  cargo nextest run --workspace --no-fail-fast ${user_filter:+-E "$user_filter"} ${rest[@]+"${rest[@]}"} || status=1
  # 2. The server-level suites again in cluster mode: PostgreSQL (2 shards) + Redis Cluster.
  #    Tests of the binary's own process (kill -9, benches, the cluster failure tests) and of
  #    fault injection around a given store do not depend on the engine and are not repeated;
  #    nor are tests that start their own PostgreSQL whatever the engine (group order, 1,000
  #    races, ~20 s).
  cluster_set='(package(iris-server) | package(iris)) and kind(test) and not (binary(crash) | binary(cluster) | binary(bench_smoke) | binary(fire_smoke) | binary(redis_bus) | binary(media_s3) | binary(faults) | binary(shutdown) | binary(slow_consumer) | binary(presence_hotspot) | binary(standby) | binary(cluster_group_order))'
  IRIS_TEST_ENGINE=cluster cargo nextest run --workspace --no-fail-fast \
    -E "($cluster_set)${user_filter:+ and ($user_filter)}" ${rest[@]+"${rest[@]}"} || status=1
  # 3. The web client: committed build matches its sources, unit tests, browser tests; and the
  #    docs build without a warning (a broken link is a doc that lies). Only for a whole run:
  #    filter arguments select Rust tests.
  if [[ -z "$user_filter" && ${#rest[@]} -eq 0 ]]; then
    bash scripts/web-test.sh || status=1
    RUSTDOCFLAGS="-D warnings" cargo doc --workspace --no-deps -q || status=1
  fi
  exit "$status"
else
  status=0
  cargo test --workspace --no-fail-fast ${rest[@]+"${rest[@]}"} || status=1
  bash scripts/web-test.sh || status=1
  exit "$status"
fi
