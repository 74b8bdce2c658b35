package main

import (
	"bytes"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/shepherd-mesh/shepherd/internal/redistest"
	"github.com/shepherd-mesh/shepherd/internal/testutil"
)

func freePort(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	addr := l.Addr().String()
	require.NoError(t, l.Close())
	return addr
}

// startReady runs the command with args, as main does, and waits until
// httpAddr answers /readyz; it returns run's exit code channel and its logs.
func startReady(t *testing.T, httpAddr string, args ...string) (<-chan int, *testutil.SyncBuffer) {
	t.Helper()
	logs := &testutil.SyncBuffer{}
	done := make(chan int, 1)
	go func() { done <- run(args, logs) }()
	require.Eventually(t, func() bool {
		resp, err := http.Get("http://" + httpAddr + "/readyz")
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK
	}, 10*time.Second, 20*time.Millisecond, logs.String())
	return done, logs
}

// stopWithSIGTERM sends the process SIGTERM and requires run to end with 0.
func stopWithSIGTERM(t *testing.T, done <-chan int, logs *testutil.SyncBuffer) {
	t.Helper()
	require.NoError(t, syscall.Kill(os.Getpid(), syscall.SIGTERM))
	select {
	case code := <-done:
		require.Equal(t, 0, code, logs.String())
	case <-time.After(30 * time.Second):
		t.Fatal("did not stop on SIGTERM")
	}
}

// TestRunsWithNoConfigAndStopsOnSIGTERM starts the command as main does,
// with addresses from the environment, and stops it with SIGTERM.
func TestRunsWithNoConfigAndStopsOnSIGTERM(t *testing.T) {
	httpAddr := freePort(t)
	t.Setenv("SHEPHERD_SIDECAR_GRPC_LISTEN", "127.0.0.1:0")
	t.Setenv("SHEPHERD_SIDECAR_HTTP_LISTEN", httpAddr)
	done, logs := startReady(t, httpAddr, "--log-format", "text")
	resp, err := http.Get("http://" + httpAddr + "/metrics")
	require.NoError(t, err)
	resp.Body.Close()
	require.Equal(t, http.StatusOK, resp.StatusCode)

	stopWithSIGTERM(t, done, logs)
	require.Contains(t, logs.String(), "sidecar serving")
	require.Contains(t, logs.String(), "sidecar stopped")
}

// TestSIGHUPReloads changes the config and sends SIGHUP: the new config is
// applied; then an invalid one is rejected and logged.
func TestSIGHUPReloads(t *testing.T) {
	dir := t.TempDir()
	cfg := filepath.Join(dir, "sidecar.yaml")
	write := func(s string) { require.NoError(t, os.WriteFile(cfg, []byte(s), 0o600)) }
	write("providers: [{name: a}]\n")
	tokens := filepath.Join(dir, "filter-token")
	require.NoError(t, os.WriteFile(tokens, []byte("sighup-f1lter-t0ken-0123\n"), 0o600))
	httpAddr := freePort(t)
	logs := &testutil.SyncBuffer{}
	done := make(chan int, 1)
	go func() {
		done <- run([]string{"--config", cfg, "--filter-token-file", tokens, "--reload-interval", "0", "--grpc-listen", "127.0.0.1:0",
			"--http-listen", httpAddr, "--log-format", "text"}, logs)
	}()
	require.Eventually(t, func() bool { return strings.Contains(logs.String(), "sidecar serving") }, 10*time.Second, 10*time.Millisecond)

	write("providers: [{name: a}, {name: b}]\n")
	require.NoError(t, syscall.Kill(os.Getpid(), syscall.SIGHUP))
	require.Eventually(t, func() bool { return strings.Contains(logs.String(), "msg=reloaded") }, 10*time.Second, 10*time.Millisecond)

	write("providers: [{name: a}, {name: a}]\n")
	require.NoError(t, syscall.Kill(os.Getpid(), syscall.SIGHUP))
	require.Eventually(t, func() bool {
		return strings.Contains(logs.String(), "reload failed; keeping the last good config")
	}, 10*time.Second, 10*time.Millisecond)
	require.Contains(t, logs.String(), `providers[1].name: duplicate provider`)

	require.NoError(t, syscall.Kill(os.Getpid(), syscall.SIGTERM))
	select {
	case code := <-done:
		require.Equal(t, 0, code)
	case <-time.After(30 * time.Second):
		t.Fatal("did not stop on SIGTERM")
	}
}

