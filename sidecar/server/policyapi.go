package server

import (
	"context"
	"crypto/subtle"
	"errors"
	"strings"
	"sync/atomic"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

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
	// stopping is closed when the server shuts down, to end watch streams.
	stopping <-chan struct{}
}

func (a *policyAPI) GetPolicy(_ context.Context, req *policyv1.GetPolicyRequest) (*policyv1.GetPolicyResponse, error) {
	p := a.engine.Policy()
	if req.GetKnownVersion() == p.Version {
		return &policyv1.GetPolicyResponse{NotModified: true, Version: p.Version}, nil
	}
	return &policyv1.GetPolicyResponse{Policy: p, Version: p.Version}, nil
}

func (a *policyAPI) WatchPolicy(req *policyv1.WatchPolicyRequest, stream grpc.ServerStreamingServer[policyv1.Policy]) error {
	known := req.GetKnownVersion()
	for {
		p, changed := a.engine.Watch()
		if p.Version != known {
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

func (a *policyAPI) ReportOutcomes(_ context.Context, req *policyv1.ReportOutcomesRequest) (*policyv1.ReportOutcomesResponse, error) {
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
