#!/usr/bin/env bash
# End-to-end benchmark: noslate-fc against the Node.js gateway baseline
# (benches/baseline) and the Rust baseline of issue #14 (benches/e2e/rust_gateway.rs:
# hyper 1 + h2 on tokio current-thread), on the grpc-js fixture and on the fast
# h2 stub, plus the direct "floor" (benches/e2e.rs), alternating in one run.
# Writes target/e2e/report.md, results.json, machine.txt and docs/latency.png.
#
#   scripts/bench-e2e.sh            full run (about 9 minutes)
#   scripts/bench-e2e.sh --quick    BENCH_QUICK=1: about 1 minute, nothing in docs/
#   scripts/bench-e2e.sh --real     on the REAL Noslate stack (scripts/real-noslate.sh):
#                                   the seed gateway (express + NoslatedClient) vs
#                                   noslate-fc vs the Rust baseline vs the floor
#                                   (about 7 minutes;
#                                   target/e2e/real-report.md)
#   scripts/bench-e2e.sh --cold     real stack: ENTRYPOINT exec -> the 200 of ONE
#                                   invoke sent when the port accepts (a non-200
#                                   fails), seed way vs noslate-fc on the seed's
#                                   and the packed layout, plus warm-up runs;
#                                   7 runs each (target/e2e/cold-report.md)
#   scripts/bench-e2e.sh --profile  real stack: noslate-fc under perf stat and
#                                   strace -c at 1 and 32 connections
#                                   (target/e2e/profile-report.md)
#   (--quick may follow any of the three: e.g. --real --quick)
#
# The machine has 2 cores: a fuzzer or a build running beside the benchmark
# distorts every figure. While a fuzzer runs, this script waits (polling every
# 60 s, at most 60 minutes; NO_WAIT=1 skips the wait). It records the load
# before the run in target/e2e/machine.txt either way.
set -euo pipefail
cd "$(dirname "$0")/.."

for arg in "$@"; do
  case "$arg" in
    --quick) export BENCH_QUICK=1 ;;
    --real) export BENCH_REAL=1 ;;
    --cold) export BENCH_REAL=cold ;;
    --profile) export BENCH_REAL=profile ;;
    *) echo "usage: $0 [--real|--cold|--profile] [--quick]" >&2; exit 2 ;;
  esac
done
if [ "${BENCH_REAL:-}" = profile ]; then
  command -v strace >/dev/null || { apt-get update -qq && apt-get install -y -qq strace; }
  command -v perf >/dev/null || echo "bench-e2e: perf is missing (apt-get install linux-perf): no task-clock figures" >&2
fi

# A fuzzer, or a campaign script between two targets (checked twice, 5 s apart).
fuzzing() {
  local pat='-max_total_time=|cargo-fuzz fuzz run|cargo fuzz run|scripts/fuzz\.sh'
  pgrep -f -- "$pat" >/dev/null 2>&1 && return 0
  sleep 5
  pgrep -f -- "$pat" >/dev/null 2>&1
}

if [ -z "${NO_WAIT:-}" ]; then
  for _ in $(seq 60); do
    fuzzing || break
    echo "bench-e2e: a fuzzer is running; waiting 60 s ($(cut -d' ' -f1-3 /proc/loadavg))" >&2
    sleep 60
  done
  if fuzzing; then
    echo "bench-e2e: fuzzer still running after 60 minutes; measuring anyway" >&2
  fi
fi

mkdir -p target/e2e
{
  echo "date: $(date -u '+%Y-%m-%d %H:%M:%S UTC')"
  echo "uname: $(uname -srm)"
  echo "nproc: $(nproc)"
  echo "node: $(node --version)"
  echo "rustc: $(rustc --version)"
  echo
  lscpu
  echo
  free -h
  echo
  echo "uptime: $(uptime)"
  echo
  top -bn1 | head -n 15
} > "target/e2e/machine${BENCH_REAL:+-real-$BENCH_REAL}.txt" 2>&1
cat "target/e2e/machine${BENCH_REAL:+-real-$BENCH_REAL}.txt" >&2

cargo bench --bench e2e
