# syntax=docker/dockerfile:1
# The taxistream worker (ingest, relay, aggregate and sink stages). Build from the repository root:
#   docker build -f images/worker.Dockerfile -t ghcr.io/taxistream/taxistream-worker:0.1.0 .

# Same Debian release as the runtime image, so glibc and libssl match.
FROM docker.io/library/rust:1.95-bookworm AS build
WORKDIR /src
# The whole workspace: Cargo resolves every member even when building one.
COPY Cargo.toml Cargo.lock ./
COPY crds crds
COPY operator operator
COPY workers workers
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked -p taxistream-worker --bin taxistream-worker \
    && mkdir -p /out/lib \
    && cp target/release/taxistream-worker /out/ \
    && cp -L "/lib/$(gcc -dumpmachine)/libz.so.1" /out/lib/

# Non-root (uid 65532), no shell, no package manager; glibc, libgcc, libssl and CA roots included.
FROM gcr.io/distroless/cc-debian12:nonroot
LABEL org.opencontainers.image.title="taxistream-worker" \
      org.opencontainers.image.description="taxistream data plane: ingest, relay, aggregate and sink stages" \
      org.opencontainers.image.source="https://github.com/taxistream/taxistream" \
      org.opencontainers.image.licenses="Apache-2.0"
# librdkafka links zlib, which the cc image does not carry.
COPY --from=build /out/lib/ /usr/lib/
COPY --from=build /out/taxistream-worker /usr/local/bin/taxistream-worker
USER 65532:65532
EXPOSE 9090
ENTRYPOINT ["/usr/local/bin/taxistream-worker"]
