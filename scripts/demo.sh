#!/usr/bin/env bash
# The demo, from a fresh clone: installs kubectl v1.35 (cached), builds, and runs real kubectl as
# an AI agent through the gateway to the test API server, then prints the session transcript.
set -euo pipefail
cd "$(dirname "$0")/.."
GATEHOUSE_TOOLS_BIN=$(scripts/install-tools.sh | tail -n1)
export GATEHOUSE_TOOLS_BIN
exec cargo run --quiet --package xtask -- demo
