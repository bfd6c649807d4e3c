#!/usr/bin/env bash
# hits.sh: cache-hit throughput of cuttle against a private Squid, Varnish
# and nginx serving the files itself, in one run, on loopback.
#
# Usage
#   benches/hits.sh [--quick] [-d SECS] [-c CONNS] [-t THREADS]
#                   [--sizes "1k 64k 1m"] [--no-build] [--no-log] [--perf]
#                   [--keep] [--port-base N] [--https] [--clients N]
#
#   --quick      2 s runs and a short warm-up (smoke test; CI runs it)
#   -d SECS      seconds per wrk run (default 10)
#   -c CONNS     wrk connections (default 32); -t THREADS wrk threads (1)
#   --sizes      any of 1k 64k 1m (default all three)
#   --no-build   skip `cargo build --release`
#   --no-log     no access log for cuttle, Squid and nginx-direct (by
#                default each writes one, as deployed; Varnish always
#                writes its shared-memory log and runs no varnishncsa)
#   --perf       perf-record cuttle during its runs; print its top symbols
#   --nginx-copy nginx-direct with `sendfile off; output_buffers 4 256k`
#                (default: sendfile on, as Debian's nginx.conf; on loopback
#                copying is faster for 64 KiB and 1 MiB files)
#   --keep       keep the work directory (configs, logs, perf data)
#   --mem-default  cuttle without maximum_object_size_in_memory 2 MB (see
#                below)
#   --port-base  first of five loopback ports (default 18090)
#   --https      HTTPS mode (issue 17): cuttle on an https_port against
#                nginx serving the files itself with `ssl`, both with one
#                throwaway certificate (openssl req, ECDSA P-256, in the
#                temp dir); wrk over TLS with keep-alive; Squid and Varnish
#                do not run; sizes default to "1k 64k"; the goal printed is
#                cuttle/nginx >= 0.9
#   --clients N  many-clients mode (issue 24): 1 KiB hits from cuttle, Squid
#                and nginx direct (no Varnish), each first at -c CONNS (32)
#                and then with N concurrent keep-alive connections (wrk
#                -t1 -cN, all opened at the start and kept; at least 5 s,
#                also with --quick); prints req/s at
#                N against at CONNS, wrk's errors and timeouts at N, and
#                each server's RSS (VmRSS, summed over its processes)
#                before the N connections and while the most of them are
#                open (sampled once a second, connections counted by ss);
#                the kernel's listen-queue overflows during each server's
#                run at N (TcpExtListenOverflows, counted system-wide: other
#                traffic on the machine adds to it);
#                the script fails if a server answered none; raises this shell's open-file limit to the hard
#                limit (cuttle raises its own; nginx and Squid are told
#                worker_rlimit_nofile and max_filedescriptors)
#
# Environment: CUTTLE (the binary; default $CARGO_TARGET_DIR or
# target/, release/cuttle), LOAD_CPUS (default 0), SERVER_CPUS (default 1).
#
# What runs, all on 127.0.0.1 and under one temp dir (mktemp):
#   BASE    nginx, the origin of the three caches (logs every request, so
#           the script can tell that a measured run fetched nothing)
#   BASE+1  cuttle  accel defaultsite=127.0.0.1:BASE, cache_dir mmap 512 MB,
#                   maximum_object_size_in_memory 2 MB (as Squid's below, so
#                   that both keep the 1 MiB object in memory; --mem-default
#                   leaves cuttle at its default of 512 KB, where 1 MiB hits
#                   come from the cache_dir and its checksum is verified on
#                   every hit)
#   BASE+2  Squid   accel, memory cache only (cache_mem 256 MB,
#                   maximum_object_size_in_memory 2 MB), one worker
#   BASE+3  Varnish -b 127.0.0.1:BASE -s malloc,256m (builtin VCL)
#   BASE+4  nginx serving the same files itself ("nginx direct"): the same
#           nginx process as the origin, worker_processes 1, sendfile
# Files 1k.bin, 64k.bin, 1m.bin (random bytes, Cache-Control max-age=3600).
# Each cache is warmed (every URL requested a few times) and must answer
# with a hit (X-Cache: HIT / X-Varnish with two ids) before it is measured.
# wrk runs pinned to LOAD_CPUS, every server to SERVER_CPUS (taskset), so
# each server has one core; the table shows how busy each core was
# (a server core near 100% means the server was the limit, a load core
# near 100% means wrk was). Nothing outside the temp dir is written;
# everything started is stopped on exit. The script fails (non-zero, the
# servers named) when a server answered no request in a run or a cache
# never answered with a hit; it asserts no figure.
set -euo pipefail

