#!/bin/sh
# Regenerates policy.pb.go and policy_grpc.pb.go from policy.proto.
# Needs protoc (Debian: apt-get install -y protobuf-compiler); the Go plugins
# are run at pinned versions through `go run`.
set -eu
cd "$(dirname "$0")"
bin=$(mktemp -d)
trap 'rm -rf "$bin"' EXIT
GOBIN="$bin" go install google.golang.org/protobuf/cmd/protoc-gen-go@v1.36.12
GOBIN="$bin" go install google.golang.org/grpc/cmd/protoc-gen-go-grpc@v1.6.2
PATH="$bin:$PATH" protoc -I . \
	--go_out=. --go_opt=paths=source_relative \
	--go-grpc_out=. --go-grpc_opt=paths=source_relative \
	policy.proto
