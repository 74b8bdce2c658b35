// Package cooldown is the memory of providers that asked for a pause, shared by
// every VM (Envoy worker) of one Envoy as a single proxy-wasm shared-data value.
//
// A provider that answers 429 or 503 with Retry-After (or OpenAI's
// x-ratelimit-reset-* for the exhausted limit) is cooling until then: no attempt
// goes to it, neither from the chain of the request that learnt it nor from later
// requests on any VM. When the time is up the provider is half open: one request
// per Envoy (the probe) may go, and the others keep away until the probe's answer
// clears the entry (a success) or cools it again. A provider whose
// x-ratelimit-remaining-* is near zero is soft cooling until its reset: new
// requests go to another provider or the next fallback entry when the route has
// one, and to it otherwise (it has not refused yet).
//
// The package is pure: the caller reads and writes the shared value (with
// compare-and-swap) and passes the time in. Reading allocates nothing; the value
// is parsed in place.
//
// Encoding (little endian): a version byte (1), an entry count byte, then per
// entry: until (int64, Unix ms), probe until (int64, Unix ms, 0 when no probe is
// out), status (uint16: the refusal's status, 0 for soft), flags (byte: 1 soft),
// name length (byte), the provider's name.
package cooldown

import "encoding/binary"

// Key is the shared-data key of the table.
const Key = "shepherd.cooldowns"

// Bounds on what the table holds.
const (
	// MaxEntries is the most providers the table remembers; a new entry
	// replaces the one that ends first.
	MaxEntries = 64
	// MaxCooldown is the longest pause remembered (ms), whatever the provider
	// asked for: a provider asking for days is probed after this.
	MaxCooldown = int64(300_000)
	// Stale is how long after its end an entry without a successful probe is
	// kept (ms); after it the provider is simply free again.
	Stale = int64(60_000)
	// MaxName is the longest provider name stored (config allows 64).
	MaxName = 255
)

const (
	version   = 1
	header    = 2
	fixed     = 8 + 8 + 2 + 1 + 1
	flagSoft  = 1
	maxStatus = 0xffff
)

// State is what the table says of one provider.
type State struct {
	Until      int64  // the pause ends (Unix ms)
	ProbeUntil int64  // a probe is out until then (Unix ms); 0 when none
	Status     uint16 // the refusal's status (429, 503), 0 for soft
	Soft       bool   // headroom near zero, not a refusal
}

// Verdict is what a State means for an attempt at a given time.
type Verdict uint8

// The verdicts.
const (
	Free    Verdict = iota // send
	Cooling                // keep away (or, for soft, prefer another)
	Probe                  // the pause is over: one request may go, after claiming the probe
)

// At is the verdict for an attempt at now (Unix ms).
func (s State) At(now int64) Verdict {
	switch {
	case s.Until == 0:
		return Free
	case now < s.Until:
		return Cooling
	case s.Soft || now >= s.Until+Stale:
		return Free
	case now < s.ProbeUntil:
		return Cooling
	}
	return Probe
}

// FreeAt is when the provider may be asked again: its pause's end, or, while a
// probe is out, the probe's end. Zero when it is free.
func (s State) FreeAt(now int64) int64 {
	switch s.At(now) {
	case Cooling:
		return max(s.Until, s.ProbeUntil)
	case Probe:
		return now
	}
	return 0
}

// Lookup finds provider's state in the table raw. A malformed or empty table
// has no entries.
func Lookup(raw []byte, provider string) (State, bool) {
	var found State
	ok := false
	each(raw, func(name []byte, s State) bool {
		if string(name) == provider {
			found, ok = s, true
			return false
		}
		return true
	})
	return found, ok
}

// Any reports whether the table holds an entry that is not yet free at now:
// when it does not, nothing needs looking up.
func Any(raw []byte, now int64) bool {
	any := false
	each(raw, func(_ []byte, s State) bool {
		if s.At(now) != Free {
			any = true
			return false
		}
		return true
	})
	return any
}

