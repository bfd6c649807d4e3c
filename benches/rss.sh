#!/usr/bin/env bash
# rss.sh: idle memory of the release cuttle, read from /proc/PID/status
# (VmRSS, VmHWM, and VmRSS split into RssAnon and RssFile, the pages of
# the memory-mapped cache_dir file):
#   (a) `cuttle` with no arguments: the embedded default config (256 MB
#       cache_dir, empty), its files under a temp $XDG_CACHE_HOME;
#   (b) `cuttle run -f` with one cache_dir of 512-byte slots holding
#       ENTRIES entries (1,000,000 unless -n), filled beforehand through
#       the store API (`CUTTLE_STORE_FILL=DIR,MIB,ENTRIES cargo bench
#       --bench store`, which fills and runs no bench);
#   (c) Squid 5.7 (`squid -N`, one process) with Debian's default storage:
#       no cache_dir, cache_mem 256 MB (skipped without squid).
# Each is started (pinned to SERVER_CPUS), asked once for / so it is
# known to be up, then left alone until it uses under 1% of a core over
# 3 s (1 s with --quick; 20 tries at most); then its figures are read
# and it is stopped. (b) also prints the figures per entry above (a)'s.
#
# Usage
#   benches/rss.sh [--quick] [-n ENTRIES] [--no-build] [--no-squid]
#                  [--keep] [--port-base N]
#
#   --quick      100,000 entries, 1 s idle window (smoke test)
#   -n ENTRIES   entries in (b)'s cache_dir (default 1000000)
#   --no-build   skip `cargo build --release` (the store fill still
#                builds the store bench when it is out of date, in the
#                debug profile when CUTTLE is a debug build)
#   --no-squid   skip (c)
#   --keep       keep the work directory (configs, logs, the cache_dir)
#   --port-base  first of two loopback ports for (b) and (c) (default
#                18190); (a) listens where the embedded default does:
#                127.0.0.1:3128, ICP 3130, HTCP 4827, which must be free
#
# Environment: CUTTLE (the binary; default $CARGO_TARGET_DIR or target/,
# release/cuttle), SERVER_CPUS (default 1). Nothing outside the temp dir
# is written; everything started is stopped on exit.
set -euo pipefail

die() { echo "rss.sh: $*" >&2; exit 1; }
usage() { sed -n '2,/^set -euo/p' "$0" | sed '$d' | sed 's/^# \{0,1\}//' >&2; exit 2; }

ENTRIES=1000000 IDLE=3 BUILD=1 SQUID=1 KEEP=0 BASE=18190
while [ $# -gt 0 ]; do
  case $1 in
    --quick) ENTRIES=100000 IDLE=1 ;;
    -n) ENTRIES=${2:-}; shift ;;
    --no-build) BUILD=0 ;;
    --no-squid) SQUID=0 ;;
    --keep) KEEP=1 ;;
    --port-base) BASE=${2:-}; shift ;;
    -h|--help) usage ;;
    *) echo "rss.sh: unknown argument '$1'" >&2; usage ;;
  esac
  shift
done
[[ $ENTRIES =~ ^[0-9]+$ && $BASE =~ ^[0-9]+$ ]] || die "numbers expected"
[ "$ENTRIES" -gt 0 ] || die "-n: at least one entry"
[ -r /proc/self/status ] || die "needs /proc (Linux)"
command -v curl >/dev/null || die "curl not found (apt-get install curl)"
PATH=$PATH:/usr/sbin
if [ "$SQUID" = 1 ] && ! command -v squid >/dev/null; then
  echo "rss.sh: squid not found: (c) skipped (apt-get install squid)" >&2; SQUID=0
