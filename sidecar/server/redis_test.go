package server_test

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	commonrl "github.com/envoyproxy/go-control-plane/envoy/extensions/common/ratelimit/v3"
	rlsv3 "github.com/envoyproxy/go-control-plane/envoy/service/ratelimit/v3"
	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/require"

	"github.com/shepherd-mesh/shepherd/internal/redistest"
	policyv1 "github.com/shepherd-mesh/shepherd/sidecar/api/policy/v1"
	"github.com/shepherd-mesh/shepherd/sidecar/server"
)

func TestMain(m *testing.M) { redistest.Main(m) }

// TestRedisKeepsStateAndCountersAcrossRestart runs two sidecars one after
// the other on the same Redis: the second sees the first's canary weight and
// rate limit counts.
func TestRedisKeepsStateAndCountersAcrossRestart(t *testing.T) {
	addr := redistest.Start(t)
	c := redis.NewClient(&redis.Options{Addr: addr})
	defer c.Close()
	key := "test:" + t.Name()
	require.NoError(t, c.Del(context.Background(), key).Err())

	opts, _ := withConfig(t)
	opts.RedisAddr = addr
	opts.RedisKey = key
	opts.StateFile = "" // ignored with Redis
	opts.RateLimitConfigPath = "testdata/ratelimit.yaml"
	user := fmt.Sprintf("u-%s-%d", t.Name(), time.Now().UnixNano()) // counters outlive the test in Redis
	req := &rlsv3.RateLimitRequest{Domain: "llm", Descriptors: []*commonrl.RateLimitDescriptor{
		{Entries: []*commonrl.RateLimitDescriptor_Entry{{Key: "user", Value: user}}}}}

	r := start(t, opts)
	_, err := r.client.SetCanaryWeight(admin(adminToken), &policyv1.SetCanaryWeightRequest{Route: "chat", WeightBp: 7700})
	require.NoError(t, err)
	resp, err := rlsv3.NewRateLimitServiceClient(r.cc).ShouldRateLimit(context.Background(), req)
	require.NoError(t, err)
	require.Equal(t, rlsv3.RateLimitResponse_OK, resp.OverallCode)
	r.stop(t)

	fields, err := c.HKeys(context.Background(), key).Result()
	require.NoError(t, err)
	require.Contains(t, fields, "rollout/chat")

	r2 := start(t, opts)
	st, err := r2.client.GetCanaryStatus(context.Background(), &policyv1.GetCanaryStatusRequest{Route: "chat"})
	require.NoError(t, err)
	require.Equal(t, uint32(7700), st.Routes[0].WeightBp)
	rls := rlsv3.NewRateLimitServiceClient(r2.cc)
	resp, err = rls.ShouldRateLimit(context.Background(), req)
	require.NoError(t, err)
	require.Equal(t, rlsv3.RateLimitResponse_OK, resp.OverallCode, "second hit of 2 per hour")
	resp, err = rls.ShouldRateLimit(context.Background(), req)
	require.NoError(t, err)
	require.Equal(t, rlsv3.RateLimitResponse_OVER_LIMIT, resp.OverallCode, "the first sidecar's hit counted")
}

