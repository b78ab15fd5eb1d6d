# syntax=docker/dockerfile:1
#
# echoport: TCP echo server (RFC 862) and IRC chat server, plus the echoport-load load generator.
#
#   docker build -t echoport .
#   docker run --rm -p 7007:7007 echoport                      # echo server on 0.0.0.0:7007
#   docker run --rm -p 6667:6667 -e ECHOPORT_MODE=chat -e ECHOPORT_LISTEN=0.0.0.0:6667 echoport   # IRC server
#   docker run --rm --entrypoint /usr/local/bin/echoport-load echoport --help
#   docker run --rm -p 7007:7007 --security-opt seccomp=config/seccomp-io-uring.json echoport   # io_uring: docs/docker.md
#
# The contract of the runtime stage (ENTRYPOINT, CMD, ENV, EXPOSE, STOPSIGNAL, HEALTHCHECK) is tested on
# the host without Docker by tests/docker_contract.rs; scripts/hadolint.sh lints this file.

# ---------------------------------------------------------------------------------------------------------
# Build stage: the official Rust image, pinned to the toolchain the project is developed and tested with,
# on Debian 12 like the runtime stage, so the binaries link against the glibc they will run with.
# ---------------------------------------------------------------------------------------------------------
FROM rust:1.95-bookworm AS build
WORKDIR /src

# Only what `cargo build --bins` needs (.dockerignore keeps target/, .git/ and the rest out of the context).
COPY Cargo.toml Cargo.lock ./
COPY src ./src
COPY crates ./crates

# Dependencies are cached across builds by BuildKit cache mounts: the crates.io registry, and the target
# directory, which keeps every compiled dependency, so a source change rebuilds only echoport itself.
# A cache mount is not part of the image, so the binaries are copied out of it in the same step.
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked --bins \
    && cp target/release/echoport target/release/echoport-load /usr/local/bin/

# ---------------------------------------------------------------------------------------------------------
# Runtime stage: distroless (glibc, libgcc, CA certificates; no shell, no package manager), non-root.
# ---------------------------------------------------------------------------------------------------------
FROM gcr.io/distroless/cc-debian12:nonroot

COPY --from=build /usr/local/bin/echoport /usr/local/bin/echoport-load /usr/local/bin/

# The image's `nonroot` user (65532:65532), numeric so Kubernetes' runAsNonRoot can verify it.
USER 65532:65532

# 7007: echo (the default mode); 6667: chat (IRC) mode.
EXPOSE 7007 6667

# Every flag reads an ECHOPORT_<FLAG> environment variable (flag > environment > config file > default;
# `echoport --help` lists them all). Listen on every interface inside the container. Other overrides, e.g.:
#   ECHOPORT_LISTEN=0.0.0.0:7007,[::]:7007    comma-separated list of addresses (IPv4 and IPv6 here)
#   ECHOPORT_MODE=chat                        IRC server (with ECHOPORT_LISTEN=0.0.0.0:6667 for the usual port)
#   ECHOPORT_WORKERS=8  ECHOPORT_MAX_CONNS=50000  ECHOPORT_BACKLOG=1024  ECHOPORT_BUFFER_SIZE=16384
#   ECHOPORT_IDLE_TIMEOUT=300s  ECHOPORT_SHUTDOWN_TIMEOUT=10s  ECHOPORT_STATS_INTERVAL=60s
#   ECHOPORT_LOG_FORMAT=json  ECHOPORT_LOG_LEVEL=debug   (logs go to stderr, i.e. `docker logs`)
#   ECHOPORT_CONFIG=/etc/echoport/echoport.toml         with `-v ./echoport.toml:/etc/echoport/echoport.toml:ro`
#   chat mode: ECHOPORT_PASSWORD, ECHOPORT_SERVER_NAME, ECHOPORT_MOTD (a mounted file), ECHOPORT_SENDQ_BYTES,
#              ECHOPORT_FLOOD_RATE, ECHOPORT_FLOOD_BURST, ECHOPORT_PING_INTERVAL, ECHOPORT_PING_TIMEOUT,
#              ECHOPORT_OPER=name:password[,name:password]
ENV ECHOPORT_LISTEN=0.0.0.0:7007

# `docker stop` sends SIGTERM: the server stops accepting, drains for up to --shutdown-timeout (10s by
# default, the same as docker stop's grace period; lower ECHOPORT_SHUTDOWN_TIMEOUT or raise `docker stop -t`
# so the drain finishes before SIGKILL) and exits 0.
STOPSIGNAL SIGTERM

# The binary's own probe: one echo round trip against the server in this container. No shell, no curl.
# It reads the same environment as the server: the target is the first ECHOPORT_LISTEN address (0.0.0.0
# probed as 127.0.0.1) and ECHOPORT_MODE=chat makes it a PING/PONG, so
#   docker run -p 6667:6667 -e ECHOPORT_MODE=chat -e ECHOPORT_LISTEN=0.0.0.0:6667 echoport
# is checked correctly with no override.
HEALTHCHECK --interval=10s --timeout=3s --start-period=5s --retries=3 \
    CMD ["/usr/local/bin/echoport", "check", "--timeout", "2s"]

ENTRYPOINT ["/usr/local/bin/echoport"]
CMD []
