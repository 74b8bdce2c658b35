package main

import (
	"bytes"
	"context"
	"flag"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	rlqsv3 "github.com/envoyproxy/go-control-plane/envoy/service/rate_limit_quota/v3"
	"github.com/stretchr/testify/require"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/shepherd-mesh/shepherd/sidecar/rlqs"
)

func TestQuotaFlags(t *testing.T) {
	defaults := rlqs.Options{Burst: 500 * time.Millisecond, TTLIntervals: 3, MinTTL: 2 * time.Second, MaxTTL: 5 * time.Minute,
		DefaultTTL: 10 * time.Second, AbandonAfter: 5 * time.Minute, MinDemandWindow: 500 * time.Millisecond, IdleShare: 0.02, Hysteresis: 0.02, ShareInterval: time.Second}
	with := func(f func(o *rlqs.Options)) rlqs.Options {
		o := defaults
		f(&o)
		return o
	}
	for _, tc := range []struct {
		name string
		args []string
		want rlqs.Options
		err  string
	}{
		{name: "defaults", want: defaults},
		{name: "every flag", args: []string{"--rlqs-burst", "1s", "--rlqs-ttl-intervals", "4", "--rlqs-min-ttl", "3s", "--rlqs-max-ttl", "1h",
			"--rlqs-default-ttl", "20s", "--rlqs-abandon-after", "10m", "--rlqs-demand-window", "2s", "--rlqs-idle-share", "0.1", "--rlqs-hysteresis", "0.05", "--rlqs-share-interval", "500ms"},
			want: rlqs.Options{Burst: time.Second, TTLIntervals: 4, MinTTL: 3 * time.Second, MaxTTL: time.Hour, DefaultTTL: 20 * time.Second,
				AbandonAfter: 10 * time.Minute, MinDemandWindow: 2 * time.Second, IdleShare: 0.1, Hysteresis: 0.05, ShareInterval: 500 * time.Millisecond}},
		{name: "a whole-second bucket", args: []string{"--rlqs-burst", "1s"}, want: with(func(o *rlqs.Options) { o.Burst = time.Second })},
		{name: "burst zero", args: []string{"--rlqs-burst", "0s"}, err: "--rlqs-burst: must be above 0 and at most 1h, got 0s"},
		{name: "ttl intervals below 2", args: []string{"--rlqs-ttl-intervals", "1"}, err: "--rlqs-ttl-intervals: must be from 2 to 1000, got 1"},
		{name: "ttl intervals NaN", args: []string{"--rlqs-ttl-intervals", "NaN"}, err: "--rlqs-ttl-intervals: must be from 2 to 1000, got NaN"},
		{name: "min ttl below 1s", args: []string{"--rlqs-min-ttl", "500ms"}, err: "--rlqs-min-ttl: must be at least 1s, got 500ms"},
		{name: "min ttl not whole", args: []string{"--rlqs-min-ttl", "1500ms"}, err: "--rlqs-min-ttl: must be whole seconds (Envoy reads only the seconds), got 1.5s"},
		{name: "max below min", args: []string{"--rlqs-min-ttl", "10s", "--rlqs-max-ttl", "5s", "--rlqs-default-ttl", "10s"},
			err: "--rlqs-max-ttl: must be from --rlqs-min-ttl (10s) to 24h, got 5s"},
		{name: "default outside", args: []string{"--rlqs-default-ttl", "1s"}, err: "--rlqs-default-ttl: must be from --rlqs-min-ttl (2s) to --rlqs-max-ttl (5m0s), got 1s"},
		{name: "abandon below 1s", args: []string{"--rlqs-abandon-after", "0s"}, err: "--rlqs-abandon-after: must be at least 1s, got 0s"},
		{name: "demand window too short", args: []string{"--rlqs-demand-window", "50ms"}, err: "--rlqs-demand-window: must be from 100ms to 1m, got 50ms"},
		{name: "idle share zero", args: []string{"--rlqs-idle-share", "0"}, err: "--rlqs-idle-share: must be above 0 and at most 1, got 0"},
		{name: "idle share above 1", args: []string{"--rlqs-idle-share", "2"}, err: "--rlqs-idle-share: must be above 0 and at most 1, got 2"},
		{name: "hysteresis above half", args: []string{"--rlqs-hysteresis", "0.6"}, err: "--rlqs-hysteresis: must be above 0 and at most 0.5, got 0.6"},
		{name: "share interval too short", args: []string{"--rlqs-share-interval", "10ms"}, err: "--rlqs-share-interval: must be from 100ms to 1m, got 10ms"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			fs := flag.NewFlagSet("t", flag.ContinueOnError)
			fs.SetOutput(io.Discard)
			var q quotaFlags
			q.register(fs)
			require.NoError(t, fs.Parse(tc.args))
			got, err := q.options()
			if tc.err != "" {
				require.EqualError(t, err, tc.err)
				return
			}
			require.NoError(t, err)
			require.Equal(t, tc.want, got)
		})
	}

	// From the command line, a bad value stops the start with status 2.
	var out bytes.Buffer
	require.Equal(t, 2, run([]string{"--rlqs-hysteresis", "0.9"}, &out))
	require.Contains(t, out.String(), "shepherd-sidecar: --rlqs-hysteresis: must be above 0 and at most 0.5, got 0.9")
}

