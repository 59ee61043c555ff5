#!/usr/bin/env bash
# How long a node holding KEYS keys takes, after kill -9, to serve again caught up — the
# performance issue's restart target (10M keys in 10 s). Starts three release `islab server`
# processes on loopback (one shard, durability sync), fills KEYS keys through the cluster with
# `islab bench`'s prefill (batches of 100 puts of 16 B keys and 128 B values), waits until a
# follower of the shard applied everything, kills it with SIGKILL, restarts it, and times the
# restart until `cluster status` on that node shows the shard applied up to the leader's index
# as it was at the kill. Then
# prints the node's own log lines for the phases (WAL recovery, checkpoint load, catch-up).
#
#   bench/restart.sh                     # KEYS=10000000 (the prefill alone takes minutes)
#   KEYS=1000000 bench/restart.sh
#
# Environment:
#   ISLAB           the islab binary (default: target/release/islab, built if missing)
#   KEYS            keys to hold (default 10000000)
#   DIR             where the data directories go (default: a new temp dir under /var/tmp,
#                   on the disk, not tmpfs; removed at the end unless KEEP_DIR=1)
#   PORT            first of three ports (default 27471)
#   SNAPSHOT_AFTER  --snapshot-after-entries (default 1000: entries of 100 keys, so a
#                   checkpoint every ~100k keys written; the restart loads the last one)
#   RUNS            restarts to time, one after another (default 3)
set -euo pipefail
repo="$(cd "$(dirname "$0")/.." && pwd)"
keys=${KEYS:-10000000}
port=${PORT:-27471}
snapshot_after=${SNAPSHOT_AFTER:-1000}
runs=${RUNS:-3}
islab=${ISLAB:-$repo/target/release/islab}
if [ -z "${ISLAB:-}" ] && [ ! -x "$islab" ]; then
    (cd "$repo" && cargo build --release --locked -p islab-cli --bin islab >&2)
fi
command -v python3 >/dev/null || { echo "python3 is needed to read status JSON" >&2; exit 1; }
dir=${DIR:-$(mktemp -d /var/tmp/islab-restart.XXXXXX)}
mkdir -p "$dir"
endpoints="127.0.0.1:$port,127.0.0.1:$((port + 1)),127.0.0.1:$((port + 2))"
pids=()

cleanup() {
    for pid in "${pids[@]}"; do kill -9 "$pid" 2>/dev/null || true; done
    if [ "${KEEP_DIR:-0}" != 1 ]; then rm -rf "$dir"; fi
}
trap cleanup EXIT

start() { # start <id>: runs node <id> in the background, logs to $dir/node<id>.log
    local id=$1
    ISLAB_MIN_FREE_DISK_BYTES=0 "$islab" server --id "$id" --data-dir "$dir/node$id" \
        --listen "127.0.0.1:$((port + id - 1))" --snapshot-after-entries "$snapshot_after" \
        --keep-entries-after-snapshot 100 --log-format text >>"$dir/node$id.log" 2>&1 &
    pids[id]=$!
}

# Prints "<applied index of shard 1 on node id> <leader's applied index> <leader's id>", or
# "- - -".
applied() {
    local status
    status=$("$islab" --endpoints "$endpoints" --timeout 2s cluster status -w json 2>/dev/null) || true
    python3 -c '
import json, sys
want = int(sys.argv[1])
doc = json.load(sys.stdin)  # fails (prints "- -") if nothing answered
mine, lead, leader = "-", "-", "-"
for e in doc["endpoints"]:
    for g in e.get("groups", []):
        if g.get("group_id") != 1:
            continue
        if e.get("node_id") == want:
            mine = g.get("applied_index", 0)
        if g.get("role") == "leader":
            lead, leader = g.get("applied_index", 0), e.get("node_id")
print(mine, lead, leader)
' "$1" <<<"$status" 2>/dev/null || echo "- - -"
}

now_ms() { date +%s%3N; }

echo "--- machine: $(nproc) CPUs, $(free -g | awk '/Mem:/{print $2}') GiB, $(uname -r); load: $(cut -d' ' -f1-3 /proc/loadavg)"
echo "--- binary: $islab ($("$islab" --version))"
echo "--- data under $dir ($(df -h --output=fstype,source "$dir" | tail -1))"
for id in 1 2 3; do start "$id"; done
for id in 1 2 3; do
    for _ in $(seq 1 100); do grep -q "serving on" "$dir/node$id.log" && break; sleep 0.1; done
done
"$islab" --endpoints "$endpoints" cluster init --shards 1 >/dev/null
echo "--- filling $keys keys (bench prefill: batches of 100 puts, 16 B keys, 128 B values)"
t0=$(now_ms)
"$islab" --endpoints "$endpoints" --timeout 60s bench get --keyspace "$keys" --clients 128 \
    --duration 1s >"$dir/prefill.txt"
echo "prefill took $(( ($(now_ms) - t0) / 1000 )) s"

for run in $(seq 1 "$runs"); do
    # A follower of the shard, caught up with the leader.
    victim=-
    for _ in $(seq 1 600); do
        read -r mine lead leader < <(applied 1)
        if [ "$leader" != - ]; then
            victim=$(( leader % 3 + 1 ))
            read -r mine lead leader < <(applied "$victim")
            [ "$mine" != - ] && [ "$mine" = "$lead" ] && [ "$leader" != "$victim" ] && break
        fi
        victim=-
        sleep 0.5
    done
    if [ "$victim" = - ]; then echo "no caught-up follower after 300 s" >&2; exit 1; fi
    echo "--- run $run: node $victim (a follower) applied $mine, leader node $leader $lead; kill -9 node $victim and restart it"
    kill -9 "${pids[victim]}"
    wait "${pids[victim]}" 2>/dev/null || true
    echo "--- run $run" >>"$dir/node$victim.log"
    t0=$(now_ms)
    start "$victim"
    while true; do
        read -r mine now _ < <(applied "$victim")
        if [ "$mine" != - ] && [ "$mine" -ge "$lead" ]; then break; fi
        if [ $(( $(now_ms) - t0 )) -gt 300000 ]; then echo "not caught up after 300 s" >&2; exit 1; fi
        sleep 0.05
    done
    elapsed=$(( $(now_ms) - t0 ))
    echo "run $run: restart until serving, caught up (applied $mine >= $lead): ${elapsed} ms"
    { sed -n "/^--- run $run\$/,\$p" "$dir/node$victim.log" |
        grep -E "WAL recovered|checkpoint|snapshot|serving on" | sed 's/^/    /' | head -12; } || true
done
