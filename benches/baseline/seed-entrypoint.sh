#!/usr/bin/env bash
# BASELINE FOR BENCHMARKS: the seed's way of starting a container, as an
# ENTRYPOINT for the cold-start measurement (benches/e2e/real.rs,
# BENCH_REAL=cold): turfd, then the Noslated data and control planes, then the
# seed gateway (seed-sdk.js: express + NoslatedClient, which pushes
# NOSLATE_FUNCTION_PROFILES with setFunctionProfile). Needs the environment
# of `scripts/real-noslate.sh env` plus NOSLATED_SDK. Not part of noslate-fc.
set -euo pipefail
: "${NOSLATE_BIN:?}" "${TURF_WORKDIR:?}" "${NOSLATED_WORKDIR:?}" "${NOSLATE_LOGDIR:?}"
wait_sock() { # path, seconds
  local i
  for ((i = 0; i < $2 * 200; i++)); do
    [ -S "$1" ] && return 0
    sleep 0.005
  done
  echo "seed-entrypoint: $1 did not appear" >&2
  exit 1
}
# turf must not be a session leader (it setpgid()s before each spawn).
"$NOSLATE_BIN/turf" -D -f >>"$NOSLATE_LOGDIR/turf.log" 2>&1 &
wait_sock "$TURF_WORKDIR/turf.sock" 10
"$NOSLATE_BIN/node" "$NOSLATE_BIN/data_plane" >>"$NOSLATE_LOGDIR/data_plane_out.log" 2>&1 &
"$NOSLATE_BIN/node" "$NOSLATE_BIN/control_plane" >>"$NOSLATE_LOGDIR/control_plane_out.log" 2>&1 &
wait_sock "$NOSLATED_WORKDIR/socks/dp-0.sock" 30
wait_sock "$NOSLATED_WORKDIR/socks/cp-0.sock" 30
exec "$NOSLATE_BIN/node" "$(dirname "$0")/seed-sdk.js"
