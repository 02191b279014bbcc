# syntax=docker/dockerfile:1
# The devicepass image: `docker build -t devicepass .`
#
# Configuration comes only from the environment (DP_*) and mounted files
# (DP_DATABASE_URL_FILE, `--config FILE`); nothing is baked in but the
# defaults below.

# Build stage: the release binary. Cargo's registry and target directory
# are BuildKit caches, so a rebuild reuses compiled dependencies; the
# binary is copied out of the cache within the same step.
FROM rust:1-bookworm AS build
WORKDIR /src
COPY Cargo.toml Cargo.lock ./
COPY src src
COPY data data
COPY benches benches
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked --bin devicepass \
    && install -D target/release/devicepass /out/devicepass \
    && install -d -o 65532 -g 65532 /out/data

# Final stage: glibc, CA certificates and the binary; no shell, no
# package manager. Runs as the image's unprivileged user (uid 65532).
FROM gcr.io/distroless/cc-debian12:nonroot AS runtime
COPY --from=build /out/devicepass /usr/local/bin/devicepass
COPY --from=build --chown=65532:65532 /out/data /var/lib/devicepass
USER 65532:65532
WORKDIR /var/lib/devicepass
ENV DP_LISTEN=0.0.0.0:8080 \
    DP_DATABASE_URL=sqlite:////var/lib/devicepass/devicepass.db \
    DP_LOG_FORMAT=json
EXPOSE 8080
# The SQLite default keeps its data here; mount a volume to keep it.
VOLUME ["/var/lib/devicepass"]
# Exec form: the image has no shell. The check follows DP_LISTEN.
HEALTHCHECK --interval=30s --timeout=5s --start-period=10s --retries=3 \
    CMD ["/usr/local/bin/devicepass", "healthcheck"]
ENTRYPOINT ["/usr/local/bin/devicepass"]
CMD ["serve"]
