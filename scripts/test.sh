#!/usr/bin/env bash
# The whole test suite, from a fresh clone: installs the tools it needs (cached), then runs the
# CI gates: rustfmt, clippy (-D warnings), every test, and helm lint.
set -euo pipefail
cd "$(dirname "$0")/.."

GATEHOUSE_TOOLS_BIN=$(scripts/install-tools.sh | tail -n1)
export GATEHOUSE_TOOLS_BIN
export PATH="$GATEHOUSE_TOOLS_BIN:$PATH"

echo "== cargo fmt --check"
cargo fmt --all -- --check
echo "== cargo clippy"
cargo clippy --workspace --all-targets --locked -- -D warnings
echo "== cargo test"
cargo test --workspace --locked --no-fail-fast
echo "== helm lint"
helm lint --strict charts/gatehouse
