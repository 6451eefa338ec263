#!/usr/bin/env bash
# Creates what compose.yaml mounts, for evaluation: a CA (30 days), the gateway's serving
# certificate, a client certificate for you (CN = user name, O = group), gatehouse.kubeconfig that
# points kubectl at the gateway with it, and the collector's ingest token. Keeps existing files.
# Usage: deploy/compose/setup.sh [user-name] [group]     (needs openssl)
set -euo pipefail
cd "$(dirname "$0")"
NAME=${1:-${USER:-evaluator}}
GROUP=${2:-gatehouse:evaluators}
DAYS=30
mkdir -p tls secrets

key() { openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$1" 2>/dev/null; }
# sign <name> <subject> <extensions>
sign() {
  key "tls/$1.key"
  openssl req -new -key "tls/$1.key" -subj "$2" -out "tls/$1.csr"
  openssl x509 -req -in "tls/$1.csr" -CA tls/ca.crt -CAkey tls/ca.key -CAcreateserial \
    -days "$DAYS" -sha256 -extfile <(printf '%b' "$3") -out "tls/$1.crt" 2>/dev/null
  rm -f "tls/$1.csr"
}

if [ ! -f tls/ca.crt ]; then
  key tls/ca.key
  openssl req -x509 -new -key tls/ca.key -days "$DAYS" -sha256 -subj "/CN=gatehouse evaluation CA" \
    -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign" \
    -out tls/ca.crt
fi
[ -f tls/gateway.crt ] || sign gateway "/CN=gatehouse-gateway" \
  "basicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\nsubjectAltName=DNS:localhost,DNS:gateway,IP:127.0.0.1\n"
[ -f tls/client.crt ] || sign client "/O=$GROUP/CN=$NAME" \
  "basicConstraints=CA:FALSE\nextendedKeyUsage=clientAuth\n"
# The gateway runs as uid 65532 and reads these through a bind mount. Evaluation only.
chmod 0644 tls/gateway.key

b64() { base64 < "$1" | tr -d '\n'; }
cat > gatehouse.kubeconfig <<KUBECONFIG
apiVersion: v1
kind: Config
clusters:
- name: gatehouse
  cluster:
    server: https://127.0.0.1:8443
    certificate-authority-data: $(b64 tls/ca.crt)
users:
- name: $NAME
  user:
    client-certificate-data: $(b64 tls/client.crt)
    client-key-data: $(b64 tls/client.key)
contexts:
- name: gatehouse
  context: { cluster: gatehouse, user: $NAME }
current-context: gatehouse
KUBECONFIG
chmod 0600 gatehouse.kubeconfig

if [ ! -s secrets/ingest-token ]; then
  openssl rand -hex 32 > secrets/ingest-token
  chmod 0644 secrets/ingest-token   # read by the non-root collector and gateway
fi
echo "wrote $(pwd)/gatehouse.kubeconfig (user $NAME, group $GROUP), tls/ and secrets/"