die() { echo "hits.sh: $*" >&2; exit 1; }
usage() { sed -n '2,/^set -euo/p' "$0" | sed '$d' | sed 's/^# \{0,1\}//' >&2; exit 2; }

DUR=10 CONNS=32 THREADS=1 SIZES="" HTTPS=0 CLIENTS=0 BUILD=1 LOG=1 PERF=0 KEEP=0 BASE=18090 WARM=5 NGINX_IO="sendfile on;" MEMOBJ=1
while [ $# -gt 0 ]; do
  case $1 in
    --quick) DUR=2 WARM=3 ;;
    -d) DUR=$2; shift ;;
    -c) CONNS=$2; shift ;;
    -t) THREADS=$2; shift ;;
    --sizes) SIZES=$2; shift ;;
    --no-build) BUILD=0 ;;
    --no-log) LOG=0 ;;
    --perf) PERF=1 ;;
    --keep) KEEP=1 ;;
    --mem-default) MEMOBJ=0 ;;
    --nginx-copy) NGINX_IO="sendfile off; output_buffers 4 256k;" ;;
    --port-base) BASE=$2; shift ;;
    --https) HTTPS=1 ;;
    --clients) CLIENTS=$2; shift ;;
    -h|--help) usage ;;
    *) echo "hits.sh: unknown argument '$1'" >&2; usage ;;
  esac
  shift
done
if [ -z "$SIZES" ]; then if [ "$HTTPS" = 1 ]; then SIZES="1k 64k"; else SIZES="1k 64k 1m"; fi; fi
[[ $DUR =~ ^[0-9]+$ && $CONNS =~ ^[0-9]+$ && $THREADS =~ ^[0-9]+$ && $BASE =~ ^[0-9]+$ && $CLIENTS =~ ^[0-9]+$ ]] ||
  die "numbers expected"
if [ "$CLIENTS" -gt 0 ]; then
  [ "$HTTPS" = 0 ] || die "--clients is a plain-HTTP mode"
  SIZES=1k
  # wrk holds N sockets, and so does each server: each process needs N
  # descriptors and some to spare (its listeners, logs, origin links).
  FDS=$((CLIENTS + 1024))
  hard=$(ulimit -Hn)
  # Root may raise the hard limit too; the soft one goes up to the hard.
  if [ "$hard" != unlimited ] && [ "$hard" -lt "$FDS" ]; then ulimit -Hn "$FDS" 2>/dev/null || true; fi
  if [ "$(ulimit -Hn)" = unlimited ]; then ulimit -Sn "$((2 * FDS))"; else ulimit -Sn "$(ulimit -Hn)"; fi 2>/dev/null || true
  [ "$(ulimit -n)" = unlimited ] || [ "$(ulimit -n)" -ge "$FDS" ] ||
    die "--clients $CLIENTS needs an open-file limit of $FDS; the hard limit is $(ulimit -Hn) (raise it: ulimit -Hn, limits.conf)"
fi
for s in $SIZES; do [[ $s =~ ^(1k|64k|1m)$ ]] || die "unknown size '$s' (1k 64k 1m)"; done

REPO=$(cd "$(dirname "$0")/.." && pwd)
TOOLS="nginx squid varnishd wrk curl taskset"
[ "$HTTPS" = 0 ] || TOOLS="nginx wrk curl taskset openssl"
[ "$CLIENTS" = 0 ] || TOOLS="nginx squid wrk curl taskset ss"
for tool in $TOOLS; do
  command -v "$tool" >/dev/null || [ -x "/usr/sbin/$tool" ] ||
    die "$tool not found (apt-get install nginx-light squid varnish wrk curl util-linux)"
done
PATH=$PATH:/usr/sbin
[ "$PERF" = 0 ] || command -v perf >/dev/null || die "--perf needs perf (apt-get install linux-perf)"

