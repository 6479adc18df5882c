#!/usr/bin/env bash
# Benchmarks cluster mode on this machine: two PostgreSQL shards and a Redis Cluster (3+3) from
# `iris-testkit`, NODES `iris serve` nodes in cluster mode, all pinned to CPU 0, and `iris bench`
# pinned to CPU 1 with its clients spread over the nodes. Everything runs on loopback and stops
# when the script exits.
#
#   cargo build --release -p iris -p iris-testkit
#   scripts/bench-cluster.sh NODES SCENARIO [bench flags…]
#   scripts/bench-cluster.sh 3 throughput --closed-loop --users 300 --inflight 4 --duration-s 10 --json
#
# POOL sets the PostgreSQL connections per shard and node (default 8).
set -euo pipefail
cd "$(dirname "$0")/.."
nodes=${1:?usage: scripts/bench-cluster.sh NODES SCENARIO [bench flags…]}
shift
work=$(mktemp -d)
mkfifo "$work/ctl"
taskset -c 0 target/release/iris-testkit "$work/env" <"$work/ctl" 2>/dev/null &
testkit=$!
exec 9>"$work/ctl"
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  wait "${pids[@]}" 2>/dev/null || true
  exec 9>&-
  wait "$testkit" 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT
for _ in $(seq 1 600); do [[ -s "$work/env" ]] && break; sleep 0.1; done
[[ -s "$work/env" ]] || { echo "PostgreSQL / Redis did not start" >&2; exit 1; }
# shellcheck disable=SC1091
source "$work/env"
cat >"$work/iris.toml" <<TOML
[rate_limits]
code_requests_per_phone_per_hour = 0
code_requests_per_ip_per_hour = 0
verify_attempts_per_ip_per_minute = 0
sends_per_account_per_minute = 0
connections_per_ip_per_minute = 0
concurrent_connections_per_ip = 0
accepts_per_second = 0
group_creations_per_account_per_hour = 0
group_member_adds_per_account_per_minute = 0
typing_per_account_per_second = 0
discover_requests_per_account_per_day = 0

[cluster]
namespace = "bench$$"
store_pool_size = ${POOL:-8}
TOML
key=$(head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n')
urls=()
for i in $(seq 1 "$nodes"); do
  tcp=$((17700 + 2 * i)) http=$((17701 + 2 * i))
  IRIS_LOG=warn taskset -c 0 target/release/iris serve --dev --config "$work/iris.toml" --data-dir "$work/d$i" \
    --listen "127.0.0.1:$tcp" --http "127.0.0.1:$http" --store "$IRIS_TEST_PG_URLS" --redis "$IRIS_TEST_REDIS_URLS" \
    --node-id "$i" --token-key "$key" >"$work/n$i.out" 2>"$work/n$i.err" &
  pids+=($!)
  urls+=("http://127.0.0.1:$http")
done
for i in $(seq 1 "$nodes"); do
  for _ in $(seq 1 100); do grep -q listening "$work/n$i.out" 2>/dev/null && break; sleep 0.1; done
done
taskset -c 1 target/release/iris bench "$@" --server "$(IFS=,; echo "${urls[*]}")"
