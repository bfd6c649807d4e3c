#!/usr/bin/env bash
# icp.sh: ICP (or, with --htcp, HTCP TST) responder throughput and reply
# latency of cuttle against a private Squid, in one run, on loopback.
#
# Usage
#   benches/icp.sh [--quick] [--htcp] [-d SECS] [-w WINDOW] [--no-build]
#                  [--no-log] [--perf] [--count] [--keep] [--port-base N]
#
#   --quick      2 s runs (smoke test; CI runs it, with and without --htcp)
#   --htcp       load the HTCP responders with TST queries (Squid's form:
#                MINOR 1, RD, no request headers) instead of ICP
#   -d SECS      seconds per icpload run (default 5)
#   -w WINDOW    queries outstanding at once (default 16); cuttle's HIT
#                latency is also measured at window 8 (the goal's p99)
#   --no-build   skip `cargo build --release`
#   --no-log     log_icp_queries off on both (default: on, Squid's default,
#                so each answered query writes an access.log line)
#   --perf       perf-record cuttle during its HIT run; print its top symbols
#   --count      perf-stat cuttle during its HIT run: system calls, CPU time
#                and (where the CPU counts them; not on every VM)
#                instructions per reply, figures a busy machine disturbs
#                less than replies/s, to compare builds (CUTTLE=...);
#                benches/icp_instructions.sh counts instructions anywhere
#   --keep       keep the work directory (configs, logs, perf data)
#   --port-base  first of nine ports (default 18190)
#
# Environment: CUTTLE (the binary; default $CARGO_TARGET_DIR or target/,
# release/cuttle), LOAD_CPUS (default 0), SERVER_CPUS (default 1).
#
# What runs, under one temp dir (mktemp):
#   127.0.0.1:BASE      nginx, the origin (Cache-Control max-age=3600)
#   127.0.2.2           cuttle: http_port BASE+1, icp_port BASE+2,
#                       htcp_port BASE+5
#   127.0.2.1           Squid 5.7: http_port BASE+3, icp_port BASE+4,
#                       htcp_port BASE+6, memory cache only, one worker
#   127.0.2.3           icpecho (benches/icpecho.c, compiled here): the floor,
#                       a C responder that only echoes each query as a MISS
#                       (no access check, lookup or log) and never sleeps
#                       (busy-polls its socket), one recvfrom and one sendto
#                       per query, on port BASE+7; ICP runs only
#   127.0.2.4           icpecho_mmsg (benches/icpecho_mmsg.c): the same echo
#                       with one recvmmsg for what is queued and one sendmmsg
#                       for its replies (the batched floor, "floor-mm"), on
#                       port BASE+8; ICP runs only
#   127.0.2.20          icpload (benches/icpload.c, compiled here), the asker:
#                       one sendmmsg per refill of its window, one recvmmsg
#                       per drain, so it is not the floors' limit;
#                       icp_access and htcp_access allow it on both
# Each server gets /obj.bin fetched through it once (so both hold it as a
# fresh object) and must answer ICP_HIT for it before it is measured; then
# icpload runs for SECS against each, first the cached URL (HIT path), then
# a URL neither holds (MISS path), and cuttle's HIT path once more at
# window 8 for its latency. icpload is pinned to LOAD_CPUS and the
# servers to SERVER_CPUS (taskset): one core each. Results: replies/s,
# reply latency p50/p99 in microseconds (send to receive, measured by
# icpload), lost queries, and cuttle/Squid ratios. Everything started is
# stopped on exit; nothing outside the temp dir is written. The script
# fails (non-zero, the runs named) when a run got no reply; it asserts no
# figure.
set -euo pipefail

die() { echo "icp.sh: $*" >&2; exit 1; }
usage() { sed -n '2,/^set -euo/p' "$0" | sed '$d' | sed 's/^# \{0,1\}//' >&2; exit 2; }

DUR=5 WINDOW=16 BUILD=1 LOG=1 PERF=0 COUNT=0 KEEP=0 BASE=18190 PROTO=icp
while [ $# -gt 0 ]; do
  case $1 in
    --quick) DUR=2 ;;
    --htcp) PROTO=htcp ;;
    -d) DUR=$2; shift ;;
    -w) WINDOW=$2; shift ;;
    --no-build) BUILD=0 ;;
    --no-log) LOG=0 ;;
    --perf) PERF=1 ;;
    --count) COUNT=1 ;;
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
[ "$PERF$COUNT" = 00 ] || command -v perf >/dev/null || die "--perf and --count need perf (apt-get install linux-perf)"

