package mesh

// Shared data keys of the policy sync. Shared data is per vm_id, so every VM of
// one Envoy sees the same values.
const (
	// LeaseKey holds the poller's lease: owner and expiry.
	LeaseKey = "shepherd.policy.lease"
	// PolicyKey holds the last policy as the sidecar encoded it.
	PolicyKey = "shepherd.policy.raw"
	// VersionKey holds the version of PolicyKey's policy, written after it.
	VersionKey = "shepherd.policy.version"
)

// LeaseTicks is how many poll periods a lease lasts: a poller that stopped
// ticking (its VM gone) is replaced after this many periods.
const LeaseTicks = 3

// AppendLease appends a lease held by owner until the time until (ns).
func AppendLease(dst []byte, owner uint64, until int64) []byte {
	dst = AppendUint64(dst, owner)
	return AppendUint64(dst, uint64(until))
}

// Claim says whether a VM may take (or keep) the lease whose current value is
// b: when it is absent or malformed, held by this owner, or expired at now.
func Claim(b []byte, owner uint64, now int64) bool {
	if len(b) != 16 {
		return true
	}
	o, _ := Uint64(b)
	until, _ := Uint64(b[8:])
	return o == owner || int64(until) <= now
}

// AppendUint64 appends v big-endian.
func AppendUint64(dst []byte, v uint64) []byte {
	return append(dst, byte(v>>56), byte(v>>48), byte(v>>40), byte(v>>32), byte(v>>24), byte(v>>16), byte(v>>8), byte(v))
}

// Uint64 reads a big-endian uint64 from the start of b.
func Uint64(b []byte) (uint64, bool) {
	if len(b) < 8 {
		return 0, false
	}
	return uint64(b[0])<<56 | uint64(b[1])<<48 | uint64(b[2])<<40 | uint64(b[3])<<32 |
		uint64(b[4])<<24 | uint64(b[5])<<16 | uint64(b[6])<<8 | uint64(b[7]), true
}
