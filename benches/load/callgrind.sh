#!/usr/bin/env bash
# User-space instructions per request, counted by callgrind: the one figure on a shared VM that
# does not move with the neighbours (no hardware counters here, and req/s moves ±15 %).
#
#   benches/load/callgrind.sh                      # chaingate (default config) and nginx, h1
#   CHAINGATE=/old/chaingate benches/load/callgrind.sh
#   TARGETS="chaingate" REQUESTS=5000 benches/load/callgrind.sh
#   TARGETS="chaingate chaingate-traced" benches/load/callgrind.sh   # what [tracing] costs
#   TARGETS="chaingate chaingate-dpop" benches/load/callgrind.sh     # what a DPoP proof costs
#
# Each target runs under `valgrind --tool=callgrind` behind the same upstream as in run.sh; after a
# warm-up its counters are zeroed (callgrind_control -z), a fixed number of keep-alive requests is
# sent (wrk, 4 connections), and the counters are dumped. Prints instructions (Ir) per request,
# and the top functions by inclusive Ir (callgrind_annotate). The kernel's share (the syscalls) is
# not counted: profile.sh shows it.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/../.." && pwd)
TARGETS=${TARGETS:-"chaingate nginx"}
SECS=${SECS:-4}
TOP=${TOP:-25}
for tool in nginx wrk valgrind callgrind_control callgrind_annotate curl; do
    command -v "$tool" >/dev/null || { echo "missing: $tool (apt-get install valgrind nginx wrk)" >&2; exit 1; }
done

export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$repo/target}
if [[ -z "${CHAINGATE:-}" ]]; then
    (cd "$repo" && cargo build --release --quiet -p chaingate --bin chaingate &&
        cargo build --release --quiet -p chaingate-gateway --example loadkit) >&2
fi
chaingate=${CHAINGATE:-$CARGO_TARGET_DIR/release/chaingate}
loadkit=$CARGO_TARGET_DIR/release/examples/loadkit

dir=$(mktemp -d /tmp/chaingate-callgrind.XXXXXX)
pids=()
cleanup() {
    for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
    wait 2>/dev/null || true
    [[ "${KEEP:-0}" == 1 ]] || rm -rf "$dir"
}
trap cleanup EXIT

UP_H1=19880 UP_H2=19881 NGX_H1=19882 NGX_H2=19883 HAP_H1=19884 HAP_H2=19885
STS_FAST=19890 STS_SLOW=19891 CG=19900 CG_ADMIN=19901 CGLOG=19902 CGLOG_ADMIN=19903
CGMEM=19904 CGMEM_ADMIN=19905 CGBASE=19906 CGBASE_ADMIN=19907 CGCT=19908 CGCT_ADMIN=19909
CG2W=19910 CG2W_ADMIN=19911
WARM_TOKEN=bench-warm-token-AT1
# shellcheck source=configs.sh
source "$here/configs.sh"
# nginx under valgrind: one process, no master, so the worker is the one counted.
sed -i 's/^daemon off;/daemon off;\nmaster_process off;/' "$dir/proxy.conf"

timeout 600 nginx -c "$dir/upstream.conf" >"$dir/upstream.out" 2>&1 &
pids+=($!)
"$loadkit" token-server --listen 127.0.0.1:$STS_FAST --latency-ms 2 --for-secs 600 >"$dir/sts.out" 2>&1 &
pids+=($!)
"$loadkit" token-server --listen 127.0.0.1:$STS_SLOW --latency-ms 100 --for-secs 600 >"$dir/sts2.out" 2>&1 &
pids+=($!)

wait_http() {
    for _ in $(seq 1 400); do
        curl -fsS -o /dev/null -H "Authorization: Bearer $WARM_TOKEN" "$1" 2>/dev/null && return 0
        sleep 0.1
    done
    echo "not answering: $1" >&2
    exit 1
}

echo "| target | requests | user-space instructions per request |"
echo "|---|---:|---:|"
for target in $TARGETS; do
    out="$dir/$target.callgrind"
    case $target in
        chaingate) port=$CG cmd=("$chaingate" run --config "$dir/cg.toml") ;;
        chaingate-nolog) port=$CGLOG cmd=("$chaingate" run --config "$dir/cglog.toml") ;;
        chaingate-traced) port=$CGTRACE cmd=("$chaingate" run --config "$dir/cgtrace.toml") ;;
        chaingate-dpop) port=$CGDPOP cmd=("$chaingate" run --config "$dir/cgdpop.toml") ;;
        nginx) port=$NGX_H1 cmd=(nginx -c "$dir/proxy.conf") ;;
        *) echo "unknown target $target" >&2; exit 2 ;;
    esac
    # One CPU, as in run.sh: chaingate then picks its current-thread runtime.
    taskset -c "${SERVER_CPU:-0}" valgrind --tool=callgrind --callgrind-out-file="$out" --dump-instr=no --collect-jumps=no \
        "${cmd[@]}" >"$dir/$target.out" 2>&1 &
    vg=$!
    pids+=($vg)
    wait_http "http://127.0.0.1:$port/"
    # Warm: connections to the upstream opened, the token cached, the code paged in.
    wrk -t1 -c4 -d1s -H "Authorization: Bearer $WARM_TOKEN" "http://127.0.0.1:$port/" >/dev/null
    callgrind_control -z "$vg" >/dev/null 2>&1
    requests=$(wrk -t1 -c4 -d"${SECS}s" -H "Authorization: Bearer $WARM_TOKEN" "http://127.0.0.1:$port/" |
        awk '/requests in/ { print $1 }')
    callgrind_control -d "$vg" >/dev/null 2>&1
    kill "$vg" 2>/dev/null || true
    wait "$vg" 2>/dev/null || true
    # `-d` after `-z` wrote "<out>.1": exactly the measured requests, every thread together.
    dump="$out.1"
    for _ in $(seq 1 100); do [[ -s $dump ]] && break; sleep 0.1; done
    ir=$(awk '/^(totals|summary):/ { print $2; exit }' "$dump")
    echo "| $target | $requests | $(awk -v i="$ir" -v r="$requests" 'BEGIN { printf "%.0f", i / r }') |"
    {
        echo
        echo "top of $target by inclusive instructions (callgrind_annotate --inclusive=yes):"
        { callgrind_annotate --inclusive=yes --threshold=99 "$dump" 2>/dev/null || true; } |
            awk '/^-+$/ { n++ } n >= 3 && NF' | head -"$TOP" | cut -c1-160 || true
    } >"$dir/$target.top"
done
for target in $TARGETS; do cat "$dir/$target.top"; done
