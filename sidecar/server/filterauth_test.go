package server_test

import (
	"context"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	commonrl "github.com/envoyproxy/go-control-plane/envoy/extensions/common/ratelimit/v3"
	rlsv3 "github.com/envoyproxy/go-control-plane/envoy/service/ratelimit/v3"
	"github.com/stretchr/testify/require"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	filterconfig "github.com/shepherd-mesh/shepherd/filter/config"
	"github.com/shepherd-mesh/shepherd/internal/testutil"
	policyv1 "github.com/shepherd-mesh/shepherd/sidecar/api/policy/v1"
	"github.com/shepherd-mesh/shepherd/sidecar/server"
)

func filterCtx(token string) context.Context {
	return metadata.AppendToOutgoingContext(context.Background(), server.FilterTokenMetadata, token)
}

const budgetConfig = `
providers:
  - name: openai
    credential: {file: DIR/openai.key}
budgets:
  routes:
    - {route: chat, monthly_usd: 100}
reports:
  per_caller_per_second: 1000
`

// TestMetadataKeyMatchesTheFilter: the sidecar reads the key the filter sends.
func TestMetadataKeyMatchesTheFilter(t *testing.T) {
	require.Equal(t, filterconfig.FilterTokenMetadata, server.FilterTokenMetadata)
}

// TestFilterTokenRequired: GetPolicy, WatchPolicy and ReportOutcomes need an
// accepted filter token. Without one (or with a wrong one) they are refused
// with PERMISSION_DENIED, counted, and no credential byte reaches the caller;
// forged reports change no budget. The admin token reads the policy with the
// credential values withheld, and cannot report.
func TestFilterTokenRequired(t *testing.T) {
	opts, dir := withConfig(t)
	writeFile(t, dir, "sidecar.yaml", strings.ReplaceAll(budgetConfig, "DIR", dir))
	r := start(t, opts)
	const credential = "sk-live-abcdef123456"
	forged := &policyv1.ReportOutcomesRequest{Outcomes: []*policyv1.Outcome{{Route: "chat", Provider: "openai", StatusCode: 200, CostMicroUsd: 100_000_000}}}
	client := policyv1.NewPolicyServiceClient(r.cc)

	for _, tc := range []struct {
		name     string
		ctx      context.Context
		read     codes.Code
		withheld bool
		report   codes.Code
	}{
		{"no token", context.Background(), codes.PermissionDenied, false, codes.PermissionDenied},
		{"wrong token", filterCtx("not-the-filter-token-0000"), codes.PermissionDenied, false, codes.PermissionDenied},
		{"a prefix of the token", filterCtx(filterToken[:len(filterToken)-1]), codes.PermissionDenied, false, codes.PermissionDenied},
		{"the token as authorization", admin(filterToken), codes.PermissionDenied, false, codes.PermissionDenied},
		{"admin token", admin(adminToken), codes.OK, true, codes.PermissionDenied},
		{"filter token", filterCtx(filterToken), codes.OK, false, codes.OK},
	} {
		t.Run(tc.name, func(t *testing.T) {
			resp, err := client.GetPolicy(tc.ctx, &policyv1.GetPolicyRequest{})
			require.Equal(t, tc.read, status.Code(err), "GetPolicy: %v", err)
			if err != nil {
				require.NotContains(t, err.Error(), credential)
			} else {
				require.Len(t, resp.Policy.Credentials, 1)
				if tc.withheld {
					require.Empty(t, resp.Policy.Credentials[0].Value)
				} else {
					require.Equal(t, "Bearer "+credential, resp.Policy.Credentials[0].Value)
				}
			}

			wctx, cancel := context.WithTimeout(tc.ctx, 5*time.Second)
			defer cancel()
			stream, err := client.WatchPolicy(wctx, &policyv1.WatchPolicyRequest{})
			require.NoError(t, err)
			p, err := stream.Recv()
			require.Equal(t, tc.read, status.Code(err), "WatchPolicy: %v", err)
			if err == nil {
				require.Equal(t, tc.withheld, p.Credentials[0].Value == "")
			}
			cancel()

			before := r.srv.Engine().Policy().Budgets[0].SpentMicroUsd
			_, err = client.ReportOutcomes(tc.ctx, forged)
			require.Equal(t, tc.report, status.Code(err), "ReportOutcomes: %v", err)
			if err != nil {
				r.srv.Engine().Tick()
				require.Equal(t, before, r.srv.Engine().Policy().Budgets[0].SpentMicroUsd, "a refused report moves nothing")
			}
		})
	}
	_, body := r.get(t, "/metrics")
	require.Contains(t, body, `shepherd_sidecar_filter_token_refused_total{method="GetPolicy"} 4`)
	require.Contains(t, body, `shepherd_sidecar_filter_token_refused_total{method="WatchPolicy"} 4`)
	require.Contains(t, body, `shepherd_sidecar_filter_token_refused_total{method="ReportOutcomes"} 5`)
	require.Contains(t, r.logs.String(), "refused a call without an accepted filter token")
	for _, secret := range []string{credential, filterToken, adminToken} {
		require.NotContains(t, r.logs.String(), secret)
		require.NotContains(t, body, secret)
	}
}

