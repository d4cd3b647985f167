#!/usr/bin/env bash
# Mutation testing with cargo-mutants (crates.io) of the sans-IO protocol
# cores, judged by the unit tests only (`cargo test --lib`): a mutant that
# the unit tests do not kill is a behaviour no unit test pins down.
# Long (about 800 mutants, each a rebuild): not part of .ci/run.
#
#   scripts/mutants.sh                 # src/fc, src/route.rs, src/splice.rs, src/http1
#   scripts/mutants.sh src/route.rs    # one file (a glob as cargo-mutants -f takes)
#
# Env: MUTANTS_TIMEOUT (s per test run, default 120), MUTANTS_OUT (default
# target/mutants; each file's results in <out>/<file>/mutants.out),
# MUTANTS_JOBS (default 1). Exit status: non-zero if any file had a missed
# mutant or a timeout (cargo-mutants' own codes: 2 missed, 3 timeout).
# Survivors judged harmless are listed in RELIABILITY.md ("Mutation testing").
set -euo pipefail
cd "$(dirname "$0")/.."
command -v cargo-mutants >/dev/null || cargo install cargo-mutants --locked
files=("$@")
[ "${#files[@]}" -gt 0 ] || files=('src/fc/*.rs' src/route.rs src/splice.rs 'src/http1/*.rs')
out="${MUTANTS_OUT:-target/mutants}"
worst=0
for f in "${files[@]}"; do
  dir="$out/$(printf '%s' "$f" | tr '/*' '__')"
  mkdir -p "$dir"
  echo "=== cargo mutants -f $f ($(date +%T))"
  status=0
  cargo mutants -f "$f" --timeout "${MUTANTS_TIMEOUT:-120}" --jobs "${MUTANTS_JOBS:-1}" \
    --copy-target=true --no-shuffle --output "$dir" -- --lib || status=$?
  cat "$dir/mutants.out/missed.txt" "$dir/mutants.out/timeout.txt" 2>/dev/null || true
  for kind in missed timeout caught unviable; do
    [ -f "$dir/mutants.out/$kind.txt" ] && printf '%s %s: %s\n' "$f" "$kind" "$(wc -l <"$dir/mutants.out/$kind.txt")"
  done
  [ "$status" -le "$worst" ] || worst=$status
done
exit "$worst"
