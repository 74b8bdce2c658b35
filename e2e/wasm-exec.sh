#!/bin/sh
# The go test -exec program for GOOS=wasip1 (make bench-wasm): runs a test
# binary under wazero, the runtime e2e/envoy uses, with the package directory
# mounted as the guest's root so testdata/ resolves.
set -e
wasm=$1
shift
exec "$(dirname "$0")/../bin/wazero" run -mount "$PWD":/ "$wasm" "$@"
