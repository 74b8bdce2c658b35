// Package policyv1 holds the generated Go code for the shepherd.policy.v1 API
// (policy.proto): the policy the filter polls from the sidecar, the outcomes it
// reports, and the canary rollout commands.
//
// Regenerate with `go generate ./sidecar/api/policy/v1` (needs protoc).
package policyv1

//go:generate ./generate.sh
