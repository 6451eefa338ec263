#!/usr/bin/env bash
# Installs cargo-deny (license, ban, source and advisory checks against deny.toml) into a cached root,
# idempotently. scripts/test.sh calls this before `cargo deny check`.
# Usage: scripts/install-deny.sh   → prints the directory holding cargo-deny on stdout's last line.
set -euo pipefail
CACHE=${GATEHOUSE_TOOLS_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/gatehouse-tools}
CARGO_DENY_VERSION=0.20.2
ROOT="$CACHE/cargo-deny-$CARGO_DENY_VERSION"
log() { echo "install-deny: $*" >&2; }

if [ ! -x "$ROOT/bin/cargo-deny" ]; then
  log "building cargo-deny $CARGO_DENY_VERSION from crates.io into $ROOT"
  cargo install cargo-deny --version "$CARGO_DENY_VERSION" --locked --root "$ROOT" >&2
fi
mkdir -p "$CACHE/bin"
ln -sf "$ROOT/bin/cargo-deny" "$CACHE/bin/cargo-deny"
echo "$CACHE/bin"
