package cooldown

// Pauses per model. OpenAI-style providers limit each model of an account on
// its own (requests and tokens per minute per model) and describe the limits
// of the model asked in the x-ratelimit-* headers of every answer. A 429 whose
// headers say one of those limits is exhausted (x-ratelimit-remaining-requests
// or -tokens is 0) is about that model: only the model pauses. A 503, or a 429
// whose headers name no exhausted limit (a bare Retry-After, a quota or an
// overload refusal), says nothing about models: the whole provider pauses. So
// does headroom near zero on a success: it only steers, and the model is not
// known before the body while steering is cheapest at the headers.
//
// A model's entry is named provider, a NUL byte (no provider name holds one),
// then the provider's name of the model, cut at MaxName bytes like any name.

// Scope is what a refusal or a headroom warning pauses.
type Scope uint8

// The scopes.
const (
	// ScopeProvider pauses every model of the provider.
	ScopeProvider Scope = iota
	// ScopeModel pauses only the model the request was for.
	ScopeModel
)

// ScopeOf is what an answer with status pauses: the model (named model, ""
// when not known) when it is a 429 whose x-ratelimit-* headers say one of the
// model's limits is exhausted (exhausted), the whole provider otherwise.
func ScopeOf(status int, exhausted bool, model string) Scope {
	if status == 429 && exhausted && model != "" {
		return ScopeModel
	}
	return ScopeProvider
}

// ModelKey is the table name of provider's model.
func ModelKey(provider, model string) string {
	k := provider + "\x00" + model
	if len(k) > MaxName {
		k = k[:MaxName]
	}
	return k
}

// LookupModel finds the state of provider's model in the table raw, without
// building its name.
func LookupModel(raw []byte, provider, model string) (State, bool) {
	var found State
	ok := false
	each(raw, func(name []byte, s State) bool {
		if isModelKey(name, provider, model) {
			found, ok = s, true
			return false
		}
		return true
	})
	return found, ok
}

// isModelKey reports whether name is ModelKey(provider, model).
func isModelKey(name []byte, provider, model string) bool {
	n := min(len(provider)+1+len(model), MaxName)
	if len(name) != n || len(provider) >= n {
		return false
	}
	if string(name[:len(provider)]) != provider || name[len(provider)] != 0 {
		return false
	}
	return string(name[len(provider)+1:]) == model[:n-len(provider)-1]
}

// Worst is the verdict of an attempt that both a provider's and its model's
// states govern: Cooling when either cools, else Probe when either is half
// open, else Free.
func Worst(a, b Verdict) Verdict {
	switch {
	case a == Cooling || b == Cooling:
		return Cooling
	case a == Probe || b == Probe:
		return Probe
	}
	return Free
}
