# ConCoord-rs container images: the replica (`concoord`) and the Kubernetes operator
# (`concoord-operator`). Both are one statically linked binary on an empty (scratch)
# base with the CA bundle, run as the unprivileged user 65532, and need no shell.
#
# Two ways to build:
#
#   1. With access to a registry (Docker Hub): everything is compiled inside the build.
#        docker build --target replica  -t concoord/replica:0.1.0  .
#        docker build --target operator -t concoord/operator:0.1.0 .
#      This needs BuildKit (the default builder since Docker 23; DOCKER_BUILDKIT=1 or
#      `docker buildx build` before), which builds only the stages a target uses: the
#      classic builder would also run the prebuilt stages below and miss their files.
#
#   2. Without a registry (air-gapped hosts, CI here): compile on the host, package the
#      binary. e2e/docker/build-images.sh does both steps and tags :<version> and :dev.
#      It builds `--target replica-prebuilt` / `operator-prebuilt` from a small context
#      holding concoord, concoord-operator, ca-certificates.crt, passwd, group and data/.
#
# The prebuilt targets come first and pull nothing: the classic builder (no BuildKit)
# runs every stage up to the requested target, so nothing that needs a pull may precede
# them.

ARG VERSION=0.1.0
ARG REVISION=unknown
ARG CREATED=unknown
# Where the source lives (the build script passes the git remote, when there is one).
ARG SOURCE=

# ---------------------------------------------------------------- prebuilt (no pulls)

FROM scratch AS replica-prebuilt
ARG VERSION
ARG REVISION
ARG CREATED
ARG SOURCE
LABEL org.opencontainers.image.title="concoord-replica" \
      org.opencontainers.image.description="ConCoord-rs replica: Paxos-replicated live objects, locks, semaphores, barriers, DNS" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${REVISION}" \
      org.opencontainers.image.created="${CREATED}" \
      org.opencontainers.image.licenses="BSD-3-Clause" \
      org.opencontainers.image.source="${SOURCE}"
COPY ca-certificates.crt /etc/ssl/certs/ca-certificates.crt
COPY passwd group /etc/
COPY --chown=65532:65532 data /data
COPY concoord /concoord
ENV SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt
WORKDIR /data
USER 65532:65532
# Clients and peers; DNS (-n, with --dns-port 5353).
EXPOSE 14000/tcp 5353/udp 5353/tcp
ENTRYPOINT ["/concoord"]
CMD ["--help"]

FROM scratch AS operator-prebuilt
ARG VERSION
ARG REVISION
ARG CREATED
ARG SOURCE
LABEL org.opencontainers.image.title="concoord-operator" \
      org.opencontainers.image.description="Kubernetes operator for ConCoord-rs clusters (ConCoordCluster, concoord.io/v1alpha1)" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${REVISION}" \
      org.opencontainers.image.created="${CREATED}" \
      org.opencontainers.image.licenses="BSD-3-Clause" \
      org.opencontainers.image.source="${SOURCE}"
COPY ca-certificates.crt /etc/ssl/certs/ca-certificates.crt
COPY passwd group /etc/
COPY concoord-operator /concoord-operator
ENV SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt
USER 65532:65532
# Metrics (/metrics) and health (/healthz, /readyz).
EXPOSE 8080/tcp
ENTRYPOINT ["/concoord-operator"]
CMD ["run"]

# ---------------------------------------------------------- multi-stage (needs pulls)

# The official Rust image (Debian bookworm, glibc). musl is not used: the binary is
# linked statically against glibc with +crt-static. The Rust target follows the build
# machine (`uname -m`: x86_64 or aarch64), so arm64 builders work too.
FROM rust:1.95-bookworm AS build-replica
WORKDIR /src
COPY . .
RUN case "$(uname -m)" in \
      x86_64) target=x86_64-unknown-linux-gnu ;; \
      aarch64 | arm64) target=aarch64-unknown-linux-gnu ;; \
      *) echo "no Rust target known for machine $(uname -m)" >&2; exit 1 ;; \
    esac \
 && RUSTFLAGS="-C target-feature=+crt-static" \
    cargo build --locked --profile dist --target "$target" \
        -p concoord --bin concoord \
 && mkdir -p /out/data \
 && cp "target/$target/dist/concoord" /out/ \
 && cp /etc/ssl/certs/ca-certificates.crt /out/ \
 && echo 'nonroot:x:65532:65532:nonroot:/data:/sbin/nologin' > /out/passwd \
 && echo 'nonroot:x:65532:' > /out/group

FROM scratch AS replica
ARG VERSION
ARG REVISION
ARG CREATED
ARG SOURCE
LABEL org.opencontainers.image.title="concoord-replica" \
      org.opencontainers.image.description="ConCoord-rs replica: Paxos-replicated live objects, locks, semaphores, barriers, DNS" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${REVISION}" \
      org.opencontainers.image.created="${CREATED}" \
      org.opencontainers.image.licenses="BSD-3-Clause" \
      org.opencontainers.image.source="${SOURCE}"
COPY --from=build-replica /out/ca-certificates.crt /etc/ssl/certs/ca-certificates.crt
COPY --from=build-replica /out/passwd /out/group /etc/
COPY --from=build-replica --chown=65532:65532 /out/data /data
COPY --from=build-replica /out/concoord /concoord
ENV SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt
WORKDIR /data
USER 65532:65532
EXPOSE 14000/tcp 5353/udp 5353/tcp
ENTRYPOINT ["/concoord"]
CMD ["--help"]

FROM rust:1.95-bookworm AS build-operator
WORKDIR /src
COPY . .
RUN case "$(uname -m)" in \
      x86_64) target=x86_64-unknown-linux-gnu ;; \
      aarch64 | arm64) target=aarch64-unknown-linux-gnu ;; \
      *) echo "no Rust target known for machine $(uname -m)" >&2; exit 1 ;; \
    esac \
 && RUSTFLAGS="-C target-feature=+crt-static" \
    cargo build --locked --profile dist --target "$target" \
        -p concoord-operator --bin concoord-operator \
 && mkdir -p /out \
 && cp "target/$target/dist/concoord-operator" /out/ \
 && cp /etc/ssl/certs/ca-certificates.crt /out/ \
 && echo 'nonroot:x:65532:65532:nonroot:/:/sbin/nologin' > /out/passwd \
 && echo 'nonroot:x:65532:' > /out/group

FROM scratch AS operator
ARG VERSION
ARG REVISION
ARG CREATED
ARG SOURCE
LABEL org.opencontainers.image.title="concoord-operator" \
      org.opencontainers.image.description="Kubernetes operator for ConCoord-rs clusters (ConCoordCluster, concoord.io/v1alpha1)" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${REVISION}" \
      org.opencontainers.image.created="${CREATED}" \
      org.opencontainers.image.licenses="BSD-3-Clause" \
      org.opencontainers.image.source="${SOURCE}"
COPY --from=build-operator /out/ca-certificates.crt /etc/ssl/certs/ca-certificates.crt
COPY --from=build-operator /out/passwd /out/group /etc/
COPY --from=build-operator /out/concoord-operator /concoord-operator
ENV SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt
USER 65532:65532
EXPOSE 8080/tcp
ENTRYPOINT ["/concoord-operator"]
CMD ["run"]
