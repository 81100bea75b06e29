# The opsloop binary in a slim Debian image.
FROM rust:1.95-bookworm AS build
# kafka-tls: TLS and SASL/SCRAM to Kafka (librdkafka with OpenSSL; this image has libssl-dev and
# pkg-config). `--build-arg FEATURES=` builds without it.
ARG FEATURES=kafka-tls
WORKDIR /src
COPY . .
RUN cargo build --release --locked -p opsloop-pipeline --bin opsloop --features "$FEATURES"

FROM debian:bookworm-slim
RUN apt-get update && apt-get install -y --no-install-recommends ca-certificates libssl3 \
    && rm -rf /var/lib/apt/lists/*
COPY --from=build /src/target/release/opsloop /usr/local/bin/opsloop
COPY sql /etc/opsloop/sql
ENTRYPOINT ["opsloop"]
