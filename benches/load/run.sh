#!/usr/bin/env bash
# chaingate's load bench: the cached path side by side with nginx and the bare upstream, the cold
# path, memory and startup. Prints one markdown table. See benches/load/README.md.
#
#   benches/load/run.sh            # full: 3 interleaved rounds of 10 s per cell
#   QUICK=1 benches/load/run.sh    # quick: 1 round of 3 s per cell
#
# Knobs (env): ROUNDS, DUR (s), CONNS (wrk), H2_CONNS, H2_STREAMS, RATE (req/s of the fixed-rate
# h1 cell, 0 = none), COLD_DUR, TOKEN_LATENCY_MS,
# FILL_N, BURSTS ("100 1000"), PIN (0 = no taskset), LOAD_CPU, SERVER_CPU, CHAINGATE (a binary to
# use instead of building one), BASELINE (a second chaingate binary, e.g. before a change: it joins
# the warm-path rounds as "baseline"), RUNTIMES=1 (adds chaingate on a current-thread runtime,
# "cg-current-thread", and with 2 tokio workers, "cg-2-workers", to the warm rounds), WARM_ONLY=1 (skip cold path, memory, startup), NO_INSTALL=1,
# KEEP=1 (keep the scratch directory).
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/../.." && pwd)
if [[ "${QUICK:-0}" == 1 ]]; then
    ROUNDS=${ROUNDS:-1} DUR=${DUR:-3} COLD_DUR=${COLD_DUR:-3}
else
    ROUNDS=${ROUNDS:-3} DUR=${DUR:-10} COLD_DUR=${COLD_DUR:-10}
fi
CONNS=${CONNS:-32}
H2_CONNS=${H2_CONNS:-16}
H2_STREAMS=${H2_STREAMS:-4}
RATE=${RATE:-2000}
TOKEN_LATENCY_MS=${TOKEN_LATENCY_MS:-5}
FILL_N=${FILL_N:-100000}
BURSTS=${BURSTS:-"100 1000"}
PIN=${PIN:-1}
LOAD_CPU=${LOAD_CPU:-0}
SERVER_CPU=${SERVER_CPU:-1}
# Every long-lived process gets a hard deadline, so nothing outlives an interrupted run.
LIFETIME=${LIFETIME:-3600}

# === tools ===

