package main

import (
	"fmt"
	"io"
	"text/tabwriter"
	"time"

	policyv1 "github.com/shepherd-mesh/shepherd/sidecar/api/policy/v1"
)

// policyCmd prints the policy the sidecar serves to filters. Credential
// values are never printed, only their header and length.
func policyCmd(args []string, out io.Writer) error {
	fs := newFlags("policy")
	var c conn
	c.register(fs, false)
	pos, err := interleave(fs, args)
	if err != nil {
		return err
	}
	if len(pos) > 0 {
		return usagef("policy: unexpected argument %q", pos[0])
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
	resp, err := policyv1.NewPolicyServiceClient(cc).GetPolicy(ctx, &policyv1.GetPolicyRequest{})
	if err != nil {
		return err
	}
	p := resp.GetPolicy()
	if p == nil {
		return fmt.Errorf("sidecar sent no policy")
	}
	fmt.Fprintf(out, "version %d, generated %s\n", p.Version, time.UnixMilli(p.GeneratedUnixMs).UTC().Format(time.RFC3339))
	tw := tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "\nWEIGHTS\tROUTE\tPROVIDER\tWEIGHT")
	for _, w := range p.Weights {
		fmt.Fprintf(tw, "\t%s\t%s\t%.2f%%\n", w.Route, w.Provider, float64(w.WeightBp)/100)
	}
	fmt.Fprintln(tw, "\nHEALTH\tPROVIDER\tSTATE\tREASON")
	for _, h := range p.Health {
		state := "healthy"
		if h.CooldownUntilUnixMs != 0 {
			state = "cooldown until " + time.UnixMilli(h.CooldownUntilUnixMs).UTC().Format(time.RFC3339)
		}
		fmt.Fprintf(tw, "\t%s\t%s\t%s\n", h.Provider, state, h.Reason)
	}
	fmt.Fprintln(tw, "\nBUDGETS\tSCOPE\tPERIOD\tSPENT / LIMIT (USD)")
	for _, b := range p.Budgets {
		scope := "route " + b.Route
		if b.Consumer != "" {
			scope = "consumer " + b.Consumer
		}
		ex := ""
		if b.Exhausted {
			ex = "  EXHAUSTED"
		}
		fmt.Fprintf(tw, "\t%s\t%s\t%.2f / %.2f%s\n", scope, b.Period, float64(b.SpentMicroUsd)/1e6, float64(b.LimitMicroUsd)/1e6, ex)
	}
	fmt.Fprintln(tw, "\nCREDENTIALS\tPROVIDER\tHEADER\tVALUE")
	for _, cr := range p.Credentials {
		fmt.Fprintf(tw, "\t%s\t%s\t[redacted, %d bytes]\n", cr.Provider, cr.Header, len(cr.Value))
	}
	return tw.Flush()
}
