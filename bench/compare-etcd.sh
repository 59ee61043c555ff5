#!/usr/bin/env bash
# IsLabDB vs etcd, same machine, same run, one load generator.
#
#   bench/compare-etcd.sh                         # defaults below
#   DURATION=30s CLIENTS=512 bench/compare-etcd.sh
#   OUT=/tmp/compare.md bench/compare-etcd.sh     # also write the markdown there
#
# What it does:
#   1. installs etcd (Debian's etcd-server, plus etcd-client for etcdctl) if `etcd` is missing,
#      and protoc (protobuf-compiler, libprotobuf-dev) if an islab with etcd support must be built;
#   2. builds `islab` in release mode with `--features etcd` (unless ISLAB is given);
#   3. starts a 3-member etcd cluster on loopback (data under a temp dir, default durability:
#      every write fsynced on a quorum) and a 3-node `islab playground` (durability sync);
#   4. runs each workload with `islab bench` against IsLabDB, then with `islab bench --target
#      etcd` against etcd: same loop, key and value sizes, keyspace, in-flight count, read
#      consistency, histogram and report;
#   5. prints a markdown table (ops/s, p50, p99, ratios IsLabDB/etcd) and the machine, then
#      stops both clusters and removes the temp dir.
#
# Settings (environment):
#   DURATION=20s        measured time of each run
#   CLIENTS=256         operations in flight for the concurrent rows
#   CONNECTIONS="1 8 256"  for puts and linearizable gets, one row per count of independent
#                       clients the CLIENTS operations are spread over (`islab bench
#                       --connections`: each its own SDK Client or etcd client); at most CLIENTS
#   KEY_SIZE=16 VALUE_SIZE=128 KEYSPACE=100000 DISTRIBUTION=uniform
#   SERIALIZABLE=1      also compare serializable gets (0: skip the row)
#   SINGLE=1            also compare one put at a time (0: skip the row)
#   BATCH=100           also compare requests of BATCH keys (IsLabDB: Batch per shard and
#                       GetMany per shard; etcd: one Txn of puts or of ranges), BATCH_CLIENTS
#                       (default 16) in flight; ops/s is then keys/s (0: skip the rows;
#                       at most 128: etcd's default --max-txn-ops refuses bigger Txns)
#   SHARDS=8            shards of the IsLabDB playground (its default)
#   ETCD_PORT=23790     etcd member i: client port ETCD_PORT+2(i-1), peer port +1
#   ISLAB_PORT=27379    IsLabDB node i: ISLAB_PORT+i-1
#   ISLAB=path          an islab built with `--features etcd` (default: build target/release/islab)
#   KEEP=1              keep the temp dir (data and logs) for a look afterwards
#   OUT=file            also write the report (table + machine) to this file
set -euo pipefail

DURATION=${DURATION:-20s}
CLIENTS=${CLIENTS:-256}
CONNECTIONS=${CONNECTIONS:-"1 8 256"}
for c in $CONNECTIONS; do
    if [ "$c" -gt "$CLIENTS" ]; then
        echo "CONNECTIONS: $c independent clients need at least as many in flight (CLIENTS=$CLIENTS)" >&2
        exit 1
    fi
done
most_connections=$(for c in $CONNECTIONS; do echo "$c"; done | sort -n | tail -1)
KEY_SIZE=${KEY_SIZE:-16}
VALUE_SIZE=${VALUE_SIZE:-128}
KEYSPACE=${KEYSPACE:-100000}
DISTRIBUTION=${DISTRIBUTION:-uniform}
SERIALIZABLE=${SERIALIZABLE:-1}
SINGLE=${SINGLE:-1}
BATCH=${BATCH:-100}
if [ "$BATCH" -gt 128 ]; then
    echo "BATCH=$BATCH: etcd refuses a Txn of more than 128 operations (--max-txn-ops)" >&2
    exit 1
fi
BATCH_CLIENTS=${BATCH_CLIENTS:-16}
SHARDS=${SHARDS:-8}
ETCD_PORT=${ETCD_PORT:-23790}
ISLAB_PORT=${ISLAB_PORT:-27379}
KEEP=${KEEP:-0}
OUT=${OUT:-}

repo=$(cd "$(dirname "$0")/.." && pwd)
say() { echo "== $*" >&2; }

as_root() {
    if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi
}

apt_install() {
    say "installing $*"
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends "$@" >&2 ||
        { as_root apt-get update >&2 && as_root env DEBIAN_FRONTEND=noninteractive \
            apt-get install -y --no-install-recommends "$@" >&2; }
}

# --- tools -----------------------------------------------------------------------------------
if ! command -v etcd >/dev/null; then
    apt_install etcd-server etcd-client
    # The package enables a system service on port 2379; this script runs its own members.
    if command -v systemctl >/dev/null && [ -d /run/systemd/system ]; then
        as_root systemctl stop etcd 2>/dev/null || true
    fi
fi
for tool in jq python3; do
    command -v "$tool" >/dev/null || apt_install "$tool"
done