need=()
command -v nginx >/dev/null || need+=(nginx)
command -v wrk >/dev/null || need+=(wrk)
command -v h2load >/dev/null || need+=(nghttp2-client)
command -v curl >/dev/null || need+=(curl)
command -v haproxy >/dev/null || need+=(haproxy)
if ((${#need[@]})); then
    [[ "${NO_INSTALL:-0}" == 1 ]] && { echo "missing: ${need[*]}" >&2; exit 1; }
    echo "installing ${need[*]}" >&2
    apt-get update -qq >&2 && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" >&2
fi
nginx_bin=$(command -v nginx)
haproxy_bin=$(command -v haproxy)

export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$repo/target}
echo "building (release)" >&2
(cd "$repo" && cargo build --release --quiet -p chaingate --bin chaingate && cargo build --release --quiet -p chaingate-gateway --example loadkit) >&2
chaingate=${CHAINGATE:-$CARGO_TARGET_DIR/release/chaingate}
loadkit=$CARGO_TARGET_DIR/release/examples/loadkit

if [[ "$PIN" == 1 ]]; then
    on_load=(taskset -c "$LOAD_CPU")
    on_server=(taskset -c "$SERVER_CPU")
else
    on_load=() on_server=()
fi

# Other work on the machine shows up here; the interleaved ratios are what survive it.
loadavg=$(cut -d' ' -f1-3 /proc/loadavg)
dir=$(mktemp -d /tmp/chaingate-load.XXXXXX)
pids=()
cleanup() {
    for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
    wait 2>/dev/null || true
    [[ "${KEEP:-0}" == 1 ]] || rm -rf "$dir"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# === ports ===

UP_H1=19080 UP_H2=19081          # upstream: nginx serving a small fixed body
NGX_H1=19180 NGX_H2=19181        # reference proxy: nginx, proxy_pass + fixed Authorization
HAP_H1=19190 HAP_H2=19191        # second reference: haproxy, set-header Authorization
STS_FAST=19300 STS_SLOW=19301    # token servers: TOKEN_LATENCY_MS, and 100 ms for the burst
CG=19400 CG_ADMIN=19401          # chaingate, default config: access log on (both protocols on one port)
CGLOG=19410 CGLOG_ADMIN=19411    # chaingate-nolog: the default config with the access log off
CGMEM=19420 CGMEM_ADMIN=19421    # chaingate for memory and startup, fresh
CGBASE=19430 CGBASE_ADMIN=19431  # BASELINE binary, access log off
CGCT=19440 CGCT_ADMIN=19441      # RUNTIMES=1: current-thread runtime
CG2W=19450 CG2W_ADMIN=19451      # RUNTIMES=1: multi-thread runtime, 2 workers
WARM_TOKEN=bench-warm-token-AT1

# === servers ===

# shellcheck source=configs.sh
source "$here/configs.sh"

declare -A started
# The process serving a target: the child of the `timeout` wrapper that start() recorded.
declare -A server_pid
start() { # name, log file, command...
    local name=$1 log=$2
    shift 2
    "$@" >"$log" 2>&1 &
    pids+=($!)
    started[$name]=$!
}

wait_http() { # url
    for _ in $(seq 1 200); do
        curl -fsS -o /dev/null "$1" 2>/dev/null && return 0
        sleep 0.05
    done
    echo "not answering: $1" >&2
    exit 1
}

start direct "$dir/upstream.out" "${on_server[@]}" timeout "$LIFETIME" "$nginx_bin" -c "$dir/upstream.conf"
start nginx "$dir/proxy.out" "${on_server[@]}" timeout "$LIFETIME" "$nginx_bin" -c "$dir/proxy.conf"
start haproxy "$dir/haproxy.out" "${on_server[@]}" timeout "$LIFETIME" "$haproxy_bin" -db -f "$dir/haproxy.cfg"
# Token servers sit with the load tool: the cold path measures chaingate's CPU, not theirs.
start sts-fast "$dir/sts-fast.out" "${on_load[@]}" "$loadkit" token-server --listen 127.0.0.1:$STS_FAST \
    --latency-ms "$TOKEN_LATENCY_MS" --for-secs "$LIFETIME"
start sts-slow "$dir/sts-slow.out" "${on_load[@]}" "$loadkit" token-server --listen 127.0.0.1:$STS_SLOW \
    --latency-ms 100 --for-secs "$LIFETIME"
RUST_LOG=${RUST_LOG:-info} start chaingate "$dir/cg.out" "${on_server[@]}" timeout "$LIFETIME" \
    "$chaingate" run --config "$dir/cg.toml"
RUST_LOG=${RUST_LOG:-info} start chaingate-nolog "$dir/cglog.out" "${on_server[@]}" timeout "$LIFETIME" \
    "$chaingate" run --config "$dir/cglog.toml"

if [[ -n "${BASELINE:-}" ]]; then
    RUST_LOG=${RUST_LOG:-info} start baseline "$dir/cgbase.out" "${on_server[@]}" timeout "$LIFETIME" \
        "$BASELINE" run --config "$dir/cgbase.toml"
    wait_http "http://127.0.0.1:$CGBASE_ADMIN/ready"
    curl -fsS -o /dev/null -H "Authorization: Bearer $WARM_TOKEN" "http://127.0.0.1:$CGBASE/warm"
fi
if [[ "${RUNTIMES:-0}" == 1 ]]; then
    start cg-current-thread "$dir/cgct.out" "${on_server[@]}" timeout "$LIFETIME" \
        "$loadkit" gateway --config "$dir/cgct.toml" --workers 0
    TOKIO_WORKER_THREADS=2 start cg-2-workers "$dir/cg2w.out" "${on_server[@]}" timeout "$LIFETIME" \
        "$chaingate" run --config "$dir/cg2w.toml"
    for port in $CGCT $CG2W; do
        wait_http "http://127.0.0.1:$((port + 1))/ready"
        curl -fsS -o /dev/null -H "Authorization: Bearer $WARM_TOKEN" "http://127.0.0.1:$port/warm"
    done
fi
wait_http "http://127.0.0.1:$UP_H1/"
wait_http "http://127.0.0.1:$NGX_H1/"
wait_http "http://127.0.0.1:$HAP_H1/"
for name in "${!started[@]}"; do
    server_pid[$name]=$(pgrep -P "${started[$name]}" | head -1 || true)
done
wait_http "http://127.0.0.1:$CG_ADMIN/ready"
wait_http "http://127.0.0.1:$CGLOG_ADMIN/ready"
for port in $CG $CGLOG; do
    curl -fsS -o /dev/null -H "Authorization: Bearer $WARM_TOKEN" "http://127.0.0.1:$port/warm"
done

# === measurement helpers ===

# Prints "rps p50_ms p99_ms errors".
run_h1() { # port, seconds, [wrk args...]
    local port=$1 secs=$2
    shift 2
    "${on_load[@]}" wrk -t1 -c"$CONNS" -d"${secs}s" --latency \
        -H "Authorization: Bearer $WARM_TOKEN" "$@" "http://127.0.0.1:$port/" 2>&1 |
        awk '
        function ms(v) { if (v ~ /us$/) return v / 1000; if (v ~ /ms$/) return v + 0; if (v ~ /s$/) return v * 1000; return v }
        /^ +50%/ { p50 = ms($2) } /^ +99%/ { p99 = ms($2) }
        /Requests\/sec/ { rps = $2 }
        /Non-2xx/ { err += $NF } /Socket errors/ { gsub(/,/, ""); err += $4 + $6 + $8 + $10 }
        END { printf "%.0f %.3f %.3f %d\n", rps, p50, p99, err }'
}

run_h2() { # port, seconds
    local port=$1 secs=$2 log="$dir/h2load.log"
    local out
    out=$("${on_load[@]}" h2load -c"$H2_CONNS" -m"$H2_STREAMS" -D"$secs" --warm-up-time=1 \
        --log-file="$log" -H "Authorization: Bearer $WARM_TOKEN" "http://127.0.0.1:$port/" 2>&1)
    local rps err
    rps=$(awk '/^finished in/ { gsub(/,/, ""); print $4 }' <<<"$out")
    # "requests: N total, N started, N done, N succeeded, N failed, N errored, N timeout"
    err=$(awk '/^requests:/ { print $10 + $12 + $14 }' <<<"$out")
    local non2xx
    non2xx=$(awk '/^status codes:/ { gsub(/,/, ""); print $5 + $7 + $9 }' <<<"$out")
    cut -f3 "$log" | sort -n | awk -v rps="$rps" -v err="$((err + non2xx))" '
        { v[NR] = $1 }
        END { printf "%.0f %.3f %.3f %d\n", rps, v[int(NR * 0.50)] / 1000, v[int(NR * 0.99)] / 1000, err }'
}

# Fixed rate: RATE/80 connections, each waiting 10 ms after every response (wrk's `delay()` hook)
# and about 2 ms more for wake-ups on this VM, so the offered load is near RATE whatever the
# target; the table shows the rate reached. Latency counts from the write of each request.
rate_conns=$(((RATE + 79) / 80))
echo 'function delay() return 10 end' >"$dir/rate.lua"
run_rate() { # port, seconds
    CONNS=$rate_conns run_h1 "$1" "$2" -s "$dir/rate.lua"
}

metric() { # admin port, metric name, label regex
    curl -fsS "http://127.0.0.1:$1/metrics" |
        awk -v name="$2" -v re="$3" '$1 ~ "^" name "\\{" && $1 ~ re { s += $2 } END { print s + 0 }'
}

rss_kib() { awk '/^VmRSS/ { print $2 }' "/proc/$1/status"; }

median() {
    tr ' ' '\n' | grep -v '^$' | sort -g |
        awk '{ v[NR] = $1 } END { print (NR % 2 ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2) }'
}

# CPU time (user + system, clock ticks) of a process and its children, e.g. nginx and its worker.
cpu_ticks() { # pid
    local total=0 pid
    for pid in $1 $(pgrep -P "$1"); do
        total=$((total + $(awk '{ print $14 + $15 }' "/proc/$pid/stat" 2>/dev/null || echo 0)))
    done
    echo "$total"
}


# === warm path: interleaved A B C D / D C B A ===

targets=(direct nginx haproxy chaingate chaingate-nolog)
declare -A h1_port=([direct]=$UP_H1 [nginx]=$NGX_H1 [haproxy]=$HAP_H1 [chaingate]=$CG [chaingate-nolog]=$CGLOG [baseline]=$CGBASE)
declare -A h2_port=([direct]=$UP_H2 [nginx]=$NGX_H2 [haproxy]=$HAP_H2 [chaingate]=$CG [chaingate-nolog]=$CGLOG [baseline]=$CGBASE)
[[ -n "${BASELINE:-}" ]] && targets+=(baseline)
if [[ "${RUNTIMES:-0}" == 1 ]]; then
    targets+=(cg-current-thread cg-2-workers)
    h1_port[cg-current-thread]=$CGCT h2_port[cg-current-thread]=$CGCT
    h1_port[cg-2-workers]=$CG2W h2_port[cg-2-workers]=$CG2W
fi
declare -A res
protos=(h1 h2)
((RATE > 0)) && protos+=(rate)

echo "warm path: $ROUNDS round(s) x ${DUR}s per cell" >&2
for round in $(seq 1 "$ROUNDS"); do
    order=("${targets[@]}")
    if ((round % 2 == 0)); then
        order=()
        for ((i = ${#targets[@]} - 1; i >= 0; i--)); do order+=("${targets[$i]}"); done
    fi
    for proto in "${protos[@]}"; do
        for target in "${order[@]}"; do
            cpu_before=$(cpu_ticks "${server_pid[$target]}")
            if [[ $proto == h1 ]]; then
                line=$(run_h1 "${h1_port[$target]}" "$DUR")
            elif [[ $proto == rate ]]; then
                line=$(run_rate "${h1_port[$target]}" "$DUR")
            else
                line=$(run_h2 "${h2_port[$target]}" "$DUR")
            fi
            # CPU per request of the proxy alone (the upstream's own share excluded, except for
            # direct): steadier than req/s when other work shares the machine.
            cpu_us=$(awk -v t="$(($(cpu_ticks "${server_pid[$target]}") - cpu_before))" \
                -v hz="$(getconf CLK_TCK)" -v rps="${line%% *}" -v d="$DUR" \
                'BEGIN { printf "%.2f", (rps > 0 ? t / hz * 1e6 / (rps * d) : 0) }')
            line="$line $cpu_us"
            echo "  round $round $proto $target: $line" >&2
            res[$proto,$target]+="$line;"
        done
    done
done

# === report helpers ===

med() { # proto, target, field (1 rps, 2 p50, 3 p99, 4 errors, 5 CPU µs per request)
    tr ';' '\n' <<<"${res[$1,$2]}" | awk -v f="$3" 'NF { print $f }' | median
}
# The median of per-round ratios: each round's cells ran back to back, so they share its noise.
ratio() { # proto, target, reference target, [field]
    local f=${4:-1}
    paste -d' ' <(tr ';' '\n' <<<"${res[$1,$2]}" | awk -v f="$f" 'NF { print $f }') \
        <(tr ';' '\n' <<<"${res[$1,$3]}" | awk -v f="$f" 'NF { print $f }') |
        awk '$2 > 0 { print $1 / $2 }' | median | awk '{ printf "%.2f", $1 }'
}
warm_table() {
    echo "| test | target | req/s | p50 ms | p99 ms | errors | × nginx | × direct | p99 − nginx p99 ms | CPU µs/req | CPU × nginx |"
    echo "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
    for proto in "${protos[@]}"; do
        n_p99=$(med $proto nginx 3)
        for target in "${targets[@]}"; do
            rps=$(med $proto "$target" 1) p50=$(med $proto "$target" 2) p99=$(med $proto "$target" 3)
            err=$(med $proto "$target" 4)
            dp99=$(awk -v a="$p99" -v b="$n_p99" 'BEGIN { printf "%+.3f", a - b }')
            case $proto in
            h1) label="warm h1 (wrk)" ;;
            h2) label="warm h2c (h2load)" ;;
            rate) label="warm h1 at ${RATE} req/s (wrk, $rate_conns conns)" ;;
            esac
            echo "| $label | $target | $rps | $p50 | $p99 | $err | $(ratio $proto "$target" nginx) | $(ratio $proto "$target" direct) | $dp99 | $(med $proto "$target" 5) | $(ratio $proto "$target" nginx 5) |"
        done
    done
}
if [[ "${WARM_ONLY:-0}" == 1 ]]; then
    warm_table
    exit 0
fi

# === cold path ===

cat >"$dir/cold.lua" <<'EOF'
-- Every request carries a token never seen before: each one is a cache miss and an exchange.
local n = 0
local prefix
function init(args)
    math.randomseed(os.time())
    prefix = "cold-" .. os.time() .. "-" .. math.random(1, 1000000000) .. "-"
end
function request()
    n = n + 1
    return wrk.format("GET", "/", { ["Authorization"] = "Bearer " .. prefix .. n })
end
EOF
echo "cold path: ${COLD_DUR}s of distinct tokens" >&2
ex_re='domain="fast"'
before=$(metric $CG_ADMIN chaingate_token_exchanges_total "$ex_re")
cold_cpu_before=$(cpu_ticks "${server_pid[chaingate]}")
cold=$(run_h1 $CG "$COLD_DUR" -s "$dir/cold.lua")
cold_cpu=$(($(cpu_ticks "${server_pid[chaingate]}") - cold_cpu_before))
after=$(metric $CG_ADMIN chaingate_token_exchanges_total "$ex_re")
cold_exchanges=$((after - before))
# chaingate's own CPU per exchange (the token server runs on the load CPU): client auth, the
# token request and its JSON, the cache insert, and the forwarded request around it.
cold_cpu_us=$(awk -v t="$cold_cpu" -v hz="$(getconf CLK_TCK)" -v e="$cold_exchanges" \
    'BEGIN { printf "%.1f", (e > 0 ? t / hz * 1e6 / e : 0) }')
# With CONNS callers each waiting TOKEN_LATENCY_MS per exchange, the token server alone allows
# at most this many exchanges per second.
cold_bound=$(awk -v c="$CONNS" -v l="$TOKEN_LATENCY_MS" 'BEGIN { printf "%.0f", c * 1000 / l }')
echo "  cold: $cold exchanges=$cold_exchanges cpu_us_per_exchange=$cold_cpu_us" >&2

burst_rows=()
for n in $BURSTS; do
    token="burst-$n-$RANDOM$RANDOM"
    ex_before=$(metric $CG_ADMIN chaingate_token_exchanges_total 'domain="slow"')
    miss_before=$(metric $CG_ADMIN chaingate_token_cache_lookups_total 'domain="slow".*result="miss"|result="miss".*domain="slow"')
    out=$("${on_load[@]}" "$loadkit" burst --addr 127.0.0.1:$CG --path /burst/x --token "$token" --n "$n")
    ex_after=$(metric $CG_ADMIN chaingate_token_exchanges_total 'domain="slow"')
    miss_after=$(metric $CG_ADMIN chaingate_token_cache_lookups_total 'domain="slow".*result="miss"|result="miss".*domain="slow"')
    echo "  $out exchanges=$((ex_after - ex_before)) misses=$((miss_after - miss_before))" >&2
    burst_rows+=("$n|$((ex_after - ex_before))|$((miss_after - miss_before))|$out")
done

# === memory ===

echo "memory: idle, then $FILL_N cached tokens" >&2
RUST_LOG=warn start memory "$dir/cgmem.out" "${on_server[@]}" timeout "$LIFETIME" "$chaingate" run --config "$dir/cgmem.toml"
wait_http "http://127.0.0.1:$CGMEM_ADMIN/ready"
mem_pid=$(pgrep -P "${started[memory]}" -x chaingate)
sleep 1
rss_idle=$(rss_kib "$mem_pid")
# Same connection count and one token first, so connection buffers and allocator arenas are
# already paid for when the per-entry cost is measured.
"${on_load[@]}" "$loadkit" fill --addr 127.0.0.1:$CGMEM --path /fill --prefix warm- --n 20000 --same >&2
rss_warm=$(rss_kib "$mem_pid")
"${on_load[@]}" "$loadkit" fill --addr 127.0.0.1:$CGMEM --path /fill --prefix "mem-" --n "$FILL_N" >&2
entries=$(metric $CGMEM_ADMIN chaingate_token_cache_entries 'domain="fast"')
rss_full=$(rss_kib "$mem_pid")
kill "${started[memory]}" 2>/dev/null || true
# AT2 as the token server issues it ("at2-bench-<20 digits>-<23 x>"): what each entry must hold.
at2_len=54
per_entry=$(((rss_full - rss_warm) * 1024 / FILL_N))

# === startup ===

echo "startup: exec to /ready" >&2
sleep 0.5
startup=$("$loadkit" startup --admin 127.0.0.1:$CGMEM_ADMIN --repeat 7 -- "$chaingate" run --config "$dir/cgmem.toml")
echo "  $startup" >&2

# === report ===

cpu=$(awk -F': ' '/^model name/ { print $2; exit }' /proc/cpuinfo)
echo
echo "chaingate load bench, $(date -u +%Y-%m-%dT%H:%MZ), $(nproc) CPU ($cpu), mode $([[ ${QUICK:-0} == 1 ]] && echo quick || echo full):" \
    "$ROUNDS round(s) x ${DUR}s, medians; wrk -t1 -c$CONNS, h2load -c$H2_CONNS -m$H2_STREAMS;" \
    "$([[ $PIN == 1 ]] && echo "load on CPU $LOAD_CPU, servers on CPU $SERVER_CPU" || echo unpinned);" \
    "load average at start $loadavg"
echo
warm_table
read -r c_rps c_p50 c_p99 c_err <<<"$cold"
echo "| cold: distinct tokens, STS ${TOKEN_LATENCY_MS} ms | chaingate | $c_rps | $c_p50 | $c_p99 | $c_err | | | | | exchanges/s $(awk -v e="$cold_exchanges" -v d="$COLD_DUR" 'BEGIN { printf "%.0f", e / d }') (the token server's bound: $cold_bound), chaingate CPU **$cold_cpu_us µs per exchange** |"
for row in "${burst_rows[@]}"; do
    IFS='|' read -r n ex miss out <<<"$row"
    echo "| burst: $n concurrent, 1 new token, STS 100 ms | chaingate | | | | | | | | | exchanges = **$ex**, misses = $miss, ${out#burst }|"
done
echo "| memory: idle RSS | chaingate | | | | | | | | | $(awk -v k="$rss_idle" 'BEGIN { printf "%.1f MiB", k / 1024 }') |"
echo "| memory: $FILL_N cached tokens ($entries entries) | chaingate | | | | | | | | | RSS $(awk -v k="$rss_full" 'BEGIN { printf "%.1f MiB", k / 1024 }') (warm $(awk -v k="$rss_warm" 'BEGIN { printf "%.1f MiB", k / 1024 }')), **$per_entry B/entry**, $((per_entry - at2_len)) B beyond the $at2_len-byte AT2 |"
echo "| startup: exec → /ready 200 | chaingate | | $(sed 's/.*median_ms=\([^ ]*\).*/\1/' <<<"$startup") | | | | | | | ${startup#startup } ms |"
