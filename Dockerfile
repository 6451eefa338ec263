# syntax=docker/dockerfile:1.7
# The gatehouse images, one target per deployable. A single build stage runs `cargo xtask dist`
# (the same path CI uses); each runtime stage copies its binary from /dist:
#
#   docker build --target gateway   -t ghcr.io/gatehouse-dev/gateway:0.1.0   .
#   docker build --target collector -t ghcr.io/gatehouse-dev/collector:0.1.0 .
#   docker build --target agent     -t ghcr.io/gatehouse-dev/agent:0.1.0     .
#   docker build --target cli       -t ghcr.io/gatehouse-dev/gatehouse:0.1.0 .
#
# Build args: VERSION (the workspace version = the chart's appVersion; xtask/tests/dist_files.rs
# checks the default), GIT_REV (`git rev-parse --short=12 HEAD`: the build context has no .git) and
# SOURCE_DATE_EPOCH (`git log -1 --format=%ct`: the build date `--version` prints).
# Runtime images are distroless (glibc; the agent's aya and the TLS stack build for the gnu
# target): no shell, no package manager.

FROM docker.io/library/rust:1.95.0-bookworm AS build
SHELL ["/bin/bash", "-o", "pipefail", "-c"]
# agent/build.rs builds the eBPF object with nightly's rust-src and bpf-linker (pinned, built
# against nightly's own LLVM by scripts/install-ebpf-toolchain.sh).
RUN rustup toolchain install 1.95.0 --profile minimal --component rustfmt,clippy \
 && rustup toolchain install nightly --profile minimal --component rust-src
WORKDIR /src
COPY . .
ARG GIT_REV=unknown
ARG SOURCE_DATE_EPOCH
ENV GATEHOUSE_GIT_REV=${GIT_REV}
# The caches keep crates, target/ and bpf-linker between builds; /dist is outside them.
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    --mount=type=cache,target=/root/.cache/gatehouse-tools \
    EBPF_BIN="$(scripts/install-ebpf-toolchain.sh | tail -n1)" \
 && PATH="$EBPF_BIN:$PATH" cargo xtask dist --out /dist \
 && mkdir -p /state/gateway/journal /state/collector

# Static busybox, used only as the HEALTHCHECK's HTTP client (`wget` applet): distroless has none.
FROM docker.io/library/busybox:1.37.0-musl AS probe

# ---------------------------------------------------------------------------------------------
FROM gcr.io/distroless/cc-debian12:nonroot AS collector
ARG VERSION=0.1.0
ARG GIT_REV=unknown
LABEL org.opencontainers.image.title="gatehouse-collector" \
      org.opencontainers.image.description="Stores gatehouse transcripts and alerts in ClickHouse; answers queries." \
      org.opencontainers.image.source="https://github.com/gatehouse-dev/gatehouse" \
      org.opencontainers.image.url="https://github.com/gatehouse-dev/gatehouse" \
      org.opencontainers.image.licenses="Apache-2.0" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${GIT_REV}"
COPY --from=build /dist/collector /usr/local/bin/collector
COPY --from=probe /bin/busybox /usr/local/bin/wget
# The dead-letter file's directory, owned by the runtime user (a fresh volume copies it).
COPY --from=build --chown=65532:65532 /state/collector /var/lib/gatehouse/collector
USER 65532:65532
# 7443: gRPC Ingest and Query; 9091: /healthz and /metrics.
EXPOSE 7443 9091
HEALTHCHECK --interval=10s --timeout=3s --start-period=10s --retries=3 \
  CMD ["/usr/local/bin/wget", "-q", "-O", "/dev/null", "http://127.0.0.1:9091/healthz"]
ENTRYPOINT ["/usr/local/bin/collector"]
CMD ["serve"]

