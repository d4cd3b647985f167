#!/usr/bin/env bash
# Build the e2e bench (release) and print its executable's path: the fast
# h2 stub, the Rust baseline gateway and the load client are its hidden
# modes (benches/e2e.rs). Used by profile-stub.sh and callgrind-invoke.sh.
set -euo pipefail
cd "$(dirname "$0")/.."
e2e=$(cargo bench --bench e2e --no-run --message-format=json 2>/dev/null |
  python3 -c 'import json,sys
for l in sys.stdin:
    m=json.loads(l)
    if m.get("reason")=="compiler-artifact" and m["target"]["name"]=="e2e" and m.get("executable"): print(m["executable"])' | tail -1)
[ -x "$e2e" ] || { echo "e2e-bin: could not build the e2e bench" >&2; exit 1; }
echo "$e2e"
