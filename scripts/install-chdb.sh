#!/usr/bin/env bash
# Installs the real ClickHouse engine for tests: PyPI `chdb-core` (in-process ClickHouse) in a
# venv under the tools cache, idempotently. Tests reach it through tests/support/chdb_http.py.
# Usage: scripts/install-chdb.sh   → prints the venv's python on stdout's last line.
set -euo pipefail
CACHE=${GATEHOUSE_TOOLS_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/gatehouse-tools}
VENV="$CACHE/chdb-venv"
CHDB_VERSION=26.9.0
log() { echo "install-chdb: $*" >&2; }

if [ "$(cat "$VENV/chdb.version" 2>/dev/null)" != "$CHDB_VERSION" ] || [ ! -x "$VENV/bin/python" ]; then
  log "installing chdb-core==$CHDB_VERSION into $VENV (about 180 MB, once)"
  rm -rf "$VENV"
  python3 -m venv "$VENV"
  "$VENV/bin/python" -m pip install --quiet --disable-pip-version-check "chdb-core==$CHDB_VERSION" >&2
  echo "$CHDB_VERSION" > "$VENV/chdb.version"
fi
"$VENV/bin/python" -c "import chdb" || { log "chdb does not import from $VENV"; exit 1; }
echo "$VENV/bin/python"
