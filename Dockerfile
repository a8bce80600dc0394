# The ingest service's image: `docker build -t turia-trails/ingest .`
# Runs `trails ingest serve`, configured by environment (see the README), as an unprivileged user.
FROM rust:1.85-bookworm AS build
WORKDIR /src
COPY . .
# librdkafka is built from source by rdkafka-sys (GNU make and a C compiler are in this image).
RUN cargo build --release --locked --bin trails

FROM debian:bookworm-slim
RUN apt-get update \
    && apt-get install -y --no-install-recommends ca-certificates \
    && rm -rf /var/lib/apt/lists/* \
    && useradd --system --uid 10001 --no-create-home ingest
COPY --from=build /src/target/release/trails /usr/local/bin/trails
USER 10001
ENV INGEST_LISTEN_ADDR=0.0.0.0:8080 INGEST_ADMIN_ADDR=0.0.0.0:9090
EXPOSE 8080 9090
ENTRYPOINT ["trails", "ingest", "serve"]
