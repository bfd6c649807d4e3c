#!/usr/bin/env bash
# icp.sh: ICP responder throughput and reply latency of cuttle against a
# private Squid, in one run, on loopback.
#
# Usage
#   benches/icp.sh [--quick] [-d SECS] [-w WINDOW] [--no-build] [--no-log]
#                  [--perf] [--keep] [--port-base N]
#
#   --quick      2 s runs (smoke test)
#   -d SECS      seconds per icpload run (default 5)
#   -w WINDOW    queries outstanding at once (default 16)
#   --no-build   skip `cargo build --release`
#   --no-log     log_icp_queries off on both (default: on, Squid's default,
#                so each answered query writes an access.log line)
#   --perf       perf-record cuttle during its HIT run; print its top symbols
#   --keep       keep the work directory (configs, logs, perf data)
#   --port-base  first of five ports (default 18190)
#
# Environment: CUTTLE (the binary; default $CARGO_TARGET_DIR or target/,
# release/cuttle), LOAD_CPUS (default 0), SERVER_CPUS (default 1).
#
# What runs, under one temp dir (mktemp):
#   127.0.0.1:BASE      nginx, the origin (Cache-Control max-age=3600)
#   127.0.2.2           cuttle: http_port BASE+1, icp_port BASE+2
#   127.0.2.1           Squid 5.7: http_port BASE+3, icp_port BASE+4,
#                       memory cache only, one worker
#   127.0.2.20          icpload (benches/icpload.c, compiled here), the asker;
#                       icp_access allows it on both
# Each server gets /obj.bin fetched through it once (so both hold it as a
# fresh object) and must answer ICP_HIT for it before it is measured; then
# icpload runs for SECS against each, first the cached URL (HIT path), then
# a URL neither holds (MISS path). icpload is pinned to LOAD_CPUS and the
# servers to SERVER_CPUS (taskset): one core each. Results: replies/s,
# reply latency p50/p99 in microseconds (send to receive, measured by
# icpload), lost queries, and cuttle/Squid ratios. Everything started is
# stopped on exit; nothing outside the temp dir is written.
set -euo pipefail

die() { echo "icp.sh: $*" >&2; exit 1; }
usage() { sed -n '2,/^set -euo/p' "$0" | sed '$d' | sed 's/^# \{0,1\}//' >&2; exit 2; }

DUR=5 WINDOW=16 BUILD=1 LOG=1 PERF=0 KEEP=0 BASE=18190
while [ $# -gt 0 ]; do
  case $1 in
    --quick) DUR=2 ;;
    -d) DUR=$2; shift ;;
    -w) WINDOW=$2; shift ;;
    --no-build) BUILD=0 ;;
    --no-log) LOG=0 ;;
    --perf) PERF=1 ;;
    --keep) KEEP=1 ;;
    --port-base) BASE=$2; shift ;;
    -h|--help) usage ;;
    *) echo "icp.sh: unknown argument '$1'" >&2; usage ;;
  esac
  shift
done
[[ $DUR =~ ^[0-9]+$ && $WINDOW =~ ^[0-9]+$ && $BASE =~ ^[0-9]+$ ]] || die "numbers expected"

REPO=$(cd "$(dirname "$0")/.." && pwd)
PATH=$PATH:/usr/sbin
for tool in nginx squid curl taskset cc; do
  command -v "$tool" >/dev/null || die "$tool not found (apt-get install nginx-light squid curl util-linux gcc)"
done
[ "$PERF" = 0 ] || command -v perf >/dev/null || die "--perf needs perf (apt-get install linux-perf)"

CUTTLE_IP=127.0.2.2 SQUID_IP=127.0.2.1 LOAD_IP=127.0.2.20
ORIGIN_PORT=$BASE CUTTLE_HTTP=$((BASE + 1)) CUTTLE_ICP=$((BASE + 2)) SQUID_HTTP=$((BASE + 3)) SQUID_ICP=$((BASE + 4))
for hp in 127.0.0.1:$ORIGIN_PORT $CUTTLE_IP:$CUTTLE_HTTP $SQUID_IP:$SQUID_HTTP; do
  if (exec 3<>"/dev/tcp/${hp%:*}/${hp#*:}") 2>/dev/null; then die "$hp is in use (try --port-base)"; fi
done

