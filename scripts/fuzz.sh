#!/usr/bin/env bash
# Run every cargo-fuzz target for N seconds each (default 30): `.ci/run` uses
# this as a smoke test; a long campaign is `scripts/fuzz.sh 600`.
# Needs a nightly toolchain (installed by rustup if missing) and cargo-fuzz.
#
# Fails (non-zero) when: `cargo fuzz list` names no target; a build fails;
# libFuzzer exits non-zero for any target (crash, timeout, OOM, leak); or a
# target's artifacts directory holds any file at the end (whatever its kind:
# an artifact is a finding until it is moved to a named regression seed in
# fuzz/corpus/<target>/ and deleted).
set -euo pipefail
cd "$(dirname "$0")/../fuzz"
seconds="${1:-30}"
if ! cargo +nightly --version >/dev/null 2>&1; then
  rustup toolchain install nightly --profile minimal
fi
command -v cargo-fuzz >/dev/null || cargo install cargo-fuzz --locked
list="$(cargo +nightly fuzz list)"
mapfile -t targets < <(printf '%s\n' "$list" | sed '/^[[:space:]]*$/d')
if [ "${#targets[@]}" -eq 0 ]; then
  echo "fuzz smoke: cargo fuzz list names no target" >&2
  exit 1
fi
build_log="$(mktemp)"
trap 'rm -f "$build_log" "${run_log:-}"' EXIT
if ! cargo +nightly fuzz build >"$build_log" 2>&1; then
  tail -n 30 "$build_log"
  echo "fuzz smoke: cargo fuzz build failed" >&2
  exit 1
fi
tail -n 3 "$build_log"
run_log="$(mktemp)"
for t in "${targets[@]}"; do
  mkdir -p "corpus/$t"
  dict=()
  case "$t" in
    http1_request | h1_connection) dict=(-dict=http.dict) ;;
    hpack_decode) dict=(-dict=hpack.dict) ;;
  esac
  echo "fuzz $t for ${seconds}s"
  status=0
  cargo +nightly fuzz run "$t" "corpus/$t" -- -max_total_time="$seconds" -max_len=65536 "${dict[@]}" \
    >"$run_log" 2>&1 || status=$?
  grep -E '^(#[0-9]+[[:space:]]+DONE|==[0-9]+==|SUMMARY|Done)' "$run_log" || true
  artifacts=()
  if [ -d "artifacts/$t" ]; then
    mapfile -t artifacts < <(find "artifacts/$t" -type f)
  fi
  if [ "$status" -ne 0 ] || [ "${#artifacts[@]}" -gt 0 ]; then
    tail -n 40 "$run_log"
    echo "fuzz target $t failed: libFuzzer exit status $status, artifacts: ${artifacts[*]:-none}" >&2
    exit 1
  fi
done
echo "fuzz smoke: ${#targets[@]} targets, 0 crashes"
