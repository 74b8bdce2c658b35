package pricing

import (
	"errors"
	"strconv"
)

// Errors ParseUSD wraps.
var (
	ErrSyntax    = errors.New("not a decimal number")
	ErrPrecision = errors.New("finer than a micro-USD per million tokens")
	ErrRange     = errors.New("out of range")
)

// ParseUSD reads a price in USD per million tokens, as the config writes it
// ("2.00", "0.075", "15", or a JSON number's text such as "7.5e-2"), and returns
// it in micro-USD per million tokens without any floating point: "0.075" is
// exactly 75000. Digits finer than a micro-USD must be zero ("0.0750000" is
// fine, "0.0000001" is ErrPrecision). Signs are not accepted: prices are not
// negative. Values above MaxPrice are ErrRange.
func ParseUSD(s string) (microUSDPerMillion int64, err error) {
	mant, exp := s, 0
	for i := 0; i < len(s); i++ {
		if s[i] == 'e' || s[i] == 'E' {
			mant = s[:i]
			e, ok := parseExp(s[i+1:])
			if !ok {
				return 0, usdError(s, ErrSyntax)
			}
			exp = e
			break
		}
	}
	// point is the number of integer digits in mant.
	point, ndigits := -1, 0
	for i := 0; i < len(mant); i++ {
		switch c := mant[i]; {
		case c == '.' && point < 0:
			point = ndigits
		case '0' <= c && c <= '9':
			ndigits++
		default:
			return 0, usdError(s, ErrSyntax)
		}
	}
	if ndigits == 0 {
		return 0, usdError(s, ErrSyntax)
	}
	if point < 0 {
		point = ndigits
	}
	// Digit k (0-based) has weight 10^(point-1-k+exp) USD, that is
	// 10^(point-1-k+exp+6) micro-USD.
	var v int64
	k := 0
	for i := 0; i < len(mant); i++ {
		c := mant[i]
		if c == '.' {
			continue
		}
		d := int64(c - '0')
		pow := point - 1 - k + exp + 6
		k++
		if d == 0 {
			continue
		}
		if pow < 0 {
			return 0, usdError(s, ErrPrecision)
		}
		if pow > 12 {
			return 0, usdError(s, ErrRange)
		}
		v += d * pow10[pow]
		if v > MaxPrice {
			return 0, usdError(s, ErrRange)
		}
	}
	return v, nil
}

var pow10 = [13]int64{1, 10, 100, 1e3, 1e4, 1e5, 1e6, 1e7, 1e8, 1e9, 1e10, 1e11, 1e12}

// parseExp reads an exponent with an optional sign, bounded well beyond any
// exponent a valid price can have.
func parseExp(s string) (int, bool) {
	neg := false
	if s != "" && (s[0] == '+' || s[0] == '-') {
		neg, s = s[0] == '-', s[1:]
	}
	if s == "" || len(s) > 4 {
		return 0, false
	}
	e := 0
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return 0, false
		}
		e = e*10 + int(s[i]-'0')
	}
	if neg {
		e = -e
	}
	return e, true
}

// parseError is a ParseUSD failure: the value and which rule it broke.
type parseError struct {
	value string
	err   error
}

func (e *parseError) Error() string {
	v := e.value
	if len(v) > 40 {
		v = v[:40] + "..."
	}
	return "pricing: usd " + strconv.Quote(v) + ": " + e.err.Error()
}

func (e *parseError) Unwrap() error { return e.err }

func usdError(s string, err error) error { return &parseError{value: s, err: err} }