// TestRedisDeployments runs the sidecar's rate limit service against each
// kind of Redis users run, started for the test: a single node with a
// password or an ACL user (from a file, as a mounted Secret gives it, or
// from the environment's value), a Redis Cluster, a Sentinel-watched master
// with a replica (before and after a failover), and TLS with a CA, a client
// certificate and a server name. A limit of 2 an hour must answer OK, OK,
// OVER_LIMIT, and the counter must be in that Redis.
func TestRedisDeployments(t *testing.T) {
	const password = "s3cret-redis-pw"
	dir := t.TempDir()
	pwFile := writeFile(t, dir, "redis-password", password+"\n")
	aclFile := writeFile(t, dir, "acl-password", "acl-pw\n")

	single := redistest.StartWith(t, "--requirepass", password)
	acl := redistest.StartWith(t)
	ac := redis.NewClient(&redis.Options{Addr: acl})
	require.NoError(t, ac.Do(context.Background(), "ACL", "SETUSER", "shepherd", "on", ">acl-pw", "~shepherd*", "+@all").Err())
	require.NoError(t, ac.Do(context.Background(), "ACL", "SETUSER", "default", "off").Err())
	ac.Close()
	cluster := redistest.StartCluster(t)
	sentinel := redistest.StartSentinel(t, "--requirepass", password, "--masterauth", password)
	tlsAddr, tlsFiles := redistest.StartTLS(t, true, "--requirepass", password)

	cases := []struct {
		name     string
		addr     string
		redis    server.Redis
		failover bool
		// direct reaches the same Redis, to find the counter.
		direct func() redis.UniversalClient
	}{
		{
			name: "single with a password file", addr: single,
			redis:  server.Redis{PasswordFile: pwFile},
			direct: func() redis.UniversalClient { return redis.NewClient(&redis.Options{Addr: single, Password: password}) },
		},
		{
			name: "single with an ACL user", addr: acl,
			redis: server.Redis{Username: "shepherd", PasswordFile: aclFile},
			direct: func() redis.UniversalClient {
				return redis.NewClient(&redis.Options{Addr: acl, Username: "shepherd", Password: "acl-pw"})
			},
		},
		{
			name: "cluster", addr: strings.Join(cluster, ","),
			redis:  server.Redis{Type: "cluster"},
			direct: func() redis.UniversalClient { return redis.NewClusterClient(&redis.ClusterOptions{Addrs: cluster}) },
		},
		{
			name: "sentinel with a password", addr: strings.Join(sentinel.Sentinels, ","),
			redis:    server.Redis{Type: "sentinel", MasterName: sentinel.MasterName, Password: password},
			failover: true,
			direct: func() redis.UniversalClient {
				return redis.NewFailoverClient(&redis.FailoverOptions{MasterName: sentinel.MasterName, SentinelAddrs: sentinel.Sentinels, Password: password})
			},
		},
		{
			name: "tls with a CA, a client certificate and a server name", addr: tlsAddr,
			redis: server.Redis{PasswordFile: pwFile, TLSCAFile: tlsFiles.CA, TLSCertFile: tlsFiles.ClientCert,
				TLSKeyFile: tlsFiles.ClientKey, TLSServerName: tlsFiles.ServerName},
			direct: func() redis.UniversalClient {
				o := server.Redis{Password: password, TLSCAFile: tlsFiles.CA, TLSCertFile: tlsFiles.ClientCert, TLSKeyFile: tlsFiles.ClientKey, TLSServerName: tlsFiles.ServerName}
				c, err := o.NewClient(tlsAddr)
				require.NoError(t, err)
				return c
			},
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			r := start(t, server.Options{RedisAddr: tc.addr, Redis: tc.redis, RateLimitConfigPath: "testdata/ratelimit.yaml"})
			rls := rlsv3.NewRateLimitServiceClient(r.cc)
			user := fmt.Sprintf("u-%d", time.Now().UnixNano())
			req := &rlsv3.RateLimitRequest{Domain: "llm", Descriptors: []*commonrl.RateLimitDescriptor{
				{Entries: []*commonrl.RateLimitDescriptor_Entry{{Key: "user", Value: user}}}}}
			codes := func(n int) []rlsv3.RateLimitResponse_Code {
				var out []rlsv3.RateLimitResponse_Code
				for range n {
					ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
					resp, err := rls.ShouldRateLimit(ctx, req)
					cancel()
					require.NoError(t, err)
					out = append(out, resp.GetOverallCode())
				}
				return out
			}
			require.Equal(t, []rlsv3.RateLimitResponse_Code{rlsv3.RateLimitResponse_OK, rlsv3.RateLimitResponse_OK}, codes(2))

			direct := tc.direct()
			defer direct.Close()
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			var keys []string
			scan := func(ctx context.Context, c *redis.Client) error {
				ks, err := c.Keys(ctx, "shepherd_rl:llm|user="+user+"|*").Result()
				keys = append(keys, ks...)
				return err
			}
			if cc, ok := direct.(*redis.ClusterClient); ok {
				require.NoError(t, cc.ForEachMaster(ctx, scan))
			} else {
				require.NoError(t, scan(ctx, direct.(*redis.Client)))
			}
			require.Len(t, keys, 1, "the counter is in this Redis")
			require.Equal(t, "2", direct.Get(ctx, keys[0]).Val())

			if tc.failover {
				// Wait until the replica has the count, then promote it:
				// the sidecar follows the Sentinel to the new master.
				require.NoError(t, direct.Do(ctx, "WAIT", 1, 5000).Err())
				sentinel.Failover(t, password)
			}
			require.Equal(t, []rlsv3.RateLimitResponse_Code{rlsv3.RateLimitResponse_OVER_LIMIT}, codes(1))
			if tc.failover {
				// The third hit went to the promoted replica, not to the
				// old master (which the Sentinel has turned into a replica).
				nm := redis.NewClient(&redis.Options{Addr: sentinel.Master, Password: password})
				defer nm.Close()
				got, err := nm.Get(context.Background(), keys[0]).Result()
				require.NoError(t, err)
				require.Equal(t, "3", got)
			}
			require.NotContains(t, r.logs.String(), password)
			require.NotContains(t, r.logs.String(), "acl-pw")
		})
	}
}

