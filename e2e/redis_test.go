package e2e_test

import (
	"context"
	"net"
	"os"
	"os/exec"
	"strconv"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/require"
)

// startRedis runs a throwaway redis-server on a free loopback port, without
// persistence, for the test, and returns its address. Like the sidecar's
// tests, it fails when redis-server is missing unless SHEPHERD_SKIP_REDIS=1.
func startRedis(t *testing.T) string {
	t.Helper()
	path, err := exec.LookPath("redis-server")
	if err != nil {
		if os.Getenv("SHEPHERD_SKIP_REDIS") == "1" {
			t.Skip("redis-server not found and SHEPHERD_SKIP_REDIS=1: skipping a Redis test")
		}
		t.Fatal("redis-server not found on PATH: install it (Debian/Ubuntu: apt-get install redis-server), or set SHEPHERD_SKIP_REDIS=1 to skip Redis tests")
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	port := l.Addr().(*net.TCPAddr).Port
	require.NoError(t, l.Close())
	cmd := exec.Command(path, "--port", strconv.Itoa(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no")
	require.NoError(t, cmd.Start())
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
	})
	addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
	c := redis.NewClient(&redis.Options{Addr: addr})
	defer c.Close()
	require.Eventually(t, func() bool { return c.Ping(context.Background()).Err() == nil }, 10*time.Second, 20*time.Millisecond,
		"redis-server on %s", addr)
	return addr
}
