package canary

import (
	"math"
)

// IsError reports whether an outcome with this HTTP status counts as a
// failure for rollout analysis and provider health: no response (0), 429 and
// any 5xx.
func IsError(status uint32) bool {
	return status == 0 || status == 429 || status >= 500
}

// latency histogram: bucket i holds latencies up to bounds[i] ms; bounds grow
// by ~5% so a percentile is exact to within 5%, in constant memory.
var bounds = func() []uint32 {
	var b []uint32
	for v := 1.0; v < 3_600_000; v *= 1.05 {
		u := uint32(math.Ceil(v))
		if len(b) == 0 || u > b[len(b)-1] {
			b = append(b, u)
		}
	}
	return append(b, math.MaxUint32)
}()

func bucketOf(ms uint32) int {
	lo, hi := 0, len(bounds)-1
	for lo < hi {
		mid := (lo + hi) / 2
		if bounds[mid] >= ms {
			hi = mid
		} else {
			lo = mid + 1
		}
	}
	return lo
}

// Stats counts one provider's outcomes in an analysis window. The zero value
// is empty and ready to use; memory is constant however many outcomes arrive.
type Stats struct {
	Requests uint64
	Errors   uint64
	max      uint32
	hist     []uint64
}

// Add records one outcome.
func (s *Stats) Add(status, latencyMs uint32) {
	s.Requests++
	if IsError(status) {
		s.Errors++
	}
	if s.hist == nil {
		s.hist = make([]uint64, len(bounds))
	}
	s.hist[bucketOf(latencyMs)]++
	s.max = max(s.max, latencyMs)
}

// ErrorRate is Errors/Requests, 0 when empty.
func (s *Stats) ErrorRate() float64 {
	if s.Requests == 0 {
		return 0
	}
	return float64(s.Errors) / float64(s.Requests)
}

// P99 returns the 99th percentile latency in ms, 0 when empty.
func (s *Stats) P99() uint32 { return s.Quantile(0.99) }

// Quantile returns the q-quantile latency in ms (the upper bound of its
// histogram bucket, never above the largest latency seen), 0 when empty.
func (s *Stats) Quantile(q float64) uint32 {
	if s.Requests == 0 {
		return 0
	}
	rank := uint64(math.Ceil(q * float64(s.Requests)))
	if rank == 0 {
		rank = 1
	}
	var seen uint64
	for i, n := range s.hist {
		seen += n
		if seen >= rank {
			return min(bounds[i], s.max)
		}
	}
	return s.max
}
