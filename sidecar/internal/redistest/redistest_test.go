package redistest_test

import (
	"fmt"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/shepherd-mesh/shepherd/sidecar/internal/redistest"
)

func TestMain(m *testing.M) { redistest.Main(m) }

func TestStartSharesOneServerAndStopKillsIt(t *testing.T) {
	addr := redistest.Start(t)
	require.True(t, redistest.Ping(addr))
	require.Equal(t, addr, redistest.Start(t), "one server per test binary")
	redistest.Stop()
	require.False(t, redistest.Ping(addr))
	again := redistest.Start(t)
	require.True(t, redistest.Ping(again))
}

// recorder is a testing.TB whose Skipf and Fatalf record the message and
// stop the calling function, as the real ones do.
type recorder struct {
	testing.TB
	skipped, failed string
}

type stopped struct{}

func (r *recorder) Helper() {}
func (r *recorder) Skipf(format string, args ...any) {
	r.skipped = fmt.Sprintf(format, args...)
	panic(stopped{})
}
func (r *recorder) Fatalf(format string, args ...any) {
	r.failed = fmt.Sprintf(format, args...)
	panic(stopped{})
}

func startWith(tb testing.TB) {
	defer func() {
		if v := recover(); v != nil {
			if _, ok := v.(stopped); !ok {
				panic(v)
			}
		}
	}()
	redistest.Start(tb)
}

func TestMissingRedisServer(t *testing.T) {
	t.Setenv("PATH", t.TempDir())

	t.Setenv(redistest.SkipEnv, "")
	r := &recorder{TB: t}
	startWith(r)
	require.Contains(t, r.failed, "redis-server not found on PATH: install it")
	require.Empty(t, r.skipped)

	t.Setenv(redistest.SkipEnv, "1")
	r = &recorder{TB: t}
	startWith(r)
	require.Contains(t, r.skipped, "redis-server not found and SHEPHERD_SKIP_REDIS=1")
	require.Empty(t, r.failed)
}
