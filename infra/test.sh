#!/usr/bin/env bash
# The whole test suite, as a newcomer and CI run it: formatting, lints, and every test.
# It installs what it needs (the Rust toolchain's own components) and leaves nothing running.
set -euo pipefail
cd "$(dirname "$0")/.."

rustup component add rustfmt clippy >/dev/null 2>&1 || true

echo "== cargo fmt --check"
cargo fmt --all --check

echo "== cargo clippy (all targets, all features, warnings are errors)"
cargo clippy --workspace --all-targets --all-features -- -D warnings

echo "== cargo test (all features: fault injection compiled in)"
cargo test --workspace --all-features
