# The ingest service's image: `docker build -t turia-trails/ingest .`
# Runs `trails ingest serve`, configured by environment (see the README), as an unprivileged user.
# Rust 1.95 (Cargo.toml needs 1.89 or newer) on Debian 13 "trixie", the current stable.
FROM rust:1.95-trixie AS build
WORKDIR /src
COPY . .
# librdkafka is built from source by rdkafka-sys (GNU make and a C compiler are in this image).
RUN cargo build --release --locked --bin trails

FROM debian:trixie-slim
RUN apt-get update \
    && apt-get install -y --no-install-recommends ca-certificates \
    && rm -rf /var/lib/apt/lists/* \
    && useradd --system --uid 10001 --no-create-home ingest
# RDS signs its certificates with its own CAs, which no system store carries: the global
# bundle lets the service verify PostgreSQL (PGSSLROOTCERT turns TLS on and verifies it).
ADD --chmod=0444 https://truststore.pki.rds.amazonaws.com/global/global-bundle.pem /etc/ssl/rds/global-bundle.pem
COPY --from=build /src/target/release/trails /usr/local/bin/trails
USER 10001
ENV INGEST_LISTEN_ADDR=0.0.0.0:8080 INGEST_ADMIN_ADDR=0.0.0.0:9090 \
    PGSSLROOTCERT=/etc/ssl/rds/global-bundle.pem
EXPOSE 8080 9090
ENTRYPOINT ["trails", "ingest", "serve"]
