// Command shepherdctl operates a shepherd sidecar: canary rollouts, rate
// limit checks, config validation and RLS benchmarks.
//
//	shepherdctl canary status [ROUTE]
//	shepherdctl canary set ROUTE WEIGHT        (25, 25%, 12.5% or 1250bp)
//	shepherdctl canary promote|rollback|pause|resume ROUTE
//	shepherdctl policy
//	shepherdctl limits check --domain D --descriptor k=v,k2=v2 [--hits N]
//	shepherdctl validate sidecar|ratelimit|filter PATH
//	shepherdctl bench rls --addr A [--concurrency 32] [--duration 5s] [--server-pid PID] [--serve-null]
//
// Exit codes: 0 success, 1 failure (the call or the validation failed),
// 2 usage error, 3 `limits check` answered OVER_LIMIT.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
)

// Exit codes.
const (
	exitOK        = 0
	exitFail      = 1
	exitUsage     = 2
	exitOverLimit = 3
)

const usage = `usage: shepherdctl <command> [flags] [args]

commands:
  canary status [ROUTE]                       show rollouts (no token needed)
  canary set ROUTE WEIGHT                     pin the canary weight: 25, 25%, 12.5% or 1250bp
  canary promote ROUTE                        send all traffic to the canary
  canary rollback ROUTE                       send all traffic to the baseline
  canary pause ROUTE                          hold the current weight
  canary resume ROUTE                         continue stepping
  policy                                      show the policy filters get (admin token; credentials withheld)
  limits check --domain D --descriptor k=v,k2=v2 [--descriptor ...] [--hits N]
                                              ask the rate limit service, print statuses
  validate sidecar FILE                       check a sidecar config file
  validate ratelimit PATH                     check a rate limit config file or directory
  validate filter FILE                        check a filter pluginConfig (JSON or YAML)
  bench rls --addr A [--concurrency N] [--duration D] [--server-pid PID] [--serve-null]
                                              measure a rate limit service (any envoy.service.ratelimit.v3
                                              server on loopback), its CPU per decision with its pid

Istio manifests (WasmPlugin, overlays) are checked by shepherd-validate.

Commands that talk to a sidecar take --addr (env SHEPHERDCTL_ADDR, default
127.0.0.1:8081) and --timeout. Admin commands need a token: --token-file
(env SHEPHERDCTL_TOKEN_FILE) or the env SHEPHERDCTL_TOKEN.

exit codes: 0 ok, 1 failed, 2 usage error, 3 over limit (limits check)
`

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

// usageError is a mistake in the command line.
type usageError struct{ msg string }

func (e usageError) Error() string { return e.msg }

func usagef(format string, args ...any) error { return usageError{fmt.Sprintf(format, args...)} }

// errOverLimit makes `limits check` exit with exitOverLimit.
var errOverLimit = errors.New("over limit")

func run(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 || args[0] == "-h" || args[0] == "--help" || args[0] == "help" {
		fmt.Fprint(stdout, usage)
		if len(args) == 0 {
			return exitUsage
		}
		return exitOK
	}
	var err error
	switch args[0] {
	case "canary":
		err = canaryCmd(args[1:], stdout)
	case "policy":
		err = policyCmd(args[1:], stdout)
	case "limits":
		err = limitsCmd(args[1:], stdout)
	case "validate":
		err = validateCmd(args[1:], stdout)
	case "bench":
		err = benchCmd(args[1:], stdout)
	default:
		err = usagef("unknown command %q", args[0])
	}
	var ue usageError
	switch {
	case err == nil:
		return exitOK
	case errors.Is(err, flag.ErrHelp):
		return exitOK
	case errors.Is(err, errOverLimit):
		return exitOverLimit
	case errors.As(err, &ue):
		fmt.Fprintf(stderr, "shepherdctl: %s\n\n%s", ue.msg, usage)
		return exitUsage
	default:
		if s, ok := status.FromError(err); ok && s.Code() != 0 {
			fmt.Fprintf(stderr, "shepherdctl: %s: %s\n", s.Code(), s.Message())
		} else {
			fmt.Fprintf(stderr, "shepherdctl: %v\n", err)
		}
		return exitFail
	}
}

// conn holds the flags shared by commands that talk to a sidecar.
type conn struct {
	addr      string
	tokenFile string
	timeout   time.Duration
}

func (c *conn) register(fs *flag.FlagSet, admin bool) {
	addr := os.Getenv("SHEPHERDCTL_ADDR")
	if addr == "" {
		addr = "127.0.0.1:8081"
	}
	fs.StringVar(&c.addr, "addr", addr, "sidecar gRPC address (env SHEPHERDCTL_ADDR)")
	fs.DurationVar(&c.timeout, "timeout", 10*time.Second, "call timeout")
	if admin {
		fs.StringVar(&c.tokenFile, "token-file", os.Getenv("SHEPHERDCTL_TOKEN_FILE"),
			"file holding the admin token (env SHEPHERDCTL_TOKEN_FILE; or set SHEPHERDCTL_TOKEN)")
	}
}

// dial connects (lazily, as gRPC does) to the sidecar.
func (c *conn) dial() (*grpc.ClientConn, error) {
	cc, err := grpc.NewClient(c.addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		return nil, fmt.Errorf("connect to %s: %w", c.addr, err)
	}
	return cc, nil
}

// context returns a call context with the timeout and, for admin calls,
// the token.
func (c *conn) context(admin bool) (context.Context, context.CancelFunc, error) {
	ctx, cancel := context.WithTimeout(context.Background(), c.timeout)
	if !admin {
		return ctx, cancel, nil
	}
	tok, err := c.token()
	if err != nil {
		cancel()
		return nil, nil, err
	}
	return metadata.AppendToOutgoingContext(ctx, "authorization", "Bearer "+tok), cancel, nil
}

func (c *conn) token() (string, error) {
	if c.tokenFile != "" {
		data, err := os.ReadFile(c.tokenFile)
		if err != nil {
			return "", fmt.Errorf("admin token: %w", err)
		}
		tok := strings.TrimSpace(string(data))
		if tok == "" {
			return "", fmt.Errorf("admin token file %s: is empty", c.tokenFile)
		}
		return tok, nil
	}
	if tok := strings.TrimSpace(os.Getenv("SHEPHERDCTL_TOKEN")); tok != "" {
		return tok, nil
	}
	return "", usagef("admin command needs --token-file, SHEPHERDCTL_TOKEN_FILE or SHEPHERDCTL_TOKEN")
}

// newFlags makes a flag set whose errors become usage errors.
func newFlags(name string) *flag.FlagSet {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	return fs
}

func parseFlags(fs *flag.FlagSet, args []string) error {
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return usagef("%s: flags:%s", fs.Name(), flagList(fs))
		}
		return usagef("%s: %v", fs.Name(), err)
	}
	return nil
}

func flagList(fs *flag.FlagSet) string {
	var b strings.Builder
	fs.VisitAll(func(f *flag.Flag) { fmt.Fprintf(&b, "\n  --%s: %s (default %q)", f.Name, f.Usage, f.DefValue) })
	return b.String()
}

// interleave lets flags follow positional arguments ("promote chat --addr x").
func interleave(fs *flag.FlagSet, args []string) ([]string, error) {
	var pos []string
	for {
		if err := parseFlags(fs, args); err != nil {
			return nil, err
		}
		args = fs.Args()
		if len(args) == 0 {
			return pos, nil
		}
		pos = append(pos, args[0])
		args = args[1:]
	}
}