NCPU=$(nproc)
LOAD_CPUS=${LOAD_CPUS:-0} SERVER_CPUS=${SERVER_CPUS:-1}
[ "$NCPU" -ge 2 ] || { echo "icp.sh: only $NCPU CPU: load and servers share it" >&2; LOAD_CPUS=0 SERVER_CPUS=0; }

if [ "$BUILD" = 1 ]; then
  echo "building cuttle (cargo build --release) ..."
  (cd "$REPO" && cargo build --release --quiet) || die "cargo build --release failed"
fi
CUTTLE=${CUTTLE:-${CARGO_TARGET_DIR:-$REPO/target}/release/cuttle}
[ -x "$CUTTLE" ] || die "no cuttle binary at $CUTTLE (build it, or set CUTTLE)"

# ---- work dir and cleanup ----
WORK=$(mktemp -d "${TMPDIR:-/tmp}/cuttle-icp.XXXXXX")
chmod 755 "$WORK"  # nginx workers and Squid run as other users when root
SQUID_SVC="icpb$$"
declare -A PID=()
stop_pid() { # NAME: TERM, wait up to 5 s, KILL
  local pid=${PID[$1]:-}; [ -n "$pid" ] || return 0
  kill -TERM "$pid" 2>/dev/null || { unset "PID[$1]"; return 0; }
  for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
  kill -KILL "$pid" 2>/dev/null || true
  wait "$pid" 2>/dev/null || true
  unset "PID[$1]"
}
cleanup() {
  local rc=$?
  trap - EXIT INT TERM
  for n in "${!PID[@]}"; do stop_pid "$n"; done
  rm -f /dev/shm/"$SQUID_SVC"-* 2>/dev/null || true
  if [ "$KEEP" = 1 ]; then echo "work directory kept: $WORK"; else rm -rf "$WORK"; fi
  exit $rc
}
trap cleanup EXIT
trap 'exit 130' INT TERM

PIN_SERVER=(taskset -c "$SERVER_CPUS") PIN_LOAD=(taskset -c "$LOAD_CPUS")

wait_http() { # NAME URL LOG: until the URL answers (any status), 15 s
  for _ in $(seq 150); do
    if curl -s -o /dev/null --max-time 1 "$2"; then return 0; fi
    kill -0 "${PID[$1]}" 2>/dev/null || { tail -20 "$3" >&2; die "$1 exited at start; see above"; }
    sleep 0.1
  done
  tail -20 "$3" >&2; die "$1 did not answer $2 within 15 s"
}
start_server() { # NAME URL LOG STDOUT CMD...: start pinned, wait until URL answers
  local name=$1 url=$2 log=$3 out=$4; shift 4
  "${PIN_SERVER[@]}" "$@" >"$out" 2>&1 &
  PID[$name]=$!
  wait_http "$name" "$url" "$log"
}

# ---- icpload ----
cc -O2 -o "$WORK/icpload" "$REPO/benches/icpload.c" || die "cannot compile benches/icpload.c"

# ---- origin ----
mkdir -p "$WORK/www"
head -c 4096 /dev/urandom >"$WORK/www/obj.bin"
chmod -R a+rX "$WORK/www"
N=$WORK/nginx; mkdir -p "$N/tmp"
cat >"$N/nginx.conf" <<EOF
# generated by benches/icp.sh
worker_processes 1;
daemon off;
pid $N/nginx.pid;
error_log $N/error.log warn;
events { worker_connections 256; }
http {
  default_type application/octet-stream;
  client_body_temp_path $N/tmp/client;
  proxy_temp_path $N/tmp/proxy;
  fastcgi_temp_path $N/tmp/fastcgi;
  uwsgi_temp_path $N/tmp/uwsgi;
  scgi_temp_path $N/tmp/scgi;
  server { listen 127.0.0.1:$ORIGIN_PORT; root $WORK/www; expires 1h; access_log $N/origin.log; }
}
EOF
start_server nginx "http://127.0.0.1:$ORIGIN_PORT/obj.bin" "$N/error.log" "$N/stdout" \
  nginx -e "$N/error.log" -p "$N" -c "$N/nginx.conf"

LOGQ=$([ "$LOG" = 1 ] && echo on || echo off)

