#!/usr/bin/env bash
# Installs what agent/build.rs needs to build agent-ebpf, idempotently and cached:
# rust-src for the installed nightly, and bpf-linker 0.13.0 linked against that nightly's own LLVM
# (the crate's default features target a newer LLVM, and the system llvm-config is too old).
# The cache is keyed on the nightly's LLVM file name, so a changed nightly rebuilds the linker.
# Usage: scripts/install-ebpf-toolchain.sh  → prints the dir holding bpf-linker on stdout's last line.
set -euo pipefail
CACHE=${GATEHOUSE_TOOLS_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/gatehouse-tools}
log() { echo "install-ebpf-toolchain: $*" >&2; }

rustup toolchain list | grep -q '^nightly' || {
  log "the nightly toolchain is missing; install it with: rustup toolchain install nightly --profile minimal"
  exit 1
}
if ! rustup component list --toolchain nightly --installed | grep -q '^rust-src'; then
  log "adding rust-src to the nightly toolchain"
  rustup component add rust-src --toolchain nightly >&2
fi

SYS=$(rustc +nightly --print sysroot)
LLVM=$(ls "$SYS"/lib/libLLVM.so.*-nightly 2>/dev/null | head -n1 || true)
[ -n "$LLVM" ] || { log "no libLLVM.so.*-nightly in $SYS/lib; cannot link bpf-linker"; exit 1; }
KEY=$(basename "$LLVM")
ROOT="$CACHE/bpf-linker-0.13.0-$KEY"
if [ ! -x "$ROOT/bin/bpf-linker" ]; then
  log "building bpf-linker 0.13.0 against $KEY (about 2 minutes)"
  P="$ROOT/llvm-rustc"
  mkdir -p "$P/lib"
  ln -sf "$LLVM" "$P/lib/libLLVM.so"   # for -lLLVM
  ln -sf "$LLVM" "$P/lib/"             # the SONAME, found through RUNPATH at run time
  LLVM_PREFIX=$P cargo install bpf-linker --locked --version 0.13.0 \
    --no-default-features --features llvm-22 --root "$ROOT" >&2
fi
"$ROOT/bin/bpf-linker" --version >&2
echo "$ROOT/bin"
