#!/usr/bin/env bash
# hit_instructions.sh: CPU instructions cuttle spends per cache hit (1 KiB
# object, one keep-alive client), counted by valgrind's callgrind, so the
# figure is the same whatever else the machine is doing; to compare
# builds where wrk's req/s would be noise (a shared or busy machine).
#
# Usage
#   benches/hit_instructions.sh [-n HITS] [--port-base N] [--https] [BINARY...]
#
#   BINARY       cuttle binaries to measure, one after the other (default
#                target/release/cuttle, built if missing); with several,
#                each one's ratio to the first is printed
#   -n HITS      hits counted (default 2000), after 50 not counted
#   --port-base  first of two loopback ports (default 18398)
#   --memory-store  no cache_dir (the store in memory, the memory cache
#                off), as this script measured before 2026-12-06: hits
#                then come from the store, never the lean path
#   --https      the client reaches cuttle over TLS: an https_port (forward
#                proxy) presenting a throwaway ECDSA P-256 certificate made
#                with openssl in the temp dir (needs openssl); with
#                KEEP_PROFILE=FILE, callgrind_annotate shows where it goes
#
# What runs, on 127.0.0.1, under one temp dir (mktemp): a small Python
# origin (BASE+1) answering 1 KiB with Cache-Control: max-age=3600, and
# cuttle (BASE) under callgrind with a forward http_port, cache_mem 64 MB
# and a 64 MB cache_dir in the temp dir (as benches/hits.sh has one), so
# hits come from the memory cache as there. The counters are zeroed after the warm-up and dumped
# after the counted hits: only the hits are counted, in every thread.
# Needs valgrind, python3, curl.
set -euo pipefail
n=2000
base=18398
https=0
memory_store=0
bins=()
while [ $# -gt 0 ]; do
    case "$1" in
        -n) n=$2; shift 2 ;;
        --port-base) base=$2; shift 2 ;;
        --https) https=1; shift ;;
        --memory-store) memory_store=1; shift ;;
        -h|--help) sed -n '2,30p' "$0"; exit 0 ;;
        *) bins+=("$1"); shift ;;
    esac
done
root=$(cd "$(dirname "$0")/.." && pwd)
if [ ${#bins[@]} -eq 0 ]; then
    bins=("${CARGO_TARGET_DIR:-$root/target}/release/cuttle")
    [ -x "${bins[0]}" ] || (cd "$root" && cargo build --release --bin cuttle)
fi
for tool in valgrind callgrind_control python3 curl; do
    command -v "$tool" >/dev/null || { echo "hit_instructions.sh: needs $tool" >&2; exit 1; }
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
cat >"$work/origin.py" <<PY
import http.server
class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    def do_GET(self):
        body = b"x" * 1024
        self.send_response(200)
        self.send_header("Cache-Control", "max-age=3600")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
    def log_message(self, *args):
        pass
http.server.ThreadingHTTPServer(("127.0.0.1", $((base + 1))), Handler).serve_forever()
PY
port_line="http_port 127.0.0.1:$base" connection='http.client.HTTPConnection("127.0.0.1", '$base')' proxy="127.0.0.1:$base"
if [ "$https" = 1 ]; then
    openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 2 \
        -subj /CN=127.0.0.1 -addext subjectAltName=IP:127.0.0.1 \
        -keyout "$work/key.pem" -out "$work/cert.pem" >/dev/null 2>&1
    port_line="https_port 127.0.0.1:$base tls-cert=$work/cert.pem tls-key=$work/key.pem"
    connection='http.client.HTTPSConnection("127.0.0.1", '$base', context=ssl.create_default_context(cafile="'$work/cert.pem'"))'
    proxy="https://127.0.0.1:$base --proxy-insecure"
fi
cat >"$work/client.py" <<PY
import http.client, ssl, sys
conn = $connection
for _ in range(int(sys.argv[1])):
    conn.request("GET", "http://127.0.0.1:$((base + 1))/object")
    reply = conn.getresponse()
    reply.read()
    if reply.status != 200:
        sys.exit(f"status {reply.status}")
PY
python3 "$work/origin.py" &
origin_pid=$!
printf '%s\nhttp_access allow all\npid_filename none\naccess_log %s/access.log\ncache_mem 64 MB\n' \
    "$port_line" "$work" >"$work/squid.conf"
[ "$memory_store" = 1 ] || echo "cache_dir mmap $work/cache 64" >>"$work/squid.conf"
first=
for bin in "${bins[@]}"; do
    out="$work/cg.$(basename "$bin").$$"
    valgrind --tool=callgrind --compress-strings=no --callgrind-out-file="$out" "$bin" run -f "$work/squid.conf" \
        >/dev/null 2>"$work/valgrind.log" &
    pid=$!
    for _ in $(seq 150); do
        # shellcheck disable=SC2086 # $proxy may carry --proxy-insecure
        curl -s -o /dev/null -x $proxy "http://127.0.0.1:$((base + 1))/object" && break
        sleep 0.2
    done
    python3 "$work/client.py" 50
    callgrind_control -z "$pid" >/dev/null 2>&1
    python3 "$work/client.py" "$n"
    callgrind_control -d "$pid" >/dev/null 2>&1
    kill "$pid"; wait "$pid" 2>/dev/null || true
    pid=
    [ -n "${KEEP_PROFILE:-}" ] && cp "$out.1" "$KEEP_PROFILE.$(basename "$bin")"
    # The dump after the counted hits is the file named .1.
    total=$(awk '/^(summary|totals):/ {print $2; exit}' "$out.1")
    per=$((total / n))
    if [ -z "$first" ]; then
        first=$per
        echo "$bin: $per instructions per hit ($n hits)"
    else
        ratio=$(awk -v a="$per" -v b="$first" 'BEGIN {printf "%.3f", a / b}')
        echo "$bin: $per instructions per hit ($n hits), $ratio of the first"
    fi
done