// TestSecureByDefault: a config with anything worth protecting and no filter
// token does not start, and is not taken by a reload either; the error names
// the setting.
func TestSecureByDefault(t *testing.T) {
	opts, dir := withConfig(t)
	opts.FilterTokenFile = ""
	_, err := server.New(context.Background(), withLoopback(opts))
	require.EqualError(t, err, "sidecar config "+opts.ConfigPath+": providers[0].credential needs a filter token: set --filter-token-file "+
		"(SHEPHERD_SIDECAR_FILTER_TOKEN_FILE); without it any workload that reaches the gRPC port could read provider credentials and forge outcome reports")

	_, err = server.New(context.Background(), withLoopback(server.Options{RateLimitRequireFilterToken: true}))
	require.EqualError(t, err, "--ratelimit-require-filter-token needs --filter-token-file (SHEPHERD_SIDECAR_FILTER_TOKEN_FILE)")

	// Health only: providers without credentials still need it (reports move cooldowns).
	opts.ConfigPath = writeFile(t, dir, "empty.yaml", "health: {cooldown: 10s}\n")
	r := start(t, opts)
	writeFile(t, dir, "empty.yaml", "providers: [{name: openai, credential: {file: "+dir+"/openai.key}}]\n")
	err = r.srv.Reload()
	require.ErrorContains(t, err, "providers[0].credential needs a filter token")
	require.Empty(t, r.srv.Engine().Policy().Credentials, "the last good config stays")
}

func withLoopback(o server.Options) server.Options {
	o.GRPCListen, o.HTTPListen = "127.0.0.1:0", "127.0.0.1:0"
	return o
}

// TestFilterTokenRotation: the token file holds the current token and, while
// rotating, the previous one; a reload switches without refusing either.
func TestFilterTokenRotation(t *testing.T) {
	opts, dir := withConfig(t)
	const next = "next-f1lter-t0ken-abcdef"
	r := start(t, opts)
	client := policyv1.NewPolicyServiceClient(r.cc)
	read := func(tok string) codes.Code {
		_, err := client.GetPolicy(filterCtx(tok), &policyv1.GetPolicyRequest{})
		return status.Code(err)
	}
	require.Equal(t, codes.OK, read(filterToken))
	require.Equal(t, codes.PermissionDenied, read(next))

	writeFile(t, dir, "filter-token", filterToken+"\n"+next+"\n")
	require.NoError(t, r.srv.Reload())
	require.Equal(t, codes.OK, read(filterToken), "old and new are both valid during the change")
	require.Equal(t, codes.OK, read(next))

	writeFile(t, dir, "filter-token", next+"\n")
	require.NoError(t, r.srv.Reload())
	require.Equal(t, codes.PermissionDenied, read(filterToken))
	require.Equal(t, codes.OK, read(next))

	// A bad file keeps the last good tokens; errors never show a token.
	for _, tc := range []struct{ content, want string }{
		{"\n\n", "holds no token"},
		{next + "\n" + filterToken + "\nthird-t0ken-0123456789\n", "holds 3 tokens; at most 2 (the current one and, while rotating, the previous one)"},
		{"short\n", "line 1: a token must be at least 16 characters"},
		{next + "\nwith space inside 0123\n", "line 2: a token may hold only visible ASCII characters (it travels as gRPC metadata)"},
	} {
		path := writeFile(t, dir, "filter-token", tc.content)
		err := r.srv.Reload()
		require.EqualError(t, err, "filter token file "+path+": "+tc.want)
		require.NotContains(t, err.Error(), next)
		require.Equal(t, codes.OK, read(next), "the last good tokens stay")
	}
	_, body := r.get(t, "/metrics")
	require.Contains(t, body, `shepherd_sidecar_config_reloads_total{file="filter_token",result="error"} 4`)
}

