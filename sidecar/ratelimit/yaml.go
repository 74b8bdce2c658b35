package ratelimit

import (
	"errors"
	"fmt"
	"math"
	"strconv"
	"strings"

	yaml "go.yaml.in/yaml/v3"
)

// The config is read the way envoyproxy/ratelimit reads it: gopkg.in/yaml.v2
// (YAML 1.1) decoding into a struct whose descriptor fields are strings,
// bools and a uint32. A string field keeps a scalar's text as written, so
// `value: yes`, `value: 0x1F`, `value: 010` and `name: n` are the strings
// "yes", "0x1F", "010" and "n"; a bool field takes YAML 1.1's forms (yes,
// on, y ...); requests_per_unit takes YAML 1.1 integers (0x1F is 31, 010 is
// 8) and nothing else (5.0, 1e3 and "5" are errors there and here).
//
// The document is parsed into a yaml.Node tree and converted to the
// generic shape the parser walks: map[string]any, []any, nil and scalar.

// scalar is one YAML scalar: its text as written, and whether it was plain
// (unquoted, untagged or tagged as something other than !!str), which is
// when YAML 1.1 resolves it to a bool, an integer or null.
type scalar struct {
	text  string
	plain bool
}

// maxAliasExpansion bounds the values an alias-heavy document may expand
// to ("billion laughs"): far beyond any real rate limit config.
const maxAliasExpansion = 100_000

// decodeYAML parses the first document of data into the generic shape.
func decodeYAML(data []byte) (any, error) {
	var doc yaml.Node
	if err := yaml.Unmarshal(data, &doc); err != nil {
		return nil, err
	}
	if doc.Kind == 0 || len(doc.Content) == 0 {
		return nil, nil
	}
	budget := maxAliasExpansion
	return convertNode(doc.Content[0], &budget, 0)
}

func convertNode(n *yaml.Node, budget *int, depth int) (any, error) {
	*budget--
	if *budget < 0 {
		return nil, errors.New("document expands to too many values")
	}
	if depth > 100 {
		return nil, errors.New("document nests more than 100 levels")
	}
	switch n.Kind {
	case yaml.AliasNode:
		return convertNode(n.Alias, budget, depth+1)
	case yaml.ScalarNode:
		plain := n.Style&(yaml.DoubleQuotedStyle|yaml.SingleQuotedStyle|yaml.LiteralStyle|yaml.FoldedStyle) == 0 &&
			!(n.Style&yaml.TaggedStyle != 0 && n.Tag == "!!str")
		if plain && isYAMLNull(n.Value) {
			return nil, nil
		}
		return scalar{text: n.Value, plain: plain}, nil
	case yaml.SequenceNode:
		out := make([]any, 0, len(n.Content))
		for _, c := range n.Content {
			v, err := convertNode(c, budget, depth+1)
			if err != nil {
				return nil, err
			}
			out = append(out, v)
		}
		return out, nil
	case yaml.MappingNode:
		out := make(map[string]any, len(n.Content)/2)
		var merges []*yaml.Node
		for i := 0; i+1 < len(n.Content); i += 2 {
			k, v := n.Content[i], n.Content[i+1]
			if k.Kind == yaml.ScalarNode && k.Tag == "!!merge" {
				merges = append(merges, v)
				continue
			}
			key, err := convertNode(k, budget, depth+1)
			if err != nil {
				return nil, err
			}
			ks, ok := key.(scalar)
			if !ok {
				return nil, fmt.Errorf("line %d: a mapping key must be a scalar", k.Line)
			}
			if _, dup := out[ks.text]; dup {
				return nil, fmt.Errorf("line %d: duplicate field %q", k.Line, ks.text)
			}
			val, err := convertNode(v, budget, depth+1)
			if err != nil {
				return nil, err
			}
			out[ks.text] = val
		}
		// YAML 1.1 merge keys (<<: *anchor, or a list of them): fields
		// written in the mapping itself win, then earlier merges.
		for _, m := range merges {
			srcs := []*yaml.Node{m}
			if m.Kind == yaml.SequenceNode {
				srcs = m.Content
			}
			for _, src := range srcs {
				v, err := convertNode(src, budget, depth+1)
				if err != nil {
					return nil, err
				}
				mm, ok := v.(map[string]any)
				if !ok {
					return nil, fmt.Errorf("line %d: a merge key must name a mapping", m.Line)
				}
				for k, val := range mm {
					if _, set := out[k]; !set {
						out[k] = val
					}
				}
			}
		}
		return out, nil
	}
	return nil, fmt.Errorf("line %d: unexpected yaml node", n.Line)
}

// isYAMLNull reports whether a plain scalar is YAML's null.
func isYAMLNull(s string) bool {
	switch s {
	case "", "~", "null", "Null", "NULL":
		return true
	}
	return false
}

// yamlBool resolves a plain scalar as YAML 1.1 (gopkg.in/yaml.v2) does.
func yamlBool(s string) (v, ok bool) {
	switch s {
	case "y", "Y", "yes", "Yes", "YES", "true", "True", "TRUE", "on", "On", "ON":
		return true, true
	case "n", "N", "no", "No", "NO", "false", "False", "FALSE", "off", "Off", "OFF":
		return false, true
	}
	return false, false
}

// yamlUint32 resolves a plain scalar as a YAML 1.1 integer (as
// gopkg.in/yaml.v2 does: underscores dropped, then 0x, 0o, 0b and leading-0
// octal forms) and reports whether it is one within uint32.
func yamlUint32(s string) (uint32, bool) {
	plain := strings.ReplaceAll(s, "_", "")
	var n int64
	var err error
	switch {
	case strings.HasPrefix(plain, "0b"):
		n, err = strconv.ParseInt(plain[2:], 2, 64)
	case strings.HasPrefix(plain, "-0b"):
		n, err = strconv.ParseInt(plain[3:], 2, 64)
		n = -n
	default:
		n, err = strconv.ParseInt(plain, 0, 64)
	}
	if err != nil || n < 0 || n > math.MaxUint32 {
		return 0, false
	}
	return uint32(n), true
}
