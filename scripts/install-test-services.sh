#!/usr/bin/env bash
# Installs what opsloop's tests start by themselves: PostgreSQL 15 with the extensions the
# actuators use, and the tansu Kafka-protocol broker. Skips whatever is already installed.
# openssl makes the TLS tests' certificates; libssl-dev and pkg-config build the kafka-tls
# feature (librdkafka with OpenSSL) that the lint step checks.
set -euo pipefail

TANSU_VERSION=0.6.0
APT_PACKAGES=(
    postgresql-15 postgresql-contrib postgresql-15-hypopg postgresql-15-pg-qualstats
    prometheus-alertmanager build-essential python3 python3-venv
    openssl libssl-dev pkg-config
)

as_root() {
    if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi
}

missing=()
for package in "${APT_PACKAGES[@]}"; do
    dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q "install ok installed" \
        || missing+=("$package")
done
if [ ${#missing[@]} -gt 0 ]; then
    echo "apt: installing ${missing[*]}"
    as_root apt-get update -q
    as_root env DEBIAN_FRONTEND=noninteractive \
        apt-get install -y -q --no-install-recommends "${missing[@]}"
else
    echo "apt: all of ${APT_PACKAGES[*]} installed"
fi

if tansu --version 2>/dev/null | grep -q "$TANSU_VERSION" \
    || "${CARGO_HOME:-$HOME/.cargo}/bin/tansu" --version 2>/dev/null | grep -q "$TANSU_VERSION"; then
    echo "tansu $TANSU_VERSION installed"
else
    echo "cargo install tansu $TANSU_VERSION (about 10 minutes on 2 cores, once per machine)"
    cargo install tansu --locked --version "$TANSU_VERSION" --features dynostore,libsql
fi