// TestRateLimitFilterToken: the rate limit service is open by default and,
// with RateLimitRequireFilterToken, needs the filter token like the policy
// API (Envoy's ratelimit filter sends it through grpc_service.initial_metadata).
func TestRateLimitFilterToken(t *testing.T) {
	req := &rlsv3.RateLimitRequest{Domain: "llm", Descriptors: []*commonrl.RateLimitDescriptor{
		{Entries: []*commonrl.RateLimitDescriptor_Entry{{Key: "user", Value: "alice"}}}}}
	for _, tc := range []struct {
		name     string
		require  bool
		ctx      context.Context
		want     codes.Code
		refusals string
	}{
		{"off by default", false, context.Background(), codes.OK, "0"},
		{"required: no token", true, context.Background(), codes.PermissionDenied, "1"},
		{"required: wrong token", true, filterCtx("wrong-t0ken-0123456789"), codes.PermissionDenied, "1"},
		{"required: token", true, filterCtx(filterToken), codes.OK, "0"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			opts, _ := withConfig(t)
			opts.RateLimitConfigPath = "testdata/ratelimit.yaml"
			opts.RateLimitRequireFilterToken = tc.require
			r := start(t, opts)
			_, err := rlsv3.NewRateLimitServiceClient(r.cc).ShouldRateLimit(tc.ctx, req)
			require.Equal(t, tc.want, status.Code(err), "%v", err)
			_, body := r.get(t, "/metrics")
			require.Contains(t, body, `shepherd_sidecar_filter_token_refused_total{method="ShouldRateLimit"} `+tc.refusals+"\n")
		})
	}
}

// TestReportsRateLimitedPerCaller: past reports.per_caller_per_second (bursts
// of twice as many) a caller's reports are refused with RESOURCE_EXHAUSTED,
// counted and logged.
func TestReportsRateLimitedPerCaller(t *testing.T) {
	opts, dir := withConfig(t)
	writeFile(t, dir, "sidecar.yaml", strings.ReplaceAll(budgetConfig, "per_caller_per_second: 1000", "per_caller_per_second: 0.001"))
	r := start(t, opts)
	var got []codes.Code
	for i := 0; i < 3; i++ {
		_, err := r.client.ReportOutcomes(context.Background(), &policyv1.ReportOutcomesRequest{})
		got = append(got, status.Code(err))
	}
	require.Equal(t, []codes.Code{codes.OK, codes.ResourceExhausted, codes.ResourceExhausted}, got,
		"a burst of 2×0.001 holds one report")
	_, body := r.get(t, "/metrics")
	require.Contains(t, body, "shepherd_sidecar_reports_rate_limited_total 2\n")
	require.Contains(t, r.logs.String(), "refused an outcome report: the caller is over reports.per_caller_per_second")
}