if [ -z "${ISLAB:-}" ]; then
    if ! command -v protoc >/dev/null || [ ! -e /usr/include/google/protobuf/descriptor.proto ]; then
        apt_install protobuf-compiler libprotobuf-dev # etcd-client's build script runs protoc
    fi
    say "building islab (release, --features etcd)"
    (cd "$repo" && cargo build --release --locked -p islab-cli --features etcd >&2)
    ISLAB=$repo/target/release/islab
fi

# --- clusters --------------------------------------------------------------------------------
work=$(mktemp -d -t compare-etcd.XXXXXX)
pids=()
cleanup() {
    local pid
    for pid in "${pids[@]}"; do
        kill -TERM "$pid" 2>/dev/null || true
    done
    for pid in "${pids[@]}"; do
        for _ in $(seq 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
        kill -KILL "$pid" 2>/dev/null || true
        wait "$pid" 2>/dev/null || true
    done
    if [ "$KEEP" = 1 ]; then say "kept $work"; else rm -rf "$work"; fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

load_before=$(cut -d' ' -f1-3 /proc/loadavg)

say "starting etcd (3 members) in $work/etcd"
initial=""
for i in 1 2 3; do
    peer=$((ETCD_PORT + 2 * (i - 1) + 1))
    initial+="${initial:+,}e$i=http://127.0.0.1:$peer"
done
etcd_endpoints=""
for i in 1 2 3; do
    client=$((ETCD_PORT + 2 * (i - 1)))
    peer=$((client + 1))
    etcd_endpoints+="${etcd_endpoints:+,}127.0.0.1:$client"
    mkdir -p "$work/etcd/e$i"
    etcd --name "e$i" --data-dir "$work/etcd/e$i" \
        --listen-client-urls "http://127.0.0.1:$client" \
        --advertise-client-urls "http://127.0.0.1:$client" \
        --listen-peer-urls "http://127.0.0.1:$peer" \
        --initial-advertise-peer-urls "http://127.0.0.1:$peer" \
        --initial-cluster "$initial" --initial-cluster-token compare-etcd \
        --initial-cluster-state new >"$work/etcd/e$i.log" 2>&1 &
    pids+=($!)
done

say "starting islab playground (3 nodes, $SHARDS shards) in $work/islab"
islab_endpoints=$(seq -s, "$ISLAB_PORT" $((ISLAB_PORT + 2)) | sed "s/\([0-9]*\)/127.0.0.1:\1/g")
"$ISLAB" playground --nodes 3 --dir "$work/islab" --base-port "$ISLAB_PORT" \
    --shards "$SHARDS" >"$work/playground.log" 2>&1 &
pids+=($!)

for _ in $(seq 600); do
    grep -q '^ready' "$work/playground.log" 2>/dev/null && break
    kill -0 "${pids[3]}" 2>/dev/null || { cat "$work/playground.log" >&2; exit 1; }
    sleep 0.1
done
grep -q '^ready' "$work/playground.log" || { say "playground not ready"; cat "$work/playground.log" >&2; exit 1; }
for _ in $(seq 600); do
    if command -v etcdctl >/dev/null; then
        ETCDCTL_API=3 etcdctl --endpoints "$etcd_endpoints" endpoint health >/dev/null 2>&1 && break
    else
        "$ISLAB" bench put --target etcd --endpoints "$etcd_endpoints" --duration 100ms \
            --clients 1 --quiet >/dev/null 2>&1 && break
    fi
    sleep 0.1
done

# --- runs ------------------------------------------------------------------------------------
# One row: IsLabDB first, then etcd, back to back, so both see the same machine.
rows=()
bench() { # name target endpoints args...
    local name=$1 target=$2 endpoints=$3
    shift 3
    local file="$work/$name.$target.json"
    say "$name on $target"
    # The generator's own CPU time (user + sys, prefill included) goes to $file.cpu.
    local TIMEFORMAT='%U %S'
    { time "$ISLAB" bench "$@" --target "$target" --endpoints "$endpoints" \
        --duration "$DURATION" --key-size "$KEY_SIZE" --value-size "$VALUE_SIZE" \
        --keyspace "$KEYSPACE" --distribution "$DISTRIBUTION" --timeout 60s --quiet -w json \
        >"$file" 2>"$file.err"; } 2>"$file.cpu" || { cat "$file.err" >&2; exit 1; }
    jq -c . "$file" >&2
}
row() { # name label args...
    local name=$1 label=$2
    shift 2
    bench "$name" islab "$islab_endpoints" "$@"
    bench "$name" etcd "$etcd_endpoints" "$@"
    rows+=("$name|$label")
}

clients_of() { if [ "$1" = 1 ]; then echo "1 client"; else echo "$1 independent clients"; fi; }
for c in $CONNECTIONS; do
    row "put_c$c" "put, $CLIENTS in flight, $(clients_of "$c")" put --clients "$CLIENTS" \
        --connections "$c"
done
first=1
for c in $CONNECTIONS; do
    # The first get row prefills the keyspace; the others read what it wrote.
    prefill=(); [ "$first" = 1 ] || prefill=(--no-prefill); first=0
    row "get_lin_c$c" "get, linearizable, $CLIENTS in flight, $(clients_of "$c")" get \
        --clients "$CLIENTS" --connections "$c" --read-consistency linearizable "${prefill[@]}"
done
if [ "$SERIALIZABLE" = 1 ]; then
    row get_ser "get, serializable, $CLIENTS in flight, $(clients_of "$most_connections")" get \
        --clients "$CLIENTS" --connections "$most_connections" --read-consistency serializable \
        --no-prefill
fi
if [ "$SINGLE" = 1 ]; then
    row put_1 "put, 1 in flight (single client)" put --clients 1
fi
if [ "$BATCH" -gt 1 ]; then
    row put_batch "put, batches of $BATCH keys, $BATCH_CLIENTS in flight (keys/s)" put \
        --clients "$BATCH_CLIENTS" --batch "$BATCH"
    row get_batch "get, linearizable, batches of $BATCH keys, $BATCH_CLIENTS in flight (keys/s)" \
        get --clients "$BATCH_CLIENTS" --batch "$BATCH" --read-consistency linearizable --no-prefill
fi

load_after=$(cut -d' ' -f1-3 /proc/loadavg)

# --- report ----------------------------------------------------------------------------------
report() {
    local etcd_version islab_rev
    etcd_version=$(jq -r .settings.target "$work/put_c$most_connections.etcd.json")
    islab_rev=$(git -C "$repo" rev-parse --short HEAD 2>/dev/null || echo unknown)
    if ! git -C "$repo" diff --quiet HEAD 2>/dev/null; then islab_rev+=" (with uncommitted changes)"; fi
    echo "| workload | IsLabDB ops/s | etcd ops/s | ops/s IsLabDB/etcd | IsLabDB p50 | etcd p50 | IsLabDB p99 | etcd p99 | p99 IsLabDB/etcd | generator CPU/op IsLabDB, etcd |"
    echo "|---|---|---|---|---|---|---|---|---|---|"
    local r name label
    for r in "${rows[@]}"; do
        name=${r%%|*}
        label=${r#*|}
        python3 - "$label" "$work/$name.islab.json" "$work/$name.etcd.json" <<'EOF'
import json, sys
label, a, b = sys.argv[1], json.load(open(sys.argv[2])), json.load(open(sys.argv[3]))
def cpu(path, doc):  # µs of generator CPU per operation (prefill included)
    user, system = open(path + ".cpu").read().split()
    return (float(user) + float(system)) * 1e6 / max(doc["requests"] + doc["settings"]["prefilled"] // 100, 1)
def lat(doc):
    (kind,) = doc["latency"].values()  # one operation kind per run
    return kind["p50_us"], kind["p99_us"]
def ms(us):
    return f"{us / 1000:.2f} ms"
def errors(doc):
    return f" ({doc['errors']} errors)" if doc["errors"] else ""
(a50, a99), (b50, b99) = lat(a), lat(b)
# Batch rows compare keys/s (a request carries --batch keys); the others requests/s.
per_s = "keys_per_s" if a["settings"]["batch"] > 1 else "requests_per_s"
ra, rb = a[per_s], b[per_s]
print(f"| {label} | {ra:,.0f}{errors(a)} | {rb:,.0f}{errors(b)} | **{ra / rb:.2f}×** | "
      f"{ms(a50)} | {ms(b50)} | {ms(a99)} | {ms(b99)} | {a99 / b99:.2f}× | "
      f"{cpu(sys.argv[2], a):.0f} µs, {cpu(sys.argv[3], b):.0f} µs |")
EOF
    done
    echo
    echo "Ratios above 1× favour IsLabDB for ops/s, below 1× for p99. Generator CPU/op: user + sys"
    echo "time of the \`islab bench\` process per request (prefill requests of 100 keys included)."
    echo
    echo "- machine: $(nproc) CPUs ($(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//')), $(free -g | awk '/^Mem:/ {print $2}') GiB RAM, Linux $(uname -r)"
    echo "- disk of the data dirs: $(df -h --output=source,fstype "$work" | tail -1 | tr -s ' ')"
    echo "- load average (1, 5, 15 min): before $load_before, after $load_after"
    echo "- IsLabDB: islab $islab_rev, \`islab playground\` 3 nodes, $SHARDS shards (3 replicas each), durability $(jq -r .settings.durability "$work/put_c$most_connections.islab.json")"
    echo "- etcd: $etcd_version (Debian package), 3 members, default settings (every write fsynced by a quorum before the reply)"
    echo "- independent clients: \`islab bench --connections N\` spreads the in-flight operations over N clients, each with its own connections (IsLabDB: its own SDK \`Client\`, so its own coalescer; etcd: its own etcd-client \`Client\`); 1 means one client shared by all"
    echo "- load generator: \`islab bench\` (closed loop) with \`--target islab\` / \`--target etcd\` (etcd-client crate), on the same CPUs as both clusters; both clusters running during every run, IsLabDB measured first, then etcd"
    echo "- settings: duration $DURATION per run, keys $KEY_SIZE B, values $VALUE_SIZE B, keyspace $KEYSPACE ($DISTRIBUTION), prefilled before the linearizable get run"
}
if [ -n "$OUT" ]; then report | tee "$OUT"; else report; fi
