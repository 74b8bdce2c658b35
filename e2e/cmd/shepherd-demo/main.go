// Command shepherd-demo sends a short burst of chat completions through the local
// mesh (a mix of models, aliases, priorities and streams) and prints what the filter
// did with them, read from the proxy's /stats/prometheus: answers by provider, model
// and status class, fallbacks, requests refused by local or global limits or
// budgets, how the sidecar conversation went, tokens and cost.
package main

import (
	"bytes"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"sort"
	"strings"
	"sync"
	"text/tabwriter"
	"time"

	"github.com/shepherd-mesh/shepherd/internal/promtext"
)

func main() {
	url := flag.String("url", "http://127.0.0.1:10000", "the mesh's front end")
	admin := flag.String("admin", "http://127.0.0.1:15000", "the proxy's admin address")
	n := flag.Int("requests", 40, "requests to send")
	conc := flag.Int("concurrency", 4, "requests in flight")
	flag.Parse()
	if *n <= 0 || *conc <= 0 || *n > 100000 {
		fmt.Fprintln(os.Stderr, "shepherd-demo: --requests must be 1..100000 and --concurrency positive")
		os.Exit(2)
	}

	bodies := []struct{ body, priority string }{
		{`{"model":"gpt-4.1","messages":[{"role":"user","content":"Summarise the mesh in one line."}]}`, ""},
		{`{"model":"gpt-4.1","stream":true,"messages":[{"role":"user","content":"Stream a haiku."}]}`, ""},
		{`{"model":"fast","max_tokens":8,"messages":[{"role":"user","content":"Quick answer."}]}`, ""},
		{`{"model":"gpt-4.1","messages":[{"role":"user","content":"Important question."}]}`, "high"},
	}
	client := &http.Client{Timeout: 30 * time.Second}
	var (
		mu     sync.Mutex
		status = map[int]int{}
		failed int
	)
	jobs := make(chan int)
	var wg sync.WaitGroup
	for w := 0; w < *conc; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range jobs {
				b := bodies[i%len(bodies)]
				req, _ := http.NewRequest(http.MethodPost, *url+"/v1/chat/completions", strings.NewReader(b.body))
				req.Header.Set("content-type", "application/json")
				if b.priority != "" {
					req.Header.Set("x-priority", b.priority)
				}
				resp, err := client.Do(req)
				mu.Lock()
				if err != nil {
					failed++
				} else {
					status[resp.StatusCode]++
				}
				mu.Unlock()
				if err == nil {
					io.Copy(io.Discard, resp.Body)
					resp.Body.Close()
				}
			}
		}()
	}
	for i := 0; i < *n; i++ {
		jobs <- i
	}
	close(jobs)
	wg.Wait()

	fmt.Printf("sent %d requests: ", *n)
	codes := make([]int, 0, len(status))
	for c := range status {
		codes = append(codes, c)
	}
	sort.Ints(codes)
	for _, c := range codes {
		fmt.Printf("%d×%d  ", status[c], c)
	}
	if failed > 0 {
		fmt.Printf("%d failed", failed)
	}
	fmt.Println()

	resp, err := client.Get(*admin + "/stats/prometheus")
	if err != nil {
		fmt.Fprintf(os.Stderr, "shepherd-demo: reading metrics: %v\n", err)
		os.Exit(1)
	}
	defer resp.Body.Close()
	text, _ := io.ReadAll(resp.Body)
	printSummary(promtext.Parse(bytes.NewReader(text)))
}

func printSummary(samples []promtext.Sample) {
	tw := tabwriter.NewWriter(os.Stdout, 2, 4, 2, ' ', 0)
	section := func(title string) { fmt.Fprintf(tw, "\n%s\n", title) }

	section("answers (route, provider, model, status)")
	for _, s := range pick(samples, "shepherd_requests_total") {
		fmt.Fprintf(tw, "  %s\t%s\t%s\t%s\t%.0f\n", s.Labels["route"], s.Labels["provider"], s.Labels["model"], s.Labels["code"], s.Value)
	}
	section("fallbacks (route, from → to, reason)")
	fb := pick(samples, "shepherd_fallbacks_total")
	if len(fb) == 0 {
		fmt.Fprintln(tw, "  none")
	}
	for _, s := range fb {
		fmt.Fprintf(tw, "  %s\t%s → %s\t%s\t%.0f\n", s.Labels["route"], s.Labels["from"], s.Labels["to"], s.Labels["reason"], s.Value)
	}
	if rl := pick(samples, "shepherd_ratelimited_total"); len(rl) > 0 {
		section("refused by limits and budgets (route, kind)")
		for _, s := range rl {
			fmt.Fprintf(tw, "  %s\t%s\t%.0f\n", s.Labels["route"], s.Labels["kind"], s.Value)
		}
	}
	if gf := pick(samples, "shepherd_global_limit_failures_total"); len(gf) > 0 {
		section("global limit checks without an answer (route, failure mode)")
		for _, s := range gf {
			fmt.Fprintf(tw, "  %s\t%s\t%.0f\n", s.Labels["route"], s.Labels["kind"], s.Value)
		}
	}
	if se := pick(samples, "shepherd_sidecar_errors_total"); len(se) > 0 {
		section("failed sidecar calls (kind)")
		for _, s := range se {
			fmt.Fprintf(tw, "  %s\t%.0f\n", s.Labels["kind"], s.Value)
		}
	}
	section("tokens (model: input, output)")
	tokens := sum(pick(samples, "shepherd_tokens_total"), "model", "type")
	for _, model := range keys(tokens) {
		fmt.Fprintf(tw, "  %s\t%.0f\t%.0f\n", model, tokens[model]["input"], tokens[model]["output"])
	}
	section("cost (model)")
	cost := sum(pick(samples, "shepherd_cost_usd_micros_total"), "model", "")
	total := 0.0
	for _, model := range keys(cost) {
		fmt.Fprintf(tw, "  %s\t$%.6f\n", model, cost[model][""]/1e6)
		total += cost[model][""]
	}
	fmt.Fprintf(tw, "  total\t$%.6f\n", total/1e6)
	tw.Flush()
}

// pick returns the samples of one metric, sorted by their labels.
func pick(samples []promtext.Sample, name string) []promtext.Sample {
	var out []promtext.Sample
	for _, s := range samples {
		if s.Name == name {
			out = append(out, s)
		}
	}
	key := func(s promtext.Sample) string {
		ks := make([]string, 0, len(s.Labels))
		for k, v := range s.Labels {
			ks = append(ks, k+"="+v)
		}
		sort.Strings(ks)
		return strings.Join(ks, ",")
	}
	sort.Slice(out, func(i, j int) bool { return key(out[i]) < key(out[j]) })
	return out
}

// sum adds samples up by the values of two labels (the second may be "").
func sum(samples []promtext.Sample, by, then string) map[string]map[string]float64 {
	out := map[string]map[string]float64{}
	for _, s := range samples {
		k := s.Labels[by]
		if out[k] == nil {
			out[k] = map[string]float64{}
		}
		out[k][s.Labels[then]] += s.Value
	}
	return out
}

func keys[V any](m map[string]V) []string {
	ks := make([]string, 0, len(m))
	for k := range m {
		ks = append(ks, k)
	}
	sort.Strings(ks)
	return ks
}