ORIGIN_PORT=$BASE CUTTLE_PORT=$((BASE + 1)) SQUID_PORT=$((BASE + 2)) VARNISH_PORT=$((BASE + 3)) DIRECT_PORT=$((BASE + 4))
for p in $ORIGIN_PORT $CUTTLE_PORT $SQUID_PORT $VARNISH_PORT $DIRECT_PORT; do
  if (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null; then die "127.0.0.1:$p is in use (try --port-base)"; fi
done

BENCH=hits
# shellcheck source=benches/lib.sh
. "$REPO/benches/lib.sh"

# ---- content ----
mkdir -p "$WORK/www"
declare -A BYTES=([1k]=1024 [64k]=65536 [1m]=1048576)
for s in 1k 64k 1m; do head -c "${BYTES[$s]}" /dev/urandom >"$WORK/www/$s.bin"; done
chmod -R a+rX "$WORK/www"

# ---- HTTPS mode: one throwaway certificate for nginx and cuttle ----
SCHEME=http DIRECT_TLS="" CUTTLE_PORT_LINE="http_port 127.0.0.1:$CUTTLE_PORT accel"
if [ "$HTTPS" = 1 ]; then
  T=$WORK/tls; mkdir -p "$T"
  openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 2 \
    -subj /CN=127.0.0.1 -addext subjectAltName=IP:127.0.0.1 \
    -keyout "$T/key.pem" -out "$T/cert.pem" >"$T/openssl.log" 2>&1 || { cat "$T/openssl.log" >&2; die "openssl req failed"; }
  chmod a+r "$T/key.pem"  # nginx reads it as root, cuttle as this user
  # nginx 1.22 offers TLS 1.3 only when asked; cuttle (rustls) prefers it.
  SCHEME=https DIRECT_TLS="ssl_certificate $T/cert.pem; ssl_certificate_key $T/key.pem; ssl_protocols TLSv1.2 TLSv1.3;"
  CUTTLE_PORT_LINE="https_port 127.0.0.1:$CUTTLE_PORT accel tls-cert=$T/cert.pem tls-key=$T/key.pem"
fi
DIRECT_LISTEN="listen 127.0.0.1:$DIRECT_PORT;"
[ "$HTTPS" = 0 ] || DIRECT_LISTEN="listen 127.0.0.1:$DIRECT_PORT ssl;"

# ---- nginx: origin and direct contender ----
N=$WORK/nginx; mkdir -p "$N/tmp"
if [ "$LOG" = 1 ]; then DIRECT_LOG="access_log $N/direct.log;"; else DIRECT_LOG="access_log off;"; fi
# One worker serves the origin's and the direct server's connections.
NGINX_CONNS=$((4096 + CLIENTS)) NGINX_FDS=$((2 * (4096 + CLIENTS)))
cat >"$N/nginx.conf" <<EOF
# generated by benches/hits.sh
worker_processes 1;
daemon off;
pid $N/nginx.pid;
error_log $N/error.log warn;
worker_rlimit_nofile $NGINX_FDS;
events { worker_connections $NGINX_CONNS; }
http {
  default_type application/octet-stream;
  tcp_nopush on;
  tcp_nodelay on;
  keepalive_timeout 65;
  keepalive_requests 1000000;
  open_file_cache max=64 inactive=60s;
  client_body_temp_path $N/tmp/client;
  proxy_temp_path $N/tmp/proxy;
  fastcgi_temp_path $N/tmp/fastcgi;
  uwsgi_temp_path $N/tmp/uwsgi;
  scgi_temp_path $N/tmp/scgi;
  server { listen 127.0.0.1:$ORIGIN_PORT; root $WORK/www; expires 1h; sendfile on; access_log $N/origin.log; }
  server { $DIRECT_LISTEN $DIRECT_TLS root $WORK/www; expires 1h; $NGINX_IO $DIRECT_LOG }
}
EOF
nginx -e "$N/error.log" -p "$N" -c "$N/nginx.conf" -t >"$N/test.log" 2>&1 || { cat "$N/test.log" >&2; die "nginx -t failed"; }
start_server nginx "http://127.0.0.1:$ORIGIN_PORT/1k.bin" "$N/error.log" "$N/stdout" \
  nginx -e "$N/error.log" -p "$N" -c "$N/nginx.conf"

# ---- cuttle ----
C=$WORK/cuttle; mkdir -p "$C/cache"
if [ "$LOG" = 1 ]; then CLOG="access_log stdio:$C/access.log squid"; else CLOG="access_log none"; fi
cat >"$C/squid.conf" <<EOF
# generated by benches/hits.sh
$CUTTLE_PORT_LINE defaultsite=127.0.0.1:$ORIGIN_PORT no-vhost
cache_peer 127.0.0.1 parent $ORIGIN_PORT 0 no-query originserver name=origin
http_access allow localhost
http_access deny all
cache_dir mmap $C/cache 512
maximum_object_size 4 MB
$CLOG
pid_filename $C/cuttle.pid
visible_hostname bench-cuttle
EOF
# The memory cache's per-object bound as Squid's (below); cache_mem is
# cuttle's default, 256 MB, as Squid's here.
[ "$MEMOBJ" = 0 ] || echo "maximum_object_size_in_memory 2 MB" >>"$C/squid.conf"
start_server cuttle "$SCHEME://127.0.0.1:$CUTTLE_PORT/" "$C/stdout" "$C/stdout" "$CUTTLE" run -f "$C/squid.conf"

# ---- Squid and Varnish (not in HTTPS mode) ----
if [ "$HTTPS" = 0 ]; then
S=$WORK/squid; mkdir -p "$S"
if [ "$LOG" = 1 ]; then SLOG="access_log stdio:$S/access.log squid"; else SLOG="access_log none"; fi
cat >"$S/squid.conf" <<EOF
# generated by benches/hits.sh; nothing outside $S
http_port 127.0.0.1:$SQUID_PORT accel defaultsite=127.0.0.1:$ORIGIN_PORT no-vhost
cache_peer 127.0.0.1 parent $ORIGIN_PORT 0 no-query originserver name=origin no-digest
icp_port 0
htcp_port 0
cache_mem 256 MB
maximum_object_size_in_memory 2 MB
maximum_object_size 4 MB
http_access allow localhost
http_access deny all
visible_hostname bench-squid
pid_filename $S/squid.pid
cache_log $S/cache.log
$SLOG
cache_store_log none
netdb_filename none
coredump_dir $S
pinger_enable off
dns_nameservers 127.0.0.1
shutdown_lifetime 0 seconds
EOF
[ "$CLIENTS" = 0 ] || echo "max_filedescriptors $FDS" >>"$S/squid.conf"
[ "$(id -u)" = 0 ] && chown -R proxy:proxy "$S"  # Squid drops root for cache_effective_user
squid -n "$SQUID_SVC" -k parse -f "$S/squid.conf" >"$S/parse.log" 2>&1 ||
  { grep -E "FATAL|ERROR" "$S/parse.log" >&2; die "squid.conf does not parse: see above"; }
start_server squid "http://127.0.0.1:$SQUID_PORT/" "$S/cache.log" "$S/stdout" squid -n "$SQUID_SVC" -N -f "$S/squid.conf"

# ---- Varnish (not in the many-clients mode) ----
if [ "$CLIENTS" = 0 ]; then
V=$WORK/varnish; mkdir -p "$V"
start_server varnish "http://127.0.0.1:$VARNISH_PORT/" "$V/stdout" "$V/stdout" \
  varnishd -F -a "127.0.0.1:$VARNISH_PORT" -b "127.0.0.1:$ORIGIN_PORT" -n "$V/work" -s malloc,256m
fi
fi

# ---- versions ----
echo
echo "== contenders =="
echo "cuttle:  $("$CUTTLE" --version) ($CUTTLE, git $(git -C "$REPO" describe --always --dirty 2>/dev/null || echo '?'))"
if [ "$HTTPS" = 0 ]; then
  echo "squid:   $(squid -v | head -1)"
  [ "$CLIENTS" != 0 ] || echo "varnish: $(varnishd -V 2>&1 | head -1)"
else
  echo "TLS:     $(curl -skv -o /dev/null "https://127.0.0.1:$DIRECT_PORT/1k.bin" 2>&1 | grep -m1 -o 'SSL connection using .*' || echo '?') (nginx);" \
    "$(curl -skv -o /dev/null "https://127.0.0.1:$CUTTLE_PORT/1k.bin" 2>&1 | grep -m1 -o 'SSL connection using .*' || echo '?') (cuttle)"
fi
echo "nginx:   $(nginx -v 2>&1)"
echo "wrk:     $(wrk -v 2>&1 | head -1 | sed 's/ Copyright.*//')"
echo "machine: $NCPU CPU ($(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//')), $(uname -sr)"
echo "nginx-direct: $NGINX_IO"
echo "load: wrk -t$THREADS -c$CONNS -d${DUR}s on CPU $LOAD_CPUS; servers on CPU $SERVER_CPUS; access logs $([ "$LOG" = 1 ] && echo on || echo off)"
echo "cuttle: maximum_object_size_in_memory $([ "$MEMOBJ" = 1 ] && echo "2 MB (as Squid's)" || echo "default (512 KB)")"

declare -A URLBASE=([nginx]="$SCHEME://127.0.0.1:$DIRECT_PORT" [cuttle]="$SCHEME://127.0.0.1:$CUTTLE_PORT"
                    [squid]="http://127.0.0.1:$SQUID_PORT" [varnish]="http://127.0.0.1:$VARNISH_PORT")
SERVERS="nginx cuttle squid varnish"
[ "$HTTPS" = 0 ] || SERVERS="nginx cuttle"
[ "$CLIENTS" = 0 ] || SERVERS="nginx cuttle squid"

# ---- warm-up and hit check ----
echo
echo "== warm-up (each URL $WARM times; last response's cache headers) =="
declare -A HITOK=()
for srv in $SERVERS; do
  for s in $SIZES; do
    url="${URLBASE[$srv]}/$s.bin"
    for _ in $(seq "$WARM"); do
      hdr=$(curl -sk -D - -o "$WORK/body" "$url") || die "$srv: $url failed"
    done
    got=$(stat -c %s "$WORK/body")
    cmp -s "$WORK/body" "$WORK/www/$s.bin" || die "$srv $s: body differs from the file ($got bytes)"
    case $srv in
      nginx) show="direct (no cache)"; ok=1 ;;
      cuttle|squid) show=$(printf '%s' "$hdr" | grep -i '^x-cache:' | tr -d '\r' | head -1)
                    [[ ${show,,} == *"x-cache: hit"* ]] && ok=1 || ok=0 ;;
      varnish) show=$(printf '%s' "$hdr" | grep -iE '^(x-varnish|age):' | tr -d '\r' | paste -sd' ')
               [[ $show =~ [Xx]-[Vv]arnish:\ [0-9]+\ [0-9]+ ]] && ok=1 || ok=0 ;;
    esac
    HITOK[$srv.$s]=$ok
    printf '  %-8s %-4s %s%s\n' "$srv" "$s" "$show" "$([ $ok = 1 ] || echo '   <-- NOT A HIT')"
  done
