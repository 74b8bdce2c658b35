package body

import (
	"bytes"

	"github.com/shepherd-mesh/shepherd/filter/jsonlite"
)

// Usage is the token usage a provider reports for one completion.
type Usage struct {
	Input       int64 // prompt_tokens (input_tokens)
	CachedInput int64 // prompt_tokens_details.cached_tokens, part of Input
	Output      int64 // completion_tokens (output_tokens)
	Total       int64 // total_tokens; Input+Output when the provider omits it
}

// parseUsage reads a usage object token. Members that are missing or are not
// non-negative integers read as 0; larger ones than MaxCount as MaxCount, so
// Input+Output never overflows. ok is false when tok is not a valid object.
func parseUsage(tok []byte) (u Usage, ok bool) {
	if len(tok) == 0 || tok[0] != '{' {
		return Usage{}, false
	}
	hasTotal := false
	m := jsonlite.ObjectMembers(tok, 0)
	for m.Next() {
		v := m.Value()
		switch usageMember(&m, tok) {
		case memberInput:
			u.Input = count(v)
		case memberOutput:
			u.Output = count(v)
		case memberTotal:
			u.Total = count(v)
			hasTotal = true
		case memberDetails:
			if v[0] == '{' {
				d := jsonlite.ObjectMembers(v, 0)
				for d.Next() {
					if d.NameIs("cached_tokens") {
						u.CachedInput = count(d.Value())
					}
				}
			}
		}
	}
	if m.Err() != nil || jsonlite.SkipSpace(tok, m.End()) != len(tok) {
		return Usage{}, false
	}
	if !hasTotal {
		u.Total = u.Input + u.Output
	}
	return u, true
}

// The usage members parseUsage reads.
const (
	memberOther = iota
	memberInput
	memberOutput
	memberTotal
	memberDetails
)

// usageMember classifies the current member's name. A name without escapes
// is compared as it stands, in one switch (no copy); the rare escaped one is
// decoded by NameIs.
func usageMember(m *jsonlite.Members, tok []byte) int {
	if !m.NameEscaped() {
		switch string(tok[m.NameStart+1 : m.NameEnd-1]) {
		case "prompt_tokens", "input_tokens":
			return memberInput
		case "completion_tokens", "output_tokens":
			return memberOutput
		case "total_tokens":
			return memberTotal
		case "prompt_tokens_details", "input_tokens_details":
			return memberDetails
		}
		return memberOther
	}
	switch {
	case m.NameIs("prompt_tokens"), m.NameIs("input_tokens"):
		return memberInput
	case m.NameIs("completion_tokens"), m.NameIs("output_tokens"):
		return memberOutput
	case m.NameIs("total_tokens"):
		return memberTotal
	case m.NameIs("prompt_tokens_details"), m.NameIs("input_tokens_details"):
		return memberDetails
	}
	return memberOther
}

// count reads a token count, at most MaxCount; anything but a non-negative
// integer reads as 0.
func count(tok []byte) int64 {
	n, ok := parseCount(tok)
	if !ok {
		return 0
	}
	return n
}

// modelStore keeps the last model name a response reported, allocating only
// when the name changes.
type modelStore struct {
	name string
	set  bool
}

// get returns the stored name, or "" when none was set.
func (s *modelStore) get() string {
	if !s.set {
		return ""
	}
	return s.name
}

// reset forgets the name but keeps its string, so a scanner reused for
// answers from the same model does not copy it again.
func (s *modelStore) reset() modelStore { return modelStore{name: s.name} }

// setToken stores a string token; other tokens are ignored.
func (s *modelStore) setToken(tok []byte) {
	if len(tok) < 2 || tok[0] != '"' {
		return
	}
	raw := tok[1 : len(tok)-1]
	if string(raw) == s.name && s.name != "" && bytes.IndexByte(raw, '\\') < 0 {
		s.set = true // the name already held (also across a reset): no copy
		return
	}
	name, err := jsonlite.Unquote(tok)
	if err != nil {
		return
	}
	s.name, s.set = name, true
}
