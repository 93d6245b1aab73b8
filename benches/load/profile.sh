#!/usr/bin/env bash
# Profiles chaingate on the warm path with its default config, as benches/load/run.sh runs it:
# upstream nginx and chaingate on SERVER_CPU, the load tool on LOAD_CPU.
#
#   benches/load/profile.sh            # h1 (wrk): perf stat, then perf record; prints both
#   PROTO=h2 benches/load/profile.sh   # h2c (h2load)
#
# Knobs (env): PROTO (h1|h2), SECS (per phase, default 5), CONFIG (default|nolog), CHAINGATE (a
# binary instead of building one), OUT (where perf.data and the reports go; default a temp dir),
# CALLGRAPH (perf record --call-graph mode, default "dwarf,16384"), RECORD=0 (counters only).
#
# Prints: requests/s, perf stat counters per request (task-clock, context switches, syscalls by
# name), and the top of `perf report --no-children` (self time by symbol) and of the caller view.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/../.." && pwd)
PROTO=${PROTO:-h1}
SECS=${SECS:-5}
CONFIG=${CONFIG:-default}
LOAD_CPU=${LOAD_CPU:-0}
SERVER_CPU=${SERVER_CPU:-1}
CONNS=${CONNS:-32}
H2_CONNS=${H2_CONNS:-16}
H2_STREAMS=${H2_STREAMS:-4}
CALLGRAPH=${CALLGRAPH:-dwarf,16384}
TOKEN_LATENCY_MS=2

for tool in nginx wrk h2load perf curl; do
    command -v "$tool" >/dev/null || { echo "missing: $tool (see benches/load/README.md)" >&2; exit 1; }
done

export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$repo/target}
if [[ -z "${CHAINGATE:-}" ]]; then
    echo "building (release)" >&2
    (cd "$repo" && cargo build --release --quiet -p chaingate --bin chaingate &&
        cargo build --release --quiet -p chaingate-gateway --example loadkit) >&2
fi
chaingate=${CHAINGATE:-$CARGO_TARGET_DIR/release/chaingate}
loadkit=$CARGO_TARGET_DIR/release/examples/loadkit

dir=$(mktemp -d /tmp/chaingate-profile.XXXXXX)
OUT=${OUT:-$dir}
mkdir -p "$OUT"
pids=()
cleanup() {
    for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
    wait 2>/dev/null || true
    [[ "$OUT" == "$dir" ]] || rm -rf "$dir"
}
trap cleanup EXIT

UP_H1=19580 UP_H2=19581 NGX_H1=19582 NGX_H2=19583 HAP_H1=19584 HAP_H2=19585
STS_FAST=19590 STS_SLOW=19591 CG=19600 CG_ADMIN=19601 CGLOG=19602 CGLOG_ADMIN=19603
CGMEM=19604 CGMEM_ADMIN=19605 CGBASE=19606 CGBASE_ADMIN=19607 CGCT=19608 CGCT_ADMIN=19609
CG2W=19610 CG2W_ADMIN=19611
WARM_TOKEN=bench-warm-token-AT1
# shellcheck source=configs.sh
source "$here/configs.sh"

on_server=(taskset -c "$SERVER_CPU")
on_load=(taskset -c "$LOAD_CPU")
"${on_server[@]}" timeout 600 nginx -c "$dir/upstream.conf" >"$dir/upstream.out" 2>&1 &
pids+=($!)
"${on_load[@]}" "$loadkit" token-server --listen 127.0.0.1:$STS_FAST --latency-ms $TOKEN_LATENCY_MS \
    --for-secs 600 >"$dir/sts.out" 2>&1 &
pids+=($!)
"${on_load[@]}" "$loadkit" token-server --listen 127.0.0.1:$STS_SLOW --latency-ms 100 \
    --for-secs 600 >"$dir/sts-slow.out" 2>&1 &
pids+=($!)
case $CONFIG in
    default) port=$CG admin=$CG_ADMIN conf=cg ;;
    nolog) port=$CGLOG admin=$CGLOG_ADMIN conf=cglog ;;
    *) echo "CONFIG is default or nolog" >&2; exit 2 ;;