done

# ---- measurement helpers ----
HZ=$(getconf CLK_TCK)
tree_pids() { # PID and all its descendants
  local p=$1 c; echo "$p"
  for c in $(ps -o pid= --ppid "$p" 2>/dev/null); do tree_pids "$c"; done
}
proc_ticks() { # sum of utime+stime of a process tree, in clock ticks
  local t=0 p f
  for p in $(tree_pids "$1"); do
    f=$(cut -d')' -f2- "/proc/$p/stat" 2>/dev/null) || continue
    set -- $f; t=$((t + ${12} + ${13}))
  done
  echo "$t"
}
cpu_busy() { # "busy total" jiffies of cpuN
  awk -v c="cpu$1" '$1 == c { t = 0; for (i = 2; i <= NF; i++) t += $i; print t - $5 - $6, t }' /proc/stat
}
to_mib() { # wrk's "12.34MB" -> MiB
  awk -v v="$1" 'BEGIN { n = v + 0; u = v; sub(/^[0-9.]+/, "", u)
    f = (u == "B") ? 1/1048576 : (u == "KB") ? 1/1024 : (u == "MB") ? 1 : (u == "GB") ? 1024 : (u == "TB") ? 1048576 : 0
    printf "%.1f", n * f }'
}
origin_count() { [ -f "$N/origin.log" ] && wc -l <"$N/origin.log" || echo 0; }

