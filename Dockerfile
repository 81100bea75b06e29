# The opsloop binary in a slim Debian image.
FROM rust:1.95-bookworm AS build
WORKDIR /src
COPY . .
RUN cargo build --release --locked -p opsloop-pipeline --bin opsloop

FROM debian:bookworm-slim
RUN apt-get update && apt-get install -y --no-install-recommends ca-certificates \
    && rm -rf /var/lib/apt/lists/*
COPY --from=build /src/target/release/opsloop /usr/local/bin/opsloop
COPY sql /etc/opsloop/sql
ENTRYPOINT ["opsloop"]
