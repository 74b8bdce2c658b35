#!/usr/bin/env bash
# The local mesh: a fake OpenAI-compatible provider and shepherd-local running the
# filter in front of it, on loopback, until Ctrl-C. Started by `make run` after
# `make build`. Ports can be moved with the variables below.
set -euo pipefail
cd "$(dirname "$0")/.."

: "${SHEPHERD_LISTEN:=127.0.0.1:10000}"
: "${SHEPHERD_ADMIN:=127.0.0.1:15000}"
: "${PROVIDER_LISTEN:=127.0.0.1:9001}"
: "${SHEPHERD_WORKERS:=2}"

# A throwaway key: the filter injects it, the fake provider checks it.
RELAY_API_KEY="local-$(od -An -N8 -tx1 /dev/urandom | tr -d ' \n')"
export RELAY_API_KEY

# The filter encodes metric labels into names; these rules (the same the Istio
# manifests ship) turn them back into Prometheus labels.
stats_tags=()
while IFS= read -r tag; do
  [ -n "$tag" ] && stats_tags+=(--stats-tag "$tag")
done < e2e/local/stats-tags.txt

pids=()
cleanup() {
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
}
trap cleanup EXIT INT TERM

bin/fake-provider --listen "$PROVIDER_LISTEN" --name relay --api-key-env RELAY_API_KEY &
pids+=($!)

bin/shepherd-local \
  --wasm bin/shepherd.wasm \
  --plugin-config e2e/local/plugin-config.json \
  --plugin-name shepherd --vm-id shepherd --root-id shepherd \
  --workers "$SHEPHERD_WORKERS" \
  --listen "$SHEPHERD_LISTEN" --admin "$SHEPHERD_ADMIN" \
  --cluster "relay=$PROVIDER_LISTEN" --route relay.local=relay --default-cluster relay \
  --env "RELAY_API_KEY=$RELAY_API_KEY" \
  "${stats_tags[@]}" &
pids+=($!)

# Wait until the front end answers before telling people how to use it.
for _ in $(seq 1 100); do
  if curl -fsS "http://$SHEPHERD_ADMIN/ready" >/dev/null 2>&1; then break; fi
  sleep 0.1
done

cat <<MSG

shepherd local mesh is up.

  Chat completion (the filter rewrites host and path and injects the provider key):
    curl -s http://$SHEPHERD_LISTEN/v1/chat/completions -H 'content-type: application/json' \\
      -d '{"model":"gpt-4.1","messages":[{"role":"user","content":"hello"}]}'

  Streaming:
    curl -sN http://$SHEPHERD_LISTEN/v1/chat/completions -H 'content-type: application/json' \\
      -d '{"model":"gpt-4.1","stream":true,"messages":[{"role":"user","content":"hello"}]}'

  Metrics:  curl -s http://$SHEPHERD_ADMIN/stats/prometheus | grep shepherd
  Logs:     curl -s http://$SHEPHERD_ADMIN/logs

Ctrl-C stops everything.
MSG
wait -n "${pids[@]}"
