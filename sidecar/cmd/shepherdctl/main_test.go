package main

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/shepherd-mesh/shepherd/internal/testutil"
	"github.com/shepherd-mesh/shepherd/sidecar/server"
)

const token = "ctl-t0ken"

// sidecar runs an in-process server with the testdata config and a token.
func sidecar(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	tokenFile := filepath.Join(dir, "token")
	require.NoError(t, os.WriteFile(tokenFile, []byte(token), 0o600))
	rl := filepath.Join(dir, "rl.yaml")
	require.NoError(t, os.WriteFile(rl, []byte("domain: llm\ndescriptors:\n  - key: user\n    rate_limit: {unit: hour, requests_per_unit: 3, name: per-user}\n"), 0o600))
	key := filepath.Join(dir, "openai.key")
	require.NoError(t, os.WriteFile(key, []byte("sk-ctl-secret\n"), 0o600))
	cfg := filepath.Join(dir, "sidecar.yaml")
	base, err := os.ReadFile("testdata/sidecar.yaml")
	require.NoError(t, err)
	withCred := strings.Replace(string(base), "providers: [{name: openai}", "providers: [{name: openai, credential: {file: "+key+"}}", 1)
	require.NoError(t, os.WriteFile(cfg, []byte(withCred), 0o600))
	filterTokenFile := filepath.Join(dir, "filter-token")
	require.NoError(t, os.WriteFile(filterTokenFile, []byte("ctl-f1lter-t0ken-0123456"), 0o600))
	srv, err := server.New(context.Background(), server.Options{
		GRPCListen: "127.0.0.1:0", HTTPListen: "127.0.0.1:0",
		ConfigPath: cfg, AdminTokenFile: tokenFile, FilterTokenFile: filterTokenFile, RateLimitConfigPath: rl,
		RateLimit: server.DefaultRateLimit, ReloadInterval: -1,
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil)),
	})
	require.NoError(t, err)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ctx) }()
	t.Cleanup(func() {
		cancel()
		require.NoError(t, testutil.Receive(t, done, time.Minute))
	})
	return srv.GRPCAddr()
}

func ctl(args ...string) (int, string, string) {
	var out, errb bytes.Buffer
	code := run(args, &out, &errb)
	return code, out.String(), errb.String()
}

func TestCanaryCommands(t *testing.T) {
	addr := sidecar(t)
	t.Setenv("SHEPHERDCTL_TOKEN", "")
	t.Setenv("SHEPHERDCTL_TOKEN_FILE", "")
	t.Setenv("SHEPHERDCTL_ADDR", addr)

	code, out, errs := ctl("canary", "status")
	require.Equal(t, exitOK, code, errs)
	require.Contains(t, out, "chat")
	require.Contains(t, out, "progressing")
	require.Contains(t, out, "10.00%")

	// Admin commands need a token.
	code, _, errs = ctl("canary", "promote", "chat")
	require.Equal(t, exitUsage, code)
	require.Contains(t, errs, "admin command needs --token-file")

	t.Setenv("SHEPHERDCTL_TOKEN", "wrong")
	code, _, errs = ctl("canary", "promote", "chat")
	require.Equal(t, exitFail, code)
	require.Equal(t, "shepherdctl: PermissionDenied: admin token not accepted\n", errs)

	tokenFile := filepath.Join(t.TempDir(), "tok")
	require.NoError(t, os.WriteFile(tokenFile, []byte(token+"\n"), 0o600))
	tests := []struct {
		args  []string
		state string
		want  string
	}{
		{[]string{"canary", "set", "chat", "12.5%", "--token-file", tokenFile}, "manual", "12.50%"},
		{[]string{"canary", "set", "chat", "3000bp", "--token-file", tokenFile}, "manual", "30.00%"},
		{[]string{"canary", "resume", "chat", "--token-file", tokenFile}, "progressing", "50.00%"},
		{[]string{"canary", "pause", "chat", "--token-file", tokenFile}, "paused", "50.00%"},
		{[]string{"canary", "promote", "chat", "--token-file", tokenFile}, "promoted", "100.00%"},
		{[]string{"canary", "rollback", "--token-file", tokenFile, "chat"}, "rolled_back", "0.00%"},
	}
	for _, tt := range tests {
		t.Run(strings.Join(tt.args[:3], " "), func(t *testing.T) {
			code, out, errs := ctl(tt.args...)
			require.Equal(t, exitOK, code, errs)
			require.Contains(t, out, tt.state)
			require.Contains(t, out, tt.want)
		})
	}

	code, out, errs = ctl("canary", "status", "chat", "--json")
	require.Equal(t, exitOK, code, errs)
	require.Contains(t, out, `"state":"ROLLOUT_STATE_ROLLED_BACK"`)

	code, _, errs = ctl("canary", "status", "nope")
	require.Equal(t, exitFail, code)
	require.Equal(t, "shepherdctl: NotFound: no canary plan for route \"nope\"\n", errs)
}

