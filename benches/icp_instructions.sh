#!/usr/bin/env bash
# icp_instructions.sh: CPU instructions cuttle spends per ICP HIT reply,
# counted by valgrind's callgrind, so the figure is the same whatever else
# the machine is doing; to compare builds where benches/icp.sh's
# replies/s would be noise (a shared or busy machine).
#
# Usage
#   benches/icp_instructions.sh [-n QUERIES] [-w WINDOW] [--no-log]
#                               [--port-base N] [BINARY...]
#
#   BINARY       cuttle binaries to measure, one after the other (default
#                target/release/cuttle, built if missing); with several,
#                each one's ratio to the first is printed
#   -n QUERIES   queries counted (default 20000), after 500 not counted
#   -w WINDOW    queries outstanding at once (default 16, as icp.sh)
#   --no-log     log_icp_queries off (default on, Squid's default)
#   --port-base  first of three loopback ports (default 18420)
#   KEEP_PROFILE=FILE keeps each callgrind profile as FILE.BINARY, for
#                callgrind_annotate
#
# What runs, under one temp dir (mktemp): a small Python origin on
# 127.0.0.1:BASE answering 4 KiB with Cache-Control: max-age=3600, and
# cuttle under callgrind with http_port BASE+1, icp_port BASE+2 and a
# 64 MB cache_dir (as icp.sh), every answer logged to access.log. The
# object is fetched through cuttle, then benches/icpload.c (compiled
# here) asks for it by ICP from 127.0.0.1 with WINDOW queries
# outstanding: 500 to warm up, the counters zeroed, QUERIES counted, the
# counters dumped. Instructions of every thread (the responder, the
# access.log writer, the rest idle) are divided by the replies received.
# The responder is the bottleneck under callgrind, so its batches are
# about WINDOW queries: the figure is of a loaded responder. Needs
# valgrind, python3, curl, cc.
set -euo pipefail
n=20000
window=16
log=on
base=18420
bins=()
while [ $# -gt 0 ]; do
    case "$1" in
        -n) n=$2; shift 2 ;;
        -w) window=$2; shift 2 ;;
        --no-log) log=off; shift ;;
        --port-base) base=$2; shift 2 ;;
        -h|--help) sed -n '2,33p' "$0"; exit 0 ;;
        *) bins+=("$1"); shift ;;
    esac
done
[[ $n =~ ^[0-9]+$ && $window =~ ^[0-9]+$ && $base =~ ^[0-9]+$ ]] || { echo "icp_instructions.sh: numbers expected" >&2; exit 2; }
root=$(cd "$(dirname "$0")/.." && pwd)
if [ ${#bins[@]} -eq 0 ]; then
    bins=("${CARGO_TARGET_DIR:-$root/target}/release/cuttle")
    [ -x "${bins[0]}" ] || (cd "$root" && cargo build --release --bin cuttle)
fi
for tool in valgrind callgrind_control python3 curl cc; do
    command -v "$tool" >/dev/null || { echo "icp_instructions.sh: needs $tool" >&2; exit 1; }
done
work=$(mktemp -d)
origin_pid=
pid=
cleanup() {
    [ -n "$origin_pid" ] && kill "$origin_pid" 2>/dev/null || true
    [ -n "$pid" ] && kill "$pid" 2>/dev/null || true  # cuttle under valgrind
    rm -rf "$work"
}
trap cleanup EXIT
cc -O2 -o "$work/icpload" "$root/benches/icpload.c"
cat >"$work/origin.py" <<PY
import http.server
class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    def do_GET(self):
        body = b"x" * 4096
        self.send_response(200)
        self.send_header("Cache-Control", "max-age=3600")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
    def log_message(self, *args):
        pass
http.server.ThreadingHTTPServer(("127.0.0.1", $base), Handler).serve_forever()
PY
python3 "$work/origin.py" &
origin_pid=$!
url="http://127.0.0.1:$base/obj.bin"
cat >"$work/squid.conf" <<EOF
http_port 127.0.0.1:$((base + 1))
icp_port $((base + 2))
udp_incoming_address 127.0.0.1
http_access allow all
acl peers src 127.0.0.0/8
icp_access allow peers
icp_access deny all
log_icp_queries $log
pid_filename none
access_log $work/access.log
cache_dir mmap $work/cache 64
EOF
load() { # QUERIES: icpload's output line
    "$work/icpload" 127.0.0.1 127.0.0.1 $((base + 2)) "$url" 600 "$window" "$1"
}
first=
for bin in "${bins[@]}"; do
    out="$work/cg.$(basename "$bin").$$"
    rm -rf "$work/cache"
    valgrind --tool=callgrind --compress-strings=no --callgrind-out-file="$out" "$bin" run -f "$work/squid.conf" \
        >/dev/null 2>"$work/valgrind.log" &
    pid=$!
    for _ in $(seq 150); do
        curl -s -o /dev/null -x "127.0.0.1:$((base + 1))" "$url" && break
        sleep 0.2
    done
    curl -s -o /dev/null -x "127.0.0.1:$((base + 1))" "$url"
    warm=$(load 500)
    [[ $warm =~ hit\ ([0-9]+) ]] && [ "${BASH_REMATCH[1]}" -gt 0 ] ||
        { echo "icp_instructions.sh: $bin answers no ICP_HIT ($warm)" >&2; exit 1; }
    callgrind_control -z "$pid" >/dev/null 2>&1
    counted=$(load "$n")
    callgrind_control -d "$pid" >/dev/null 2>&1
    kill "$pid"; wait "$pid" 2>/dev/null || true
    pid=
    [ -n "${KEEP_PROFILE:-}" ] && cp "$out.1" "$KEEP_PROFILE.$(basename "$bin")"
    [[ $counted =~ replies\ ([0-9]+).*hit\ ([0-9]+) ]] || { echo "icp_instructions.sh: icpload said '$counted'" >&2; exit 1; }
    replies=${BASH_REMATCH[1]} hits=${BASH_REMATCH[2]}
    [ "$hits" = "$replies" ] && [ "$replies" -gt 0 ] ||
        { echo "icp_instructions.sh: $bin: not every reply a HIT ($counted)" >&2; exit 1; }
    # The dump after the counted queries is the file named .1.
    total=$(awk '/^(summary|totals):/ {print $2; exit}' "$out.1")
    per=$((total / replies))
    if [ -z "$first" ]; then
        first=$per
        echo "$bin: $per instructions per ICP HIT reply ($replies replies, window $window, log_icp_queries $log)"
    else
        ratio=$(awk -v a="$per" -v b="$first" 'BEGIN {printf "%.3f", a / b}')
        echo "$bin: $per instructions per ICP HIT reply ($replies replies, window $window, log_icp_queries $log), $ratio of the first"
    fi
done
