package main

import (
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
	"time"

	policyv1 "github.com/shepherd-mesh/shepherd/sidecar/api/policy/v1"
)

// policyCmd prints the policy the sidecar serves to filters. It calls with
// the admin token, for which the sidecar withholds credential values (only
// the filter's token reads them); a value is never printed, only its header.
func policyCmd(args []string, out io.Writer) error {
	fs := newFlags("policy")
	var c conn
	c.register(fs, true)
	pos, err := interleave(fs, args)
	if err != nil {
		return err
	}
	if len(pos) > 0 {
		return usagef("policy: unexpected argument %q", pos[0])
	}
	ctx, cancel, err := c.context(true)
	if err != nil {
		return err
	}
	defer cancel()
	cc, err := c.dial()
	if err != nil {
		return err
	}
	defer cc.Close()
	resp, err := policyv1.NewPolicyServiceClient(cc).GetPolicy(ctx, &policyv1.GetPolicyRequest{})
	if err != nil {
		return err
	}
	p := resp.GetPolicy()
	if p == nil {
		return fmt.Errorf("sidecar sent no policy")
	}
	fmt.Fprintf(out, "version %d, generated %s\n", p.Version, time.UnixMilli(p.GeneratedUnixMs).UTC().Format(time.RFC3339))
	table(out, "weights", []string{"ROUTE", "PROVIDER", "WEIGHT"}, len(p.Weights), func(i int) []string {
		w := p.Weights[i]
		return []string{w.Route, w.Provider, fmt.Sprintf("%.2f%%", float64(w.WeightBp)/100)}
	})
	table(out, "health", []string{"PROVIDER", "STATE", "REASON"}, len(p.Health), func(i int) []string {
		h := p.Health[i]
		state := "healthy"
		if h.CooldownUntilUnixMs != 0 {
			state = "cooldown until " + time.UnixMilli(h.CooldownUntilUnixMs).UTC().Format(time.RFC3339)
		}
		return []string{h.Provider, state, h.Reason}
	})
	table(out, "budgets", []string{"SCOPE", "PERIOD", "SPENT USD", "LIMIT USD", "EXHAUSTED"}, len(p.Budgets), func(i int) []string {
		b := p.Budgets[i]
		scope := "route " + b.Route
		if b.Consumer != "" {
			scope = "consumer " + b.Consumer
		}
		return []string{scope, b.Period, fmt.Sprintf("%.2f", float64(b.SpentMicroUsd)/1e6),
			fmt.Sprintf("%.2f", float64(b.LimitMicroUsd)/1e6), fmt.Sprint(b.Exhausted)}
	})
	table(out, "credentials", []string{"PROVIDER", "HEADER", "VALUE"}, len(p.Credentials), func(i int) []string {
		cr := p.Credentials[i]
		if cr.Value == "" {
			return []string{cr.Provider, cr.Header, "[loaded; withheld]"}
		}
		return []string{cr.Provider, cr.Header, fmt.Sprintf("[redacted, %d bytes]", len(cr.Value))}
	})
	return nil
}

// table prints a titled, aligned table, or "title: none".
func table(out io.Writer, title string, header []string, n int, row func(i int) []string) {
	if n == 0 {
		fmt.Fprintf(out, "\n%s: none\n", title)
		return
	}
	fmt.Fprintf(out, "\n%s:\n", title)
	tw := tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "  "+strings.Join(header, "\t"))
	for i := 0; i < n; i++ {
		fmt.Fprintln(tw, "  "+strings.Join(row(i), "\t"))
	}
	tw.Flush()
}
