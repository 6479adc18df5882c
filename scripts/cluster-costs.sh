#!/usr/bin/env bash
# Counts what one message, one connect and one idle second cost the durable store and the bus in
# cluster mode: PostgreSQL rows, transactions and WAL bytes, and Redis commands. The counts are
# deterministic (they do not depend on the machine's speed or load), so they carry over to the
# capacity model in docs/CAPACITY.md, where the timings of a shared machine would not.
#
# It starts two PostgreSQL shards and a Redis Cluster (3 primaries + 3 replicas) with
# `iris-testkit`, NODES `iris serve` nodes in cluster mode on loopback, and runs `iris bench`
# scenarios against them with `--phase-cmd`: the bench calls this script back just before its
# measured phase starts and once it is over (every accepted message delivered, or every device
# connected), and this script reads the counters then. Set-up (registrations, logins, group
# creation) stays outside the windows. Everything stops when the script exits.
#
#   cargo build -p iris -p iris-testkit
#   scripts/cluster-costs.sh [NODES]            # NODES defaults to 1
#
# IRIS_BIN and TESTKIT_BIN choose the binaries (default target/debug/…); OUT keeps the raw
# snapshots and bench reports (default: a temporary directory, removed at the end); ONLY runs
# some windows (e.g. ONLY="one_to_one_loaded idle"); DURATION_S (10), IDLE_CONNECTIONS (500)
# and HOLD_S (30, at most 40) size them.
# Read per window: WAL bytes (pg_current_wal_lsn difference) and full-page images
# (pg_stat_wal.wal_fpi), writing transactions (transaction ids handed out, from
# pg_current_snapshot's xmax), xact_commit (all transactions, reads included), rows inserted,
# updated and deleted per table (pg_stat_user_tables), summed over the shards; and calls per
# command from INFO commandstats, summed over the Redis primaries (commands run inside a Lua
# script are counted under their own names as well as under EVAL); the items the nodes forwarded
# to each other (iris_cluster_items_{out,in,dropped}_total from each node's /metrics); and,
# as timings that move with the machine's load, the CPU time of PostgreSQL, Redis and the nodes.
set -euo pipefail

