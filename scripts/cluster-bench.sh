#!/usr/bin/env bash
# Runs one `iris bench` scenario against a local cluster of NODES nodes (PostgreSQL shards and a
# Redis Cluster started by `iris-testkit`, as scripts/cluster-costs.sh does), with the clients
# spread over the nodes round-robin, and prints its report. Everything stops at the end.
#
#   cargo build -p iris -p iris-testkit
#   scripts/cluster-bench.sh 2 presence --watchers 100 --changes 20    # then any bench flags
#
# IRIS_BIN and TESTKIT_BIN choose the binaries (default target/debug/…): use release builds
# for figures.
set -euo pipefail
cd "$(dirname "$0")/.."
NODES=${1:?usage: scripts/cluster-bench.sh NODES SCENARIO [FLAGS...]}
shift
# shellcheck source=scripts/cluster-up.sh
source scripts/cluster-up.sh
echo "cluster-bench: $nodes node(s), commit $(git rev-parse --short HEAD), $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //'), load$(uptime | sed 's/.*load average//')" >&2
"$iris" bench "$@" --server "$server" </dev/null
