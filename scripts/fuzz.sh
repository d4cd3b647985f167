#!/usr/bin/env bash
# Run every cargo-fuzz target for N seconds each (default 30): `.ci/run` uses
# this as a smoke test; a long campaign is `scripts/fuzz.sh 600`.
# Needs a nightly toolchain (installed by rustup if missing) and cargo-fuzz.
set -euo pipefail
cd "$(dirname "$0")/../fuzz"
seconds="${1:-30}"
if ! cargo +nightly --version >/dev/null 2>&1; then
  rustup toolchain install nightly --profile minimal
fi
command -v cargo-fuzz >/dev/null || cargo install cargo-fuzz --locked
mapfile -t targets < <(cargo +nightly fuzz list)
cargo +nightly fuzz build 2>&1 | tail -n 3
for t in "${targets[@]}"; do
  mkdir -p "corpus/$t"
  dict=()
  case "$t" in
    http1_request | h1_connection) dict=(-dict=http.dict) ;;
    hpack_decode) dict=(-dict=hpack.dict) ;;
  esac
  echo "fuzz $t for ${seconds}s"
  cargo +nightly fuzz run "$t" "corpus/$t" -- -max_total_time="$seconds" -max_len=65536 "${dict[@]}" 2>&1 \
    | grep -E '^(#[0-9]+[[:space:]]+DONE|==[0-9]+==|SUMMARY|Done)' || true
  if ls "artifacts/$t"/{crash,timeout,oom,leak}-* >/dev/null 2>&1; then
    echo "fuzz target $t crashed: see fuzz/artifacts/$t"; exit 1
  fi
done
echo "fuzz smoke: ${#targets[@]} targets, 0 crashes"
