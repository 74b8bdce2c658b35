// Command protowire is the empty reactor plus a rate limit request encoded
// field by field with google.golang.org/protobuf/encoding/protowire, as the
// filter's codec (filter/mesh) does (docs/RATIONALE.md).
package main

import "google.golang.org/protobuf/encoding/protowire"

func main() {}

//go:wasmexport run
func run(n int32) int32 {
	// envoy.service.ratelimit.v3.RateLimitRequest{domain: 1, descriptors: 2, hits_addend: 3}
	var entry []byte
	entry = protowire.AppendTag(entry, 1, protowire.BytesType)
	entry = protowire.AppendString(entry, "user")
	entry = protowire.AppendTag(entry, 2, protowire.BytesType)
	entry = protowire.AppendString(entry, "alice")
	var desc []byte
	desc = protowire.AppendTag(desc, 1, protowire.BytesType)
	desc = protowire.AppendBytes(desc, entry)
	var b []byte
	b = protowire.AppendTag(b, 1, protowire.BytesType)
	b = protowire.AppendString(b, "shepherd")
	b = protowire.AppendTag(b, 2, protowire.BytesType)
	b = protowire.AppendBytes(b, desc)
	b = protowire.AppendTag(b, 3, protowire.VarintType)
	b = protowire.AppendVarint(b, uint64(n))
	return int32(len(b))
}