# ---- cuttle ----
C=$WORK/cuttle; mkdir -p "$C/cache"
cat >"$C/squid.conf" <<EOF
# generated by benches/icp.sh
http_port $CUTTLE_IP:$CUTTLE_HTTP
icp_port $CUTTLE_ICP
udp_incoming_address $CUTTLE_IP
acl bench src 127.0.0.0/8
http_access allow bench
http_access deny all
icp_access allow bench
icp_access deny all
log_icp_queries $LOGQ
cache_dir mmap $C/cache 64
access_log stdio:$C/access.log squid
visible_hostname bench-cuttle
EOF
start_server cuttle "http://$CUTTLE_IP:$CUTTLE_HTTP/" "$C/stdout" "$C/stdout" "$CUTTLE" run -f "$C/squid.conf"

# ---- Squid ----
S=$WORK/squid; mkdir -p "$S"
cat >"$S/squid.conf" <<EOF
# generated by benches/icp.sh; nothing outside $S
http_port $SQUID_IP:$SQUID_HTTP
icp_port $SQUID_ICP
htcp_port 0
udp_incoming_address $SQUID_IP
udp_outgoing_address $SQUID_IP
tcp_outgoing_address $SQUID_IP
acl bench src 127.0.0.0/8
http_access allow bench
http_access deny all
icp_access allow bench
icp_access deny all
log_icp_queries $LOGQ
cache_mem 64 MB
visible_hostname bench-squid
pid_filename $S/squid.pid
cache_log $S/cache.log
access_log stdio:$S/access.log squid
cache_store_log none
netdb_filename none
coredump_dir $S
pinger_enable off
minimum_direct_rtt 0
dns_nameservers 127.0.0.1
shutdown_lifetime 0 seconds
EOF
[ "$(id -u)" = 0 ] && chown -R proxy:proxy "$S"  # Squid drops root for cache_effective_user
squid -n "$SQUID_SVC" -k parse -f "$S/squid.conf" >"$S/parse.log" 2>&1 ||
  { grep -E "FATAL|ERROR" "$S/parse.log" >&2; die "squid.conf does not parse: see above"; }
start_server squid "http://$SQUID_IP:$SQUID_HTTP/" "$S/cache.log" "$S/stdout" squid -n "$SQUID_SVC" -N -f "$S/squid.conf"

declare -A HTTP=([cuttle]="$CUTTLE_IP:$CUTTLE_HTTP" [squid]="$SQUID_IP:$SQUID_HTTP")
declare -A ICP=([cuttle]="$CUTTLE_IP $CUTTLE_ICP" [squid]="$SQUID_IP $SQUID_ICP")
HIT_URL="http://127.0.0.1:$ORIGIN_PORT/obj.bin"
MISS_URL="http://127.0.0.1:$ORIGIN_PORT/absent.bin"

echo
echo "== contenders =="
echo "cuttle:  $("$CUTTLE" --version) ($CUTTLE, git $(git -C "$REPO" describe --always --dirty 2>/dev/null || echo '?'))"
echo "squid:   $(squid -v | head -1)"
echo "machine: $NCPU CPU ($(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//')), $(uname -sr)"
echo "load: icpload window $WINDOW, ${DUR}s per run on CPU $LOAD_CPUS; servers on CPU $SERVER_CPUS; log_icp_queries $LOGQ"

# ---- warm-up: fetch through each, then it must answer ICP_HIT ----
echo
echo "== warm-up =="
for srv in cuttle squid; do
  for _ in 1 2; do
    curl -s -o /dev/null -x "http://${HTTP[$srv]}" "$HIT_URL" || die "$srv: fetching $HIT_URL failed"
  done
  ok=0
  for _ in $(seq 20); do
    out=$("$WORK/icpload" "$LOAD_IP" ${ICP[$srv]} "$HIT_URL" 0.2 1)
    if [[ $out =~ hit\ ([0-9]+) ]] && [ "${BASH_REMATCH[1]}" -gt 0 ]; then ok=1; break; fi
    sleep 0.1
  done
  [ "$ok" = 1 ] || die "$srv never answered ICP_HIT for $HIT_URL ($out)"
  echo "  $srv answers ICP_HIT for $HIT_URL"
done

