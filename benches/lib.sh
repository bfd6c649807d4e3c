# lib.sh: what benches/hits.sh and benches/icp.sh share, sourced after
# their options are read (needs REPO, BUILD, KEEP, BENCH and die()): CPU
# pinning, building cuttle, the work dir removed on exit with every server
# started by start_server stopped, and waiting for a server to answer.
# shellcheck shell=bash
NCPU=$(nproc)
LOAD_CPUS=${LOAD_CPUS:-0} SERVER_CPUS=${SERVER_CPUS:-1}
[ "$NCPU" -ge 2 ] || { echo "$BENCH.sh: only $NCPU CPU: load and servers share it" >&2; LOAD_CPUS=0 SERVER_CPUS=0; }

if [ "$BUILD" = 1 ]; then
  echo "building cuttle (cargo build --release) ..."
  (cd "$REPO" && cargo build --release --quiet) || die "cargo build --release failed"
fi
CUTTLE=${CUTTLE:-${CARGO_TARGET_DIR:-$REPO/target}/release/cuttle}
[ -x "$CUTTLE" ] || die "no cuttle binary at $CUTTLE (build it, or set CUTTLE)"

# ---- work dir and cleanup ----
WORK=$(mktemp -d "${TMPDIR:-/tmp}/cuttle-$BENCH.XXXXXX")
chmod 755 "$WORK"  # nginx workers and Squid run as other users when root
SQUID_SVC="${BENCH}b$$"
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

# taskset execs its command, so $! of a backgrounded "${PIN_SERVER[@]}" CMD is CMD's pid.
PIN_SERVER=(taskset -c "$SERVER_CPUS") PIN_LOAD=(taskset -c "$LOAD_CPUS")

wait_http() { # NAME URL LOG: until the URL answers (any status), 15 s; -k: a
  # bench's own throwaway certificate
  for _ in $(seq 150); do
    if curl -sk -o /dev/null --max-time 1 "$2"; then return 0; fi
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
