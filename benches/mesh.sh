#!/usr/bin/env bash
# mesh.sh: the real-process mesh lab, full form. Starts every node of a
# mesh file as a real process (cuttle for kind = "cuttle", Debian's Squid
# 5.7 for kind = "squid"), each on its own 127.x address, with an origin
# that serves every document of the trace with its size (max-age 86400)
# after origin_latency_ms, replays the trace through the nodes as HTTP
# proxy requests, then prints a table from the nodes' access.logs and,
# when the cuttle binary has `simulate`, the simulator's prediction for
# the same mesh and trace (run with --ttl 86400).
#
# Usage
#   benches/mesh.sh [MESH.toml ...]
#
#   MESH.toml   default: examples/mesh5/{squid,cuttle,mixed}.toml
#
# Environment
#   REQUESTS     trace requests replayed (default 20000)
#   CONCURRENCY  requests in flight at most (default 8)
#   TRACE        replay this access.log (default: `cuttle trace generate
#                --requests $REQUESTS --seed 18` over the mesh5 clients)
#   DEBUG=1      use the debug build (no --release; quicker to build)
#   WORK         keep node configs, logs and the replayed trace here
#                (WORK/<mesh name>; default target/tmp/mesh_lab_full/<mesh
#                name>, replaced each run)
#
# The harness is benches/mesh_lab/lab.rs, run through tests/mesh_lab.rs
# (its ignored test `full_lab`, built with --release); CI runs the same
# harness on 300 requests per mesh (`cargo test --test mesh_lab`).
set -euo pipefail
REPO=$(cd "$(dirname "$0")/.." && pwd)
cd "$REPO"
[ -x /usr/sbin/squid ] || echo "mesh.sh: no /usr/sbin/squid: meshes with Squid nodes will fail" >&2

release=--release; [ "${DEBUG:-0}" = 1 ] && release=

meshes=("$@")
[ ${#meshes[@]} -gt 0 ] || meshes=(examples/mesh5/squid.toml examples/mesh5/cuttle.toml examples/mesh5/mixed.toml)

for mesh in "${meshes[@]}"; do
  [ -f "$mesh" ] || { echo "mesh.sh: $mesh: no such file" >&2; exit 2; }
  echo "== $mesh"
  env MESH_LAB_MESH=$(cd "$(dirname "$mesh")" && pwd)/$(basename "$mesh") \
    MESH_LAB_REQUESTS="${REQUESTS:-20000}" \
    MESH_LAB_CONCURRENCY="${CONCURRENCY:-8}" \
    ${TRACE:+MESH_LAB_TRACE="$(realpath "$TRACE")"} \
    ${WORK:+MESH_LAB_WORK="$WORK/$(basename "$mesh" .toml)"} \
    cargo test $release --quiet --test mesh_lab full_lab -- --ignored --exact --nocapture \
    | grep -v '^running \|^test \|^$\|^\.$\|test result:'
done