CUTTLE_IP=127.0.2.2 SQUID_IP=127.0.2.1 ECHO_IP=127.0.2.3 ECHO_MM_IP=127.0.2.4 LOAD_IP=127.0.2.20
ORIGIN_PORT=$BASE CUTTLE_HTTP=$((BASE + 1)) CUTTLE_ICP=$((BASE + 2)) SQUID_HTTP=$((BASE + 3)) SQUID_ICP=$((BASE + 4))
CUTTLE_HTCP=$((BASE + 5)) SQUID_HTCP=$((BASE + 6)) ECHO_ICP=$((BASE + 7)) ECHO_MM_ICP=$((BASE + 8))
for hp in 127.0.0.1:$ORIGIN_PORT $CUTTLE_IP:$CUTTLE_HTTP $SQUID_IP:$SQUID_HTTP; do
  if (exec 3<>"/dev/tcp/${hp%:*}/${hp#*:}") 2>/dev/null; then die "$hp is in use (try --port-base)"; fi
done

BENCH=icp
# shellcheck source=benches/lib.sh
. "$REPO/benches/lib.sh"

# ---- icpload ----
cc -O2 -o "$WORK/icpload" "$REPO/benches/icpload.c" || die "cannot compile benches/icpload.c"
cc -O2 -o "$WORK/icpecho" "$REPO/benches/icpecho.c" || die "cannot compile benches/icpecho.c"
cc -O2 -o "$WORK/icpecho_mmsg" "$REPO/benches/icpecho_mmsg.c" || die "cannot compile benches/icpecho_mmsg.c"

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
htcp_port $CUTTLE_HTCP
udp_incoming_address $CUTTLE_IP
acl bench src 127.0.0.0/8
http_access allow bench
http_access deny all
icp_access allow bench
icp_access deny all
htcp_access allow bench
htcp_access deny all
log_icp_queries $LOGQ
cache_dir mmap $C/cache 64
access_log stdio:$C/access.log squid
pid_filename $C/cuttle.pid
visible_hostname bench-cuttle
EOF
start_server cuttle "http://$CUTTLE_IP:$CUTTLE_HTTP/" "$C/stdout" "$C/stdout" "$CUTTLE" run -f "$C/squid.conf"

# ---- Squid ----
S=$WORK/squid; mkdir -p "$S"
cat >"$S/squid.conf" <<EOF
# generated by benches/icp.sh; nothing outside $S
http_port $SQUID_IP:$SQUID_HTTP
icp_port $SQUID_ICP
htcp_port $SQUID_HTCP
udp_incoming_address $SQUID_IP
udp_outgoing_address $SQUID_IP
tcp_outgoing_address $SQUID_IP
acl bench src 127.0.0.0/8
http_access allow bench
http_access deny all
icp_access allow bench
icp_access deny all
htcp_access allow bench
htcp_access deny all
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
if [ "$PROTO" = htcp ]; then
  declare -A ICP=([cuttle]="$CUTTLE_IP $CUTTLE_HTCP" [squid]="$SQUID_IP $SQUID_HTCP")
  LOADER=("$WORK/icpload" --htcp) HITNAME="HTCP TST found" LINES=HTCP_TST
else
  declare -A ICP=([cuttle]="$CUTTLE_IP $CUTTLE_ICP" [squid]="$SQUID_IP $SQUID_ICP" [floor]="$ECHO_IP $ECHO_ICP"
    [floor-mm]="$ECHO_MM_IP $ECHO_MM_ICP")
  LOADER=("$WORK/icpload") HITNAME=ICP_HIT LINES=ICP_QUERY
fi
HIT_URL="http://127.0.0.1:$ORIGIN_PORT/obj.bin"
MISS_URL="http://127.0.0.1:$ORIGIN_PORT/absent.bin"

echo
echo "== contenders =="
echo "cuttle:  $("$CUTTLE" --version) ($CUTTLE, git $(git -C "$REPO" describe --always --dirty 2>/dev/null || echo '?'))"
echo "squid:   $(squid -v | head -1)"
echo "machine: $NCPU CPU ($(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//')), $(uname -sr)"
echo "load: $PROTO, icpload window $WINDOW, ${DUR}s per run on CPU $LOAD_CPUS; servers on CPU $SERVER_CPUS; log_icp_queries $LOGQ"

