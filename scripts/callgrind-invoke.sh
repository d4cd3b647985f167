#!/usr/bin/env bash
# Instructions per invoke, counted (valgrind's callgrind), so the figure is
# the same on a busy or a quiet machine: the before/after measure for a
# change on the hot path. noslate-fc runs under callgrind over the fast h2
# stub (benches/e2e/stub.rs); the e2e bench's load client sends 64 B echoes
# for a warm-up with instrumentation off, then for SECONDS with it on; the
# count is user-space instructions (libc included) over the invokes answered.
#
#   scripts/callgrind-invoke.sh [CONNECTIONS=1] [SECONDS=6]
#   (FC_BIN=<path> counts another noslate-fc build, e.g. an older commit;
#   CG_KEEP=<file> keeps the callgrind profile for callgrind_annotate)
#
# Loopback and a unix socket only; every process it starts is killed by PID
# on exit. Needs valgrind (apt-get install valgrind).
set -euo pipefail
cd "$(dirname "$0")/.."
CONNS=${1:-1}
SECS=${2:-6}

cargo build --release --quiet --bin noslate-fc
E2E=$(scripts/e2e-bin.sh)

PIDS=()
TMP=$(mktemp -d)
cleanup() { for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done; rm -rf "$TMP"; }
trap cleanup EXIT
mkdir -p "$TMP/socks"

"$E2E" __e2e-stub "$TMP/socks/dp-0.sock" >"$TMP/stub.out" 2>&1 &
PIDS+=($!)
for _ in $(seq 100); do grep -q READY "$TMP/stub.out" && break; sleep 0.1; done

port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
env -i PATH="$PATH" SERVER_PORT="$port" NOSLATE_FC_LISTEN=127.0.0.1 NOSLATE_FC_TRUSTED_PEERS=any \
  NOSLATE_FC_SOCK_DIR="$TMP/socks" NOSLATE_FC_CONTROL_PLANES=0 NOSLATE_FUNCTION=echo \
  valgrind --tool=callgrind --instr-atstart=no --callgrind-out-file="$TMP/cg.out" \
  "${FC_BIN:-$PWD/target/release/noslate-fc}" >/dev/null 2>"$TMP/fc.err" &
fc=$!
PIDS+=("$fc")
for _ in $(seq 300); do (echo >"/dev/tcp/127.0.0.1/$port") 2>/dev/null && break; sleep 0.1; done

warm=$("$E2E" __e2e-load "$port" "$CONNS" 64 2) # warm-up, not counted
case "$warm" in *" 0 errors,"*) ;; *) echo "callgrind-invoke: the warm-up failed ($warm)" >&2; exit 1 ;; esac
callgrind_control -i on "$fc" >/dev/null
load=$("$E2E" __e2e-load "$port" "$CONNS" 64 "$SECS")
callgrind_control -i off "$fc" >/dev/null
callgrind_control -d "$fc" >/dev/null
ok=$(printf '%s\n' "$load" | awk '{print $1}')
errors=$(printf '%s\n' "$load" | awk '{print $3}')
sleep 1
ir=$(cat "$TMP"/cg.out* | awk '/^totals:/ {s += $2} END {print s}')
[ "${ok:-0}" -gt 0 ] || { echo "callgrind-invoke: no invoke answered ($load)" >&2; exit 1; }
[ "$errors" = 0 ] || { echo "callgrind-invoke: $errors errors ($load)" >&2; exit 1; }
[ -z "${CG_KEEP:-}" ] || cat "$TMP"/cg.out.* >"$CG_KEEP"
echo "connections $CONNS: $ok invokes, $ir instructions, $((ir / ok)) per invoke"
