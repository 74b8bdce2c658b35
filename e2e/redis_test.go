package e2e_test

import (
	"testing"

	"github.com/shepherd-mesh/shepherd/internal/redistest"
)

// startRedis runs a throwaway redis-server for the test, as the sidecar's
// own tests do (redistest: it fails when redis-server is missing unless
// SHEPHERD_SKIP_REDIS=1), and returns its address.
func startRedis(t *testing.T) string {
	t.Helper()
	return redistest.StartWith(t)
}