# ---- warm-up: fetch through each, then it must answer a hit ----
echo
echo "== warm-up =="
for srv in cuttle squid; do
  for _ in 1 2; do
    curl -s -o /dev/null -x "http://${HTTP[$srv]}" "$HIT_URL" || die "$srv: fetching $HIT_URL failed"
  done
  ok=0
  for _ in $(seq 20); do
    out=$("${LOADER[@]}" "$LOAD_IP" ${ICP[$srv]} "$HIT_URL" 0.2 1)
    if [[ $out =~ hit\ ([0-9]+) ]] && [ "${BASH_REMATCH[1]}" -gt 0 ]; then ok=1; break; fi
    sleep 0.1
  done
  [ "$ok" = 1 ] || die "$srv never answered $HITNAME for $HIT_URL ($out)"
  echo "  $srv answers $HITNAME for $HIT_URL"
done

# ---- runs ----
cpu_busy() { # "busy total" jiffies of cpuN
  awk -v c="cpu$1" '$1 == c { t = 0; for (i = 2; i <= NF; i++) t += $i; print t - $5 - $6, t }' /proc/stat
}
declare -A RPS=() P50=() P99=() LOST=() OPS=() LCPU=() SCPU=() REPLIES=()
run_one() { # SERVER CASE URL [WINDOW]
  local srv=$1 case=$2 url=$3 window=${4:-$WINDOW} out perfpid="" statpid=""
  local load_cpu=${LOAD_CPUS%%[,-]*} server_cpu=${SERVER_CPUS%%[,-]*}
  read -r lb0 lt0 < <(cpu_busy "$load_cpu"); read -r sb0 st0 < <(cpu_busy "$server_cpu")
  if [ "$PERF" = 1 ] && [ "$srv" = cuttle ] && [ "$case" = hit ]; then
    perf record -q -F 999 -g -p "${PID[cuttle]}" -o "$WORK/perf.data" -- sleep "$DUR" >/dev/null 2>&1 &
    perfpid=$!
  fi
  if [ "$COUNT" = 1 ] && [ "$srv" = cuttle ] && [ "$case" = hit ]; then
    perf stat -x, -e instructions,task-clock,raw_syscalls:sys_enter -p "${PID[cuttle]}" -o "$WORK/stat.txt" -- sleep "$DUR" >/dev/null 2>&1 &
    statpid=$!
  fi
  out=$("${PIN_LOAD[@]}" "${LOADER[@]}" "$LOAD_IP" ${ICP[$srv]} "$url" "$DUR" "$window") ||
    { echo "$out" >&2; die "icpload failed against $srv"; }
  [ -z "$perfpid" ] || wait "$perfpid" || true
  [ -z "$statpid" ] || wait "$statpid" || true
  read -r lb1 lt1 < <(cpu_busy "$load_cpu"); read -r sb1 st1 < <(cpu_busy "$server_cpu")
  LCPU[$srv.$case]=$(( (lb1 - lb0) * 100 / ((lt1 - lt0) > 0 ? (lt1 - lt0) : 1) ))
  SCPU[$srv.$case]=$(( (sb1 - sb0) * 100 / ((st1 - st0) > 0 ? (st1 - st0) : 1) ))
  echo "$out" >"$WORK/icpload-$srv-$case.txt"
  RPS[$srv.$case]=$(awk '{print $2}' <<<"$out")
  P50[$srv.$case]=$(awk '{print $4}' <<<"$out")
  P99[$srv.$case]=$(awk '{print $6}' <<<"$out")
  LOST[$srv.$case]=$(awk '{print $10}' <<<"$out")
  OPS[$srv.$case]=$(awk '{print "hit " $12 " miss " $14 " denied " $16}' <<<"$out")
  REPLIES[$srv.$case]=$(awk '{print $8}' <<<"$out")
}
echo
echo "== runs (icpload ${DUR}s each) =="
if [ "$PROTO" = icp ]; then
  # Started for its run only: it busy-polls the server core.
  "${PIN_SERVER[@]}" "$WORK/icpecho" "$ECHO_IP" "$ECHO_ICP" >"$WORK/icpecho.out" 2>&1 &
  PID[icpecho]=$!
  printf '  %-8s %-4s ... ' floor any
  run_one floor any "$MISS_URL"
  printf '%s replies/s (%s)\n' "${RPS[floor.any]}" "${OPS[floor.any]}"
  stop_pid icpecho
  "${PIN_SERVER[@]}" "$WORK/icpecho_mmsg" "$ECHO_MM_IP" "$ECHO_MM_ICP" >"$WORK/icpecho_mmsg.out" 2>&1 &
  PID[icpecho_mmsg]=$!
  printf '  %-8s %-4s ... ' floor-mm any
  run_one floor-mm any "$MISS_URL"
  printf '%s replies/s (%s)\n' "${RPS[floor-mm.any]}" "${OPS[floor-mm.any]}"
  stop_pid icpecho_mmsg
