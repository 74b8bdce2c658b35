#!/usr/bin/env bash
# The local mesh: two fake OpenAI-compatible providers (the relay throttles a share
# of its traffic), shepherd-sidecar (global limits, canary rollout, budgets) and
# shepherd-local running the filter in front of them, on loopback, until Ctrl-C.
# Started by `make run` after `make build`. Ports can be moved with the variables
# below.
set -euo pipefail
cd "$(dirname "$0")/.."

: "${SHEPHERD_LISTEN:=127.0.0.1:10000}"
: "${SHEPHERD_ADMIN:=127.0.0.1:15000}"
: "${RELAY_LISTEN:=127.0.0.1:9001}"
: "${BACKUP_LISTEN:=127.0.0.1:9002}"
: "${SIDECAR_GRPC:=127.0.0.1:8081}"
: "${SIDECAR_HTTP:=127.0.0.1:8082}"
: "${SHEPHERD_WORKERS:=2}"
: "${RELAY_THROTTLE_PERCENT:=25}"
: "${DEMO_REQUESTS:=40}"

# Throwaway keys: the filter injects them, the fake providers check them.
key() { echo "local-$(od -An -N8 -tx1 /dev/urandom | tr -d ' \n')"; }
RELAY_API_KEY=$(key)
BACKUP_API_KEY=$(key)
export RELAY_API_KEY BACKUP_API_KEY

# The sidecar's admin token (for shepherdctl's canary commands), the filter
# token (only the proxy holds it, in its environment; the sidecar serves the
# policy and takes outcome reports only with it) and its state live in a
# throwaway directory.
state=$(mktemp -d)
key > "$state/admin-token"
SHEPHERD_FILTER_TOKEN="filter-$(od -An -N16 -tx1 /dev/urandom | tr -d ' \n')"
echo "$SHEPHERD_FILTER_TOKEN" > "$state/filter-token"

pids=()
cleanup() {
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$state"
}
trap cleanup EXIT INT TERM

bin/fake-provider --listen "$RELAY_LISTEN" --name relay --api-key-env RELAY_API_KEY \
  --throttle-percent "$RELAY_THROTTLE_PERCENT" &
pids+=($!)
bin/fake-provider --listen "$BACKUP_LISTEN" --name backup --api-key-env BACKUP_API_KEY &
pids+=($!)

bin/shepherd-sidecar --grpc-listen "$SIDECAR_GRPC" --http-listen "$SIDECAR_HTTP" \
  --config e2e/local/sidecar.yaml --ratelimit-config e2e/local/ratelimit.yaml \
  --admin-token-file "$state/admin-token" --filter-token-file "$state/filter-token" \
  --state-file "$state/state.json" \
  --log-format text --log-level warn &
pids+=($!)

# The proxy: an Envoy bootstrap (listener, routes, clusters, the filter, the
# stats tags that turn the filter's encoded metric names back into labels),
# with the filter's configuration from plugin-config.json and the ports above.
# The provider keys and the filter token reach the filter from shepherd-local's
# environment (host_env_keys); only the proxy gets the filter token.
SHEPHERD_FILTER_TOKEN="$SHEPHERD_FILTER_TOKEN" bin/shepherd-local \
  --envoy-config e2e/local/envoy.yaml \
  --plugin-config e2e/local/plugin-config.json \
  --workers "$SHEPHERD_WORKERS" \
  --listen "$SHEPHERD_LISTEN" --admin "$SHEPHERD_ADMIN" \
  --cluster "relay=$RELAY_LISTEN" --cluster "backup=$BACKUP_LISTEN" --cluster "sidecar=$SIDECAR_GRPC" &
pids+=($!)

# Wait until the proxy and the sidecar answer before sending anything.
wait_ready() {
  for _ in $(seq 1 100); do
    if curl -fsS "$1" >/dev/null 2>&1; then return 0; fi
    sleep 0.1
  done
  echo "$2 did not become ready ($1)" >&2
  exit 1
}
wait_ready "http://$SHEPHERD_ADMIN/ready" shepherd-local
wait_ready "http://$SIDECAR_HTTP/readyz" shepherd-sidecar

echo
echo "Sending $DEMO_REQUESTS demo requests (the relay throttles ${RELAY_THROTTLE_PERCENT}% of its traffic):"
bin/shepherd-demo --url "http://$SHEPHERD_LISTEN" --admin "http://$SHEPHERD_ADMIN" --requests "$DEMO_REQUESTS"

cat <<MSG

shepherd local mesh is up.

  Chat completion (the filter rewrites host and path and injects the provider key;
  the provider's answer echoes what it received under "x_echo"):
    curl -s http://$SHEPHERD_LISTEN/v1/chat/completions -H 'content-type: application/json' \\
      -d '{"model":"gpt-4.1","messages":[{"role":"user","content":"hello"}]}'

  Streaming, an alias, a priority:
    curl -sN http://$SHEPHERD_LISTEN/v1/chat/completions -H 'content-type: application/json' \\
      -d '{"model":"fast","stream":true,"messages":[{"role":"user","content":"hello"}]}'
    curl -si http://$SHEPHERD_LISTEN/v1/chat/completions -H 'x-priority: high' \\
      -H 'content-type: application/json' -d '{"messages":[{"role":"user","content":"hello"}]}'

  The canary (the backup provider, 10% at first; the sidecar steps it up every
  30 s while it answers well), forced with a header, or moved by hand:
    curl -si http://$SHEPHERD_LISTEN/v1/chat/completions -H 'x-canary: true' \\
      -H 'content-type: application/json' -d '{"messages":[{"role":"user","content":"hello"}]}'
    SHEPHERDCTL_TOKEN=\$(cat $state/admin-token) bin/shepherdctl canary set chat 50 --addr $SIDECAR_GRPC
    bin/shepherdctl canary status --addr $SIDECAR_GRPC

  Global limits (the sidecar counts for every pod; 300 requests a minute per x-tenant);
  this asks as one more request would, and counts as one:
    bin/shepherdctl limits check --addr $SIDECAR_GRPC --domain shepherd --descriptor route=chat

  Metrics:  curl -s http://$SHEPHERD_ADMIN/stats/prometheus | grep -E '^(shepherd|gen_ai)_'
            curl -s http://$SIDECAR_HTTP/metrics | grep -E '^shepherd_sidecar_'
  Logs:     curl -s http://$SHEPHERD_ADMIN/logs

Ctrl-C stops everything.
MSG
wait -n "${pids[@]}"
