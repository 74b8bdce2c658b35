package pricing

import (
	"errors"
	"strconv"
)

// Table maps model names to prices. It is immutable once built and safe for
// concurrent use.
type Table struct {
	prices map[string]Price
}

// NewTable validates prices and returns a table holding a copy of them. Each
// price must be between 0 and MaxPrice; model names must not be empty.
func NewTable(prices map[string]Price) (*Table, error) {
	t := &Table{prices: make(map[string]Price, len(prices))}
	for model, p := range prices {
		if model == "" {
			return nil, errors.New("pricing: model name must not be empty")
		}
		for _, f := range [...]struct {
			name string
			v    int64
		}{{"input", p.Input}, {"cachedInput", p.CachedInput}, {"output", p.Output}} {
			if f.v < 0 || f.v > MaxPrice {
				return nil, errors.New("pricing: model " + strconv.Quote(model) + " " + f.name + ": must be between 0 and 1000000 USD per million tokens")
			}
		}
		t.prices[model] = p
	}
	return t, nil
}

// Len is the number of models priced.
func (t *Table) Len() int { return len(t.prices) }

// Lookup returns model's price. A model not listed under its own name is looked
// up once more without a trailing date ("gpt-4.1-2025-04-14" → "gpt-4.1",
// "claude-sonnet-4-5-20250929" → "claude-sonnet-4-5"), the form in which
// providers report the snapshot they served. It does not allocate.
func (t *Table) Lookup(model string) (Price, bool) {
	if p, ok := t.prices[model]; ok {
		return p, true
	}
	if base, ok := trimDate(model); ok {
		p, ok := t.prices[base]
		return p, ok
	}
	return Price{}, false
}

// Cost is the cost in micro-USD of a request to model that used in prompt
// tokens (cachedIn of them cached) and out completion tokens, rounded half up
// once from the exact sum (see Price.Pico). known is false for a model not in the
// table; the cost is then 0.
func (t *Table) Cost(model string, in, cachedIn, out int64) (microUSD int64, known bool) {
	p, ok := t.Lookup(model)
	if !ok {
		return 0, false
	}
	return p.Micro(in, cachedIn, out), true
}

// trimDate removes a trailing "-YYYY-MM-DD" or "-YYYYMMDD".
func trimDate(model string) (string, bool) {
	n := len(model)
	if n > 11 && model[n-11] == '-' && model[n-6] == '-' && model[n-3] == '-' &&
		digits(model[n-10:n-6]) && digits(model[n-5:n-3]) && digits(model[n-2:]) {
		return model[:n-11], true
	}
	if n > 9 && model[n-9] == '-' && digits(model[n-8:]) {
		return model[:n-9], true
	}
	return "", false
}

func digits(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return s != ""
}

// Example2026 returns the price table of the project's sample config, in USD per
// million tokens (input / cached input / output):
//
//	gpt-4.1            2.00 / 0.50  /  8.00
//	gpt-4.1-mini       0.40 / 0.10  /  1.60
//	deepseek-v3.2      0.28 / 0.028 /  0.42
//	gemini-2.5-flash   0.30 / 0.03  /  2.50
//	claude-sonnet-4.5  3.00 / 0.30  / 15.00
//
// These are example figures for the sample config, close to the providers'
// public list prices at the time of writing but not authoritative: real
// deployments configure the prices they are billed.
func Example2026() *Table {
	return &Table{prices: map[string]Price{
		"gpt-4.1":           {Input: 2_000_000, CachedInput: 500_000, Output: 8_000_000},
		"gpt-4.1-mini":      {Input: 400_000, CachedInput: 100_000, Output: 1_600_000},
		"deepseek-v3.2":     {Input: 280_000, CachedInput: 28_000, Output: 420_000},
		"gemini-2.5-flash":  {Input: 300_000, CachedInput: 30_000, Output: 2_500_000},
		"claude-sonnet-4.5": {Input: 3_000_000, CachedInput: 300_000, Output: 15_000_000},
	}}
}
