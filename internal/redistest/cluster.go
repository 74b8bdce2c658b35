package redistest

import (
	"context"
	"fmt"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

// StartCluster returns the addresses of a two-node Redis Cluster on
// loopback: the first node serves hash slots 0-8191, the second 8192-16383.
// Like Start, it is started once per test binary and stopped by Main or
// Stop; the same rules about a missing redis-server apply.
func StartCluster(t testing.TB) []string {
	t.Helper()
	path := lookPath(t)
	mu.Lock()
	defer mu.Unlock()
	if cluster == nil {
		nodes, err := launchCluster(path)
		if err != nil {
			t.Fatalf("start redis cluster: %v", err)
		}
		cluster = nodes
	}
	addrs := make([]string, len(cluster))
	for i, s := range cluster {
		addrs[i] = s.addr
	}
	return addrs
}

func launchCluster(path string) (nodes []*server, err error) {
	dir, err := os.MkdirTemp("", "shepherd-redis-cluster-")
	if err != nil {
		return nil, err
	}
	defer func() {
		if err != nil {
			for _, n := range nodes {
				_ = n.cmd.Process.Kill()
				<-n.done
			}
			_ = os.RemoveAll(dir)
		}
	}()
	for i := 0; i < 2; i++ {
		n, err := launch(path, dir)
		if err != nil {
			return nodes, err
		}
		n.dir = dir
		nodes = append(nodes, n)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	slots := [][2]int{{0, 8191}, {8192, 16383}}
	clients := make([]*redis.Client, len(nodes))
	for i, n := range nodes {
		clients[i] = redis.NewClient(&redis.Options{Addr: n.addr})
		defer clients[i].Close()
		if err := clients[i].Do(ctx, "CLUSTER", "SET-CONFIG-EPOCH", i+1).Err(); err != nil {
			return nodes, fmt.Errorf("%s: set config epoch: %w", n.addr, err)
		}
		if err := clients[i].Do(ctx, "CLUSTER", "ADDSLOTSRANGE", slots[i][0], slots[i][1]).Err(); err != nil {
			return nodes, fmt.Errorf("%s: add slots: %w", n.addr, err)
		}
	}
	host, port, _ := strings.Cut(nodes[1].addr, ":")
	if err := clients[0].Do(ctx, "CLUSTER", "MEET", host, port).Err(); err != nil {
		return nodes, fmt.Errorf("cluster meet: %w", err)
	}
	for _, c := range clients {
		for {
			info, err := c.ClusterInfo(ctx).Result()
			if err == nil && strings.Contains(info, "cluster_state:ok") && strings.Contains(info, "cluster_known_nodes:2") {
				break
			}
			if ctx.Err() != nil {
				return nodes, fmt.Errorf("cluster did not become ready: %q", info)
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
	return nodes, nil
}
