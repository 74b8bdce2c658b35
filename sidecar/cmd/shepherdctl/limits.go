package main

import (
	"fmt"
	"io"
	"strings"

	commonrl "github.com/envoyproxy/go-control-plane/envoy/extensions/common/ratelimit/v3"
	rlsv3 "github.com/envoyproxy/go-control-plane/envoy/service/ratelimit/v3"
)

// descriptors collects repeated --descriptor k=v,k2=v2 flags.
type descriptors []*commonrl.RateLimitDescriptor

func (d *descriptors) String() string { return "" }

func (d *descriptors) Set(s string) error {
	desc := &commonrl.RateLimitDescriptor{}
	for _, kv := range strings.Split(s, ",") {
		k, v, ok := strings.Cut(kv, "=")
		if !ok || k == "" {
			return fmt.Errorf("%q: want key=value[,key=value...]", s)
		}
		desc.Entries = append(desc.Entries, &commonrl.RateLimitDescriptor_Entry{Key: k, Value: v})
	}
	*d = append(*d, desc)
	return nil
}

func limitsCmd(args []string, out io.Writer) error {
	if len(args) == 0 || args[0] != "check" {
		return usagef("limits: want `limits check --domain D --descriptor k=v,...`")
	}
	fs := newFlags("limits check")
	var c conn
	c.register(fs, false)
	domain := fs.String("domain", "", "rate limit domain (required)")
	hits := fs.Uint("hits", 1, "hits_addend: how many hits the request counts for")
	var descs descriptors
	fs.Var(&descs, "descriptor", "a descriptor as key=value[,key=value...]; repeatable (required)")
	pos, err := interleave(fs, args[1:])
	if err != nil {
		return err
	}
	if len(pos) > 0 {
		return usagef("limits check: unexpected argument %q", pos[0])
	}
	if *domain == "" {
		return usagef("limits check: --domain is required")
	}
	if len(descs) == 0 {
		return usagef("limits check: at least one --descriptor is required")
	}
	ctx, cancel, err := c.context(false)
	if err != nil {
		return err
	}
	defer cancel()
	cc, err := c.dial()
	if err != nil {
		return err
	}
	defer cc.Close()
	resp, err := rlsv3.NewRateLimitServiceClient(cc).ShouldRateLimit(ctx, &rlsv3.RateLimitRequest{
		Domain: *domain, Descriptors: descs, HitsAddend: uint32(*hits),
	})
	if err != nil {
		return err
	}
	fmt.Fprintf(out, "overall: %s\n", resp.OverallCode)
	for i, st := range resp.Statuses {
		fmt.Fprintf(out, "descriptor %d (%s): %s", i, describe(descs[i]), st.Code)
		if l := st.CurrentLimit; l != nil {
			name := ""
			if l.Name != "" {
				name = " " + l.Name
			}
			fmt.Fprintf(out, ", limit%s %d/%s, remaining %d", name, l.RequestsPerUnit,
				strings.ToLower(l.Unit.String()), st.LimitRemaining)
			if d := st.DurationUntilReset; d != nil {
				fmt.Fprintf(out, ", resets in %s", d.AsDuration())
			}
		} else {
			fmt.Fprint(out, ", no limit")
		}
		fmt.Fprintln(out)
	}
	if resp.OverallCode == rlsv3.RateLimitResponse_OVER_LIMIT {
		return errOverLimit
	}
	return nil
}

func describe(d *commonrl.RateLimitDescriptor) string {
	parts := make([]string, len(d.Entries))
	for i, e := range d.Entries {
		parts[i] = e.Key + "=" + e.Value
	}
	return strings.Join(parts, ",")
}