declare -A RPS=() REQS=() MIBS=() P99=() LCPU=() SCPU=() PCPU=() ORIG=() ERRS=()
run_one() { # SERVER SIZE [CONNS KEY]: KEY (default SERVER.SIZE) names the results
  local srv=$1 s=$2 url="${URLBASE[$1]}/$2.bin" conns=${3:-$CONNS} out o0 t0 l0 s0 perfpid=""
  local key=${4:-$srv.$s}
  local first_cpu=${LOAD_CPUS%%[,-]*} server_cpu=${SERVER_CPUS%%[,-]*}
  o0=$(origin_count); t0=$(proc_ticks "${PID[$srv]}")
  read -r lb0 lt0 < <(cpu_busy "$first_cpu"); read -r sb0 st0 < <(cpu_busy "$server_cpu")
  if [ "$PERF" = 1 ] && [ "$srv" = cuttle ]; then
    perf record -q -F 499 -g -p "${PID[cuttle]}" -o "$WORK/perf-$s.data" -- sleep "$DUR" >/dev/null 2>&1 &
    perfpid=$!
  fi
  out=$("${PIN_LOAD[@]}" wrk -t"$THREADS" -c"$conns" -d"${DUR}s" --timeout 5s --latency "$url" 2>&1) ||
    { echo "$out" >&2; die "wrk failed against $srv"; }
  [ -z "$perfpid" ] || wait "$perfpid" || true
  read -r lb1 lt1 < <(cpu_busy "$first_cpu"); read -r sb1 st1 < <(cpu_busy "$server_cpu")
  echo "$out" >"$WORK/wrk-$key.txt"
  RPS[$key]=$(awk '/^Requests\/sec:/ {printf "%.0f", $2}' <<<"$out")
  REQS[$key]=$(awk '/ requests in / {print $1}' <<<"$out")
  MIBS[$key]=$(to_mib "$(awk '/^Transfer\/sec:/ {print $2}' <<<"$out")")
  P99[$key]=$(awk '$1 == "99%" {print $2}' <<<"$out")
  ERRS[$key]=$(awk '/Non-2xx/ {n += $NF} /Socket errors/ {gsub(/,/, ""); n += $4 + $6 + $8 + $10} END {print n + 0}' <<<"$out")
  LCPU[$key]=$(( (lb1 - lb0) * 100 / ((lt1 - lt0) > 0 ? (lt1 - lt0) : 1) ))
  SCPU[$key]=$(( (sb1 - sb0) * 100 / ((st1 - st0) > 0 ? (st1 - st0) : 1) ))
  PCPU[$key]=$(( ($(proc_ticks "${PID[$srv]}") - t0) * 100 / (HZ * DUR) ))
  ORIG[$key]=$(( $(origin_count) - o0 ))
  [ "$srv" != nginx ] || ORIG[$key]=-
}