# ---- runs ----
cpu_busy() { # "busy total" jiffies of cpuN
  awk -v c="cpu$1" '$1 == c { t = 0; for (i = 2; i <= NF; i++) t += $i; print t - $5 - $6, t }' /proc/stat
}
declare -A RPS=() P50=() P99=() LOST=() OPS=() LCPU=() SCPU=()
run_one() { # SERVER CASE URL
  local srv=$1 case=$2 url=$3 out perfpid=""
  local load_cpu=${LOAD_CPUS%%[,-]*} server_cpu=${SERVER_CPUS%%[,-]*}
  read -r lb0 lt0 < <(cpu_busy "$load_cpu"); read -r sb0 st0 < <(cpu_busy "$server_cpu")
  if [ "$PERF" = 1 ] && [ "$srv" = cuttle ] && [ "$case" = hit ]; then
    perf record -q -F 999 -g -p "${PID[cuttle]}" -o "$WORK/perf.data" -- sleep "$DUR" >/dev/null 2>&1 &
    perfpid=$!
  fi
  out=$("${PIN_LOAD[@]}" "$WORK/icpload" "$LOAD_IP" ${ICP[$srv]} "$url" "$DUR" "$WINDOW") ||
    { echo "$out" >&2; die "icpload failed against $srv"; }
  [ -z "$perfpid" ] || wait "$perfpid" || true
  read -r lb1 lt1 < <(cpu_busy "$load_cpu"); read -r sb1 st1 < <(cpu_busy "$server_cpu")
  LCPU[$srv.$case]=$(( (lb1 - lb0) * 100 / ((lt1 - lt0) > 0 ? (lt1 - lt0) : 1) ))
  SCPU[$srv.$case]=$(( (sb1 - sb0) * 100 / ((st1 - st0) > 0 ? (st1 - st0) : 1) ))
  echo "$out" >"$WORK/icpload-$srv-$case.txt"
  RPS[$srv.$case]=$(awk '{print $2}' <<<"$out")
  P50[$srv.$case]=$(awk '{print $4}' <<<"$out")
  P99[$srv.$case]=$(awk '{print $6}' <<<"$out")
  LOST[$srv.$case]=$(awk '{print $10}' <<<"$out")
  OPS[$srv.$case]=$(awk '{print "hit " $12 " miss " $14 " denied " $16}' <<<"$out")
}
echo
echo "== runs (icpload ${DUR}s each) =="
for case in hit miss; do
  url=$([ "$case" = hit ] && echo "$HIT_URL" || echo "$MISS_URL")
  for srv in cuttle squid; do
    printf '  %-6s %-4s ... ' "$srv" "$case"
    run_one "$srv" "$case" "$url"
    printf '%s replies/s (%s)\n' "${RPS[$srv.$case]}" "${OPS[$srv.$case]}"
  done
done

echo
echo "== results =="
printf '%-5s %-7s %11s %9s %9s %7s %9s %9s\n' case server "replies/s" "p50 us" "p99 us" lost "srv-core" "load-core"
for case in hit miss; do
  for srv in cuttle squid; do
    printf '%-5s %-7s %11s %9s %9s %7s %8s%% %8s%%\n' "$case" "$srv" "${RPS[$srv.$case]}" "${P50[$srv.$case]}" "${P99[$srv.$case]}" "${LOST[$srv.$case]}" "${SCPU[$srv.$case]}" "${LCPU[$srv.$case]}"
  done
  awk -v c="${RPS[cuttle.$case]}" -v s="${RPS[squid.$case]}" -v cp="${P99[cuttle.$case]}" -v sp="${P99[squid.$case]}" -v k="$case" \
    'BEGIN { printf "%-5s cuttle/squid: %.1fx replies/s, p99 %.2fx (goal: >= 5x, p99 < 100 us)\n", k, (s > 0 ? c / s : 0), (sp > 0 ? cp / sp : 0) }'
done
count_icp_lines() { grep -c ICP_QUERY "$1" 2>/dev/null || true; }
echo "ICP lines in access.log: cuttle $(count_icp_lines "$C/access.log"), squid $(count_icp_lines "$S/access.log")"

if [ "$PERF" = 1 ] && [ -f "$WORK/perf.data" ]; then
  echo
  echo "== cuttle top symbols (HIT run) =="
  perf report -i "$WORK/perf.data" --no-children --stdio --percent-limit 1.5 2>/dev/null |
    grep -E '^ +[0-9]' | head -25
fi