fi
for case in hit miss; do
  url=$([ "$case" = hit ] && echo "$HIT_URL" || echo "$MISS_URL")
  for srv in cuttle squid; do
    printf '  %-8s %-4s ... ' "$srv" "$case"
    run_one "$srv" "$case" "$url"
    printf '%s replies/s (%s)\n' "${RPS[$srv.$case]}" "${OPS[$srv.$case]}"
  done
done
printf '  %-8s %-4s ... ' cuttle hit8
run_one cuttle hit8 "$HIT_URL" 8
printf '%s replies/s at window 8 (%s)\n' "${RPS[cuttle.hit8]}" "${OPS[cuttle.hit8]}"

echo
echo "== results =="
row() { # CASE SERVER KEY
  printf '%-5s %-8s %11s %9s %9s %7s %8s%% %8s%%\n' "$1" "$2" "${RPS[$3]}" "${P50[$3]}" "${P99[$3]}" "${LOST[$3]}" "${SCPU[$3]}" "${LCPU[$3]}"
}
printf '%-5s %-8s %11s %9s %9s %7s %9s %9s\n' case server "replies/s" "p50 us" "p99 us" lost "srv-core" "load-core"
if [ "$PROTO" = icp ]; then
  row any floor floor.any
  row any floor-mm floor-mm.any
fi
for case in hit miss; do
  for srv in cuttle squid; do
    row "$case" "$srv" "$srv.$case"
  done
  awk -v c="${RPS[cuttle.$case]}" -v s="${RPS[squid.$case]}" -v cp="${P99[cuttle.$case]}" -v sp="${P99[squid.$case]}" -v k="$case" \
    -v f="${RPS[floor.any]:-0}" -v fm="${RPS[floor-mm.any]:-0}" \
    'BEGIN { printf "%-5s cuttle/squid: %.1fx replies/s, p99 %.2fx", k, (s > 0 ? c / s : 0), (sp > 0 ? cp / sp : 0)
             if (f > 0) printf "; cuttle/floor %.2f (goal for hit: >= 1.3), squid/floor %.2f", c / f, s / f
             if (fm > 0) printf "; cuttle/floor-mm %.2f", c / fm
             printf "\n" }'
done
row hit8 cuttle cuttle.hit8
awk -v p="${P99[cuttle.hit8]}" 'BEGIN { printf "hit8  cuttle at window 8: p99 %s us (goal: < 100 us)\n", p }'
if [ "$PROTO" = icp ]; then
  awk -v f="${RPS[floor.any]:-0}" -v fm="${RPS[floor-mm.any]:-0}" -v s1="${RPS[squid.hit]}" -v s2="${RPS[squid.miss]}" \
    'BEGIN { s = (s1 > s2 ? s1 : s2); if (s > 0) printf "the floors are %.1fx (floor) and %.1fx (floor-mm) Squid here\n", f / s, fm / s }'
fi
count_lines() { grep -c "$LINES" "$1" 2>/dev/null || true; }
echo "$LINES lines in access.log: cuttle $(count_lines "$C/access.log"), squid $(count_lines "$S/access.log")"

if [ "$COUNT" = 1 ] && [ -f "$WORK/stat.txt" ]; then
  # perf stat -x, lines: value,unit,event,...; the stat covers the run
  # (icpload runs as long), so per reply is total / replies received.
  awk -F, -v r="${REPLIES[cuttle.hit]}" '
    $3 ~ /^instructions/ { i = $1 } $3 ~ /^task-clock/ { t = $1 } $3 ~ /sys_enter/ { c = $1 }
    END { if (r > 0) printf "cuttle HIT run, per reply: %.2f system calls, %.2f us of CPU, %s instructions (%s replies)\n",
            c / r, t * 1000 / r, (i ~ /^[0-9]+$/ ? sprintf("%.0f", i / r) : "uncounted"), r }' "$WORK/stat.txt"
fi

if [ "$PERF" = 1 ] && [ -f "$WORK/perf.data" ]; then
  echo
  echo "== cuttle top symbols (HIT run) =="
  perf report -i "$WORK/perf.data" --no-children --stdio --percent-limit 1.5 2>/dev/null |
    grep -E '^ +[0-9]' | head -25
fi

# A responder that answered nothing in a run is a broken run (what CI's
# `--quick` smoke run checks), whatever the figures.
broken=""
for k in "${!RPS[@]}"; do [ "${RPS[$k]:-0}" -gt 0 ] || broken="$broken $k"; done
[ -z "$broken" ] || die "no replies from:$broken"
