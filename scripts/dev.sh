#!/usr/bin/env bash
# Development run: noslate-fc on :9000 in front of the project's Noslated TEST FIXTURE
# (tests/peer/noslated-peer.js — plays the data and control plane; not Noslated).
set -euo pipefail
cd "$(dirname "$0")/.."
work=$(mktemp -d /tmp/nfc-dev.XXXX)
mkdir -p "$work/socks"
node tests/peer/noslated-peer.js --dp "$work/socks/dp-0.sock" --cp "$work/socks/cp-0.sock" &
peer=$!
trap 'kill $peer 2>/dev/null; rm -rf "$work"' EXIT
# A development machine plays FC from loopback: let local requests speak for
# FC (the default, remote, treats them as an end user's, as in production).
NOSLATED_WORKDIR="$work" NOSLATE_FUNCTION="${NOSLATE_FUNCTION:-echo}" \
  NOSLATE_FC_TRUSTED_PEERS="${NOSLATE_FC_TRUSTED_PEERS:-any}" ./target/release/noslate-fc "$@"
