# syntax=docker/dockerfile:1
# The taxistream operator. Build from the repository root:
#   docker build -f images/operator.Dockerfile -t ghcr.io/taxistream/taxistream-operator:0.1.0 .

# Same Debian release as the runtime image, so glibc and libssl match.
FROM docker.io/library/rust:1.95-bookworm AS build
WORKDIR /src
# The whole workspace: Cargo resolves every member even when building one.
COPY Cargo.toml Cargo.lock ./
COPY crds crds
COPY operator operator
COPY workers workers
# The caches keep crates.io downloads and compiled dependencies between builds;
# the binary is copied out because the target cache is not part of the image.
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked -p taxistream-operator --bin taxistream-operator \
    && mkdir -p /out/lib \
    && cp target/release/taxistream-operator /out/ \
    && cp -L "/lib/$(gcc -dumpmachine)/libz.so.1" /out/lib/

# Non-root (uid 65532), no shell, no package manager; glibc, libgcc, libssl and CA roots included.
FROM gcr.io/distroless/cc-debian12:nonroot
LABEL org.opencontainers.image.title="taxistream-operator" \
      org.opencontainers.image.description="Kubernetes operator for taxistream pipelines" \
      org.opencontainers.image.source="https://github.com/taxistream/taxistream" \
      org.opencontainers.image.licenses="Apache-2.0"
# librdkafka links zlib, which the cc image does not carry.
COPY --from=build /out/lib/ /usr/lib/
COPY --from=build /out/taxistream-operator /usr/local/bin/taxistream-operator
USER 65532:65532
EXPOSE 8080
ENTRYPOINT ["/usr/local/bin/taxistream-operator"]