func TestStartErrors(t *testing.T) {
	redisAddr := redistest.StartWith(t, "--requirepass", "the-pw-1234")
	bad := filepath.Join(t.TempDir(), "bad.yaml")
	require.NoError(t, os.WriteFile(bad, []byte("providers: [{name: a}, {name: a}]\n"), 0o600))
	budgets := filepath.Join(t.TempDir(), "budgets.yaml")
	require.NoError(t, os.WriteFile(budgets, []byte("budgets: {routes: [{route: chat, monthly_usd: 100}]}\n"), 0o600))
	tests := []struct {
		name string
		args []string
		env  map[string]string
		code int
		want string
	}{
		{"unknown flag", []string{"--nope"}, nil, 2, "flag provided but not defined: -nope"},
		{"extra argument", []string{"serve"}, nil, 2, `unexpected argument "serve"`},
		{"bad env", nil, map[string]string{"SHEPHERD_SIDECAR_RELOAD_INTERVAL": "often"}, 2, "SHEPHERD_SIDECAR_RELOAD_INTERVAL: "},
		{"bad log level", []string{"--log-level", "loud"}, nil, 2, "--log-level"},
		{"bad failure mode", []string{"--ratelimit-failure-mode", "maybe"}, nil, 2, `--ratelimit-failure-mode: must be error, open or closed, got "maybe"`},
		{"bad config", []string{"--config", bad, "--grpc-listen", "127.0.0.1:0", "--http-listen", "127.0.0.1:0"}, nil, 1,
			`providers[1].name: duplicate provider \"a\"`},
		{"config from env", []string{"--grpc-listen", "127.0.0.1:0", "--http-listen", "127.0.0.1:0"},
			map[string]string{"SHEPHERD_SIDECAR_CONFIG": bad}, 1, `duplicate provider`},
		{"unknown redis type", []string{"--redis", "127.0.0.1:1", "--grpc-listen", "127.0.0.1:0", "--http-listen", "127.0.0.1:0"},
			map[string]string{"SHEPHERD_SIDECAR_REDIS_TYPE": "ring"}, 1, `--redis-type: unknown type \"ring\" (single, cluster or sentinel)`},
		{"wrong redis password from env", []string{"--redis", redisAddr, "--grpc-listen", "127.0.0.1:0", "--http-listen", "127.0.0.1:0"},
			map[string]string{"SHEPHERD_SIDECAR_REDIS_PASSWORD": "not-the-pw-9876"}, 1, `WRONGPASS`},
		{"config without a filter token", []string{"--config", budgets, "--grpc-listen", "127.0.0.1:0", "--http-listen", "127.0.0.1:0"}, nil, 1,
			`budgets.routes needs a filter token: set --filter-token-file (SHEPHERD_SIDECAR_FILTER_TOKEN_FILE)`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			for k, v := range tt.env {
				t.Setenv(k, v)
			}
			var out bytes.Buffer
			code := run(tt.args, &out)
			require.Equal(t, tt.code, code, out.String())
			require.Contains(t, out.String(), tt.want)
			require.NotContains(t, out.String(), "not-the-pw-9876")
		})
	}
}

func TestUsageNamesEnvironment(t *testing.T) {
	var out bytes.Buffer
	require.Equal(t, 0, run([]string{"--help"}, &out))
	for _, name := range []string{"GRPC_LISTEN", "HTTP_LISTEN", "CONFIG", "RATELIMIT_CONFIG", "REDIS", "ADMIN_TOKEN_FILE", "FILTER_TOKEN_FILE", "RATELIMIT_REQUIRE_FILTER_TOKEN", "STATE_FILE",
		"REDIS_TYPE", "REDIS_SENTINEL_MASTER", "REDIS_USERNAME", "REDIS_PASSWORD_FILE", "REDIS_TLS", "REDIS_TLS_CA_FILE",
		"REDIS_TLS_CERT_FILE", "REDIS_TLS_KEY_FILE", "REDIS_TLS_SERVER_NAME", "REDIS_PASSWORD"} {
		require.True(t, strings.Contains(out.String(), "SHEPHERD_SIDECAR_"+name), name)
	}
}

// TestRedisPasswordFromEnvironment starts the command on a Redis with a
// password given as SHEPHERD_SIDECAR_REDIS_PASSWORD (a Secret's
// secretKeyRef): it becomes ready and never logs the password.
func TestRedisPasswordFromEnvironment(t *testing.T) {
	addr := redistest.StartWith(t, "--requirepass", "env-pw-2468")
	t.Setenv("SHEPHERD_SIDECAR_REDIS", addr)
	t.Setenv("SHEPHERD_SIDECAR_REDIS_PASSWORD", "env-pw-2468")
	httpAddr := freePort(t)
	done, logs := startReady(t, httpAddr, "--grpc-listen", "127.0.0.1:0", "--http-listen", httpAddr, "--log-format", "text", "--log-level", "debug")
	stopWithSIGTERM(t, done, logs)
	require.Contains(t, logs.String(), "redis_type=single")
	require.NotContains(t, logs.String(), "env-pw-2468")
}
