package e2e_test

import (
	"context"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/shepherd-mesh/shepherd/e2e/envoy"
	"github.com/shepherd-mesh/shepherd/internal/scenario"
)

var e2eRate = flag.Float64("e2e.rate", 1000,
	"BenchmarkEndToEnd's offered load in requests/s (0: 40% of the filter's saturation as measured in the run)")

// BenchmarkEndToEnd measures the filter the way a client sees it: requests/s
// and latency through the host served over HTTP as shepherd-local serves it (a
// real listener with HTTP/1.1 and h2c, two workers, real HTTP clients, a
// loopback upstream that answers at once), with the full filter and with no
// plugin at all (passthrough). The request is the 8 KiB chat completion of
// BenchmarkAddedLatency (model rewrite, request and token limits, usage read
// from the answer).
//
// It first finds each setup's saturation (16 clients in a closed loop, 1.5 s
// each, reported), then offers a fixed load below it, open loop: requests
// start on a fixed schedule, each on its own goroutine, so a slow answer never
// delays the next request. The offered rate is -e2e.rate (1000 requests/s by
// default, a third of the filter's saturation on a 2-core machine; 0 picks 40%
// of the saturation just measured). The two setups take turns in 1 s blocks, 5
// each, so the machine's other load falls on both alike. Latency is from a
// request's start to the last byte of its answer; gen-lag-p99-µs is how late
// the generator started requests against the schedule (the machine's
// scheduling jitter; it is not part of the latencies). The run takes about
// 16 s whatever b.N is; ns/op means nothing here.
func BenchmarkEndToEnd(b *testing.B) {
	up := scenario.Upstream(b, okUpstream{})
	host := func(mod []byte) *envoy.Host {
		cfg := envoy.Config{Module: mod, NoPlugin: mod == nil, PluginName: "shepherd", RootID: "shepherd", VMID: "shepherd",
			Workers: 2, Clusters: map[string]string{"p": up}, DefaultCluster: "p",
			StatsTags: statsTags(), LogWriter: io.Discard, CompilationCache: compileCache}
		if mod != nil {
			cfg.PluginConfig = []byte(benchConfig)
		}
		h, err := envoy.New(context.Background(), cfg)
		require.NoError(b, err)
		b.Cleanup(func() { h.Close(context.Background()) })
		return h
	}
	setups := []*e2eSetup{
		{name: "filter", url: serveLikeShepherdLocal(b, host(module(b)))},
		{name: "passthrough", url: serveLikeShepherdLocal(b, host(nil))},
	}
	body := body8k()
	for _, s := range setups {
		s.client = &http.Client{Transport: &http.Transport{
			MaxIdleConnsPerHost: 1024, DisableCompression: true, IdleConnTimeout: time.Minute}}
		b.Cleanup(s.client.CloseIdleConnections)
		s.send = func() error {
			req, err := http.NewRequest(http.MethodPost, s.url+"/v1/chat/completions", strings.NewReader(body))
			if err != nil {
				return err
			}
			req.Host = "api.openai.com"
			req.Header.Set("content-type", "application/json")
			resp, err := s.client.Do(req)
			if err != nil {
				return err
			}
			_, err = io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if err == nil && resp.StatusCode != http.StatusOK {
				err = fmt.Errorf("status %d", resp.StatusCode)
			}
			return err
		}
	}

	for _, s := range setups { // warm up: VMs, connection pools
		closedLoop(s.send, 16, 500*time.Millisecond)
	}
	for _, s := range setups {
		n, errs := closedLoop(s.send, 16, 1500*time.Millisecond)
		require.Zero(b, errs, "%s: failed requests at saturation", s.name)
		s.saturation = float64(n) / 1.5
	}
	rate := *e2eRate
	if rate <= 0 {
		rate = 0.4 * setups[0].saturation
	}

	const rounds, block = 5, time.Second
	b.ResetTimer()
	for r := 0; r < rounds; r++ {
		for i := range setups {
			s := setups[(r+i)%len(setups)]
			res := openLoop(s.send, rate, block)
			s.lat = append(s.lat, res.lat...)
			s.lag = append(s.lag, res.lag...)
			s.sent += len(res.lat)
			s.errors += res.errors
			s.elapsed += res.elapsed
		}
	}
	b.StopTimer()
	b.ReportMetric(rate, "offered-req/s")
	var p50, p99 [2]time.Duration
	var lag time.Duration
	for i, s := range setups {
		require.Zero(b, s.errors, "%s: failed requests", s.name)
		slices.Sort(s.lat)
		slices.Sort(s.lag)
		p50[i], p99[i] = quantile(s.lat, 0.50), quantile(s.lat, 0.99)
		lag = max(lag, quantile(s.lag, 0.99))
		b.ReportMetric(s.saturation, s.name+"-saturation-req/s")
		b.ReportMetric(float64(s.sent)/s.elapsed.Seconds(), s.name+"-req/s")
		b.ReportMetric(float64(p50[i].Microseconds()), s.name+"-p50-µs")
		b.ReportMetric(float64(p99[i].Microseconds()), s.name+"-p99-µs")
	}
	b.ReportMetric(float64((p50[0] - p50[1]).Microseconds()), "added-p50-µs")
	b.ReportMetric(float64((p99[0] - p99[1]).Microseconds()), "added-p99-µs")
	b.ReportMetric(float64(lag.Microseconds()), "gen-lag-p99-µs")
}

