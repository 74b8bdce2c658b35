package policyv1_test

import (
	"testing"

	"github.com/stretchr/testify/require"
	"google.golang.org/protobuf/reflect/protoreflect"

	policyv1 "github.com/shepherd-mesh/shepherd/sidecar/api/policy/v1"
)

// TestMessagesStayFlat guards what the filter's hand-written protowire codec
// relies on: no oneofs (proto3 optional included), no maps, no well-known or
// foreign message types, and message fields only to this file's messages.
func TestMessagesStayFlat(t *testing.T) {
	fd := policyv1.File_policy_proto
	msgs := fd.Messages()
	require.Positive(t, msgs.Len())
	for i := 0; i < msgs.Len(); i++ {
		m := msgs.Get(i)
		require.Zero(t, m.Oneofs().Len(), "%s has a oneof", m.FullName())
		require.Zero(t, m.Messages().Len(), "%s has nested messages", m.FullName())
		fields := m.Fields()
		for j := 0; j < fields.Len(); j++ {
			f := fields.Get(j)
			require.False(t, f.IsMap(), "%s is a map", f.FullName())
			require.False(t, f.HasPresence() && f.Kind() != protoreflect.MessageKind, "%s has explicit presence", f.FullName())
			if f.Kind() == protoreflect.MessageKind {
				require.Equal(t, fd.Path(), f.Message().ParentFile().Path(), "%s uses a foreign message", f.FullName())
			}
		}
	}
}

// TestFieldNumbersAreStable pins the wire numbers the filter decodes.
func TestFieldNumbersAreStable(t *testing.T) {
	want := map[protoreflect.FullName]protoreflect.FieldNumber{
		"shepherd.policy.v1.GetPolicyRequest.known_version":        1,
		"shepherd.policy.v1.GetPolicyResponse.not_modified":        1,
		"shepherd.policy.v1.GetPolicyResponse.policy":              2,
		"shepherd.policy.v1.GetPolicyResponse.version":             3,
		"shepherd.policy.v1.Policy.version":                        1,
		"shepherd.policy.v1.Policy.weights":                        3,
		"shepherd.policy.v1.Policy.health":                         4,
		"shepherd.policy.v1.Policy.budgets":                        5,
		"shepherd.policy.v1.Policy.credentials":                    6,
		"shepherd.policy.v1.RouteWeight.weight_bp":                 3,
		"shepherd.policy.v1.ProviderHealth.cooldown_until_unix_ms": 2,
		"shepherd.policy.v1.Budget.exhausted":                      6,
		"shepherd.policy.v1.Credential.value":                      3,
		"shepherd.policy.v1.Outcome.status_code":                   5,
		"shepherd.policy.v1.Outcome.cost_micro_usd":                9,
		"shepherd.policy.v1.Outcome.ratelimit_remaining":           11,
		"shepherd.policy.v1.Outcome.retry_after_ms":                12,
		"shepherd.policy.v1.ReportOutcomesRequest.outcomes":        1,
	}
	fd := policyv1.File_policy_proto
	for name, num := range want {
		m := fd.Messages().ByName(name.Parent().Name())
		require.NotNil(t, m, name)
		f := m.Fields().ByName(name.Name())
		require.NotNil(t, f, name)
		require.Equal(t, num, f.Number(), name)
	}
}
