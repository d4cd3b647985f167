# The image users deploy on Function Compute: noslate-fc as the ENTRYPOINT of a
# Noslate instance (turfd, the Noslated v0.25 data and control planes, Node.js
# workers), with an example function `echo` that answers with the request's
# body. From a clean checkout:
#
#   docker build -t noslate-fc-app .          (or: podman build -t noslate-fc-app .)
#   docker run --rm -p 9000:9000 noslate-fc-app
#
# Base images are build arguments only, so a machine without a registry can
# pass local ones (scripts/image.sh does). Targets: `image` (the default, last
# stage), `on-noslate` (noslate-fc and the example on Noslate's own base image,
# for those who built it: --build-arg NOSLATE_IMAGE=noslate:0.0.1), `seed` (the
# seed's start.sh + express + NoslatedClient on the same base, for
# BENCHMARKS.md only). README "The image" says where functions and profiles go.

# ARGs used in FROM lines belong before the first FROM.
ARG RUST_IMAGE=rust:1-bookworm
ARG NODE_BUILD_IMAGE=node:20-bookworm
ARG NODE_IMAGE=node:20-bookworm-slim
ARG NOSLATE_IMAGE=noslate:0.0.1

# noslate-fc, statically linked (crt-static): it runs on whatever glibc the
# base has and idles at ~1.5 MB RSS instead of ~2.4 MB with a shared libc.
# The lock file pins every dependency.
FROM ${RUST_IMAGE} AS build
WORKDIR /src
# What the build reads (the manifest names the benches), so a change
# elsewhere in the tree reuses this layer.
COPY Cargo.toml Cargo.lock ./
COPY src/ src/
COPY benches/ benches/
RUN RUSTFLAGS="-C target-feature=+crt-static" \
    cargo build --release --locked --target x86_64-unknown-linux-gnu \
 && cp target/x86_64-unknown-linux-gnu/release/noslate-fc /noslate-fc

# turf and Noslated from the pinned sources, by the very build the project's
# tests use (scripts/real-noslate.sh build-into): the archives in
# image/sources when present, else the same commits fetched by git. Installs
# the noslated package with production dependencies only in /usr/local/noslate
# ($NOSLATE_PATH of Noslate's base image); $NOSLATE_BIN is its bin/.
FROM ${NODE_BUILD_IMAGE} AS noslate
WORKDIR /build
# real-noslate.sh and the files of its build (`*noslate*`), not the other
# scripts, so a change to those does not rebuild Noslate.
COPY scripts/*noslate* scripts/
COPY image/sources/ sources/
# turf's build embeds its spec with xxd, which not every build image has.
RUN command -v xxd >/dev/null \
 || (apt-get update -qq && apt-get install -y -qq --no-install-recommends xxd && rm -rf /var/lib/apt/lists/*)
RUN NOSLATE_SHARED=/build/sources NOSLATE_REAL_CACHE=/build/cache \
    bash scripts/real-noslate.sh build-into /usr/local/noslate \
 && rm -rf /build/cache

# BENCHMARKS ONLY: the seed gateway's dependencies (express), production only.
FROM ${NODE_BUILD_IMAGE} AS seed-deps
WORKDIR /seed
COPY benches/baseline/package.json benches/baseline/package-lock.json ./
RUN npm ci --omit=dev --no-audit --no-fund --loglevel=error

# Noslate's base-image layout and environment on a Node.js runtime.
FROM ${NODE_IMAGE} AS noslate-base
ENV NOSLATE_PATH=/usr/local/noslate \
    NOSLATE_BIN=/usr/local/noslate/bin \
    NOSLATE_WORKDIR=/.noslate \
    NOSLATED_WORKDIR=/.noslate/noslated \
    TURF_WORKDIR=/.noslate/turf \
    NOSLATE_LOGDIR=/.noslate/logs \
    LIBTURF_PATH=/usr/local/noslate/bin/libturf.so \
    NOSLATED_CONFIG_PATH=/usr/local/noslate/noslated-config.json \
    DISABLE_INSPECTOR=true \
    NOSLATED_FORCE_NON_SEED_MODE=1 \
    NOSLATE_FUNCTION_PROFILES=/code/profiles.json \
    SERVER_PORT=9000
COPY --from=noslate /usr/local/noslate /usr/local/noslate
# turf finds the worker's node in $TURF_WORKDIR/runtime/nodejs/bin.
RUN node="$(command -v node)" \
 && ln -s "$node" "$NOSLATE_BIN/node" \
 && mkdir -p "$NOSLATED_WORKDIR/socks" "$TURF_WORKDIR/runtime/nodejs/bin" "$TURF_WORKDIR/sandbox" \
             "$TURF_WORKDIR/overlay" "$NOSLATE_LOGDIR" \
 && ln -s "$node" "$TURF_WORKDIR/runtime/nodejs/bin/node"
# turf from this build (noslated would use a prebuilt one), and a circuit
# breaker that does not refuse invokes for the host's load average, which a
# container sees but which is not the instance's.
COPY image/noslated-config.json /usr/local/noslate/noslated-config.json
# The example function and its profile; replace both with yours.
COPY image/functions/ /code/functions/
COPY image/profiles.json /code/profiles.json
EXPOSE 9000

# BENCHMARKS ONLY: the seed's way on the same base (benches/baseline).
FROM noslate-base AS seed
COPY --from=seed-deps /seed/node_modules /seed/node_modules
COPY benches/baseline/seed-entrypoint.sh benches/baseline/seed-sdk.js /seed/
ENV NOSLATED_SDK=/usr/local/noslate/build/sdk/index.js \
    NOSLATE_FUNCTION=echo
ENTRYPOINT ["/bin/bash", "/seed/seed-entrypoint.sh"]

# noslate-fc on Noslate's own base image (turfd, node, data_plane,
# control_plane and its environment already there), with the example.
FROM ${NOSLATE_IMAGE} AS on-noslate
COPY --from=build /noslate-fc /usr/local/bin/noslate-fc
COPY image/functions/ /code/functions/
COPY image/profiles.json /code/profiles.json
ENV NOSLATE_FUNCTION_PROFILES=/code/profiles.json SERVER_PORT=9000
EXPOSE 9000
ENTRYPOINT ["/usr/local/bin/noslate-fc"]

# The image (default target): noslate-fc as PID 1 starts turfd and both
# planes, reaps orphans, serves FC's HTTP on SERVER_PORT (= CAPort 9000).
FROM noslate-base AS image
COPY --from=build /noslate-fc /usr/local/bin/noslate-fc
ENTRYPOINT ["/usr/local/bin/noslate-fc"]
