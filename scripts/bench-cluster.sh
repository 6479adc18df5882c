#!/usr/bin/env bash
# Benchmarks cluster mode on this machine: two PostgreSQL shards and a Redis Cluster (3+3) from
# `iris-testkit`, NODES `iris serve` nodes in cluster mode, all pinned to CPU 0, and `iris bench`
# pinned to CPU 1 with its clients spread over the nodes; send limits and abuse rules off, as
# `iris bench --spawn` runs. Everything runs on loopback and stops when the script exits.
#
#   cargo build --release -p iris -p iris-testkit
#   scripts/bench-cluster.sh NODES SCENARIO [bench flags…]
#   scripts/bench-cluster.sh 3 throughput --closed-loop --users 300 --inflight 4 --duration-s 10 --json
#   scripts/bench-cluster.sh 2 presence --watchers 100 --changes 20 --every-ms 1500
#
# POOL sets the PostgreSQL connections per shard and node (default 8); IRIS_BIN and TESTKIT_BIN
# the binaries (default target/release/…).
set -euo pipefail
cd "$(dirname "$0")/.."
NODES=${1:?usage: scripts/bench-cluster.sh NODES SCENARIO [bench flags…]}
shift
IRIS_BIN=${IRIS_BIN:-target/release/iris} TESTKIT_BIN=${TESTKIT_BIN:-target/release/iris-testkit}
PIN=1 LIMITS=off
# shellcheck source=scripts/cluster-up.sh
source scripts/cluster-up.sh
echo "bench-cluster: $nodes node(s), commit $(git rev-parse --short HEAD), $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //'), load$(uptime | sed 's/.*load average//')" >&2
taskset -c 1 "$iris" bench "$@" --server "$server" </dev/null
