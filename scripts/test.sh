#!/usr/bin/env bash
# opsloop's one test command. On a fresh Debian machine with the Rust toolchain it installs what
# the suite needs (Debian packages, the tansu broker), then checks formatting and lints, runs
# every test against real services and validates docker-compose.yml.
#
# Environment:
#   OPSLOOP_TEST_BROKERS  run the broker tests against this Kafka instead of a tansu it starts
#   PROPTEST_CASES        cases per property test (decoder fuzzing); default 2000
#   CARGO_TARGET_DIR      shared build directory; default target/ in the checkout
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

step() { printf '\n==> %s\n' "$*"; }
started=$SECONDS

step "installing test services"
scripts/install-test-services.sh

step "reference values from numpy/scipy/statsmodels"
scripts/reference-values.sh

step "cargo fmt --check"
cargo fmt --all --check

step "cargo clippy -D warnings"
cargo clippy --workspace --all-targets --locked -- -D warnings

step "the Docker test profile compiles cleanly (clippy --features docker)"
cargo clippy -p opsloop-tests --features docker --tests --locked -- -D warnings

step "the Kafka TLS build compiles cleanly (clippy --features kafka-tls: librdkafka with OpenSSL)"
cargo clippy -p opsloop-pipeline --features kafka-tls --locked -- -D warnings

step "the Arroyo UDF plugins compile, one plugin per UDF (their own workspace and arrow)"
for udf in $(sed -n 's/^\(opsloop_[a-z0-9_]*\) = \[\]$/\1/p' udfs/arroyo/Cargo.toml); do
    echo "  $udf"
    cargo build --manifest-path udfs/arroyo/Cargo.toml --locked --features "$udf"
done

step "cargo nextest run --workspace"
PROPTEST_CASES=${PROPTEST_CASES:-2000} cargo nextest run --workspace --locked --no-fail-fast

step "docker-compose.yml validates"
scripts/validate-compose.sh

step "done in $((SECONDS - started)) s"