echo
echo "== runs (wrk -d${DUR}s each) =="
for s in $SIZES; do
  for srv in $SERVERS; do
    printf '  %-8s %-4s ... ' "$srv" "$s"
    run_one "$srv" "$s"
    printf '%s req/s\n' "${RPS[$srv.$s]}"
  done
done

# ---- many clients: the same hits over CLIENTS connections ----
rss_kib() { # VmRSS of a process tree, KiB
  local t=0 p v
  for p in $(tree_pids "$1"); do
    v=$(awk '/^VmRSS:/ {print $2}' "/proc/$p/status" 2>/dev/null) || continue
    t=$((t + ${v:-0}))
  done
  echo "$t"
}
established() { ss -Htn state established "( sport = :$1 )" 2>/dev/null | wc -l; }
# The kernel's count of connections dropped because a listen queue was
# full (system-wide), from /proc/net/netstat; "-" when not there.
listen_overflows() {
  awk '/^TcpExt:/ { if (!h) { for (i = 2; i <= NF; i++) if ($i == "ListenOverflows") c = i; h = 1 } else if (c) v = $c }
       END { print (c ? v : "-") }' /proc/net/netstat 2>/dev/null || echo -
}
declare -A RSS0=() RSSPEAK=() OPEN=() SOCKERR=() OVERFLOWS=()
if [ "$CLIENTS" -gt 0 ]; then
  echo
  # wrk opens the N connections inside its run: at least 5 s, so that even
  # a slow (debug, or shared) run has time to serve them.
  MANY_DUR=$((DUR < 5 ? 5 : DUR))
  echo "== runs with $CLIENTS connections (wrk -t$THREADS -c$CLIENTS -d${MANY_DUR}s each) =="
  for srv in $SERVERS; do
    printf '  %-8s %-4s ... ' "$srv" 1k
    RSS0[$srv]=$(rss_kib "${PID[$srv]}")
    port=${URLBASE[$srv]##*:}
    # Once a second while wrk runs: the server's RSS and its established
    # connections (the load core's, not the server's, time).
    while :; do echo "$(rss_kib "${PID[$srv]}") $(established "$port")"; sleep 1; done >"$WORK/rss-$srv.txt" 2>/dev/null &
    PID[sampler]=$!
    taskset -a -p -c "$LOAD_CPUS" "$!" >/dev/null
    lo0=$(listen_overflows)
    DUR=$MANY_DUR run_one "$srv" 1k "$CLIENTS" "$srv.many"
    lo1=$(listen_overflows)
    OVERFLOWS[$srv]=-
    [[ $lo0 =~ ^[0-9]+$ && $lo1 =~ ^[0-9]+$ ]] && OVERFLOWS[$srv]=$((lo1 - lo0))
    stop_pid sampler
    # The sample with the most connections open (then the highest RSS).
    read -r peak open < <(sort -k2,2n -k1,1n "$WORK/rss-$srv.txt" | tail -1)
    RSSPEAK[$srv]=${peak:-0} OPEN[$srv]=${open:-0}
    SOCKERR[$srv]=$(grep -E 'Socket errors|Non-2xx' "$WORK/wrk-$srv.many.txt" | sed 's/^ *//' | paste -sd';' || true)
    printf '%s req/s\n' "${RPS[$srv.many]}"
  done
fi

# ---- report ----
echo
echo "== results =="
printf '%-5s %-8s %10s %9s %9s %8s %8s %8s %7s %6s\n' size server "req/s" "MiB/s" "p99" "srv-cpu" "core$SERVER_CPUS" "core$LOAD_CPUS" origin errors
for s in $SIZES; do
  for srv in $SERVERS; do
    k=$srv.$s
    note=""; [ "${HITOK[$k]}" = 1 ] || note="  (not hits)"
    printf '%-5s %-8s %10s %9s %9s %7s%% %7s%% %7s%% %7s %6s%s\n' "$s" "$srv" "${RPS[$k]}" "${MIBS[$k]}" "${P99[$k]}" \
      "${PCPU[$k]}" "${SCPU[$k]}" "${LCPU[$k]}" "${ORIG[$k]}" "${ERRS[$k]}" "$note"
  done
done
echo "srv-cpu: CPU time of the server's processes / run time; core$SERVER_CPUS, core$LOAD_CPUS: how busy each core was"
echo "(server core, load core); origin: requests the origin saw during the run (must be 0 for a cache)."

ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (b > 0) printf "%.2f", a / b; else print "-" }'; }
if [ "$CLIENTS" -gt 0 ]; then
  echo
  echo "== $CLIENTS keep-alive clients against $CONNS (1 KiB hits) and issue 24's goals =="
  # CPU time per request moves less than req/s when other work shares
  # the server's core (see --https).
  cpu_us() { awk -v p="$1" -v r="$2" 'BEGIN { if (r > 0) printf "%.1f", p / 100 * 1e6 / r; else print "-" }'; }
  printf '%-8s %10s %10s %7s %8s %9s %11s %11s %9s %9s %8s %9s %10s\n' server "req/s@$CONNS" "req/s@$CLIENTS" ratio errors "p99" \
    "RSS before" "RSS peak" growth "per conn" "open" overflows "cpu-us"
  for srv in $SERVERS; do
    growth=$((RSSPEAK[$srv] - RSS0[$srv]))
    printf '%-8s %10s %10s %7s %8s %9s %8s MiB %8s MiB %5s MiB %6s KiB %8s %9s %10s\n' "$srv" "${RPS[$srv.1k]}" "${RPS[$srv.many]}" \
      "$(ratio "${RPS[$srv.many]}" "${RPS[$srv.1k]}")" "${ERRS[$srv.many]}" "${P99[$srv.many]}" \
      "$(ratio "${RSS0[$srv]}" 1024)" "$(ratio "${RSSPEAK[$srv]}" 1024)" "$(ratio "$growth" 1024)" \
      "$(ratio "$growth" "${OPEN[$srv]}")" "${OPEN[$srv]}" "${OVERFLOWS[$srv]}" \
      "$(cpu_us "${PCPU[$srv.1k]}" "${RPS[$srv.1k]}")/$(cpu_us "${PCPU[$srv.many]}" "${RPS[$srv.many]}")"
  done
  for srv in $SERVERS; do [ -z "${SOCKERR[$srv]}" ] || echo "$srv at $CLIENTS: ${SOCKERR[$srv]}"; done
  echo "RSS: VmRSS summed over the server's processes, before the $CLIENTS-connection run and at the sample"
  echo "(once a second during it) with the most connections open (then the highest RSS); open: its established"
  echo "connections then; per conn: growth / open; overflows: the kernel's listen-queue overflows (TcpExtListenOverflows,"
  echo "system-wide) during the server's run at $CLIENTS; cpu-us: the server's CPU time per request at $CONNS / at $CLIENTS"
  echo "(srv-cpu / req/s)."
  r=$(ratio "${RPS[cuttle.many]}" "${RPS[cuttle.1k]}") growth=$((RSSPEAK[cuttle] - RSS0[cuttle]))
  # All served: every connection open, as many answers as connections at
  # least, and no error or timeout.
  awk -v r="$r" -v e="${ERRS[cuttle.many]}" -v g="$growth" -v n="$CLIENTS" -v c="$CONNS" -v o="${OPEN[cuttle]}" \
    -v q="${REQS[cuttle.many]:-0}" 'BEGIN {
    printf "cuttle: all served (%d open, %d answers, no errors or timeouts): %s; req/s at %d >= 0.90 of at %d: %s (%s); RSS growth < 4 KiB per open connection: %s (%.1f MiB for %d open)\n",
      o, q, (e == 0 && o >= n && q >= n ? "met" : "SHORT"), n, c, (r != "-" && r + 0 >= 0.9 ? "met" : "SHORT"), r, (o > 0 && g < o * 4 ? "met" : "SHORT"), g / 1024, o }'
