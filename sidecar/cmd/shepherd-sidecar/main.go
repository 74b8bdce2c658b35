// Command shepherd-sidecar serves Envoy's rate limit service, the shepherd
// policy API, gRPC health, and Prometheus metrics. It runs with no
// configuration at all; see docs/SIDECAR.md.
//
// Every flag can also be set with an environment variable named
// SHEPHERD_SIDECAR_ plus the flag name in upper case with '-' as '_'
// (for example SHEPHERD_SIDECAR_GRPC_LISTEN); a flag on the command line
// wins over the environment.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/shepherd-mesh/shepherd/sidecar/ratelimit"
	"github.com/shepherd-mesh/shepherd/sidecar/server"
)

func main() {
	os.Exit(run(os.Args[1:], os.Stderr))
}

// redisPasswordEnv holds the Redis password when no file is given (for a
// Secret mapped with secretKeyRef).
const redisPasswordEnv = "SHEPHERD_SIDECAR_REDIS_PASSWORD"

// envName is the environment variable for a flag.
func envName(flagName string) string {
	return "SHEPHERD_SIDECAR_" + strings.ToUpper(strings.ReplaceAll(flagName, "-", "_"))
}

func run(args []string, stderr io.Writer) int {
	fs := flag.NewFlagSet("shepherd-sidecar", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var o server.Options
	var logLevel, logFormat string
	var shutdown time.Duration
	fs.StringVar(&o.GRPCListen, "grpc-listen", "127.0.0.1:8081", "gRPC listen address (rate limit, policy, health)")
	fs.StringVar(&o.HTTPListen, "http-listen", "127.0.0.1:8082", "HTTP listen address (/metrics, /healthz, /readyz)")
	fs.StringVar(&o.ConfigPath, "config", "", "sidecar config file (YAML); empty runs with no providers, plans or budgets")
	fs.StringVar(&o.RateLimitConfigPath, "ratelimit-config", "", "rate limit config file or directory (envoyproxy/ratelimit format)")
	fs.StringVar(&o.RedisAddr, "redis", "", "Redis address for rate limit counters and rollout state; empty keeps them in memory. With --redis-type cluster or sentinel: a comma-separated list of seed nodes or Sentinels")
	fs.StringVar(&o.Redis.Type, "redis-type", "single", "single, cluster (Redis Cluster) or sentinel (addresses are Sentinels; set --redis-sentinel-master)")
	fs.StringVar(&o.Redis.MasterName, "redis-sentinel-master", "", "Sentinel master set name (with --redis-type sentinel)")
	fs.StringVar(&o.Redis.Username, "redis-username", "", "Redis ACL user (empty: the default user)")
	fs.StringVar(&o.Redis.PasswordFile, "redis-password-file", "",
		"file holding the Redis password (a mounted Secret); or set SHEPHERD_SIDECAR_REDIS_PASSWORD, which is not a flag so that it never shows on a command line")
	fs.StringVar(&o.Redis.SentinelUsername, "redis-sentinel-username", "", "ACL user of the Sentinels themselves, if they have one")
	fs.StringVar(&o.Redis.SentinelPasswordFile, "redis-sentinel-password-file", "", "file holding the Sentinels' own password, if they have one")
	fs.BoolVar(&o.Redis.TLS, "redis-tls", false, "connect to Redis over TLS (implied by the other --redis-tls-* flags)")
	fs.StringVar(&o.Redis.TLSCAFile, "redis-tls-ca-file", "", "PEM CA bundle that signed Redis's certificate (default: the system roots)")
	fs.StringVar(&o.Redis.TLSCertFile, "redis-tls-cert-file", "", "PEM client certificate, for servers with tls-auth-clients (with --redis-tls-key-file)")
	fs.StringVar(&o.Redis.TLSKeyFile, "redis-tls-key-file", "", "PEM private key of --redis-tls-cert-file")
	fs.StringVar(&o.Redis.TLSServerName, "redis-tls-server-name", "", "name Redis's certificate must carry (default: the address's host)")
	fs.StringVar(&o.AdminTokenFile, "admin-token-file", "", "file holding the admin token; empty disables admin calls")
	fs.StringVar(&o.FilterTokenFile, "filter-token-file", "",
		"filter tokens the policy API accepts: a file (one per line) or a directory such as a mounted Secret (one per file); at most two, for rotation; required when the config has providers, budgets or canary plans")
	fs.BoolVar(&o.RateLimitRequireFilterToken, "ratelimit-require-filter-token", false,
		"refuse rate limit calls without a filter token too (Envoy: grpc_service.initial_metadata); needs --filter-token-file")
	fs.StringVar(&o.StateFile, "state-file", "", "JSON file that keeps rollout state across restarts (ignored with --redis)")
	fs.StringVar(&o.GRPCTLS.CertFile, "grpc-tls-cert", "", "PEM certificate for TLS on the gRPC listener (with --grpc-tls-key)")
	fs.StringVar(&o.GRPCTLS.KeyFile, "grpc-tls-key", "", "PEM private key for --grpc-tls-cert")
	fs.StringVar(&o.GRPCTLS.ClientCAFile, "grpc-client-ca", "", "PEM CA bundle: require gRPC clients to present a certificate it signed (mTLS)")
	fs.DurationVar(&o.ReloadInterval, "reload-interval", 5*time.Second, "how often files are checked for changes (0 or less: only on SIGHUP)")
	fs.DurationVar(&shutdown, "shutdown-timeout", 20*time.Second, "how long in-flight calls may finish after SIGTERM")
	var failMode string
	var storeTimeout time.Duration
	fs.StringVar(&failMode, "ratelimit-failure-mode", "error",
		"answer when the counter store fails: error (UNAVAILABLE; Envoy's failure_mode_deny decides), open or closed")
	fs.DurationVar(&storeTimeout, "ratelimit-store-timeout", 0, "bound on each counter store round trip (0: the request's deadline only)")
	var quota quotaFlags
	quota.register(fs)
	fs.StringVar(&logLevel, "log-level", "info", "debug, info, warn or error")
	fs.StringVar(&logFormat, "log-format", "json", "json or text")
	fs.Usage = func() {
		fmt.Fprintf(fs.Output(), "usage: shepherd-sidecar [flags]\n\nEvery flag may also come from the environment variable shown.\n\n")
		fs.VisitAll(func(f *flag.Flag) {
			fmt.Fprintf(fs.Output(), "  --%s (%s)\n    \t%s (default %q)\n", f.Name, envName(f.Name), f.Usage, f.DefValue)
		})
	}
	// Environment first, so that flags on the command line override it.
	var envErr error
	fs.VisitAll(func(f *flag.Flag) {
		if v, ok := os.LookupEnv(envName(f.Name)); ok && envErr == nil {
			if err := f.Value.Set(v); err != nil {
				envErr = fmt.Errorf("%s: %w", envName(f.Name), err)
			}
		}
	})
	if envErr != nil {
		fmt.Fprintln(stderr, "shepherd-sidecar:", envErr)
		return 2
	}
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		return 2
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "shepherd-sidecar: unexpected argument %q\n", fs.Arg(0))
		return 2
	}
	var level slog.Level
	if err := level.UnmarshalText([]byte(logLevel)); err != nil {
		fmt.Fprintf(stderr, "shepherd-sidecar: --log-level: %v\n", err)
		return 2
	}
	hopts := &slog.HandlerOptions{Level: level}
	var log *slog.Logger
	switch logFormat {
	case "json":
		log = slog.New(slog.NewJSONHandler(stderr, hopts))
	case "text":
		log = slog.New(slog.NewTextHandler(stderr, hopts))
	default:
		fmt.Fprintf(stderr, "shepherd-sidecar: --log-format: must be json or text\n")
		return 2
	}
	if o.ReloadInterval <= 0 {
		o.ReloadInterval = -1
	}
	o.ShutdownTimeout = shutdown
	o.Logger = log
	// The password is read from the environment directly, never as a flag.
	o.Redis.Password = os.Getenv(redisPasswordEnv)
	mode, err := server.ParseFailureMode(failMode)
	if err != nil {
		fmt.Fprintf(stderr, "shepherd-sidecar: --ratelimit-failure-mode: %v\n", err)
		return 2
	}
	o.RateLimit = server.RateLimitWith(ratelimit.Options{FailureMode: mode, StoreTimeout: storeTimeout})
	if o.Quota, err = quota.options(); err != nil {
		fmt.Fprintf(stderr, "shepherd-sidecar: %v\n", err)
		return 2
	}

	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	defer stop()
	srv, err := server.New(ctx, o)
	if err != nil {
		log.Error("cannot start", "error", err)
		return 1
	}
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer func() {
		signal.Stop(hup)
		close(hup)
	}()
	go func() {
		for range hup {
			log.Info("SIGHUP: reloading")
			_ = srv.Reload()
		}
	}()
	if err := srv.Serve(ctx); err != nil {
		log.Error("stopped with error", "error", err)
		return 1
	}
	return 0
}