// TestRedisRefusesBadSettings names the setting that is wrong, and never
// echoes a password.
func TestRedisRefusesBadSettings(t *testing.T) {
	dir := t.TempDir()
	empty := writeFile(t, dir, "empty", "\n")
	cases := []struct {
		addr  string
		redis server.Redis
		want  string
	}{
		{"a:1,b:2", server.Redis{}, "--redis: a single node takes one address, got 2 (for several, set --redis-type cluster or sentinel)"},
		{"a:1", server.Redis{Type: "replicated"}, `--redis-type: unknown type "replicated" (single, cluster or sentinel)`},
		{"a:1", server.Redis{Type: "sentinel"}, "--redis-sentinel-master: must be set with --redis-type sentinel"},
		{"a:1", server.Redis{MasterName: "m"}, "--redis-sentinel-master: only with --redis-type sentinel"},
		{"a:1", server.Redis{PasswordFile: empty}, "--redis-password-file: " + empty + " is empty"},
		{"a:1", server.Redis{Password: "hunter2", PasswordFile: empty}, "--redis-password-file: set the password or its file, not both"},
		{"a:1", server.Redis{TLSCertFile: empty}, "--redis-tls-cert-file: set both the client certificate and --redis-tls-key-file"},
		{"a:1", server.Redis{TLSCAFile: empty}, "--redis-tls-ca-file: " + empty + ": no PEM certificate in it"},
		{" , ", server.Redis{}, "--redis: no address"},
	}
	for _, tc := range cases {
		t.Run(tc.want, func(t *testing.T) {
			_, err := server.New(context.Background(), server.Options{GRPCListen: "127.0.0.1:0", HTTPListen: "127.0.0.1:0", RedisAddr: tc.addr, Redis: tc.redis})
			require.EqualError(t, err, tc.want)
			require.NotContains(t, err.Error(), "hunter2")
		})
	}
}

// TestRedisWrongCredentialsStopTheStart: a wrong password, a server
// certificate checked against the wrong name, or no client certificate
// where the server wants one, each stop the sidecar at start (it loads its
// rollout state from Redis first) with the cause, and no error carries a
// password.
func TestRedisWrongCredentialsStopTheStart(t *testing.T) {
	const password = "right-pw-4711"
	dir := t.TempDir()
	wrong := writeFile(t, dir, "wrong", "wrong-pw-0815\n")
	right := writeFile(t, dir, "right", password+"\n")
	single := redistest.StartWith(t, "--requirepass", password)
	tlsAddr, files := redistest.StartTLS(t, true)
	cases := []struct {
		name  string
		addr  string
		redis server.Redis
		want  string
	}{
		{"wrong password", single, server.Redis{PasswordFile: wrong}, "WRONGPASS"},
		{"no password", single, server.Redis{}, "NOAUTH"},
		{"certificate checked against the address", tlsAddr, server.Redis{PasswordFile: right, TLSCAFile: files.CA, TLSCertFile: files.ClientCert, TLSKeyFile: files.ClientKey}, "doesn't contain any IP SANs"},
		{"no client certificate", tlsAddr, server.Redis{TLSCAFile: files.CA, TLSServerName: files.ServerName}, "certificate required"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := server.New(context.Background(), server.Options{GRPCListen: "127.0.0.1:0", HTTPListen: "127.0.0.1:0",
				RedisAddr: tc.addr, Redis: tc.redis, RateLimitConfigPath: "testdata/ratelimit.yaml"})
			require.ErrorContains(t, err, "load state from redis: ")
			require.ErrorContains(t, err, tc.want)
			require.NotContains(t, err.Error(), "wrong-pw-0815")
			require.NotContains(t, err.Error(), password)
		})
	}
}
