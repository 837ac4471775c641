#!/usr/bin/env bash
# The whole test suite: set-up, formatting, lints, build, every test.
# The network-namespace tests need root; as another user they skip loudly,
# and with CI=true a skip is a failure.
set -euo pipefail
cd "$(dirname "$0")/.."

bash scripts/setup.sh

echo "== cargo fmt --check"
cargo fmt --all -- --check

echo "== cargo clippy"
cargo clippy --workspace --all-targets -- -D warnings

echo "== cargo build (the binaries the end-to-end tests run)"
cargo build --workspace --bins

echo "== cargo test"
cargo test --workspace

echo "== fuzzing (every target for 10 s from its seed corpus; fails on a crash)"
bash scripts/fuzz.sh 10