type e2eSetup struct {
	name       string
	url        string
	client     *http.Client
	send       func() error
	saturation float64

	lat, lag []time.Duration
	sent     int
	errors   int
	elapsed  time.Duration
}

// serveLikeShepherdLocal serves h on a loopback listener the way
// e2e/cmd/shepherd-local does (HTTP/1.1 and h2c) and returns its URL.
func serveLikeShepherdLocal(b *testing.B, h http.Handler) string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(b, err)
	protocols := new(http.Protocols)
	protocols.SetHTTP1(true)
	protocols.SetUnencryptedHTTP2(true)
	srv := &http.Server{Handler: h, Protocols: protocols, ReadHeaderTimeout: 30 * time.Second}
	go srv.Serve(ln)
	b.Cleanup(func() { srv.Close() })
	return "http://" + ln.Addr().String()
}

// closedLoop keeps conc requests in flight for d and returns how many
// completed and how many failed.
func closedLoop(send func() error, conc int, d time.Duration) (done, failed int) {
	var ok, bad atomic.Int64
	end := time.Now().Add(d)
	var wg sync.WaitGroup
	for i := 0; i < conc; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for time.Now().Before(end) {
				if send() != nil {
					bad.Add(1)
				} else {
					ok.Add(1)
				}
			}
		}()
	}
	wg.Wait()
	return int(ok.Load()), int(bad.Load())
}

type openLoopResult struct {
	lat, lag []time.Duration // per request: latency, and start against the schedule
	errors   int
	elapsed  time.Duration // from the first scheduled start to the last answer
}

// openLoop starts rate requests per second for d on a fixed schedule, each on
// its own goroutine, and waits for all of them.
func openLoop(send func() error, rate float64, d time.Duration) openLoopResult {
	n := int(rate * d.Seconds())
	interval := time.Duration(float64(time.Second) / rate)
	res := openLoopResult{lat: make([]time.Duration, n), lag: make([]time.Duration, n)}
	var errs atomic.Int64
	var wg sync.WaitGroup
	start := time.Now()
	for i := 0; i < n; i++ {
		at := start.Add(time.Duration(i) * interval)
		if w := time.Until(at); w > 0 {
			time.Sleep(w)
		}
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			t := time.Now()
			res.lag[i] = t.Sub(at)
			if send() != nil {
				errs.Add(1)
			}
			res.lat[i] = time.Since(t)
		}(i)
	}
	wg.Wait()
	res.elapsed = time.Since(start)
	res.errors = int(errs.Load())
	return res
}

// quantile of sorted durations (nearest rank).
func quantile(sorted []time.Duration, q float64) time.Duration {
	if len(sorted) == 0 {
		return 0
	}
	i := int(q*float64(len(sorted))+0.5) - 1
	return sorted[max(0, min(i, len(sorted)-1))]
}
