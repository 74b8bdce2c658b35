package server

import (
	"context"
	"crypto/subtle"
	"errors"
	"strings"
	"sync/atomic"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	policyv1 "github.com/shepherd-mesh/shepherd/sidecar/api/policy/v1"
	"github.com/shepherd-mesh/shepherd/sidecar/canary"
	"github.com/shepherd-mesh/shepherd/sidecar/policy"
)

// maxOutcomesPerReport bounds one ReportOutcomes batch.
const maxOutcomesPerReport = 10000

// policyAPI serves shepherd.policy.v1.PolicyService from an engine.
type policyAPI struct {
	policyv1.UnimplementedPolicyServiceServer
	engine *policy.Engine
	// token is the admin token; "" disables the admin calls.
	token *atomic.Pointer[string]
	// filter checks the filter token of GetPolicy, WatchPolicy and
	// ReportOutcomes; reports rate-limits ReportOutcomes per caller.
	filter  *filterAuth
	reports *reportLimiter
	clock   func() time.Time
	// stopping is closed when the server shuts down, to end watch streams.
	stopping <-chan struct{}
}

// reader decides who may read the policy: a caller with a filter token gets
// it whole; one with the admin token (shepherdctl policy) gets it with every
// credential's value withheld; anyone else is refused. withhold reports the
// admin case. Without a filter token configured (only a config with nothing
// to protect starts so) the policy is open and holds no credential.
func (a *policyAPI) reader(ctx context.Context, method string) (withhold bool, err error) {
	if !a.filter.configured() || a.filter.ok(ctx) {
		return false, nil
	}
	md, _ := metadata.FromIncomingContext(ctx)
	if len(md.Get("authorization")) > 0 && a.authorize(ctx) == nil {
		return true, nil
	}
	return false, a.filter.refuse(ctx, method)
}

// withoutCredentialValues is p with every credential's value emptied; p, the
// engine's shared snapshot, is not changed.
func withoutCredentialValues(p *policyv1.Policy) *policyv1.Policy {
	if len(p.GetCredentials()) == 0 {
		return p
	}
	c := proto.Clone(p).(*policyv1.Policy)
	for _, cr := range c.Credentials {
		cr.Value = ""
	}
	return c
}

func (a *policyAPI) GetPolicy(ctx context.Context, req *policyv1.GetPolicyRequest) (*policyv1.GetPolicyResponse, error) {
	withhold, err := a.reader(ctx, "GetPolicy")
	if err != nil {
		return nil, err
	}
	p := a.engine.Policy()
	if req.GetKnownVersion() == p.Version {
		return &policyv1.GetPolicyResponse{NotModified: true, Version: p.Version}, nil
	}
	if withhold {
		p = withoutCredentialValues(p)
	}
	return &policyv1.GetPolicyResponse{Policy: p, Version: p.Version}, nil
}

func (a *policyAPI) WatchPolicy(req *policyv1.WatchPolicyRequest, stream grpc.ServerStreamingServer[policyv1.Policy]) error {
	withhold, err := a.reader(stream.Context(), "WatchPolicy")
	if err != nil {
		return err
	}
	known := req.GetKnownVersion()
	for {
		p, changed := a.engine.Watch()
		if p.Version != known {
			if withhold {
				p = withoutCredentialValues(p)
			}
			if err := stream.Send(p); err != nil {
				return err
			}
			known = p.Version
		}
		select {
		case <-changed:
		case <-stream.Context().Done():
			return stream.Context().Err()
		case <-a.stopping:
			return status.Error(codes.Unavailable, "server is shutting down")
		}
	}
}

func (a *policyAPI) ReportOutcomes(ctx context.Context, req *policyv1.ReportOutcomesRequest) (*policyv1.ReportOutcomesResponse, error) {
	if a.filter.configured() && !a.filter.ok(ctx) {
		return nil, a.filter.refuse(ctx, "ReportOutcomes")
	}
	if err := a.reports.allow(ctx, a.clock()); err != nil {
		return nil, err
	}
	n := len(req.GetOutcomes())
	if n > maxOutcomesPerReport {
		return nil, status.Errorf(codes.InvalidArgument, "outcomes: at most %d per report, got %d", maxOutcomesPerReport, n)
	}
	v := a.engine.Report(req.GetOutcomes())
	return &policyv1.ReportOutcomesResponse{Accepted: uint32(n), Version: v}, nil
}