// TestFilterTokenDirectory: a mounted Kubernetes Secret (a directory of one
// file per key, behind ..data symlinks) holds the current token and, while
// rotating, one more; a reload follows the Secret's changes.
func TestFilterTokenDirectory(t *testing.T) {
	opts, dir := withConfig(t)
	secret := filepath.Join(dir, "secret")
	data := filepath.Join(secret, "..2026_12_03_14_00_00.000000001")
	require.NoError(t, os.MkdirAll(data, 0o700))
	writeFile(t, data, "SHEPHERD_FILTER_TOKEN", filterToken)
	require.NoError(t, os.Symlink(filepath.Base(data), filepath.Join(secret, "..data")))
	require.NoError(t, os.Symlink("..data/SHEPHERD_FILTER_TOKEN", filepath.Join(secret, "SHEPHERD_FILTER_TOKEN")))
	opts.FilterTokenFile = secret
	r := start(t, opts)
	client := policyv1.NewPolicyServiceClient(r.cc)
	read := func(tok string) codes.Code {
		_, err := client.GetPolicy(filterCtx(tok), &policyv1.GetPolicyRequest{})
		return status.Code(err)
	}
	const next = "next-f1lter-t0ken-abcdef"
	require.Equal(t, codes.OK, read(filterToken))
	require.Equal(t, codes.PermissionDenied, read(next))

	writeFile(t, data, "also-accepted", next)
	require.NoError(t, os.Symlink("..data/also-accepted", filepath.Join(secret, "also-accepted")))
	require.NoError(t, r.srv.Reload())
	require.Equal(t, codes.OK, read(filterToken))
	require.Equal(t, codes.OK, read(next))

	writeFile(t, data, "also-accepted", next+"\n"+filterToken)
	err := r.srv.Reload()
	require.EqualError(t, err, "filter token: "+filepath.Join(secret, "also-accepted")+": in a directory each file holds one token")
}

// BenchmarkShouldRateLimitFilterToken: what requiring the filter token adds to
// a rate limit call over loopback gRPC. Run off and on in alternation and
// compare the ratio (the client shares the machine with the server):
//
//	go test ./sidecar/server -run '^$' -bench ShouldRateLimitFilterToken -count 6
func BenchmarkShouldRateLimitFilterToken(b *testing.B) {
	req := &rlsv3.RateLimitRequest{Domain: "llm", Descriptors: []*commonrl.RateLimitDescriptor{
		{Entries: []*commonrl.RateLimitDescriptor_Entry{{Key: "user", Value: "bench"}}}}}
	for _, on := range []bool{false, true} {
		name := "off"
		if on {
			name = "on"
		}
		b.Run(name, func(b *testing.B) {
			dir := b.TempDir()
			tokens := filepath.Join(dir, "filter-token")
			require.NoError(b, os.WriteFile(tokens, []byte(filterToken), 0o600))
			rl := filepath.Join(dir, "rl.yaml")
			require.NoError(b, os.WriteFile(rl, []byte("domain: llm\ndescriptors:\n  - key: user\n    rate_limit: {unit: hour, requests_per_unit: 4000000000}\n"), 0o600))
			srv, err := server.New(context.Background(), withLoopback(server.Options{RateLimitConfigPath: rl, FilterTokenFile: tokens,
				RateLimitRequireFilterToken: on, RateLimit: server.DefaultRateLimit, ReloadInterval: -1,
				Logger: slog.New(slog.NewTextHandler(io.Discard, nil))}))
			require.NoError(b, err)
			ctx, cancel := context.WithCancel(context.Background())
			done := make(chan error, 1)
			go func() { done <- srv.Serve(ctx) }()
			defer func() {
				cancel()
				testutil.Receive(b, done, time.Minute)
			}()
			cc, err := grpc.NewClient(srv.GRPCAddr(), grpc.WithTransportCredentials(insecure.NewCredentials()))
			require.NoError(b, err)
			defer cc.Close()
			client := rlsv3.NewRateLimitServiceClient(cc)
			call := filterCtx(filterToken)
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				if _, err := client.ShouldRateLimit(call, req); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