// TestQuotaFlagsReachTheServer: the tuning flags (and their environment
// variables) change the assignments the running sidecar sends.
func TestQuotaFlagsReachTheServer(t *testing.T) {
	limits := filepath.Join(t.TempDir(), "ratelimit.yaml")
	require.NoError(t, os.WriteFile(limits, []byte("domain: llm\ndescriptors:\n  - key: user\n    rate_limit: {unit: second, requests_per_unit: 100}\n"), 0o600))
	grpcAddr, httpAddr := freePort(t), freePort(t)
	t.Setenv("SHEPHERD_SIDECAR_RLQS_DEFAULT_TTL", "7s")
	done, logs := startReady(t, httpAddr, "--ratelimit-config", limits, "--rlqs-burst", "250ms", "--grpc-listen", grpcAddr, "--http-listen", httpAddr,
		"--log-format", "text")

	cc, err := grpc.NewClient(grpcAddr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	require.NoError(t, err)
	defer cc.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	st, err := rlqsv3.NewRateLimitQuotaServiceClient(cc).StreamRateLimitQuotas(ctx)
	require.NoError(t, err)
	require.NoError(t, st.Send(&rlqsv3.RateLimitQuotaUsageReports{Domain: "llm", BucketQuotaUsages: []*rlqsv3.RateLimitQuotaUsageReports_BucketQuotaUsage{
		{BucketId: &rlqsv3.BucketId{Bucket: map[string]string{"user": "u1"}}, NumRequestsAllowed: 1}}}))
	m, err := st.Recv()
	require.NoError(t, err)
	qa := m.GetBucketAction()[0].GetQuotaAssignmentAction()
	require.Equal(t, 7*time.Second, qa.GetAssignmentTimeToLive().AsDuration(), "--rlqs-default-ttl from the environment")
	tb := qa.GetRateLimitStrategy().GetTokenBucket()
	require.Equal(t, uint32(100), tb.GetTokensPerFill().GetValue())
	require.Equal(t, uint32(25), tb.GetMaxTokens(), "a quarter second of 100/s (--rlqs-burst 250ms)")
	cancel()

	stopWithSIGTERM(t, done, logs)
}

// TestManifestEnvNamesFlags: every variable istio/base/sidecar.env sets or
// shows (commented out, with its default) is a flag's, and a commented one
// shows the flag's default.
func TestManifestEnvNamesFlags(t *testing.T) {
	data, err := os.ReadFile(filepath.Join("..", "..", "..", "istio", "base", "sidecar.env"))
	require.NoError(t, err)
	fs := flag.NewFlagSet("t", flag.ContinueOnError)
	var q quotaFlags
	q.register(fs)
	defaults := map[string]string{}
	fs.VisitAll(func(f *flag.Flag) { defaults[envName(f.Name)] = f.DefValue })
	var out bytes.Buffer
	require.Equal(t, 0, run([]string{"--help"}, &out))
	shown := 0
	for _, line := range strings.Split(string(data), "\n") {
		commented := strings.HasPrefix(line, "# SHEPHERD_SIDECAR_")
		line = strings.TrimPrefix(line, "# ")
		name, value, ok := strings.Cut(line, "=")
		if !ok || !strings.HasPrefix(name, "SHEPHERD_SIDECAR_") {
			continue
		}
		require.Contains(t, out.String(), "("+name+")", "%s is no flag's variable", name)
		if commented {
			shown++
			d, err := time.ParseDuration(defaults[name])
			if err == nil {
				v, err := time.ParseDuration(value)
				require.NoError(t, err, name)
				require.Equal(t, d, v, name)
			} else {
				require.Equal(t, defaults[name], value, name)
			}
		}
	}
	require.Equal(t, 10, shown, "the RLQS tuning variables are shown")
}
