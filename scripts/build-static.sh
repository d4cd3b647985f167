#!/usr/bin/env bash
# The production build: a static (crt-static) release binary, as the
# Dockerfile makes it. Output: target/x86_64-unknown-linux-gnu/release/noslate-fc
set -euo pipefail
cd "$(dirname "$0")/.."
RUSTFLAGS="-C target-feature=+crt-static" cargo build --release --locked --target x86_64-unknown-linux-gnu
