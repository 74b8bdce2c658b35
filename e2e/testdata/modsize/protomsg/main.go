// Command protomsg is the empty reactor plus the same rate limit request as
// the generated message of go-control-plane, marshalled with
// google.golang.org/protobuf/proto (docs/RATIONALE.md).
package main

import (
	commonrl "github.com/envoyproxy/go-control-plane/envoy/extensions/common/ratelimit/v3"
	rlsv3 "github.com/envoyproxy/go-control-plane/envoy/service/ratelimit/v3"
	"google.golang.org/protobuf/proto"
)

func main() {}

//go:wasmexport run
func run(n int32) int32 {
	req := &rlsv3.RateLimitRequest{
		Domain: "shepherd",
		Descriptors: []*commonrl.RateLimitDescriptor{{
			Entries: []*commonrl.RateLimitDescriptor_Entry{{Key: "user", Value: "alice"}},
		}},
		HitsAddend: uint32(n),
	}
	b, err := proto.Marshal(req)
	if err != nil {
		return -1
	}
	return int32(len(b))
}
