#!/usr/bin/env bash
# The demo, from a fresh clone: installs kubectl v1.35 (cached), builds, and runs real kubectl as
# an AI agent through the gateway to the test API server, then prints the session transcript.
# As root it also installs the eBPF toolchain (as scripts/test.sh does) so the bypass step runs
# the real node agent; without root that step says it is skipped and why.
set -euo pipefail
cd "$(dirname "$0")/.."
GATEHOUSE_TOOLS_BIN=$(scripts/install-tools.sh | tail -n1)
export GATEHOUSE_TOOLS_BIN
# The ClickHouse engine (chdb) the collector stores into.
GATEHOUSE_CHDB_PYTHON=$(scripts/install-chdb.sh | tail -n1)
export GATEHOUSE_CHDB_PYTHON
if [ "$(id -u)" = 0 ] && ! command -v bpf-linker >/dev/null; then
  # bpf-linker for agent/build.rs; if this fails the demo says why and skips the bypass alert.
  # (PATH is left alone when it already has one: agent/build.rs reruns when PATH changes.)
  if EBPF_TOOLS_BIN=$(scripts/install-ebpf-toolchain.sh | tail -n1); then
    export PATH="$EBPF_TOOLS_BIN:$PATH"
  fi
fi
exec cargo run --quiet --package xtask -- demo "$@"