# Called back by `iris bench --phase-cmd`: take a snapshot named after the phase (and, after
# `connected`, another one COSTS_HOLD_S later, for the background of idle devices).
if [[ -n "${IRIS_BENCH_PHASE:-}" && -n "${COSTS_SNAP_DIR:-}" ]]; then
  # shellcheck disable=SC1091
  source "$COSTS_SNAP_DIR/env"
  shard_urls=${IRIS_TEST_PG_URLS//,/ }
  rows_sum() {
    for url in $shard_urls; do
      psql -qAtX "$url" -c "SELECT coalesce(sum(n_tup_ins + n_tup_upd + n_tup_del), 0) FROM pg_stat_user_tables"
    done | awk '{s += $1} END {print s}'
  }
  # Statistics reach pg_stat_* only when a backend flushes them: at most once a second while it
  # works, and up to 10 s after it went idle. So: wait until the row counts have not moved for
  # 11 s (at most 5 tries, so that with HOLD_S ≤ 40 a callback stays within the bench's 120 s
  # for it). This also lets trailing acks and receipts of the window land in it.
  settle() {
    local prev cur
    prev=$(rows_sum)
    for _ in $(seq 1 5); do
      sleep 11
      cur=$(rows_sum)
      [[ "$cur" == "$prev" ]] && break
      prev=$cur
    done
  }
  tck=$(getconf CLK_TCK)
  # utime + stime of the PIDs given (fields 14 and 15 of /proc/PID/stat), in µs.
  pids_cpu_us() {
    local pid total=0
    for pid in $1; do
      [[ -r /proc/$pid/stat ]] || continue
      total=$((total + $(sed 's/.*) //' "/proc/$pid/stat" | awk '{print $12 + $13}')))
    done
    echo $((total * 1000000 / tck))
  }
  # Every PostgreSQL server's CPU: each postmaster's own and its exited children's (cutime +
  # cstime), plus its live children's (backends, WAL writer, checkpointer, autovacuum).
  pg_cpu_us() {
    local url pm total=0
    for url in $shard_urls; do
      pm=$(head -n 1 "$(psql -qAtX "$url" -c "SHOW data_directory")/postmaster.pid")
      total=$((total + $(sed 's/.*) //' "/proc/$pm/stat" | awk '{print $12 + $13 + $14 + $15}') * 1000000 / tck))
      total=$((total + $(pids_cpu_us "$(pgrep -P "$pm" | tr '\n' ' ')")))
    done
    echo "$total"
  }
  redis_pids() {
    local port
    for port in $REDIS_ALL_PORTS; do
      redis-cli -p "$port" INFO server | tr -d '\r' | sed -n 's/^process_id://p'
    done | tr '\n' ' '
  }
  snapshot() {
    local i=0
    {
      for url in $shard_urls; do
        psql -qAtX -F ' ' "$url" <<'SQL' | sed "s/^/pg $i /"
SELECT 'wal_bytes', pg_wal_lsn_diff(pg_current_wal_lsn(), '0/0')::bigint;
SELECT 'wal_fpi', wal_fpi FROM pg_stat_wal;
SELECT 'write_xacts', pg_snapshot_xmax(pg_current_snapshot())::text::bigint;
SELECT 'xact_commit', xact_commit FROM pg_stat_database WHERE datname = current_database();
SELECT 'ins.' || relname, n_tup_ins FROM pg_stat_user_tables;
SELECT 'upd.' || relname, n_tup_upd FROM pg_stat_user_tables;
SELECT 'del.' || relname, n_tup_del FROM pg_stat_user_tables;
SQL
        i=$((i + 1))
      done
      # CPU time (µs, user + system) of each kind of process so far: timing, not a count, so
      # it moves with the machine's load and the build's profile (a debug node costs many times
      # a release one); PostgreSQL's and Redis's own binaries are release builds either way.
      echo "time x window_ms $(date +%s%3N)"
      echo "cpu x pg_us $(pg_cpu_us)"
      echo "cpu x redis_us $(pids_cpu_us "$(redis_pids)")"
      echo "cpu x node_us $(pids_cpu_us "$NODE_PIDS")"
      # Items the nodes forwarded to each other (hints, presence, kicks, invalidations), summed.
      for node_url in $NODE_URLS; do
        curl -s "$node_url/metrics" | sed -n 's/^iris_cluster_items_\(out\|in\|dropped\)_total \([0-9]*\)$/node x items_\1 \2/p'
      done
      for port in $REDIS_PRIMARY_PORTS; do
        redis-cli -p "$port" INFO commandstats | tr -d '\r' |
          sed -n 's/^cmdstat_\([^:]*\):calls=\([0-9]*\),.*/redis x \1 \2/p'
      done
    } >"$COSTS_SNAP_DIR/$COSTS_WINDOW.$1"
  }
  if [[ "$IRIS_BENCH_PHASE" == sending || "$IRIS_BENCH_PHASE" == connecting ]]; then
    # Start every window just after a checkpoint, so its full-page images are counted the same
    # way each time (the first change of each page after a checkpoint logs the whole page).
    for url in $shard_urls; do psql -qAtX "$url" -c CHECKPOINT; done
  fi
  settle
  snapshot "$IRIS_BENCH_PHASE"
  if [[ "$IRIS_BENCH_PHASE" == settled ]]; then
    # The window's deletes leave dead rows: vacuum them now, so their WAL is counted with the
    # messages that made them (autovacuum would do it later, in some other window).
    for url in $shard_urls; do psql -qAtX "$url" -c VACUUM; done
    snapshot vacuumed
  fi
  if [[ "$IRIS_BENCH_PHASE" == connected && -n "${COSTS_HOLD_S:-}" ]]; then
    sleep "$COSTS_HOLD_S"
    snapshot held
  fi
  exit 0
fi

cd "$(dirname "$0")/.."
NODES=${1:-1}
# shellcheck source=scripts/cluster-up.sh
source scripts/cluster-up.sh
self=$(realpath "$0")

# Runs one bench scenario with snapshots at its phases; prints its JSON report to $out/NAME.json.
bench() {
  local name=$1
  shift
  COSTS_SNAP_DIR=$out COSTS_WINDOW=$name "$iris" bench "$@" --server "$server" --json --drain-s 60 \
    --phase-cmd "$self" </dev/null 2>"$out/$name.err" | tail -n 1 >"$out/$name.json"
}

# Prints, for window NAME between phases FROM and TO, each counter's change and the change per
# UNITS (messages or connections), summed over shards and primaries.
costs() {
  local name=$1 from=$2 to=$3 units=$4 what=$5
  echo "== $name: $what, $units in the window ($from → $to)"
  awk -v units="$units" '
    { key = $1 " " $3; val = $NF }
    FNR == NR { before[key] += val; next }
    { after[key] += val }
    END {
      for (k in after) {
        d = after[k] - before[k]
        if (d != 0) printf "%-42s %12d %12.3f\n", k, d, d / units
      }
    }' "$out/$name.$from" "$out/$name.$to" | sort
  redis_total=$(awk -v units="$units" '$1 != "redis" {next} FNR == NR {b += $NF; next} {a += $NF}
    END {printf "%12d %12.3f", a - b, (a - b) / units}' "$out/$name.$from" "$out/$name.$to")
  printf "%-42s %s\n" "redis (all commands)" "$redis_total"
}

accepted() { jq -r .accepted "$out/$1.json"; }

echo "iris-costs: $nodes node(s), commit $(git rev-parse --short HEAD), $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //'), load$(uptime | sed 's/.*load average//')"

# 1:1, light: 20 senders with one send in flight each (batches nearly never shared).
# ONLY: the windows to run, space-separated (default: all of them).
want() { [[ -z "${ONLY:-}" || " $ONLY " == *" $1 "* ]]; }

# Runs a message scenario and prints its costs: the messages with the vacuum of their deletes,
# and the vacuum's share alone.
messages() {
  local name=$1 what=$2
  shift 2
  want "$name" || return 0
  bench "$name" "$@" --duration-s "${DURATION_S:-10}"
  costs "$name" sending vacuumed "$(accepted "$name")" "$what (vacuum included)"
  costs "$name" settled vacuumed "$(accepted "$name")" "$what: the vacuum alone"
}
# 1:1, light: 20 senders with one send in flight each (batches rarely shared).
messages one_to_one_light "1:1 messages, 20 users × 1 in flight" throughput --closed-loop --users 20 --inflight 1
# 1:1, loaded: 200 senders × 8 in flight (the committer's batches are shared).
messages one_to_one_loaded "1:1 messages, 200 users × 8 in flight" throughput --closed-loop --users 200 --inflight 8
# Groups of 10 and of 100 members (seed 001's example group), one send in flight.
messages group_10 "group messages, 10 members, 1 in flight" fanout --members 10 --senders 1 --inflight 1
messages group_100 "group messages, 100 members, 1 in flight" fanout --members 100 --senders 1 --inflight 1
# Connects, an idle minute's background, disconnects: 500 devices.
want idle || exit 0
n_idle=${IDLE_CONNECTIONS:-500}
COSTS_HOLD_S=${HOLD_S:-30} bench idle idle --connections "$n_idle"
costs idle connecting connected "$n_idle" "connects (Hello → Welcome, session claimed, presence online)"
costs idle connected held "$n_idle" "idle connected devices over ${HOLD_S:-30} s (background)"
costs idle held closed "$n_idle" "disconnects (claim released, presence offline)"
