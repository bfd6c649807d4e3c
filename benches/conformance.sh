#!/usr/bin/env bash
# conformance.sh: the HTTP cache-tests suite (tests/cache-tests) against
# cuttle and, when installed, the local Squid, Varnish and nginx, each
# configured as the suite's own docker/ setup configures it; prints README's
# "HTTP conformance" table (markdown): tests passed of those that ran, and
# required ones passed (kind 'required' or no kind) of those that ran.
#
# Usage
#   benches/conformance.sh [--port-base N] [--cuttle BINARY] [IMPL...]
#
#   IMPL         any of cuttle squid varnish nginx (default: all; one not
#                installed is left out, and said so)
#   --cuttle     the cuttle binary (default target/release/cuttle, built
#                by `cargo build --release` first)
#   --port-base  first of five loopback ports (default 18480): the suite's
#                origin server, then cuttle, squid, varnish, nginx
#   --results D  also keep each run's JSON as D/IMPL.json (to compare runs,
#                or to read with the suite's own tools)
#
# Everything listens on 127.0.0.1 only (the origin server through
# tests/cache-tests/loopback.mjs; squid with dns_nameservers 127.0.0.1),
# and lives in one temp dir removed at exit, with every process started.
# Each run of the suite takes about a minute and is cut off after 10.
# Needs node and `npm ci --prefix tests/cache-tests` (./.ci/run does both);
# squid, varnish and nginx are started as root drops them to their users.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
ct=$root/tests/cache-tests
base=18480
cuttle=""
results=""
impls=()
while [ $# -gt 0 ]; do
    case "$1" in
        --port-base) base=$2; shift 2 ;;
        --cuttle) cuttle=$2; shift 2 ;;
        --results) results=$2; shift 2 ;;
        -h|--help) sed -n '2,27p' "$0"; exit 0 ;;
        cuttle|squid|varnish|nginx) impls+=("$1"); shift ;;
        *) echo "conformance.sh: unknown argument $1 (see --help)" >&2; exit 2 ;;
    esac
done
[ ${#impls[@]} -gt 0 ] || impls=(cuttle squid varnish nginx)
command -v node >/dev/null && [ -f "$ct/node_modules/undici/package.json" ] \
    || { echo "conformance.sh: node or the suite's undici is missing: run ./.ci/run" >&2; exit 1; }

origin_port=$base
tmp=$(mktemp -d /tmp/cuttle-conformance.XXXXXX)
# squid, varnish and nginx drop root for their own users, which must reach
# their files here.
chmod 755 "$tmp"
pids=()
cleanup() {
    local pid
    for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
    for pid in "${pids[@]}"; do wait "$pid" 2>/dev/null || true; done
    rm -rf "$tmp"
}
trap cleanup EXIT

wait_port() { # PORT WHAT: until 127.0.0.1:PORT accepts connections (20 s)
    local i
    for i in $(seq 200); do
        if (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; then return 0; fi
        sleep 0.1
    done
    echo "conformance.sh: $2 does not listen on 127.0.0.1:$1" >&2
    return 1
}

# The suite's docker/squid/squid.conf, on our ports.
suite_squid_conf() { # PORT
    sed -e "s/^http_port 8001 /http_port 127.0.0.1:$1 /" \
        -e "s/^cache_peer localhost parent 8000 /cache_peer 127.0.0.1 parent $origin_port /" \
        "$ct/docker/squid/squid.conf"
}

start_cuttle() { # PORT DIR; sets label, adds its pid to pids
    local d=$2
    if [ -z "$cuttle" ]; then
        (cd "$root" && cargo build --release --quiet) >&2
        cuttle=$root/target/release/cuttle
    fi
    mkdir -p "$d/cache"
    { suite_squid_conf "$1"
      echo "cache_dir mmap $d/cache 100"
      echo "pid_filename $d/cuttle.pid"
      echo "access_log stdio:$d/access.log squid"
      echo "cache_log $d/cache.log"; } >"$d/squid.conf"
    "$cuttle" run -f "$d/squid.conf" >"$d/out.log" 2>&1 &
    pids+=($!)
    label="cuttle $("$cuttle" --version | awk '{print $2}')"
}

start_squid() { # PORT DIR; sets label, adds its pid to pids
    local d=$2
    { suite_squid_conf "$1"
      echo "pid_filename $d/squid.pid"
      echo "access_log stdio:$d/access.log squid"
      echo "cache_log $d/cache.log"
      echo "cache_store_log none"
      echo "coredump_dir $d"
      echo "netdb_filename none"
      echo "pinger_enable off"
      echo "dns_nameservers 127.0.0.1"; } >"$d/squid.conf"
    [ "$(id -u)" != 0 ] || chown -R proxy:proxy "$d"
    # Its own service name: no clash with a system Squid's shared memory.
    squid -N -n "conformance$$" -f "$d/squid.conf" >"$d/out.log" 2>&1 &
    pids+=($!)
    label="Squid $(squid -v | sed -n 's/.*Version \([^ ]*\).*/\1/p' | head -1)"
}

start_varnish() { # PORT DIR; sets label, adds its pid to pids
    local d=$2
    # Debian's default.vcl, pointed at the origin as the suite's setup.sh does.
    printf 'vcl 4.1;\nbackend default {\n    .host = "127.0.0.1";\n    .port = "%s";\n}\n' \
        "$origin_port" >"$d/default.vcl"
    # The suite's serve.sh flags.
    varnishd -F -n "$d/work" -a "127.0.0.1:$1" -T 127.0.0.1:0 -f "$d/default.vcl" \
        -p default_ttl=0 -p default_grace=0 -p default_keep=3600 -s malloc,64M \
        >"$d/out.log" 2>&1 &
    pids+=($!)
    label="Varnish $(varnishd -V 2>&1 | sed -n 's/.*varnish-\([0-9.]*\).*/\1/p' | head -1)"
}

start_nginx() { # PORT DIR; sets label, adds its pid to pids
    local d=$2
    mkdir -p "$d/cache/tmp"
    [ "$(id -u)" != 0 ] || chown -R nobody "$d/cache"
    # The suite's docker/nginx/nginx.conf is a server block in nginx's http
    # block; the rest is what nginx needs to run from this directory.
    { echo "daemon off; pid $d/nginx.pid; error_log $d/error.log;"
      echo "events {}"
      echo "http {"
      echo "access_log $d/access.log;"
      echo "client_body_temp_path $d/cache/body; fastcgi_temp_path $d/cache/fastcgi;"
      echo "uwsgi_temp_path $d/cache/uwsgi; scgi_temp_path $d/cache/scgi;"
      sed -e "s#/var/cache/nginx#$d/cache#g" -e "s/listen  *8002;/listen 127.0.0.1:$1;/" \
          -e "s#http://localhost:8000#http://127.0.0.1:$origin_port#" "$ct/docker/nginx/nginx.conf"
      echo "}"; } >"$d/nginx.conf"
    nginx -e "$d/error.log" -c "$d/nginx.conf" >"$d/out.log" 2>&1 &
    pids+=($!)
    label="nginx $(nginx -v 2>&1 | sed -n 's#.*nginx/\([0-9.]*\).*#\1#p')"
}

installed() {
    case "$1" in
        cuttle) return 0 ;;
        varnish) command -v varnishd >/dev/null ;;
        *) command -v "$1" >/dev/null ;;
    esac
}

