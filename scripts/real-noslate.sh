#!/usr/bin/env bash
# The real Noslate stack (turfd, the Noslated v0.25 data and control planes,
# a Node.js worker per function), built from source for the project's tests
# and benchmarks. Nothing of it is copied into this repository.
#
#   scripts/real-noslate.sh build        build (or reuse) the stack; prints NOSLATE_BIN
#   scripts/real-noslate.sh build-into DIR
#                                        the same build, installed self-contained in
#                                        DIR as the Noslate base image lays out
#                                        $NOSLATE_PATH (the Dockerfile runs this)
#   scripts/real-noslate.sh env RUNDIR   print the exports for a run in RUNDIR
#                                        (work dirs made there); `eval` them
#   scripts/real-noslate.sh start RUNDIR start turfd and both planes in RUNDIR
#                                        (for running noslate-fc with NOSLATE_BIN
#                                        unset); waits until their sockets exist
#   scripts/real-noslate.sh stop RUNDIR  stop what `start` started, by PID
#
# Sources: ../shared/noslate/ beside the clone when it is there (archives and
# the package lock of a build that worked), else the same pinned commits
# fetched from GitHub with git. The build lands in a cache outside the clone
# ($NOSLATE_REAL_CACHE, default ~/.cache/noslate-fc/real-noslate/<key>), keyed
# by the sources, this script's build steps, scripts/noslate-pack.js, the
# esbuild and Node versions, so it is rebuilt only when one of them changes.
# Layout of <key>/bin is the Noslate base image's $NOSLATE_BIN: turf, node,
# data_plane, control_plane, where the two planes are the packed ones
# (src/noslated/pack/: esbuild bundles run through V8's code cache, which a
# training run at the end of the build writes; the control plane starts each
# Node.js worker with the packed starter). <key>/bin-plain is the same stack
# laid out the seed's way (Noslated's own bin/ scripts over tsc's output), for
# the cold-start bench's before/after. The code cache belongs to the node in
# bin/ and to the planes' V8 flags (none): a plane started with another Node.js
# or other flags warns on stderr and compiles without it.
set -euo pipefail

here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/.." && pwd)"
shared="${NOSLATE_SHARED:-$root/../shared/noslate}"

NOSLATED_COMMIT=72345a576b5da4006e326139181dc3e4170126c3
TURF_COMMIT=1d6b2c54ce51c83e4fb91cdcac107fcb3ce86de9
AWORKER_COMMIT=b071b83181d70b67f1ed90adc66532b1b9e8f329
# esbuild (npm) bundles the planes at build time (pack below).
ESBUILD_VERSION=0.24.2

die() { echo "real-noslate: $*" >&2; exit 1; }

have_shared() {
  [ -f "$shared/noslated-${NOSLATED_COMMIT:0:7}.tar.gz" ] &&
    [ -f "$shared/turf-${TURF_COMMIT:0:7}.tar.gz" ] &&
    [ -f "$shared/aworker-proto-${AWORKER_COMMIT:0:7}.tar.gz" ] &&
    [ -f "$shared/noslated-package-lock.json" ]
}

