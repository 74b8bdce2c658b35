// Package pricing turns token usage into cost with exact integer arithmetic.
//
// Prices are kept as integer micro-USD per million tokens, which is the same
// number as pico-USD (1e-12 USD) per token: $0.075 per million tokens is 75000
// micro-USD per million, or 75000 pico-USD per token. A request's cost is summed
// exactly in pico-USD and converted to micro-USD once, at the end.
package pricing

import (
	"math"
	"math/bits"
)

// Bounds that keep every sum within 128 bits and every result within an int64.
const (
	// MaxPrice is the highest price accepted: $1,000,000 per million tokens.
	MaxPrice = 1_000_000 * 1_000_000
	// MaxTokens caps each token count of one cost computation; larger counts
	// are taken as MaxTokens.
	MaxTokens = 1_000_000_000_000
)

const picoPerMicro = 1_000_000

// Price is a model's list price in micro-USD per million tokens for uncached
// input, cached input and output tokens.
type Price struct {
	Input, CachedInput, Output int64
}

// Pico is an exact amount of pico-USD (1e-12 USD) as an unsigned 128-bit number.
type Pico struct {
	Hi, Lo uint64
}

// add returns a+b; the caller keeps sums far from 2^128.
func (a Pico) add(b Pico) Pico {
	lo, c := bits.Add64(a.Lo, b.Lo, 0)
	hi, _ := bits.Add64(a.Hi, b.Hi, c)
	return Pico{hi, lo}
}

// Micro rounds a to micro-USD, half up, saturating at math.MaxInt64.
func (a Pico) Micro() int64 {
	q, r := a.divMicro()
	if r >= picoPerMicro/2 && q < math.MaxInt64 {
		q++
	}
	return q
}

// divMicro splits a into whole micro-USD (saturating) and the pico remainder.
func (a Pico) divMicro() (int64, uint64) {
	if a.Hi >= picoPerMicro {
		return math.MaxInt64, 0
	}
	q, r := bits.Div64(a.Hi, a.Lo, picoPerMicro)
	if q > math.MaxInt64 {
		return math.MaxInt64, 0
	}
	return int64(q), r
}

// Pico is the exact cost of a request at price p. in counts all prompt tokens,
// cached ones included, as OpenAI's usage.prompt_tokens does; cachedIn
// (usage.prompt_tokens_details.cached_tokens) is the part of in billed at the
// cached price and is taken as at most in. Negative counts are taken as 0 and
// counts above MaxTokens as MaxTokens.
func (p Price) Pico(in, cachedIn, out int64) Pico {
	in, cachedIn, out = clampTokens(in), clampTokens(cachedIn), clampTokens(out)
	cachedIn = min(cachedIn, in)
	return mul(in-cachedIn, p.Input).add(mul(cachedIn, p.CachedInput)).add(mul(out, p.Output))
}

// Micro is the cost of a request at price p in micro-USD, rounded half up once
// from the exact pico-USD sum (see Pico for the counts).
func (p Price) Micro(in, cachedIn, out int64) int64 {
	return p.Pico(in, cachedIn, out).Micro()
}

func mul(tokens, price int64) Pico {
	hi, lo := bits.Mul64(uint64(tokens), uint64(price))
	return Pico{hi, lo}
}

func clampTokens(n int64) int64 { return max(0, min(n, MaxTokens)) }

// Accumulator adds up costs exactly and hands them out in whole micro-USD, as a
// counter metric needs them (Envoy counters take positive integer deltas): the
// sub-micro remainder of each cost is carried into the next one, so after any
// number of Adds the micro-USD handed out is the exact total rounded down, never
// off by more than one micro-USD. The zero value is ready; an Accumulator is not
// safe for concurrent use (keep one per VM and metric).
type Accumulator struct {
	rem uint64 // pico-USD not yet handed out, below one micro-USD
}

// Add adds c and returns the whole micro-USD now due (possibly 0).
func (a *Accumulator) Add(c Pico) int64 {
	q, r := c.add(Pico{Lo: a.rem}).divMicro()
	a.rem = r
	return q
}

// Remainder is the pico-USD carried, below one micro-USD.
func (a *Accumulator) Remainder() int64 { return int64(a.rem) }