elif [ "$HTTPS" = 1 ]; then
  echo
  echo "== HTTPS: cuttle https_port / nginx ssl (req/s) and issue 17's goal =="
  # CPU time per request moves less than req/s when other work shares the
  # server's core: nginx's over cuttle's is the ratio a dedicated core gives.
  cpu_us() { awk -v p="$1" -v r="$2" -v d="$DUR" 'BEGIN { if (r > 0) printf "%.1f", p / 100 * d * 1e6 / (r * d); else print "-" }'; }
  printf '%-5s %13s %14s %14s %20s   %s\n' size cuttle/nginx "nginx cpu-us" "cuttle cpu-us" "by CPU (nginx/cuttle)" goal
  for s in $SIZES; do
    r=$(ratio "${RPS[cuttle.$s]}" "${RPS[nginx.$s]}")
    un=$(cpu_us "${PCPU[nginx.$s]}" "${RPS[nginx.$s]}") uc=$(cpu_us "${PCPU[cuttle.$s]}" "${RPS[cuttle.$s]}")
    verdict=$(awk -v r="$r" 'BEGIN { print (r != "-" && r + 0 >= 0.9) ? "met" : "SHORT" }')
    printf '%-5s %13s %14s %14s %20s   req/s >= 0.9 of nginx: %s\n' "$s" "$r" "$un" "$uc" "$(ratio "$un" "$uc")" "$verdict"
  done
  echo "cpu-us: the server's CPU time per request (srv-cpu x run time / requests)"
