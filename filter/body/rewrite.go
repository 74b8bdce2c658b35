package body

import "github.com/shepherd-mesh/shepherd/filter/jsonlite"

// Edit says what Apply changes in a request body.
type Edit struct {
	// SetModel sets the top-level "model" to Model: the value of the last
	// "model" member is replaced, or a member is added when there is none.
	SetModel bool
	Model    string
	// IncludeUsage asks a streaming request for usage in its last chunk by
	// making stream_options.include_usage true. It changes nothing when the
	// request does not stream (OpenAI rejects stream_options without stream).
	IncludeUsage bool
}

// Apply makes the edits e to body, which InspectRequest read as r without error
// (any other r is a misuse), and reports whether the body changed. Bytes outside
// the edited tokens are copied unchanged. The result is a new slice built with
// one allocation, or body itself when nothing changed. Member insertions go
// right after the opening '{' of their object, so an empty object gets no stray
// comma. The offsets in r do not describe the result: inspect it again before
// another edit, or make all edits in one Apply.
func Apply(body []byte, r Request, e Edit) ([]byte, bool) {
	out, changed := AppendApplied(nil, body, r, e)
	if !changed {
		return body, false
	}
	return out, true
}

// AppendApplied is Apply writing the edited body after the end of dst, so that a
// caller that keeps a buffer across requests (dst[:0]) edits without
// allocating; dst grows at most once when it is too small. When nothing changes
// it returns dst as it was and false: body can be used as is.
func AppendApplied(dst, body []byte, r Request, e Edit) ([]byte, bool) {
	s, ok := r.splices(body, e)
	if !ok {
		return dst, false
	}
	return s.apply(dst, body, e.Model), true
}

// AppendAppliedPrefix is AppendApplied for a body edited in place: it writes
// after dst only the edited bytes up to the end of the last edit, body[:cut]
// as edited, and returns cut. Replacing the first cut bytes of body with the
// result gives the edited body, so a host that can replace a body's prefix
// (Envoy's proxy_set_buffer_bytes with start 0) takes a long body's edit
// without a copy of the rest. The edits are near the start of most bodies:
// the model's value, or members added after the opening '{'.
func AppendAppliedPrefix(dst, body []byte, r Request, e Edit) (prefix []byte, cut int, changed bool) {
	s, ok := r.splices(body, e)
	if !ok {
		return dst, 0, false
	}
	cut = s.s[s.n-1].end
	return s.apply(dst, body[:cut], e.Model), cut, true
}

// splices returns the splices of the edits e to body, in body order, and
// false when they change nothing.
func (r *Request) splices(body []byte, e Edit) (splices, bool) {
	var s splices
	var top splice // insertions after the top-level '{'
	top.start, top.end = r.Open+1, r.Open+1
	topItems := 0

	if e.SetModel {
		if r.HasModel {
			s.add(splice{start: r.Model.Start, end: r.Model.End, quoted: true})
		} else {
			top.pre = `"model":`
			top.quoted = true
			topItems++
		}
	}
	if e.IncludeUsage && r.Stream && !r.IncludeUsage {
		switch {
		case r.IncludeUsageValue.Len() > 0:
			s.add(splice{start: r.IncludeUsageValue.Start, end: r.IncludeUsageValue.End, post: "true"})
		case r.HasStreamOptions && body[r.StreamOptions.Start] == 'n':
			s.add(splice{start: r.StreamOptions.Start, end: r.StreamOptions.End, post: `{"include_usage":true}`})
		case r.HasStreamOptions:
			at := r.StreamOptions.Start + 1
			post := `"include_usage":true`
			if body[jsonlite.SkipSpace(body, at)] != '}' {
				post = `"include_usage":true,`
			}
			s.add(splice{start: at, end: at, post: post})
		default:
			// The inserted members are joined by commas, and followed by one when
			// the object already had members.
			const opts = `,"stream_options":{"include_usage":true},`
			lo, hi := 1, len(opts)-1
			if topItems > 0 {
				lo = 0
			}
			if r.Members > 0 {
				hi = len(opts)
			}
			top.post = opts[lo:hi]
			topItems++
		}
	}
	if topItems > 0 {
		if top.post == "" && r.Members > 0 {
			top.post = ","
		}
		s.add(top)
	}
	return s, s.n > 0
}

// RewriteModel returns body with the value of its model member replaced by
// model, quoted with jsonlite.AppendString. A body without a model member is
// returned unchanged (see SetModel).
func RewriteModel(body []byte, r Request, model string) []byte {
	if !r.HasModel {
		return body
	}
	out, _ := Apply(body, r, Edit{SetModel: true, Model: model})
	return out
}

// SetModel returns body with its model set to model: replaced as RewriteModel
// does, or inserted as the first member when the body has none.
func SetModel(body []byte, r Request, model string) []byte {
	out, _ := Apply(body, r, Edit{SetModel: true, Model: model})
	return out
}

// EnsureIncludeUsage returns body with stream_options.include_usage set to true
// when r is a streaming request that does not already ask for usage, and reports
// whether it changed the body. stream_options is added when absent, replaced
// when null, and given the member when it lacks it.
func EnsureIncludeUsage(body []byte, r Request) ([]byte, bool) {
	return Apply(body, r, Edit{IncludeUsage: true})
}

// splice replaces body[start:end] with pre, the quoted model when quoted is set,
// and post.
type splice struct {
	start, end int
	pre, post  string
	quoted     bool
}

// splices holds the few non-overlapping splices of one Apply, in body order.
type splices struct {
	s [3]splice
	n int
}

func (ss *splices) add(x splice) {
	i := ss.n
	for i > 0 && ss.s[i-1].start > x.start {
		ss.s[i] = ss.s[i-1]
		i--
	}
	ss.s[i] = x
	ss.n++
}

func (ss *splices) apply(out, body []byte, model string) []byte {
	size := len(body)
	for _, x := range ss.s[:ss.n] {
		size += len(x.pre) + len(x.post) - (x.end - x.start)
		if x.quoted {
			size += 2 + 6*len(model) // AppendString's longest output
		}
	}
	if cap(out)-len(out) < size {
		grown := make([]byte, len(out), len(out)+size)
		copy(grown, out)
		out = grown
	}
	prev := 0
	for _, x := range ss.s[:ss.n] {
		out = append(out, body[prev:x.start]...)
		out = append(out, x.pre...)
		if x.quoted {
			out = jsonlite.AppendString(out, model)
		}
		out = append(out, x.post...)
		prev = x.end
	}
	return append(out, body[prev:]...)
}
