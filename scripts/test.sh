#!/usr/bin/env bash
# The whole test suite, from a fresh clone: installs the tools it needs (cached), then runs the
# CI gates: rustfmt, clippy (-D warnings), every test, and helm lint.
set -euo pipefail
cd "$(dirname "$0")/.."

GATEHOUSE_TOOLS_BIN=$(scripts/install-tools.sh | tail -n1)
export GATEHOUSE_TOOLS_BIN
export PATH="$GATEHOUSE_TOOLS_BIN:$PATH"
# The collector's tests run the real ClickHouse engine (chdb-core) behind
# tests/support/chdb_http.py, or a real server when CLICKHOUSE_URL is set.
GATEHOUSE_CHDB_PYTHON=$(scripts/install-chdb.sh | tail -n1)
export GATEHOUSE_CHDB_PYTHON
# The eBPF toolchain (nightly rust-src, bpf-linker against nightly's LLVM) for agent/build.rs.
EBPF_TOOLS_BIN=$(scripts/install-ebpf-toolchain.sh | tail -n1)
export PATH="$EBPF_TOOLS_BIN:$PATH"

echo "== cargo fmt --check"
cargo fmt --all -- --check
echo "== cargo deny (licenses, bans, sources)"
# Advisories are not checked here: the RustSec database is a git repository on GitHub, which CI
# cannot reach (see CONTRIBUTING.md). Duplicate-version warnings are informational.
scripts/install-deny.sh >/dev/null
cargo deny check --hide-inclusion-graph licenses bans sources
echo "== cargo clippy"
cargo clippy --workspace --all-targets --locked -- -D warnings
echo "== cargo build (the binaries the integration tests run)"
cargo build --workspace --bins --locked
echo "== dist: the release binaries the images copy; each one's --version/--help, eBPF object has BTF"
# The same path as the Dockerfile's build stage: fat LTO, one codegen unit, stripped, --locked.
# Cold on 2 cores this is the longest step (~15-20 min); CI's 90-minute budget holds it.
cargo xtask dist
echo "== Dockerfile and compose lint"
scripts/check-dist-files.sh
echo "== cargo test"
cargo test --workspace --locked --no-fail-fast
echo "== helm lint"
helm lint --strict charts/gatehouse
