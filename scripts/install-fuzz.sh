#!/usr/bin/env bash
# Installs cargo-fuzz (libFuzzer driver for the targets in fuzz/) into a cached root, idempotently.
# Fuzzing is a developer task (see CONTRIBUTING.md), not part of CI, so scripts/test.sh does not call this.
# The targets build with the installed nightly toolchain (`cargo +nightly fuzz …`): sanitizer flags need it.
# Usage: scripts/install-fuzz.sh   → prints the directory holding cargo-fuzz on stdout's last line.
set -euo pipefail
CACHE=${GATEHOUSE_TOOLS_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/gatehouse-tools}
CARGO_FUZZ_VERSION=0.13.2
ROOT="$CACHE/cargo-fuzz-$CARGO_FUZZ_VERSION"
log() { echo "install-fuzz: $*" >&2; }

if [ ! -x "$ROOT/bin/cargo-fuzz" ]; then
  log "building cargo-fuzz $CARGO_FUZZ_VERSION from crates.io into $ROOT"
  cargo install cargo-fuzz --version "$CARGO_FUZZ_VERSION" --locked --root "$ROOT" >&2
fi
rustup toolchain list | grep -q '^nightly' || { log "the nightly toolchain is missing: rustup toolchain install nightly"; exit 1; }
mkdir -p "$CACHE/bin"
ln -sf "$ROOT/bin/cargo-fuzz" "$CACHE/bin/cargo-fuzz"
echo "$CACHE/bin"