esac
"${on_server[@]}" "$chaingate" run --config "$dir/$conf.toml" >"$dir/chaingate.out" 2>&1 &
cg_pid=$!
pids+=($cg_pid)
for _ in $(seq 1 200); do
    curl -fsS -o /dev/null "http://127.0.0.1:$admin/ready" 2>/dev/null && break
    sleep 0.05
done
curl -fsS -o /dev/null -H "Authorization: Bearer $WARM_TOKEN" "http://127.0.0.1:$port/"

load() { # seconds; prints requests/s
    if [[ $PROTO == h1 ]]; then
        "${on_load[@]}" wrk -t1 -c"$CONNS" -d"$1s" -H "Authorization: Bearer $WARM_TOKEN" \
            "http://127.0.0.1:$port/" | awk '/Requests\/sec/ { print $2 }'
    else
        "${on_load[@]}" h2load -c"$H2_CONNS" -m"$H2_STREAMS" -D"$1" -H "Authorization: Bearer $WARM_TOKEN" \
            "http://127.0.0.1:$port/" | awk '/^finished in/ { gsub(/,/, ""); print $4 }'
    fi
}

# 1. Counters per request: CPU and context switches, then (a second run, as tracepoints slow the
# process down) every syscall the gateway makes, by name.
switches() { # voluntary and involuntary context switches of every thread of the gateway
    cat /proc/"$cg_pid"/task/*/status | awk '/^voluntary_ctxt/ { v += $2 } /^nonvoluntary_ctxt/ { n += $2 } END { print v, n }'
}
count() { # label, events
    local before
    before=$(switches)
    perf stat -x, -o "$dir/stat.csv" -p "$cg_pid" -e "$2" -- sleep "$SECS" &
    local stat_pid=$!
    local rps
    rps=$(load "$SECS")
    wait $stat_pid || true
    local requests
    requests=$(awk -v r="$rps" -v s="$SECS" 'BEGIN { printf "%.0f", r * s }')
    echo "$1: $rps requests/s over ${SECS}s; per request:"
    read -r v0 n0 <<<"$before"
    read -r v1 n1 <<<"$(switches)"
    awk -v v=$((v1 - v0)) -v n=$((n1 - n0)) -v r="$requests" \
        'BEGIN { printf "  %-32s %8.3f\n  %-32s %8.3f\n", "voluntary switches", v / r, "involuntary switches", n / r }'
    awk -F, -v n="$requests" '
        $1 ~ /^[0-9.]+$/ && $1 > 0 {
            name = $3; v = $1 / n
            if (name == "task-clock") printf "  %-32s %8.2f µs\n", "CPU (task-clock)", $1 * 1000 / n
            else if (v >= 0.01) printf "  %-32s %8.3f\n", name, v
        }' "$dir/stat.csv"
}
count "$PROTO $CONFIG" task-clock,context-switches,cpu-migrations
count "syscalls (traced, slower)" 'syscalls:sys_enter_*'

[[ "${RECORD:-1}" == 1 ]] || exit 0

# 2. Where the CPU goes.
perf record -q -o "$OUT/perf.data" --call-graph "$CALLGRAPH" -F 1999 -p "$cg_pid" -- sleep "$SECS" \
    >/dev/null 2>&1 &
rec_pid=$!
load "$SECS" >/dev/null
wait $rec_pid || true
report() { # perf report flags...
    { perf report -i "$OUT/perf.data" --stdio --sort symbol -g none "$@" 2>/dev/null || true; } |
        awk '!/^#/ && NF { sub(/ +- +- *$/, ""); print }' | head -60
}
report --no-children --percent-limit 0.7 >"$OUT/self.txt"
report --children --percent-limit 2 >"$OUT/children.txt"
echo
echo "self time by symbol (perf report --no-children):"
cat "$OUT/self.txt"
echo
echo "inclusive time (perf report --children):"
cat "$OUT/children.txt"
echo
echo "perf.data and reports: $OUT"