cache_key() {
  command -v node >/dev/null || die "node (v20) is not installed"
  {
    if have_shared; then
      (cd "$shared" && sha256sum ./*.tar.gz noslated-package.json noslated-package-lock.json)
    else
      echo "git $NOSLATED_COMMIT $TURF_COMMIT $AWORKER_COMMIT"
    fi
    declare -f fetch_sources build pack train | sha256sum | cut -d' ' -f1
    node --version
    echo "esbuild $ESBUILD_VERSION"
    sha256sum <"$here/noslate-pack.js"
  } | sha256sum | cut -c1-16
}

cache_dir() {
  echo "${NOSLATE_REAL_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/noslate-fc/real-noslate}/$(cache_key)"
}

fetch_sources() { # $1 = empty source dir
  local src="$1"
  if have_shared; then
    tar -xzf "$shared/noslated-${NOSLATED_COMMIT:0:7}.tar.gz" -C "$src"
    tar -xzf "$shared/turf-${TURF_COMMIT:0:7}.tar.gz" -C "$src"
    tar -xzf "$shared/aworker-proto-${AWORKER_COMMIT:0:7}.tar.gz" -C "$src"
    cp "$shared/noslated-package.json" "$src/noslated/package.json"
    cp "$shared/noslated-package-lock.json" "$src/noslated/package-lock.json"
    return
  fi
  command -v git >/dev/null || die "neither $shared nor git is available to get the Noslate sources"
  local name commit
  for pair in noslated:$NOSLATED_COMMIT turf:$TURF_COMMIT aworker:$AWORKER_COMMIT; do
    name="${pair%%:*}" commit="${pair#*:}"
    git init -q "$src/$name"
    git -C "$src/$name" fetch -q --depth 1 "https://github.com/noslate-project/$name.git" "$commit" ||
      die "no sources: $shared is missing and github.com/noslate-project/$name@$commit cannot be fetched"
    git -C "$src/$name" checkout -q FETCH_HEAD
  done
  # The three @types pins that TypeScript 4.5 needs (shared/noslate's
  # package.json carries the same); no lock file on this path.
  node -e '
    const fs = require("fs"), p = process.argv[1], j = JSON.parse(fs.readFileSync(p));
    Object.assign(j.devDependencies, {"@types/node": "16.18.38", "@types/lodash": "4.14.202", "@types/bytes": "3.1.1"});
    fs.writeFileSync(p, JSON.stringify(j, null, 2));' "$src/noslated/package.json"
}

build() {
  local out src
  out="$(cache_dir)"
  if [ -f "$out/ok" ]; then
    echo "$out/bin"
    return
  fi
  command -v make >/dev/null && command -v gcc >/dev/null || die "make and gcc are needed to build turf"
  command -v npm >/dev/null || die "npm is needed to build noslated"
  rm -rf "$out"
  mkdir -p "$out"
  src="$out/src"
  mkdir -p "$src"
  echo "real-noslate: building into $out" >&2
  fetch_sources "$src"

  # turf: its Makefile includes the monorepo's toolchain.mk, absent here.
  printf 'CC ?= gcc\nCXX ?= g++\nAR ?= ar\nCLANG_FORMAT ?= clang-format\n' >"$src/turf/toolchain.mk"
  sed -i 's|^include \.\./build/Makefiles/toolchain\.mk|include toolchain.mk|' "$src/turf/Makefile"
  make -C "$src/turf" -j"$(nproc)" >"$out/turf-build.log" 2>&1 || {
    tail -20 "$out/turf-build.log" >&2
    die "turf build failed (log: $out/turf-build.log)"
  }

  # noslated: dependencies, protobuf typings, TypeScript.
  (
    cd "$src/noslated"
    if [ -f package-lock.json ]; then
      npm ci --no-audit --no-fund --loglevel=error
    else
      npm install --no-audit --no-fund --loglevel=error
    fi
    bash tools/proto2ts.sh
    # Generated by aworker's build; with the inspector disabled a stub is enough.
    mkdir -p src/lib/json
    [ -f src/lib/json/inspector_protocol.json ] ||
      echo '{"version":{"major":"1","minor":"3"},"domains":[]}' >src/lib/json/inspector_protocol.json
    npm run build
  ) >"$out/noslated-build.log" 2>&1 || {
    tail -30 "$out/noslated-build.log" >&2
    die "noslated build failed (log: $out/noslated-build.log)"
  }

  # $NOSLATE_BIN as the base image lays it out (bin-plain: Noslated's own
  # bin/ scripts over tsc's output, the seed's way, kept for the before/after
  # of benches/e2e/real.rs; bin: the packed planes, below).
  local dir
  for dir in bin bin-plain; do
    mkdir -p "$out/$dir"
    ln -sf "$src/turf/build/turf" "$out/$dir/turf"
    ln -sf "$(command -v node)" "$out/$dir/node"
  done
  ln -sf "$src/noslated/bin/data_plane" "$out/bin-plain/data_plane"
  ln -sf "$src/noslated/bin/control_plane" "$out/bin-plain/control_plane"
  pack "$out"
  ln -sf "$src/noslated/pack/data_plane" "$out/bin/data_plane"
  ln -sf "$src/noslated/pack/control_plane" "$out/bin/control_plane"
  printf '{"turf":{"bin":"%s"}}\n' "$src/turf/build/turf" >"$out/noslated-config.json"
  train "$out" >"$out/train.log" 2>&1 || {
    tail -30 "$out/train.log" >&2
    die "the code-cache training run failed (log: $out/train.log)"
  }
  touch "$out/ok"
  echo "$out/bin"
}

# The build above, installed for an image: DIR is the noslated package root
# ($NOSLATE_PATH, /usr/local/noslate in Noslate's base image) with production
# dependencies only, and DIR/bin is $NOSLATE_BIN: data_plane, control_plane
# (whatever the build's bin/ points them at), turf and libturf.so. `node` is
# the image's to link: it comes from the runtime base, not from here.
build_into() { # $1 = install dir (absent or empty)
  local dest="$1" out noslated rel name
  [ ! -e "$dest" ] || [ -z "$(ls -A "$dest")" ] || die "build-into: $dest is not empty"
  out="$(build)" || exit 1
  out="$(dirname "$out")"
  noslated="$out/src/noslated"
  mkdir -p "$dest"
  dest="$(cd "$dest" && pwd)"
  # Everything of the package but its sources, tests and tools.
  tar -C "$noslated" --exclude=./src --exclude=./test --exclude=./benchmark --exclude=./fixtures \
    --exclude=./tools --exclude=./typings --exclude='./tsconfig*' -cf - . | tar -C "$dest" -xf -
  (cd "$dest" && npm prune --omit=dev --no-audit --no-fund --loglevel=error) >&2 ||
    die "build-into: npm prune failed"
  for name in data_plane control_plane; do
    rel="$(readlink -f "$out/bin/$name")"
    rel="${rel#"$noslated"/}"
    [ "$rel" = "bin/$name" ] || ln -sf "../$rel" "$dest/bin/$name"
  done
  rm -f "$dest/bin/turf" "$dest/bin/turfd" # noslated's prebuilt turf: ours replaces it
  cp "$out/src/turf/build/turf" "$out/src/turf/build/libturf.so" "$dest/bin/"
  echo "$dest/bin"
}

# Start-up packaging (issue #19; scripts/noslate-pack.js says why): the
# planes and the worker starter bundled by esbuild into src/noslated/pack/.
pack() { # $1 = build dir
  local out="$1"
  mkdir -p "$out/tools"
  echo '{"private":true}' >"$out/tools/package.json"
  (cd "$out/tools" && npm install --no-audit --no-fund --loglevel=error --no-save "esbuild@$ESBUILD_VERSION") \
    >"$out/pack.log" 2>&1 &&
    node "$here/noslate-pack.js" bundle "$out/src/noslated" "$out/tools" >>"$out/pack.log" 2>&1 || {
    tail -30 "$out/pack.log" >&2
    die "packing the planes failed (log: $out/pack.log)"
  }
}

# A training run of the packed stack: each loader writes V8's code cache
# (pack/<name>.js.cache) for what its process compiled while starting, taking
# a profile, starting a worker and serving one invoke. Same node, same flags
# as every later start, or V8 rejects the cache.
train() { # $1 = build dir
  local out="$1" run name ok=1
  run="$(mktemp -d /tmp/noslate-pack-train.XXXXXX)"
  mkdir -p "$run/fn"
  printf '%s\n' "exports.handler = (ctx, req, res) => { res.writeHead(200); req.pipe(res); };" >"$run/fn/index.js"
  (
    export NOSLATE_PACK_WRITE_CACHE=1
    start "$run" "$out" >/dev/null
    trap 'stop "$run"' EXIT
    eval "$(print_env "$run" "$out")"
    node "$here/noslate-pack.js" train "$out/src/noslated" "$run/fn"
  ) || ok=
  for name in data_plane control_plane starter; do
    [ -s "$out/src/noslated/pack/$name.js.cache" ] || { echo "no code cache for $name" >&2; ok=; }
  done
  [ -n "$ok" ] && rm -rf "$run"
  [ -n "$ok" ] || { echo "training run's logs: $run/logs" >&2; return 1; }
}

# The environment shared by turf, both planes, noslate-fc and any SDK client.
# Noslated books 512 MiB of a 1 GiB virtual pool per worker by default, so
# only two functions could have a worker at once; the tests run eight.
print_env() { # $1 = run dir, $2 = build dir (default: the built cache)
  local run="$1" out="${2:-}"
  if [ -z "$out" ]; then
    out="$(cache_dir)"
    [ -f "$out/ok" ] || die "not built: run '$0 build' first"
  fi
  mkdir -p "$run/noslated/socks" "$run/turf/runtime/nodejs/bin" "$run/turf/sandbox" "$run/turf/overlay" "$run/logs"
  ln -sf "$(command -v node)" "$run/turf/runtime/nodejs/bin/node"
  # turf from this build (noslated's default is a prebuilt one in its bin/),
  # and a system circuit breaker that does not open because the machine is
  # busy building (its default refuses invokes at a load average of 10).
  printf '{"turf":{"bin":"%s"},"systemCircuitBreaker":{"systemLoad1Limit":%s}}\n' \
    "$out/src/turf/build/turf" "${NOSLATE_REAL_LOAD_LIMIT:-1000}" >"$run/noslated-config.json"
  cat <<EOF
export NOSLATE_BIN='$out/bin'
export NOSLATED_WORKDIR='$run/noslated'
export TURF_WORKDIR='$run/turf'
export LIBTURF_PATH='$out/src/turf/build/libturf.so'
export NOSLATE_LOGDIR='$run/logs'
export NOSLATED_CONFIG_PATH='$run/noslated-config.json'
export DISABLE_INSPECTOR=true
export NOSLATED_FORCE_NON_SEED_MODE=1
export NOSLATED_VIRTUAL_MEMORY_POOL_SIZE='${NOSLATED_VIRTUAL_MEMORY_POOL_SIZE:-8gb}'
EOF
}

wait_for() { # path, seconds, what
  local i
  for ((i = 0; i < $2 * 20; i++)); do
    [ -S "$1" ] && return 0
    sleep 0.05
  done
  die "$3 did not create $1 within $2 s (logs: $run/logs)"
}

start() { # $1 = run dir, $2 = build dir (default: the built cache)
  run="$1"
  mkdir -p "$run"
  run="$(cd "$run" && pwd)"
  eval "$(print_env "$run" "${2:-}")"
  # turf must not be a session leader (it setpgid()s before each spawn).
  "$NOSLATE_BIN/turf" -D -f >"$run/logs/turf.log" 2>&1 &
  echo $! >"$run/turf.pid"
  wait_for "$TURF_WORKDIR/turf.sock" 10 turf
  "$NOSLATE_BIN/node" "$NOSLATE_BIN/data_plane" >"$run/logs/data_plane_out.log" 2>&1 &
  echo $! >"$run/data_plane.pid"
  "$NOSLATE_BIN/node" "$NOSLATE_BIN/control_plane" >"$run/logs/control_plane_out.log" 2>&1 &
  echo $! >"$run/control_plane.pid"
  wait_for "$NOSLATED_WORKDIR/socks/dp-0.sock" 30 "the data plane"
  wait_for "$NOSLATED_WORKDIR/socks/cp-0.sock" 30 "the control plane"
  print_env "$run" "${2:-}"
}

stop() { # $1 = run dir
  local run="$1" pid
  for name in control_plane data_plane; do
    [ -f "$run/$name.pid" ] && kill -TERM "$(cat "$run/$name.pid")" 2>/dev/null || true
  done
  # turf ignores SIGTERM; its workers die with it (PDEATHSIG).
  [ -f "$run/turf.pid" ] && kill -KILL "$(cat "$run/turf.pid")" 2>/dev/null || true
  for name in control_plane data_plane; do
    [ -f "$run/$name.pid" ] || continue
    pid="$(cat "$run/$name.pid")"
    for _ in $(seq 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$pid" 2>/dev/null || true
  done
  rm -f "$run"/*.pid
}

case "${1:-}" in
  build) build ;;
  build-into) [ -n "${2:-}" ] || die "usage: $0 build-into DIR"; build_into "$2" ;;
  env) [ -n "${2:-}" ] || die "usage: $0 env RUNDIR"; print_env "$(mkdir -p "$2" && cd "$2" && pwd)" ;;
  start) [ -n "${2:-}" ] || die "usage: $0 start RUNDIR"; start "$2" ;;
  stop) [ -n "${2:-}" ] || die "usage: $0 stop RUNDIR"; stop "$2" ;;
  key) cache_key ;;
  *) echo "usage: $0 build | build-into DIR | env RUNDIR | start RUNDIR | stop RUNDIR | key" >&2; exit 2 ;;
esac