func (a *policyAPI) GetCanaryStatus(_ context.Context, req *policyv1.GetCanaryStatusRequest) (*policyv1.GetCanaryStatusResponse, error) {
	st, err := a.engine.CanaryStatus(req.GetRoute())
	if err != nil {
		return nil, toStatus(err)
	}
	return &policyv1.GetCanaryStatusResponse{Routes: st}, nil
}

func (a *policyAPI) SetCanaryWeight(ctx context.Context, req *policyv1.SetCanaryWeightRequest) (*policyv1.CanaryStatus, error) {
	if err := a.authorize(ctx); err != nil {
		return nil, err
	}
	return wrap(a.engine.SetCanaryWeight(req.GetRoute(), req.GetWeightBp()))
}

func (a *policyAPI) PauseRollout(ctx context.Context, req *policyv1.RouteRequest) (*policyv1.CanaryStatus, error) {
	if err := a.authorize(ctx); err != nil {
		return nil, err
	}
	return wrap(a.engine.PauseRollout(req.GetRoute()))
}

func (a *policyAPI) ResumeRollout(ctx context.Context, req *policyv1.RouteRequest) (*policyv1.CanaryStatus, error) {
	if err := a.authorize(ctx); err != nil {
		return nil, err
	}
	return wrap(a.engine.ResumeRollout(req.GetRoute()))
}

func (a *policyAPI) PromoteCanary(ctx context.Context, req *policyv1.RouteRequest) (*policyv1.CanaryStatus, error) {
	if err := a.authorize(ctx); err != nil {
		return nil, err
	}
	return wrap(a.engine.PromoteCanary(req.GetRoute()))
}

func (a *policyAPI) RollbackCanary(ctx context.Context, req *policyv1.RouteRequest) (*policyv1.CanaryStatus, error) {
	if err := a.authorize(ctx); err != nil {
		return nil, err
	}
	return wrap(a.engine.RollbackCanary(req.GetRoute()))
}

// authorize checks "authorization: Bearer <token>": missing credentials are
// Unauthenticated, a wrong token (or no admin token configured) is
// PermissionDenied. Error texts never repeat what the caller sent.
func (a *policyAPI) authorize(ctx context.Context) error {
	md, _ := metadata.FromIncomingContext(ctx)
	vals := md.Get("authorization")
	if len(vals) == 0 || vals[0] == "" {
		return status.Error(codes.Unauthenticated, "admin call needs metadata \"authorization: Bearer <token>\"")
	}
	got, ok := strings.CutPrefix(vals[0], "Bearer ")
	if !ok {
		return status.Error(codes.Unauthenticated, "authorization metadata must be \"Bearer <token>\"")
	}
	want := a.token.Load()
	if want == nil || *want == "" {
		return status.Error(codes.PermissionDenied, "admin calls are disabled: the sidecar has no admin token")
	}
	if subtle.ConstantTimeCompare([]byte(strings.TrimSpace(got)), []byte(*want)) != 1 {
		return status.Error(codes.PermissionDenied, "admin token not accepted")
	}
	return nil
}

func wrap(st *policyv1.CanaryStatus, err error) (*policyv1.CanaryStatus, error) {
	if err != nil {
		return nil, toStatus(err)
	}
	return st, nil
}

func toStatus(err error) error {
	switch {
	case errors.Is(err, canary.ErrInvalidWeight):
		return status.Error(codes.InvalidArgument, err.Error())
	case errors.Is(err, policy.ErrUnknownRoute):
		return status.Error(codes.NotFound, err.Error())
	case errors.Is(err, policy.ErrInvalid):
		return status.Error(codes.FailedPrecondition, err.Error())
	case errors.Is(err, policy.ErrConflict):
		return status.Error(codes.Aborted, err.Error())
	}
	return status.Error(codes.Internal, err.Error())
}
