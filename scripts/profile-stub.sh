#!/usr/bin/env bash
# Where a gateway's CPU goes, on the fast h2 stub (benches/e2e/stub.rs):
# noslate-fc and the Rust baseline (benches/e2e/rust_gateway.rs) in turn,
# each driven by the e2e bench's load client at 64 B for SECONDS, under
#   perf record -e cpu-clock -g     (self time per symbol)
#   /proc/<pid>/stat                (CPU per invoke)
#   perf stat (tracepoints)         (syscalls and epoll_waits per invoke, at 1 and
#                                    CONNECTIONS connections)
# Writes target/profile/<who>.{perf,txt}; prints a summary.
#
#   scripts/profile-stub.sh [CONNECTIONS=32] [SECONDS=5]
#   (FC_BIN=<path> profiles another noslate-fc build, e.g. an older commit)
#
# Loopback and a unix socket only; every process it starts is killed by PID
# on exit. Needs perf (apt-get install linux-perf).
set -euo pipefail
cd "$(dirname "$0")/.."
CONNS=${1:-32}
SECS=${2:-5}
OUT=target/profile
mkdir -p "$OUT"

cargo build --release --quiet --bin noslate-fc
E2E=$(scripts/e2e-bin.sh)

PIDS=()
cleanup() { for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done; rm -rf "$TMP"; }
TMP=$(mktemp -d)
trap cleanup EXIT
mkdir -p "$TMP/socks"

"$E2E" __e2e-stub "$TMP/socks/dp-0.sock" >"$TMP/stub.out" 2>&1 &
PIDS+=($!)
for _ in $(seq 100); do grep -q READY "$TMP/stub.out" && break; sleep 0.1; done

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }

start_gateway() { # who port -> pid
  local who=$1 port=$2
  local cmd=("${FC_BIN:-$PWD/target/release/noslate-fc}")
  [ "$who" = rust ] && cmd=("$E2E" __e2e-rust-gateway)
  env -i PATH="$PATH" SERVER_PORT="$port" NOSLATE_FC_LISTEN=127.0.0.1 NOSLATE_FC_TRUSTED_PEERS=any NOSLATE_FC_SOCK_DIR="$TMP/socks" \
    NOSLATE_FC_CONTROL_PLANES=0 NOSLATE_FUNCTION=echo "${cmd[@]}" >/dev/null 2>"$TMP/$who.err" &
  echo $!
}

wait_port() { for _ in $(seq 100); do (echo >"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return; sleep 0.1; done; }

HZ=$(getconf CLK_TCK)
for who in fc rust; do
  port=$(free_port)
  pid=$(start_gateway "$who" "$port")
  PIDS+=("$pid")
  wait_port "$port"
  "$E2E" __e2e-load "$port" "$CONNS" 64 1 >/dev/null # warm-up
  t0=$(cpu_ticks "$pid")
  perf record -q -e cpu-clock -F 2000 -g -o "$OUT/$who.perf" -p "$pid" -- sleep "$SECS" 2>/dev/null &
  perfpid=$!
  load=$("$E2E" __e2e-load "$port" "$CONNS" 64 "$SECS")
  wait "$perfpid" || true
  t1=$(cpu_ticks "$pid")
  ok=${load%% ok*}
  cpu_us=$(python3 -c "print(f'{($t1-$t0)/$HZ*1e6/max($ok,1):.1f}')")
  perf report -i "$OUT/$who.perf" --stdio --no-children --sort symbol -g none 2>/dev/null |
    grep -v -e '^#' -e '^$' | sed -n 1,40p >"$OUT/$who.txt" || true
  # Syscalls and epoll_waits per invoke at 1 and $CONNS connections:
  # tracepoints count exactly without slowing the gateway (strace would).
  sys=""
  for c in 1 "$CONNS"; do
    perf stat -x, -e raw_syscalls:sys_enter,syscalls:sys_enter_epoll_wait -o "$OUT/$who.stat" -p "$pid" -- sleep 3 &
    statpid=$!
    sload=$("$E2E" __e2e-load "$port" "$c" 64 3)
    wait "$statpid" || true
    sok=${sload%% ok*}
    calls=$(awk -F, '/raw_syscalls:sys_enter/ {print $1}' "$OUT/$who.stat")
    waits=$(awk -F, '/sys_enter_epoll_wait/ {print $1}' "$OUT/$who.stat")
    sys+=$(python3 -c "print(f' {${calls:-0}/max($sok,1):.2f} syscalls ({${waits:-0}/max($sok,1):.2f} epoll_wait) per invoke at $c')")
  done
  echo "$who: $load; CPU $cpu_us µs/invoke at $CONNS connections;$sys"
  kill "$pid" 2>/dev/null || true
done
echo "profiles: $OUT/fc.txt, $OUT/rust.txt (perf report --no-children --sort symbol)"
