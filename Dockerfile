# Build stage: a release binary.
FROM rust:1-bookworm AS build
WORKDIR /src
COPY . .
RUN cargo build --release --locked --bin devicepass

# Final stage: the binary on a slim Debian, running as an unprivileged user.
FROM debian:bookworm-slim
RUN useradd --system --uid 10001 --home-dir /var/lib/devicepass --create-home devicepass
COPY --from=build /src/target/release/devicepass /usr/local/bin/devicepass
USER devicepass
WORKDIR /var/lib/devicepass
ENV DP_LISTEN=0.0.0.0:8080 \
    DP_DATABASE_URL=sqlite:////var/lib/devicepass/devicepass.db \
    DP_LOG_FORMAT=json
EXPOSE 8080
ENTRYPOINT ["/usr/local/bin/devicepass"]
CMD ["serve"]
