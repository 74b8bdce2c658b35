package openai

import "strings"

// Operation is the OpenAI API operation family a request belongs to, known
// from its method and path. The filter applies to each only what fits it:
// chat parameters only to chat, model substitution only to text generation.
type Operation uint8

// The operations. OpOther is a path under a route that names none of them; the
// filter treats it as chat completions (the endpoint of OpenAI-compatible
// gateways that serve chat under their own path), see docs/CONFIG.md.
const (
	OpOther       Operation = iota
	OpChat                  // chat/completions
	OpCompletions           // completions (legacy)
	OpResponses             // responses
	OpEmbeddings            // embeddings
	OpModerations           // moderations
	OpAudio                 // audio/speech, audio/transcriptions, audio/translations
	OpImages                // images/generations, images/edits, images/variations
	OpFiles                 // files, uploads
	OpBatches               // batches
	OpModels                // models
	NumOperations           // the number of operations, for per-operation tables
)

var opNames = [NumOperations]string{
	"other", "chat", "completions", "responses", "embeddings", "moderations",
	"audio", "images", "files", "batches", "models",
}

// String is the operation's name as the config and the docs spell it.
func (o Operation) String() string {
	if o < NumOperations {
		return opNames[o]
	}
	return "other"
}

// ParseOperation returns the operation named name (its String), ok false for
// an unknown name.
func ParseOperation(name string) (Operation, bool) {
	for i, n := range opNames {
		if n == name {
			return Operation(i), true
		}
	}
	return OpOther, false
}

// Generates reports whether the operation generates text from a model the
// config may choose: only these take a route's default model, priority models
// and fallback to other models. OpOther counts as chat.
func (o Operation) Generates() bool {
	switch o {
	case OpChat, OpCompletions, OpResponses, OpOther:
		return true
	}
	return false
}

// StreamOptions reports whether the operation defines
// stream_options.include_usage (chat completions and legacy completions; the
// Responses API reports usage in its response.completed event instead).
func (o Operation) StreamOptions() bool {
	switch o {
	case OpChat, OpCompletions, OpOther:
		return true
	}
	return false
}

// Call is what a request asks for: its operation, and whether it is the
// operation's create call (a POST to the operation's endpoint itself, whose
// JSON body names a model and whose answer may report usage) rather than a
// call on a stored object (GET /v1/responses/{id}, POST /v1/batches/{id}/cancel).
type Call struct {
	Op     Operation
	Create bool
}

// Inference reports whether the call runs a model: a create call of an
// operation that takes a model, or any POST to an OpOther path.
func (c Call) Inference() bool {
	switch c.Op {
	case OpFiles, OpBatches, OpModels:
		return false
	}
	return c.Create
}

// Classify says which call a request is from its method and path; rest is the
// path after the route's prefix (the whole path when the prefix is the
// endpoint itself). Query and fragment are ignored. Leading segments that are
// not an operation's name (a version like v1, an Azure
// "deployments/{name}") are skipped, so /v1/chat/completions,
// /openai/deployments/gpt/chat/completions and /api/paas/v4/chat/completions
// are all chat. It never allocates.
func Classify(method, path, rest string) Call {
	if c, ok := classify(method, rest); ok {
		return c
	}
	c, _ := classify(method, path)
	return c
}

func classify(method, p string) (Call, bool) {
	if i := strings.IndexAny(p, "?#"); i >= 0 {
		p = p[:i]
	}
	post := method == "POST"
	for p != "" {
		var seg string
		seg, p = nextSegment(p)
		switch seg {
		case "":
			continue
		case "deployments":
			_, p = nextSegment(p) // Azure: the deployment's name is not an operation
			continue
		case "chat":
			next, tail := nextSegment(p)
			if next != "completions" {
				continue
			}
			return Call{Op: OpChat, Create: post && isEnd(tail)}, true
		case "completions":
			return Call{Op: OpCompletions, Create: post && isEnd(p)}, true
		case "responses":
			return Call{Op: OpResponses, Create: post && isEnd(p)}, true
		case "embeddings":
			return Call{Op: OpEmbeddings, Create: post && isEnd(p)}, true
		case "moderations":
			return Call{Op: OpModerations, Create: post && isEnd(p)}, true
		case "audio":
			next, tail := nextSegment(p)
			create := (next == "speech" || next == "transcriptions" || next == "translations") && isEnd(tail)
			return Call{Op: OpAudio, Create: post && create}, true
		case "images":
			next, tail := nextSegment(p)
			create := (next == "generations" || next == "edits" || next == "variations") && isEnd(tail)
			return Call{Op: OpImages, Create: post && create}, true
		case "files", "uploads":
			return Call{Op: OpFiles}, true
		case "batches":
			return Call{Op: OpBatches}, true
		case "models":
			return Call{Op: OpModels}, true
		}
	}
	return Call{Op: OpOther, Create: post}, false
}

// nextSegment splits p after its first path segment; leading slashes are
// dropped.
func nextSegment(p string) (seg, rest string) {
	for p != "" && p[0] == '/' {
		p = p[1:]
	}
	if i := strings.IndexByte(p, '/'); i >= 0 {
		return p[:i], p[i:]
	}
	return p, ""
}

// isEnd reports whether nothing but slashes is left of a path.
func isEnd(p string) bool {
	return strings.Trim(p, "/") == ""
}
