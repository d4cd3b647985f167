#!/usr/bin/env bash
# Soak: steady load through a release build of noslate-fc in front of the
# Noslated TEST FIXTURE (tests/peer/noslated-peer.js), with mixed body sizes
# (0 B – 1 MiB), both request framings, keep-alive and close, and random
# client aborts; every response is checked against its request's unique id.
# At the end open fds and RSS must be back (see soak_short in
# tests/reliability.rs), and 0 responses lost or mismatched.
#
#   scripts/soak.sh [SECONDS]        default 300 (the figure in RELIABILITY.md)
#   SOAK_CONCURRENCY=32 scripts/soak.sh 60
#
# When gdb can attach, the live heap (glibc malloc_stats) after the warm-up and
# after the soak is printed as well (SOAK_HEAP_STATS=1): unlike RSS it does not
# include freed memory the allocator keeps.
set -euo pipefail
cd "$(dirname "$0")/.."
export SOAK_SECONDS="${1:-${SOAK_SECONDS:-300}}"
export SOAK_CONCURRENCY="${SOAK_CONCURRENCY:-16}"
if [ -z "${SOAK_HEAP_STATS:-}" ] && command -v gdb >/dev/null; then
  export SOAK_HEAP_STATS=1
fi
[ -d tests/peer/node_modules/@grpc/grpc-js ] || (cd tests/peer && npm ci --no-audit --no-fund --loglevel=error)
echo "soak: ${SOAK_SECONDS}s at concurrency ${SOAK_CONCURRENCY} on $(nproc) CPUs, $(uname -sr), $(date -u +%FT%TZ)"
log=$(mktemp /tmp/nfc-soak.XXXXXX)
trap 'rm -f "$log"' EXIT
status=0
# Bounded: the soak itself, plus start-up, warm-up and the final checks.
timeout $((SOAK_SECONDS + 600)) \
  cargo test --release --locked --test reliability soak_short -- --exact --nocapture 2>&1 | tee "$log" || status=$?
echo "--- soak figures (exit status $status)"
grep '^SOAK ' "$log" | tr ' ' '\n' | sed -n 's/^\([a-zA-Z_]*\)=/  \1 = /p'
exit "$status"