# ---------------------------------------------------------------------------------------------
# The node agent. It carries the eBPF object inside its binary (with BTF: xtask dist checks) and
# runs as root with exactly these capabilities, not `privileged` (the Helm chart's DaemonSet
# grants the same set, with the reasons):
#   BPF           load the programs, create and pin the maps
#   NET_ADMIN     attach the cgroup connect4/connect6 and sock_ops programs
#   PERFMON       verifier checks several helpers and pointer comparisons against it
#   SYS_RESOURCE  raise RLIMIT_MEMLOCK on kernels before 5.11
#   SYS_PTRACE    read /proc/<pid>/exe of other users' processes (with the host PID namespace)
#   SYS_ADMIN     only to mount bpffs/tracefs where the host has not, or on kernels before 5.8
# and the host's /sys/fs/bpf, /sys/fs/cgroup (read-only), /sys/kernel/tracing and /proc.
# Distroless publishes no version tags; `latest` is its root variant (pin by digest when releasing).
# hadolint ignore=DL3007
FROM gcr.io/distroless/cc-debian12:latest AS agent
ARG VERSION=0.1.0
ARG GIT_REV=unknown
LABEL org.opencontainers.image.title="gatehouse-agent" \
      org.opencontainers.image.description="gatehouse node agent: eBPF detection of API-server connections that bypass the gateway. Needs CAP_BPF, CAP_NET_ADMIN, CAP_PERFMON, CAP_SYS_RESOURCE, CAP_SYS_PTRACE (CAP_SYS_ADMIN before kernel 5.8)." \
      org.opencontainers.image.source="https://github.com/gatehouse-dev/gatehouse" \
      org.opencontainers.image.url="https://github.com/gatehouse-dev/gatehouse" \
      org.opencontainers.image.licenses="Apache-2.0" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${GIT_REV}"
COPY --from=build /dist/gatehouse-agent /usr/local/bin/gatehouse-agent
COPY --from=probe /bin/busybox /usr/local/bin/wget
# Root on purpose: see the capabilities above.
# hadolint ignore=DL3002
USER 0:0
EXPOSE 9465
HEALTHCHECK --interval=10s --timeout=3s --start-period=10s --retries=3 \
  CMD ["/usr/local/bin/wget", "-q", "-O", "/dev/null", "http://127.0.0.1:9465/healthz"]
ENTRYPOINT ["/usr/local/bin/gatehouse-agent"]

# ---------------------------------------------------------------------------------------------
# The `gatehouse` CLI alone: `docker run -v journal:/journal:ro … gatehouse sessions --journal /journal`.
FROM gcr.io/distroless/cc-debian12:nonroot AS cli
ARG VERSION=0.1.0
ARG GIT_REV=unknown
LABEL org.opencontainers.image.title="gatehouse" \
      org.opencontainers.image.description="The gatehouse CLI: list, show and export recorded sessions." \
      org.opencontainers.image.source="https://github.com/gatehouse-dev/gatehouse" \
      org.opencontainers.image.url="https://github.com/gatehouse-dev/gatehouse" \
      org.opencontainers.image.licenses="Apache-2.0" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${GIT_REV}"
COPY --from=build /dist/gatehouse /usr/local/bin/gatehouse
USER 65532:65532
ENTRYPOINT ["/usr/local/bin/gatehouse"]

# ---------------------------------------------------------------------------------------------
# The gateway (last: the default target). It also carries the CLI, so
# `docker compose exec gateway gatehouse sessions` reads the live journal.
FROM gcr.io/distroless/cc-debian12:nonroot AS gateway
ARG VERSION=0.1.0
ARG GIT_REV=unknown
LABEL org.opencontainers.image.title="gatehouse-gateway" \
      org.opencontainers.image.description="gatehouse: the recording gateway for the Kubernetes API." \
      org.opencontainers.image.source="https://github.com/gatehouse-dev/gatehouse" \
      org.opencontainers.image.url="https://github.com/gatehouse-dev/gatehouse" \
      org.opencontainers.image.licenses="Apache-2.0" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${GIT_REV}"
COPY --from=build /dist/gateway /usr/local/bin/gateway
COPY --from=build /dist/gatehouse /usr/local/bin/gatehouse
COPY --from=probe /bin/busybox /usr/local/bin/wget
# The journal's directory, owned by the runtime user (a fresh volume copies it).
COPY --from=build --chown=65532:65532 /state/gateway /var/lib/gatehouse
USER 65532:65532
# 8443: the Kubernetes API (TLS); 9090: /healthz, /readyz, /metrics.
EXPOSE 8443 9090
HEALTHCHECK --interval=10s --timeout=3s --start-period=10s --retries=3 \
  CMD ["/usr/local/bin/wget", "-q", "-O", "/dev/null", "http://127.0.0.1:9090/healthz"]
ENTRYPOINT ["/usr/local/bin/gateway"]
