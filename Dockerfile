# noslate-fc as the ENTRYPOINT of a Noslate image on Function Compute.
#
#   docker build --build-arg NOSLATE_VERSION=0.0.1 -t noslate-fc-app .
#
# ARGs used in FROM must be declared before the first FROM (global scope).
ARG NOSLATE_VERSION

# Stage 1: the release binary, statically linked (crt-static): it runs on
# whatever glibc the Noslate base image has, and idles at ~1.5 MB RSS instead
# of ~2.4 MB with a shared libc. The lock file pins every dependency.
FROM rust:1-bookworm AS build
WORKDIR /src
COPY . .
RUN RUSTFLAGS="-C target-feature=+crt-static" \
    cargo build --release --locked --target x86_64-unknown-linux-gnu

# Stage 2: the Noslate base image (turfd, node, data_plane, control_plane;
# NOSLATE_BIN, NOSLATE_LOGDIR, NOSLATED_WORKDIR set) plus noslate-fc, which
# starts and supervises them, serves FC's HTTP on SERVER_PORT and reaps
# orphans as PID 1.
FROM noslate:${NOSLATE_VERSION:-0.0.1}
COPY --from=build /src/target/x86_64-unknown-linux-gnu/release/noslate-fc /usr/local/bin/noslate-fc
EXPOSE 9000
ENTRYPOINT ["/usr/local/bin/noslate-fc"]