else
echo
echo "== cuttle ratios (req/s) and issue 24's goals =="
printf '%-5s %13s %13s %15s   %s\n' size cuttle/nginx cuttle/squid cuttle/varnish goal
for s in $SIZES; do
  rn=$(ratio "${RPS[cuttle.$s]}" "${RPS[nginx.$s]}")
  rs=$(ratio "${RPS[cuttle.$s]}" "${RPS[squid.$s]}")
  rv=$(ratio "${RPS[cuttle.$s]}" "${RPS[varnish.$s]}")
  case $s in
    1k)  g="cuttle/nginx >= 1.2"; r=$rn; want=1.2 ;;
    64k) g="cuttle/varnish >= 1.4"; r=$rv; want=1.4 ;;
    1m)  g="cuttle/varnish >= 1.1"; r=$rv; want=1.1 ;;
  esac
  verdict=$(awk -v r="$r" -v w="$want" 'BEGIN { print (r != "-" && r + 0 >= w) ? "met" : "SHORT" }')
  printf '%-5s %13s %13s %15s   %s: %s\n' "$s" "$rn" "$rs" "$rv" "$g" "$verdict"
done
fi

if [ "$PERF" = 1 ]; then
  for s in $SIZES; do
    [ -s "$WORK/perf-$s.data" ] || continue
    echo
    echo "== cuttle profile, $s hits (perf, self time, top symbols) =="
    perf report -i "$WORK/perf-$s.data" --no-children --sort dso,symbol --stdio --percent-limit 1.5 2>/dev/null |
      grep -E '^ +[0-9.]+%' | head -25
  done
fi

# A server that answered nothing, or a cache that never hit, is a broken
# run (what CI's `--quick` smoke run checks), whatever the figures.
broken=""
for k in "${!RPS[@]}"; do [ "${RPS[$k]:-0}" -gt 0 ] || broken="$broken $k"; done
for k in "${!HITOK[@]}"; do [ "${HITOK[$k]}" = 1 ] || broken="$broken $k(not a hit)"; done
[ -z "$broken" ] || die "no answers from:$broken"