func TestPolicyRedactsCredentials(t *testing.T) {
	addr := sidecar(t)
	t.Setenv("SHEPHERDCTL_TOKEN", "")
	t.Setenv("SHEPHERDCTL_TOKEN_FILE", "")
	code, _, errs := ctl("policy", "--addr", addr)
	require.Equal(t, exitUsage, code, "the policy needs the admin token")
	require.Contains(t, errs, "admin command needs --token-file")
	t.Setenv("SHEPHERDCTL_TOKEN", token)
	code, out, errs := ctl("policy", "--addr", addr)
	require.Equal(t, exitOK, code, errs)
	require.Contains(t, out, "chat")
	require.Contains(t, out, "90.00%")
	require.Contains(t, out, "healthy")
	require.Regexp(t, `openai +authorization +\[loaded; withheld\]`, out, "the sidecar sends admin callers no credential value")
	require.Contains(t, out, "budgets: none")
	require.NotContains(t, out, "sk-ctl-secret")
}

func TestCanaryUsageErrors(t *testing.T) {
	tests := []struct {
		args []string
		want string
	}{
		{[]string{"canary"}, "canary: missing subcommand"},
		{[]string{"canary", "fly", "chat"}, `canary: unknown subcommand "fly"`},
		{[]string{"canary", "set", "chat"}, "canary set: want ROUTE WEIGHT"},
		{[]string{"canary", "set", "chat", "150"}, `canary set: weight "150": must be a percentage 0..100`},
		{[]string{"canary", "set", "chat", "20000bp"}, `canary set: weight "20000bp": basis points must be 0..10000`},
		{[]string{"canary", "promote"}, "canary promote: want ROUTE"},
		{[]string{"canary", "status", "--bogus"}, "canary status: flag provided but not defined: -bogus"},
		{[]string{"frobnicate"}, `unknown command "frobnicate"`},
		{[]string{"limits", "check", "--descriptor", "a=b"}, "limits check: --domain is required"},
		{[]string{"limits", "check", "--domain", "d"}, "limits check: at least one --descriptor is required"},
		{[]string{"limits", "check", "--domain", "d", "--descriptor", "novalue"}, `want key=value`},
		{[]string{"validate", "sidecar"}, "validate: want `validate sidecar|ratelimit|filter PATH`"},
		{[]string{"validate", "istio", "istio/overlays/namespace"}, "validate istio: Istio manifests are checked by shepherd-validate"},
		{[]string{"validate", "thing", "x"}, `validate: unknown kind "thing"`},
		{[]string{"bench", "rls"}, "bench rls: --addr is required"},
		{[]string{"bench", "rls", "--serve-null", "--server-pid", "1"}, "bench rls: --server-pid measures the --addr server"},
	}
	for _, tt := range tests {
		t.Run(strings.Join(tt.args, " "), func(t *testing.T) {
			code, _, errs := ctl(tt.args...)
			require.Equal(t, exitUsage, code)
			require.Contains(t, errs, tt.want)
			require.Contains(t, errs, "usage: shepherdctl")
		})
	}
	code, out, _ := ctl("--help")
	require.Equal(t, exitOK, code)
	require.Contains(t, out, "canary status")
}

func TestParseWeight(t *testing.T) {
	tests := []struct {
		in   string
		want uint32
		ok   bool
	}{
		{"0", 0, true}, {"25", 2500, true}, {"25%", 2500, true}, {"12.5%", 1250, true},
		{"100", 10000, true}, {"1250bp", 1250, true}, {"0.01", 1, true},
		{"-1", 0, false}, {"101", 0, false}, {"x", 0, false}, {"10001bp", 0, false},
	}
	for _, tt := range tests {
		got, err := parseWeight(tt.in)
		if !tt.ok {
			require.Error(t, err, tt.in)
			continue
		}
		require.NoError(t, err, tt.in)
		require.Equal(t, tt.want, got, tt.in)
	}
}

