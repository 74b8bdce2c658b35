//go:build rueidis

package main

import (
	"github.com/redis/rueidis"

	"github.com/shepherd-mesh/shepherd/internal/rlsbench/rueidisstore"
	"github.com/shepherd-mesh/shepherd/sidecar/store"
)

// With -tags rueidis, -serve redis-rueidis serves the rate limit service
// on the experimental rueidis store (internal/rlsbench/rueidisstore).
func init() {
	extraKinds["redis-rueidis"] = func(addr string) (store.Store, error) {
		c, err := rueidis.NewClient(rueidis.ClientOption{InitAddress: []string{addr}, DisableCache: true})
		if err != nil {
			return nil, err
		}
		return rueidisstore.New(c, "rlsbench:"), nil
	}
}