# The suite's origin server.
mkdir -p "$tmp/origin"
(cd "$ct" && npm_config_port=$origin_port npm_package_config_protocol=http \
    npm_config_pidfile="$tmp/origin/origin.pid" \
    exec node --import ./loopback.mjs test-engine/server/server.mjs) >"$tmp/origin/out.log" 2>&1 &
pids+=($!)
wait_port "$origin_port" "the suite's origin server"

rows=()
n=""
m=""
for impl in "${impls[@]}"; do
    case "$impl" in cuttle) offset=1 ;; squid) offset=2 ;; varnish) offset=3 ;; nginx) offset=4 ;; esac
    if ! installed "$impl"; then
        echo "conformance.sh: $impl is not installed: left out" >&2
        continue
    fi
    port=$((base + offset))
    d=$tmp/$impl
    mkdir -p "$d"
    "start_$impl" "$port" "$d"
    pid=${pids[-1]}
    wait_port "$port" "$impl" || { cat "$d/out.log" >&2; exit 1; }
    echo "conformance.sh: running the suite against $label on 127.0.0.1:$port" >&2
    (cd "$ct" && npm_config_base="http://localhost:$port" npm_package_config_id= \
        timeout 600 node --no-warnings test-engine/cli.mjs) >"$d/results.json" 2>"$d/cli.log" \
        || { echo "conformance.sh: the suite's CLI failed against $label:" >&2; tail -5 "$d/cli.log" >&2; exit 1; }
    kill "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
    [ -z "$results" ] || { mkdir -p "$results" && cp "$d/results.json" "$results/$impl.json"; }
    read -r pass ran req_pass req_ran < <(cd "$ct" && node count.mjs "$d/results.json")
    n=${n:-$ran}
    m=${m:-$req_ran}
    cell=$pass; [ "$ran" = "$n" ] || cell="$pass of $ran"
    req_cell=$req_pass; [ "$req_ran" = "$m" ] || req_cell="$req_pass of $req_ran"
    rows+=("| $label | $cell | $req_cell |")
done

[ ${#rows[@]} -gt 0 ] || exit 1
echo "| implementation | pass (of $n) | required pass (of $m) |"
echo "|---|---:|---:|"
printf '%s\n' "${rows[@]}"
echo "(cache-tests $(cd "$ct" && node -e 'console.log(require("./expectations.json").suite)'), node $(node --version))"
