package ratelimit

import "sort"

// LookupSet returns the limit that applies to a descriptor given as an
// unordered set of entries (an RLQS bucket id), or nil when none applies.
//
// A descriptor's entries are ordered and a bucket id's are not, so the
// config gives the order: starting at the domain's top level, an entry
// whose key is configured at the current level is taken (its value selects
// the value-specific descriptor, else the first matching wildcard value,
// else the key-only one, as Lookup does), and the walk goes on below it with
// the entries left. The limit applies when every entry has been taken and
// the descriptor reached has one. When several keys of the set are
// configured at one level, they are tried in key order and the first
// complete path wins, so the answer does not depend on map order.
//
// The walk visits only configured descriptors, each at most once per
// entry, so its cost is bounded by the config, not by the caller.
func (c *Config) LookupSet(domainName string, entries map[string]string) *Limit {
	d := c.domains[domainName]
	if d == nil || len(entries) == 0 {
		return nil
	}
	keys := make([]string, 0, len(entries))
	for k := range entries {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	used := make([]bool, len(keys))
	return lookupSet(d.children, keys, entries, used, len(keys))
}

func lookupSet(level levelMap, keys []string, entries map[string]string, used []bool, left int) *Limit {
	for i, k := range keys {
		if used[i] || level[k] == nil {
			continue
		}
		n := level.find(k, entries[k])
		if n == nil {
			continue
		}
		if left == 1 {
			if n.limit != nil {
				return n.limit
			}
			continue
		}
		if len(n.children) == 0 {
			continue
		}
		used[i] = true
		l := lookupSet(n.children, keys, entries, used, left-1)
		used[i] = false
		if l != nil {
			return l
		}
	}
	return nil
}