func TestLimitsCheck(t *testing.T) {
	addr := sidecar(t)
	for i := 0; i < 3; i++ {
		code, out, errs := ctl("limits", "check", "--addr", addr, "--domain", "llm", "--descriptor", "user=alice")
		require.Equal(t, exitOK, code, errs)
		require.Contains(t, out, "overall: OK")
		require.Contains(t, out, "descriptor 0 (user=alice): OK, limit per-user 3/hour")
	}
	code, out, _ := ctl("limits", "check", "--addr", addr, "--domain", "llm", "--descriptor", "user=alice")
	require.Equal(t, exitOverLimit, code)
	require.Contains(t, out, "overall: OVER_LIMIT")
	require.Contains(t, out, "remaining 0")

	code, out, errs := ctl("limits", "check", "--addr", addr, "--domain", "llm", "--descriptor", "user=bob", "--hits", "3",
		"--descriptor", "other=x,k=v")
	require.Equal(t, exitOK, code, errs)
	require.Contains(t, out, "descriptor 0 (user=bob): OK, limit per-user 3/hour, remaining 0")
	require.Contains(t, out, "descriptor 1 (other=x,k=v): OK, no limit")
}

func TestValidate(t *testing.T) {
	tests := []struct {
		args []string
		code int
		out  string
		err  string
	}{
		{[]string{"sidecar", "testdata/sidecar.yaml"}, exitOK, "ok: testdata/sidecar.yaml: 2 providers, 1 canary plans, 0 route budgets, 0 consumer budgets\n", ""},
		{[]string{"sidecar", "testdata/sidecar-bad.yaml"}, exitFail, "",
			"shepherdctl: sidecar config testdata/sidecar-bad.yaml: canary.routes[0].steps[2]: must be greater than the previous step\n"},
		{[]string{"ratelimit", "../../server/testdata/ratelimit.yaml"}, exitOK, "ok: ../../server/testdata/ratelimit.yaml: domains llm, 1 limits\n", ""},
		{[]string{"ratelimit", "testdata/missing.yaml"}, exitFail, "", "no such file"},
		{[]string{"filter", "testdata/filter-bad.json"}, exitFail, "", "shepherdctl: filter config testdata/filter-bad.json: "},
	}
	for _, tt := range tests {
		t.Run(strings.Join(tt.args, " "), func(t *testing.T) {
			code, out, errs := ctl(append([]string{"validate"}, tt.args...)...)
			require.Equal(t, tt.code, code, errs)
			require.Equal(t, tt.out, out)
			if strings.HasSuffix(tt.err, "\n") {
				require.Equal(t, tt.err, errs)
			} else {
				require.Contains(t, errs, tt.err)
			}
		})
	}
}

// TestValidateFilterFixtures runs `validate filter` over the filter
// package's own fixtures, so the check follows the filter's schema as it
// grows (shepherd-validate's tests wrap the same fixtures in a WasmPlugin).
func TestValidateFilterFixtures(t *testing.T) {
	valid, err := filepath.Glob("../../../filter/config/testdata/valid/*.json")
	require.NoError(t, err)
	require.NotEmpty(t, valid)
	invalid, err := filepath.Glob("../../../filter/config/testdata/invalid/*.json")
	require.NoError(t, err)
	require.NotEmpty(t, invalid)
	for _, p := range valid {
		code, _, errs := ctl("validate", "filter", p)
		require.Equal(t, exitOK, code, "%s: %s", p, errs)

	}
	for _, p := range invalid {
		if strings.HasSuffix(p, "-missing-env.json") {
			// validate takes every variable as set: the proxy's environment
			// is not the operator's, so only the filter can tell it is missing.
			continue
		}
		code, _, errs := ctl("validate", "filter", p)
		require.Equal(t, exitFail, code, p)
		require.Contains(t, errs, "shepherdctl: filter config "+p+": ")
	}
}

func TestBenchAgainstSidecarAndNull(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("--server-pid reads /proc")
	}
	addr := sidecar(t)
	// The sidecar runs in the test's process, so that is the server's pid.
	code, out, errs := ctl("bench", "rls", "--addr", addr, "--concurrency", "4", "--duration", "200ms",
		"--domain", "llm", "--descriptor", "user=u{n}", "--serve-null", "--server-pid", strconv.Itoa(os.Getpid()))
	require.Equal(t, exitOK, code, errs)
	require.Contains(t, out, addr+": ")
	require.Contains(t, out, fmt.Sprintf("CPU per decision: server (pid %d) ", os.Getpid()))
	require.Contains(t, out, "null server: ")
	require.Contains(t, out, "ratio (target/null): ")
}
