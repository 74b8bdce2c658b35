package main

import (
	"context"
	"fmt"
	"io"
	"net"
	"time"

	"github.com/shepherd-mesh/shepherd/internal/rlsbench"
)

// entries collects repeated --descriptor flags for the benchmark.
type entries [][]rlsbench.Entry

func (e *entries) String() string { return "" }

func (e *entries) Set(s string) error {
	var d descriptors
	if err := d.Set(s); err != nil {
		return err
	}
	var out []rlsbench.Entry
	for _, en := range d[0].Entries {
		out = append(out, rlsbench.Entry{Key: en.Key, Value: en.Value})
	}
	*e = append(*e, out)
	return nil
}

func benchCmd(args []string, out io.Writer) error {
	if len(args) == 0 || args[0] != "rls" {
		return usagef("bench: want `bench rls --addr A ...`")
	}
	fs := newFlags("bench rls")
	addr := fs.String("addr", "", "rate limit service to measure: any envoy.service.ratelimit.v3 server (loopback only)")
	pid := fs.Int("server-pid", 0, "the --addr server's process id on this machine: also report its CPU time per decision (Linux, /proc)")
	conc := fs.Int("concurrency", 32, "requests in flight")
	conns := fs.Int("connections", 1, "gRPC connections")
	dur := fs.Duration("duration", 5*time.Second, "run length")
	domain := fs.String("domain", "rlsbench", "request domain")
	variants := fs.Int("variants", 1000, "distinct requests ({n} in a descriptor value is replaced by 0..N-1)")
	null := fs.Bool("serve-null", false, "also measure an in-process do-nothing RLS in the same run and print the ratio")
	var descs entries
	fs.Var(&descs, "descriptor", "key=value[,key=value...]; repeatable (default user=u{n})")
	pos, err := interleave(fs, args[1:])
	if err != nil {
		return err
	}
	if len(pos) > 0 {
		return usagef("bench rls: unexpected argument %q", pos[0])
	}
	if *addr == "" && !*null {
		return usagef("bench rls: --addr is required (or --serve-null)")
	}
	if *pid != 0 && *addr == "" {
		return usagef("bench rls: --server-pid measures the --addr server; give --addr")
	}
	opts := rlsbench.Options{Concurrency: *conc, Connections: *conns, Duration: *dur,
		Domain: *domain, Descriptors: descs, Variants: *variants}
	ctx := context.Background()
	var target, base rlsbench.Result
	if *addr != "" {
		opts.Addr, opts.ServerPID = *addr, *pid
		if target, err = rlsbench.Run(ctx, opts); err != nil {
			return fmt.Errorf("bench %s: %w", *addr, err)
		}
		fmt.Fprintf(out, "%s: %s\n", *addr, target)
	}
	if *null {
		lis, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return fmt.Errorf("null server: %w", err)
		}
		srv := rlsbench.ServeNull(lis)
		defer srv.Stop()
		// The null server runs in this process: its CPU is in "this process".
		opts.Addr, opts.ServerPID = lis.Addr().String(), 0
		if base, err = rlsbench.Run(ctx, opts); err != nil {
			return fmt.Errorf("bench null server: %w", err)
		}
		fmt.Fprintf(out, "null server: %s\n", base)
		if *addr != "" && base.PerSecond > 0 {
			fmt.Fprintf(out, "ratio (target/null): %.2f\n", target.PerSecond/base.PerSecond)
		}
	}
	return nil
}
