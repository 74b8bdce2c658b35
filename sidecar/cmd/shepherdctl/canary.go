package main

import (
	"fmt"
	"io"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"google.golang.org/protobuf/encoding/protojson"

	policyv1 "github.com/shepherd-mesh/shepherd/sidecar/api/policy/v1"
)

func canaryCmd(args []string, out io.Writer) error {
	if len(args) == 0 {
		return usagef("canary: missing subcommand (status, set, promote, rollback, pause, resume)")
	}
	sub := args[0]
	admin := sub != "status"
	fs := newFlags("canary " + sub)
	var c conn
	c.register(fs, admin)
	asJSON := fs.Bool("json", false, "print JSON")
	pos, err := interleave(fs, args[1:])
	if err != nil {
		return err
	}
	want := 1
	switch sub {
	case "status":
		if len(pos) > 1 {
			return usagef("canary status: at most one ROUTE")
		}
	case "set":
		want = 2
	case "promote", "rollback", "pause", "resume":
	default:
		return usagef("canary: unknown subcommand %q", sub)
	}
	if sub != "status" && len(pos) != want {
		if want == 2 {
			return usagef("canary set: want ROUTE WEIGHT")
		}
		return usagef("canary %s: want ROUTE", sub)
	}
	var weight uint32
	if sub == "set" {
		if weight, err = parseWeight(pos[1]); err != nil {
			return usagef("canary set: %v", err)
		}
	}
	ctx, cancel, err := c.context(admin)
	if err != nil {
		return err
	}
	defer cancel()
	cc, err := c.dial()
	if err != nil {
		return err
	}
	defer cc.Close()
	client := policyv1.NewPolicyServiceClient(cc)

	var statuses []*policyv1.CanaryStatus
	var st *policyv1.CanaryStatus
	switch sub {
	case "status":
		route := ""
		if len(pos) == 1 {
			route = pos[0]
		}
		resp, err := client.GetCanaryStatus(ctx, &policyv1.GetCanaryStatusRequest{Route: route})
		if err != nil {
			return err
		}
		statuses = resp.Routes
	case "set":
		st, err = client.SetCanaryWeight(ctx, &policyv1.SetCanaryWeightRequest{Route: pos[0], WeightBp: weight})
	case "promote":
		st, err = client.PromoteCanary(ctx, &policyv1.RouteRequest{Route: pos[0]})
	case "rollback":
		st, err = client.RollbackCanary(ctx, &policyv1.RouteRequest{Route: pos[0]})
	case "pause":
		st, err = client.PauseRollout(ctx, &policyv1.RouteRequest{Route: pos[0]})
	case "resume":
		st, err = client.ResumeRollout(ctx, &policyv1.RouteRequest{Route: pos[0]})
	}
	if err != nil {
		return err
	}
	if st != nil {
		statuses = []*policyv1.CanaryStatus{st}
	}
	if *asJSON {
		for _, s := range statuses {
			b, err := protojson.Marshal(s)
			if err != nil {
				return err
			}
			fmt.Fprintln(out, string(b))
		}
		return nil
	}
	printStatuses(out, statuses)
	return nil
}

// parseWeight reads "25", "25%", "12.5%" (percent) or "1250bp".
func parseWeight(s string) (uint32, error) {
	if bp, ok := strings.CutSuffix(s, "bp"); ok {
		v, err := strconv.ParseUint(bp, 10, 32)
		if err != nil || v > 10000 {
			return 0, fmt.Errorf("weight %q: basis points must be 0..10000", s)
		}
		return uint32(v), nil
	}
	v, err := strconv.ParseFloat(strings.TrimSuffix(s, "%"), 64)
	if err != nil || v < 0 || v > 100 {
		return 0, fmt.Errorf("weight %q: must be a percentage 0..100 (e.g. 25 or 12.5%%) or basis points (1250bp)", s)
	}
	return uint32(v*100 + 0.5), nil
}

var stateNames = map[policyv1.RolloutState]string{
	policyv1.RolloutState_ROLLOUT_STATE_PROGRESSING: "progressing",
	policyv1.RolloutState_ROLLOUT_STATE_PAUSED:      "paused",
	policyv1.RolloutState_ROLLOUT_STATE_PROMOTED:    "promoted",
	policyv1.RolloutState_ROLLOUT_STATE_ROLLED_BACK: "rolled_back",
	policyv1.RolloutState_ROLLOUT_STATE_MANUAL:      "manual",
}

func printStatuses(out io.Writer, sts []*policyv1.CanaryStatus) {
	if len(sts) == 0 {
		fmt.Fprintln(out, "no canary plans")
		return
	}
	tw := tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "ROUTE\tSTATE\tCANARY\tWEIGHT\tSTEP\tSINCE\tCANARY REQ/ERR/P99\tBASELINE REQ/ERR/P99\tREASON")
	for _, s := range sts {
		since := time.UnixMilli(s.StepStartedUnixMs).UTC().Format(time.RFC3339)
		fmt.Fprintf(tw, "%s\t%s\t%s (baseline %s)\t%.2f%%\t%d/%d\t%s\t%d/%d/%dms\t%d/%d/%dms\t%s\n",
			s.Route, stateNames[s.State], s.CanaryProvider, s.BaselineProvider, float64(s.WeightBp)/100,
			s.StepIndex, s.StepsTotal, since,
			s.CanaryRequests, s.CanaryErrors, s.CanaryP99Ms, s.BaselineRequests, s.BaselineErrors, s.BaselineP99Ms,
			s.Reason)
	}
	tw.Flush()
}
