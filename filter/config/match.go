package config

// routeIndex finds the first route a request matches without asking for any
// request header more than once, and without looking at most routes that name
// headers: it is built once by Parse.
//
// Every header name a route matches on has a slot. A route with header
// conditions is filed under its first condition (slot, value); a route without
// any is "open". The first matching route is the first of: the first open route
// whose prefix matches, and for each slot the request sets, the first route
// filed under (slot, the request's value) that matches in full. A route filed
// under any other value cannot match, so it is never looked at.
type routeIndex struct {
	slots map[string]int32     // header name → slot
	keyed []map[string][]int32 // slot → value → route indexes, ascending
	open  []int32              // routes without header conditions, ascending
	conds [][]slotCond         // route index → its header conditions
}

type slotCond struct {
	slot  int32
	value string
}

func (c *Config) buildIndex() {
	x := &c.index
	x.slots = map[string]int32{}
	x.conds = make([][]slotCond, len(c.Routes))
	for i, r := range c.Routes {
		if len(r.Headers) == 0 {
			x.open = append(x.open, int32(i))
			continue
		}
		for _, h := range r.Headers {
			s, ok := x.slots[h.Name]
			if !ok {
				s = int32(len(x.slots))
				x.slots[h.Name] = s
				x.keyed = append(x.keyed, nil)
			}
			x.conds[i] = append(x.conds[i], slotCond{slot: s, value: h.Value})
		}
		k := x.conds[i][0]
		if x.keyed[k.slot] == nil {
			x.keyed[k.slot] = map[string][]int32{}
		}
		x.keyed[k.slot][k.value] = append(x.keyed[k.slot][k.value], int32(i))
	}
}

// MatchScratch is what matching one request needs besides the config: the
// values of the request's headers that routes name, by slot. Keep one per VM
// and reuse it, so matching allocates nothing; the zero value is ready.
type MatchScratch struct {
	values []string
	set    []bool
	seen   []int32
}

// MatchHeaders returns the first route that matches the request, or nil, as
// Match does, from the request's header pairs (lowercase names; of a name sent
// twice the first counts). It reads each pair once and looks only at the
// routes filed under the values the request sends (see routeIndex).
func (c *Config) MatchHeaders(path string, headers [][2]string, sc *MatchScratch) *Route {
	x := &c.index
	if n := len(x.slots); len(sc.values) < n {
		sc.values, sc.set = make([]string, n), make([]bool, n)
	}
	sc.seen = sc.seen[:0]
	if len(x.slots) > 0 {
		for _, kv := range headers {
			s, ok := x.slots[kv[0]]
			if !ok || sc.set[s] {
				continue
			}
			sc.set[s], sc.values[s] = true, kv[1]
			sc.seen = append(sc.seen, s)
		}
	}
	best := int32(len(c.Routes))
	for _, i := range x.open {
		if len(path) >= len(c.Routes[i].PathPrefix) && path[:len(c.Routes[i].PathPrefix)] == c.Routes[i].PathPrefix {
			best = i
			break
		}
	}
	for _, s := range sc.seen {
		for _, i := range x.keyed[s][sc.values[s]] {
			if i >= best {
				break
			}
			if c.matchesIndexed(i, path, sc) {
				best = i
				break
			}
		}
	}
	for _, s := range sc.seen {
		sc.set[s], sc.values[s] = false, ""
	}
	if best == int32(len(c.Routes)) {
		return nil
	}
	return c.Routes[best]
}

func (c *Config) matchesIndexed(i int32, path string, sc *MatchScratch) bool {
	p := c.Routes[i].PathPrefix
	if len(path) < len(p) || path[:len(p)] != p {
		return false
	}
	for _, h := range c.index.conds[i] {
		if !sc.set[h.slot] || sc.values[h.slot] != h.value {
			return false
		}
	}
	return true
}