// each calls f for every well-formed entry until f returns false.
func each(raw []byte, f func(name []byte, s State) bool) {
	if len(raw) < header || raw[0] != version {
		return
	}
	n, off := int(raw[1]), header
	for i := 0; i < n; i++ {
		if off+fixed > len(raw) {
			return
		}
		s := State{
			Until:      int64(binary.LittleEndian.Uint64(raw[off:])),
			ProbeUntil: int64(binary.LittleEndian.Uint64(raw[off+8:])),
			Status:     binary.LittleEndian.Uint16(raw[off+16:]),
			Soft:       raw[off+18]&flagSoft != 0,
		}
		l := int(raw[off+19])
		off += fixed
		if off+l > len(raw) {
			return
		}
		if !f(raw[off:off+l], s) {
			return
		}
		off += l
	}
}

// Change is one edit of the table.
type Change uint8

// The edits.
const (
	// Cool merges a pause: the later end wins, a refusal overrides a soft
	// entry, and a new pause calls back any probe.
	Cool Change = iota
	// ClaimProbe marks the probe as out until State.ProbeUntil.
	ClaimProbe
	// Clear forgets the provider (its probe, or any attempt, succeeded).
	Clear
	// ReleaseProbe gives a probe back that never reached the provider (the
	// filter answered its request itself), so the next request may probe.
	ReleaseProbe
)

// Apply returns the table raw with provider's entry changed by c at now,
// appended to dst[:0]. Entries free since Stale and malformed bytes are
// dropped; when the table is full, the entry that ends first gives way.
// Pauses (also those already in raw) are capped at MaxCooldown from now. dst
// must not share memory with raw.
func Apply(dst, raw []byte, provider string, c Change, s State, now int64) []byte {
	if len(provider) > MaxName {
		provider = provider[:MaxName]
	}
	s.Until = min(s.Until, now+MaxCooldown)
	type kept struct {
		name []byte
		s    State
	}
	var entries [MaxEntries + 1]kept
	n := 0
	mine := -1
	each(raw, func(name []byte, e State) bool {
		if string(name) == provider {
			mine = n
		} else if now >= e.Until+Stale && now >= e.ProbeUntil {
			return true // long free: forget it
		}
		if n < MaxEntries {
			e.Until = min(e.Until, now+MaxCooldown)
			e.ProbeUntil = min(e.ProbeUntil, now+MaxCooldown)
			entries[n] = kept{name, e}
			n++
		}
		return true
	})
	switch c {
	case Clear:
		if mine >= 0 {
			copy(entries[mine:n], entries[mine+1:n])
			n--
		}
	case ClaimProbe:
		if mine >= 0 {
			entries[mine].s.ProbeUntil = s.ProbeUntil
		}
	case ReleaseProbe:
		if mine >= 0 {
			entries[mine].s.ProbeUntil = 0
		}
	case Cool:
		if mine >= 0 {
			e := &entries[mine].s
			switch {
			case s.Soft && !e.Soft && now < e.Until:
				// a refusal's pause outranks headroom
			case !s.Soft && e.Soft, s.Until > e.Until, now >= e.Until:
				*e = State{Until: s.Until, Status: s.Status, Soft: s.Soft}
			}
		} else {
			if n == MaxEntries {
				first := 0
				for i := 1; i < n; i++ {
					if entries[i].s.Until < entries[first].s.Until {
						first = i
					}
				}
				copy(entries[first:n], entries[first+1:n])
				n--
			}
			entries[n] = kept{[]byte(provider), State{Until: s.Until, Status: s.Status, Soft: s.Soft}}
			n++
		}
	}
	out := append(dst[:0], version, byte(n))
	for _, e := range entries[:n] {
		var b [fixed]byte
		binary.LittleEndian.PutUint64(b[0:], uint64(e.s.Until))
		binary.LittleEndian.PutUint64(b[8:], uint64(e.s.ProbeUntil))
		binary.LittleEndian.PutUint16(b[16:], e.s.Status)
		if e.s.Soft {
			b[18] = flagSoft
		}
		b[19] = byte(len(e.name))
		out = append(out, b[:]...)
		out = append(out, e.name...)
	}
	return out
}