fi
CUTTLE_PORT=$BASE SQUID_PORT=$((BASE + 1))
for p in 3128 3130 4827 $CUTTLE_PORT $SQUID_PORT; do
  if (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null; then die "127.0.0.1:$p is in use"; fi
done

REPO=$(cd "$(dirname "$0")/.." && pwd)
BENCH=rss
LOAD_CPUS=${LOAD_CPUS:-0}
# shellcheck source=benches/lib.sh
. "$REPO/benches/lib.sh"

cpu_ticks() { # PID: user + system clock ticks so far
  awk '{ print $14 + $15 }' "/proc/$1/stat" 2>/dev/null || echo gone
}
wait_idle() { # NAME: until it uses under 1% of a core (a clock tick, 10 ms, a
  # second) over IDLE seconds, 20 tries at most (timers keep it from 0%)
  local pid=${PID[$1]} before now
  before=$(cpu_ticks "$pid")
  for _ in $(seq 20); do
    sleep "$IDLE"
    now=$(cpu_ticks "$pid")
    [ "$now" != gone ] || die "$1 exited"
    [ $((now - before)) -gt "$IDLE" ] || return 0
    before=$now
  done
  echo "rss.sh: $1 never idle for $IDLE s; figures taken anyway" >&2
}
status_kb() { # PID FIELD: the field of /proc/PID/status, in kB
  awk -v f="$2:" '$1 == f { print $2 }' "/proc/$1/status"
}
declare -A KB=()
measure() { # NAME: wait until idle, record and print its figures, stop it
  local pid=${PID[$1]} f
  wait_idle "$1"
  for f in VmRSS VmHWM RssAnon RssFile; do KB[$1.$f]=$(status_kb "$pid" $f); done
  printf '%-22s VmRSS %7d kB  VmHWM %7d kB  (RssAnon %7d kB, RssFile %7d kB)\n' "$1" \
    "${KB[$1.VmRSS]}" "${KB[$1.VmHWM]}" "${KB[$1.RssAnon]}" "${KB[$1.RssFile]}"
  stop_pid "$1"
}

echo "cuttle: $("$CUTTLE" --version 2>/dev/null | head -1)"

# ---- (a) the embedded default ----
mkdir -p "$WORK/default"
XDG_CACHE_HOME=$WORK/default HOME=$WORK/default \
  start_server default "http://127.0.0.1:3128/" "$WORK/default/stdout" "$WORK/default/stdout" "$CUTTLE"
measure default

# ---- (b) a cache_dir of ENTRIES entries ----
C=$WORK/cuttle; mkdir -p "$C/cache"
# One 512-byte slot per entry, and 0.1% spare (whole MiB).
MIB=$(( (ENTRIES * 512 * 1001 / 1000 + (1 << 20) - 1) >> 20 ))
echo "filling $C/cache with $ENTRIES entries ($MIB MiB of 512-byte slots) ..."
# The fill is built in the profile of the binary measured: a debug cuttle
# (CI's smoke run) takes the debug build `cargo test` already made, so the
# smoke run builds no release profile. The fill's speed is not measured.
fill_profile=bench
case "$CUTTLE" in */debug/*) fill_profile=test ;; esac
(cd "$REPO" && CUTTLE_STORE_FILL="$C/cache,$MIB,$ENTRIES" cargo "$fill_profile" --quiet --bench store) ||
  die "the store fill failed"
cat >"$C/squid.conf" <<EOF
# generated by benches/rss.sh
http_port 127.0.0.1:$CUTTLE_PORT
http_access allow localhost
http_access deny all
cache_dir mmap $C/cache $MIB slot-size=512
access_log stdio:$C/access.log squid
pid_filename $C/cuttle.pid
visible_hostname rss-cuttle
EOF
start_server "cache_dir" "http://127.0.0.1:$CUTTLE_PORT/" "$C/stdout" "$C/stdout" "$CUTTLE" run -f "$C/squid.conf"
measure "cache_dir"
grep -h "cache_dir $C/cache" "$C/stdout" || true

# ---- (c) Squid ----
if [ "$SQUID" = 1 ]; then
  S=$WORK/squid; mkdir -p "$S"
  cat >"$S/squid.conf" <<EOF
# generated by benches/rss.sh; nothing outside $S
http_port 127.0.0.1:$SQUID_PORT
icp_port 0
htcp_port 0
cache_mem 256 MB
http_access allow localhost
http_access deny all
visible_hostname rss-squid
pid_filename $S/squid.pid
cache_log $S/cache.log
access_log stdio:$S/access.log squid
cache_store_log none
netdb_filename none
coredump_dir $S
pinger_enable off
dns_nameservers 127.0.0.1
shutdown_lifetime 0 seconds
EOF
  [ "$(id -u)" = 0 ] && chown -R proxy:proxy "$S"  # Squid drops root for cache_effective_user
  squid -n "$SQUID_SVC" -k parse -f "$S/squid.conf" >"$S/parse.log" 2>&1 ||
    { grep -E "FATAL|ERROR" "$S/parse.log" >&2; die "squid.conf does not parse: see above"; }
  start_server squid "http://127.0.0.1:$SQUID_PORT/" "$S/cache.log" "$S/stdout" squid -n "$SQUID_SVC" -N -f "$S/squid.conf"
  measure squid
  echo "squid: $(squid -v | head -1)"
fi

per_entry() { # FIELD: (b) minus (a), bytes per entry
  awk -v b="${KB[cache_dir.$1]}" -v a="${KB[default.$1]}" -v n="$ENTRIES" \
    'BEGIN { printf "%.1f", (b - a) * 1024 / n }'
}
echo
echo "per entry, (b) over (a): RssAnon $(per_entry RssAnon) bytes, VmHWM $(per_entry VmHWM) bytes," \
  "RssFile $(per_entry RssFile) bytes (the 64-byte slot headers the rebuild read)"
echo "$(nproc) cores; $(date -u +%Y-%m-%d)"
