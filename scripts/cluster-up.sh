# Starts a local cluster for a measurement, sourced by scripts/cluster-costs.sh and
# scripts/bench-cluster.sh: two PostgreSQL shards and a Redis Cluster (3 primaries + 3 replicas)
# through `iris-testkit`, and NODES `iris serve` nodes in cluster mode on loopback ports 17803,
# 17805, … (HTTP), with the limits a load needs off or raised. Everything stops when the sourcing
# script exits.
#
# In: NODES (default 1), IRIS_BIN, TESTKIT_BIN (default target/debug/…), OUT (where `env` and the
# raw results go; default a temporary directory removed at the end), PIN=1 (PostgreSQL, Redis
# and the nodes on CPU 0), POOL (PostgreSQL connections per shard and node, default 8),
# LIMITS=off (send limits and abuse rules off; default `raised`: on, but never reached).
# Out: $server (the nodes' URLs, comma-separated), $iris, $work, $out, $nodes, the shell
# variables of `$out/env` (IRIS_TEST_PG_URLS, IRIS_TEST_REDIS_URLS, REDIS_*_PORTS, NODE_*).

cd "$(dirname "$0")/.."
nodes=${NODES:-1}
iris=${IRIS_BIN:-target/debug/iris}
testkit=${TESTKIT_BIN:-target/debug/iris-testkit}
work=$(mktemp -d)
out=${OUT:-$work/out}
mkdir -p "$out"
mkfifo "$work/ctl"
pin=()
[[ "${PIN:-}" == 1 ]] && pin=(taskset -c 0)
"${pin[@]}" "$testkit" "$work/env" <"$work/ctl" 2>/dev/null &
testkit_pid=$!
exec 9>"$work/ctl"
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  wait "${pids[@]}" 2>/dev/null || true
  exec 9>&-
  wait "$testkit_pid" 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT
for _ in $(seq 1 600); do [[ -s "$work/env" ]] && break; sleep 0.1; done
[[ -s "$work/env" ]] || { echo "PostgreSQL / Redis did not start" >&2; exit 1; }
# shellcheck disable=SC1091
source "$work/env"
seed_port=$(echo "${IRIS_TEST_REDIS_URLS%%,*}" | sed 's|.*:||; s|/.*||')
primaries=$(redis-cli -p "$seed_port" CLUSTER NODES | awk '$3 ~ /master/ {split($2, a, "[:@]"); print a[2]}' | tr '\n' ' ')
all_redis=$(redis-cli -p "$seed_port" CLUSTER NODES | awk '{split($2, a, "[:@]"); print a[2]}' | tr '\n' ' ')
cp "$work/env" "$out/env"
echo "export REDIS_PRIMARY_PORTS='$primaries' REDIS_ALL_PORTS='$all_redis'" >>"$out/env"

# Default (LIMITS=raised): production limits where they cost the bus per message (sends leased
# from Redis, abuse counts shared through Redis), raised far enough that the load is never
# refused. LIMITS=off: those off too, as `iris bench --spawn` runs. The limits that only guard
# registration are off either way (set-up registers hundreds of accounts from one address).
if [[ "${LIMITS:-raised}" == off ]]; then
  sends=0 abuse_messages=0 abuse_recipients=0 abuse_forwards=0
else
  sends=1000000 abuse_messages=100000000 abuse_recipients=1000000 abuse_forwards=1000000
fi
cat >"$work/iris.toml" <<TOML
[rate_limits]
code_requests_per_phone_per_hour = 0
code_requests_per_ip_per_hour = 0
verify_attempts_per_ip_per_minute = 0
registrations_per_ip_per_day = 0
sends_per_account_per_minute = $sends
connections_per_ip_per_minute = 0
concurrent_connections_per_ip = 0
accepts_per_second = 0
group_creations_per_account_per_hour = 0
group_member_adds_per_account_per_minute = 0
typing_per_account_per_second = 0
discover_requests_per_account_per_day = 0

[abuse]
messages_per_account_per_hour = $abuse_messages
new_recipients_per_day = $abuse_recipients
forward_chats_per_message_per_day = $abuse_forwards

[cluster]
namespace = "cluster$$"
store_pool_size = ${POOL:-8}
TOML
key=$(head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n')
urls=()
for i in $(seq 1 "$nodes"); do
  tcp=$((17800 + 2 * i)) http=$((17801 + 2 * i))
  IRIS_LOG=warn "${pin[@]}" "$iris" serve --dev --config "$work/iris.toml" --data-dir "$work/d$i" \
    --listen "127.0.0.1:$tcp" --http "127.0.0.1:$http" --store "$IRIS_TEST_PG_URLS" --redis "$IRIS_TEST_REDIS_URLS" \
    --node-id "$i" --token-key "$key" >"$work/n$i.out" 2>"$work/n$i.err" &
  pids+=($!)
  urls+=("http://127.0.0.1:$http")
done
for i in $(seq 1 "$nodes"); do
  for _ in $(seq 1 300); do grep -q listening "$work/n$i.out" 2>/dev/null && break; sleep 0.1; done
  grep -q listening "$work/n$i.out" || { echo "node $i did not start:" >&2; cat "$work/n$i.err" >&2; exit 1; }
done
echo "export NODE_PIDS='${pids[*]}' NODE_URLS='${urls[*]}'" >>"$out/env"
server=$(IFS=,; echo "${urls[*]}")
