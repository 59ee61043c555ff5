#!/usr/bin/env bash
# CPU cost of IsLabDB's node processes per operation and per Raft entry, under `islab bench`.
#
#   bench/cpu-cost.sh                                   # puts, 256 in flight, 256 clients
#   CONNECTIONS=8 bench/cpu-cost.sh
#   WORKLOAD=put BATCH=128 CLIENTS=16 CONNECTIONS=16 bench/cpu-cost.sh
#
# Starts 3 `islab server` processes (durability sync unless SERVER_ARGS says otherwise) in a
# temp dir and `islab cluster init --shards SHARDS`, runs one `islab
# bench` (the load generator runs on the same machine), and reads, before and after the run:
# the user + system CPU time of the three node processes (/proc/<pid>/stat), and from every
# node's Admin.Status the client-write entries its shard leaders proposed and the requests they
# carried (`write_entries`, `write_requests`). Reports ops/s, node CPU per operation and per
# entry, and requests per entry (the server's gathering). The generator's own CPU is not counted.
#
# Settings (environment): ISLAB (default: build target/release/islab), WORKLOAD=put, CLIENTS=256,
# CONNECTIONS=256, BATCH=1, DURATION=10s, SHARDS=8, KEY_SIZE=16, VALUE_SIZE=128,
# KEYSPACE=100000, PORT=28379, EXTRA (more `islab bench` flags), SERVER_ARGS (more `islab
# server` flags, e.g. "--gather-max-requests 1" for one entry per request).
set -euo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
WORKLOAD=${WORKLOAD:-put}
CLIENTS=${CLIENTS:-256}
CONNECTIONS=${CONNECTIONS:-256}
BATCH=${BATCH:-1}
DURATION=${DURATION:-10s}
SHARDS=${SHARDS:-8}
KEY_SIZE=${KEY_SIZE:-16}
VALUE_SIZE=${VALUE_SIZE:-128}
KEYSPACE=${KEYSPACE:-100000}
PORT=${PORT:-28379}
EXTRA=${EXTRA:-}
SERVER_ARGS=${SERVER_ARGS:-}
if [ -z "${ISLAB:-}" ]; then
    (cd "$repo" && cargo build --release --locked -p islab-cli >&2)
    ISLAB=$repo/target/release/islab
fi
command -v jq >/dev/null || { echo "needs jq (apt-get install jq)" >&2; exit 1; }

work=$(mktemp -d -t cpu-cost.XXXXXX)
nodes=""
cleanup() {
    local p
    for p in $nodes; do kill -TERM "$p" 2>/dev/null || true; done
    for p in $nodes; do wait "$p" 2>/dev/null || true; done
    rm -rf "$work"
}
trap cleanup EXIT
endpoints=""
for i in 1 2 3; do
    addr="127.0.0.1:$((PORT + i - 1))"
    endpoints+="${endpoints:+,}$addr"
    # shellcheck disable=SC2086
    "$ISLAB" server --id "$i" --listen "$addr" --data-dir "$work/node$i" $SERVER_ARGS \
        >"$work/node$i.log" 2>&1 &
    nodes+=" $!"
done
for _ in $(seq 300); do
    "$ISLAB" cluster init --endpoints "$endpoints" --shards "$SHARDS" --if-needed \
        >"$work/init.log" 2>&1 && break
    sleep 0.2
done
"$ISLAB" cluster init --endpoints "$endpoints" --shards "$SHARDS" --if-needed >/dev/null
for _ in $(seq 300); do
    "$ISLAB" put --endpoints "$endpoints" cpu-cost:ready x >/dev/null 2>&1 && break
    sleep 0.2
done

cpu_ticks() { local t=0 p; for p in $nodes; do t=$((t + $(awk '{print $14 + $15}' "/proc/$p/stat"))); done; echo "$t"; }
proposed() { # entries requests read-rounds, summed over every node (only leaders propose)
    "$ISLAB" cluster status --endpoints "$endpoints" -w json |
        jq -r '[.endpoints[].groups[]? | select(.group_id != 0)] | "\(map(.write_entries) | add) \(map(.write_requests) | add) \(map(.read_rounds) | add)"'
}
# A warm-up run (connections, leader discovery, prefill of reads), not counted.
"$ISLAB" bench "$WORKLOAD" --endpoints "$endpoints" --duration 3s --clients "$CLIENTS" \
    --connections "$CONNECTIONS" --batch "$BATCH" --key-size "$KEY_SIZE" \
    --value-size "$VALUE_SIZE" --keyspace "$KEYSPACE" --quiet $EXTRA >/dev/null
read -r e0 r0 g0 < <(proposed)
c0=$(cpu_ticks)
"$ISLAB" bench "$WORKLOAD" --endpoints "$endpoints" --duration "$DURATION" --clients "$CLIENTS" \
    --connections "$CONNECTIONS" --batch "$BATCH" --key-size "$KEY_SIZE" \
    --value-size "$VALUE_SIZE" --keyspace "$KEYSPACE" --quiet --no-prefill -w json $EXTRA \
    >"$work/bench.json"
c1=$(cpu_ticks)
read -r e1 r1 g1 < <(proposed)
hz=$(getconf CLK_TCK)
python3 - "$work/bench.json" "$c0" "$c1" "$hz" "$e0" "$e1" "$r0" "$r1" "$g0" "$g1" <<'PY'
import json, sys
doc = json.load(open(sys.argv[1]))
c0, c1, hz, e0, e1, r0, r1, g0, g1 = map(float, sys.argv[2:])
cpu = (c1 - c0) / hz
keys, requests, secs = doc["keys"], doc["requests"], doc["elapsed_s"]
entries, carried = e1 - e0, r1 - r0
s = doc["settings"]
print(f"settings: {s['workload']} {s['clients']} in flight from {s['connections']} independent "
      f"client(s), batch {s['batch']}, key {s['key_size']} B value {s['value_size']} B, "
      f"durability {s['durability']} on {s['voters']} voters, {secs:.1f} s")
print(f"throughput: {requests / secs:,.0f} requests/s, {keys / secs:,.0f} keys/s, {doc['errors']} errors")
print(f"node CPU (3 processes): {cpu:.2f} s = {cpu / secs:.2f} cores")
if keys:
    print(f"node CPU per key: {cpu * 1e6 / keys:.1f} us")
if entries:
    print(f"client-write entries: {entries:,.0f} carrying {carried:,.0f} requests "
          f"({carried / entries:.1f} requests, {keys / entries:.1f} keys per entry); "
          f"node CPU per entry: {cpu * 1e6 / entries:.0f} us")
if g1 > g0:
    print(f"read-index rounds: {g1 - g0:,.0f} ({keys / (g1 - g0):.1f} keys per round)")
PY
