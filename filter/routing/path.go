package routing

// CleanPath reports whether a request path (with its query) is safe to send
// to a provider with a credential attached: its path part (before '?' or '#')
// has no dot-segment ("." or ".." between slashes or at the end), no
// backslash, and no percent-encoded '/', '\', '.' or '%' (%2F, %5C, %2E in
// either case, and %25, which a second decoding would turn into one of
// them). A provider or a front proxy that normalises paths would otherwise
// resolve "/v1/../../admin" or "/v1/%2e%2e/admin" against the prefix the
// filter put in front, and serve something outside the API with the
// organisation's key. Such a path is refused rather than normalised: no
// OpenAI-compatible API path needs one, and refusing leaves nothing for a
// later hop to interpret differently. The query is not looked at. It does not
// allocate.
func CleanPath(path string) bool {
	segStart := 0
	for i := 0; i <= len(path); i++ {
		c := byte('/')
		if i < len(path) {
			c = path[i]
		}
		switch c {
		case '?', '#':
			return !dotSegment(path[segStart:i])
		case '/':
			if dotSegment(path[segStart:i]) {
				return false
			}
			segStart = i + 1
		case '\\':
			return false
		case '%':
			if i+2 < len(path) {
				switch hi, lo := path[i+1], path[i+2]|0x20; {
				case hi == '2' && (lo == 'f' || lo == 'e' || lo == '5'), hi == '5' && lo == 'c':
					return false
				}
			}
		}
	}
	return true
}

func dotSegment(s string) bool { return s == "." || s == ".." }
