package e2e_test

import (
	"io"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/shepherd-mesh/shepherd/filter/telemetry"
	"github.com/shepherd-mesh/shepherd/internal/fakeprovider"
)

// The provider memory: what a provider says about its limits (Retry-After,
// x-ratelimit-*) is kept in shared data for every VM of the Envoy. The hosts
// here run two worker VMs and spread requests over them round-robin, so each
// test's consecutive requests run on different VMs.

// memoryConfig is route chat on provider p with a fallback to m2 on b, and no
// limits, so concurrent requests are never refused locally.
const memoryConfig = `{"providers":[
   {"name":"p","host":"p.example.com","cluster":"p"},
   {"name":"b","host":"b.example.com","cluster":"b"}],
 "models":{"m":{},"m2":{}},
 "routes":[{"name":"chat","match":{"pathPrefix":"/v1/"},"provider":"p",
   "fallback":{"models":[{"model":"m2","provider":"b"}],"maxAttempts":2,
     "baseBackoffMs":1,"maxBackoffMs":2,"retryAfterCapMs":5000,"timeoutMs":2000}}]}`

// onlyPConfig is route chat on provider p with no fallback.
const onlyPConfig = `{"providers":[{"name":"p","host":"p.example.com","cluster":"p"},
   {"name":"b","host":"b.example.com","cluster":"b"}],
 "models":{"m":{}},
 "routes":[{"name":"chat","match":{"pathPrefix":"/v1/"},"provider":"p"}]}`

// arrivalsWithin counts p's arrivals in [from, to).
func arrivalsWithin(p *fakeprovider.Provider, from, to time.Time) int {
	n := 0
	for _, at := range p.Arrivals() {
		if !at.Before(from) && at.Before(to) {
			n++
		}
	}
	return n
}

// TestMemoryRetryAfterHoldsForEveryRequest: p answers 429 with Retry-After: 1.
// For the next second no attempt goes to p, from the chain of the request that
// learnt it or from later requests on either VM: they go straight to the
// fallback entry on b. Once the second is over, one request probes p, and its
// success brings the traffic back.
func TestMemoryRetryAfterHoldsForEveryRequest(t *testing.T) {
	e := newFaultEnv(t, memoryConfig)
	e.p.Script(fakeprovider.Fault{Status: http.StatusTooManyRequests, RetryAfter: "1"})

	resp, body, err := e.send(t, false)
	require.NoError(t, err)
	require.Equal(t, http.StatusOK, resp.StatusCode, "%s", body)
	require.Equal(t, "b", resp.Header.Get("x-shepherd-provider"))
	refused := e.p.Arrivals()[0]

	for i := 0; time.Since(refused) < 700*time.Millisecond; i++ {
		resp, body, err := e.send(t, false)
		require.NoError(t, err)
		require.Equal(t, http.StatusOK, resp.StatusCode, "%s", body)
		require.Equal(t, "b", resp.Header.Get("x-shepherd-provider"), "request %d went to the cooling provider", i)
		require.Equal(t, "m2", resp.Header.Get("x-shepherd-model"))
		require.Equal(t, "1", resp.Header.Get("x-shepherd-attempts"), "straight to the fallback entry")
	}
	require.EqualValues(t, 1, e.p.Requests(), "p was asked nothing inside its Retry-After")

	until(t, 5*time.Second, "p asked again after its Retry-After", func() bool {
		resp, _, err := e.send(t, false)
		require.NoError(t, err)
		require.Equal(t, http.StatusOK, resp.StatusCode)
		return resp.Header.Get("x-shepherd-provider") == "p"
	})
	arrivals := e.p.Arrivals()
	require.Len(t, arrivals, 2)
	require.GreaterOrEqual(t, arrivals[1].Sub(refused), time.Second, "the probe came after the Retry-After")
	for range 4 {
		resp, _, err := e.send(t, false)
		require.NoError(t, err)
		require.Equal(t, "p", resp.Header.Get("x-shepherd-provider"), "the probe's success ended the pause on every VM")
	}
	e.noLeaks(t)
}

// TestMemoryOneProbePerEnvoy: when p's pause is over, of many concurrent
// requests only one is sent to p (the probe, which p answers slowly); the
// others keep to b until the probe's answer.
func TestMemoryOneProbePerEnvoy(t *testing.T) {
	e := newFaultEnv(t, memoryConfig)
	e.p.Script(fakeprovider.Fault{Status: http.StatusTooManyRequests, RetryAfter: "1"},
		fakeprovider.Fault{Delay: 600 * time.Millisecond})
	resp, _, err := e.send(t, false)
	require.NoError(t, err)
	require.Equal(t, "b", resp.Header.Get("x-shepherd-provider"))
	refused := e.p.Arrivals()[0]
	time.Sleep(time.Until(refused.Add(1100 * time.Millisecond)))

	var wg sync.WaitGroup
	providers := make(chan string, 16) // one message per request
	for range 16 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			resp, err := e.clients.Do(e.request(t.Context(), false))
			if err != nil {
				providers <- "error: " + err.Error()
				return
			}
			resp.Body.Close()
			providers <- strconv.Itoa(resp.StatusCode) + " " + resp.Header.Get("x-shepherd-provider")
		}()
	}
	wg.Wait()
	close(providers)
	byProvider := map[string]int{}
	for p := range providers {
		byProvider[p]++
	}
	require.Equal(t, map[string]int{"200 p": 1, "200 b": 15}, byProvider)
	require.EqualValues(t, 2, e.p.Requests(), "one probe while p was half open")
	e.noLeaks(t)
}

// TestMemoryAnswersWhenNothingIsFree: a route without fallback whose only
// provider asked for a pause (429, Retry-After: 2) gets no request inside it
// from any VM, from the very next request on: the VM that learnt the pause
// tells the other through its wake-up queue before that VM's next request,
// although such a route reads the memory only while its VM knows of a pause.
// The filter answers 429 with a Retry-After saying when the provider is
// free, counted as shepherd's own answer (reason cooling); once the pause is
// over, one request probes the provider again.
func TestMemoryAnswersWhenNothingIsFree(t *testing.T) {
	e := newFaultEnv(t, onlyPConfig)
	e.p.Script(fakeprovider.Fault{Status: http.StatusTooManyRequests, RetryAfter: "2"})
	resp, _, err := e.send(t, false)
	require.NoError(t, err)
	require.Equal(t, http.StatusTooManyRequests, resp.StatusCode)
	require.Equal(t, "p", resp.Header.Get("x-fake-provider"))
	refused := e.p.Arrivals()[0]

	// Round-robin: the odd requests run on the VM that did not see the 429.
	n := 0
	for ; n < 6 && time.Since(refused) < 1500*time.Millisecond; n++ {
		resp, body, err := e.send(t, false)
		require.NoError(t, err)
		require.Equal(t, http.StatusTooManyRequests, resp.StatusCode, "request %d: %s", n, body)
		require.Empty(t, resp.Header.Get("x-fake-provider"), "request %d: shepherd answered", n)
		ra, err := strconv.Atoi(resp.Header.Get("retry-after"))
		require.NoError(t, err)
		require.True(t, ra == 1 || ra == 2, "retry-after %d", ra)
		require.Contains(t, string(body), "provider_cooling_down")
		require.Equal(t, "true", resp.Header.Get("x-should-retry"), "waiting helps")
	}
	require.GreaterOrEqual(t, n, 2, "both VMs answered inside the pause")
	require.EqualValues(t, 1, e.p.Requests(), "p was asked nothing inside its Retry-After")
	require.EqualValues(t, n, counterOf(t, e.host, telemetry.Name(telemetry.Requests, telemetry.LabelRoute, "chat",
		telemetry.LabelProvider, telemetry.LocalProvider, telemetry.LabelModel, "other", telemetry.LabelCode, "4xx",
		telemetry.LabelReason, "cooling")))

	until(t, 5*time.Second, "p asked again after its Retry-After", func() bool {
		resp, _, err := e.send(t, false)
		require.NoError(t, err)
		return resp.StatusCode == http.StatusOK
	})
	arrivals := e.p.Arrivals()
	require.Len(t, arrivals, 2)
	require.GreaterOrEqual(t, arrivals[1].Sub(refused), 2*time.Second, "the probe came after the Retry-After")
	e.noLeaks(t)
}

// TestMemoryFailedChainSaysWhenToRetry: p refuses with Retry-After: 2 and the
// fallback on b fails with a 500 that carries none. The client gets a 429
// with a Retry-After saying when p is free, not the bare 500.
func TestMemoryFailedChainSaysWhenToRetry(t *testing.T) {
	e := newFaultEnv(t, memoryConfig)
	e.p.Script(fakeprovider.Fault{Status: http.StatusTooManyRequests, RetryAfter: "2"})
	e.b.Script(fakeprovider.Fault{Status: http.StatusInternalServerError})
	resp, body, err := e.send(t, false)
	require.NoError(t, err)
	require.Equal(t, http.StatusTooManyRequests, resp.StatusCode, "%s", body)
	require.Equal(t, "b", resp.Header.Get("x-shepherd-provider"), "the last real answer")
	require.Contains(t, string(body), "b answered 500")
	ra, err := strconv.Atoi(resp.Header.Get("retry-after"))
	require.NoError(t, err)
	require.True(t, ra == 1 || ra == 2, "retry-after %d", ra)
	require.EqualValues(t, 1, e.p.Requests())
	e.noLeaks(t)
}

// TestMemoryHeadroomSteersAway: p answers 200 with
// x-ratelimit-remaining-requests 0 and its reset in 1 s: before p starts
// refusing, the next requests go to the fallback entry on b; after the reset
// p serves again.
func TestMemoryHeadroomSteersAway(t *testing.T) {
	e := newFaultEnv(t, memoryConfig)
	e.p.Script(fakeprovider.Fault{Header: map[string]string{
		"x-ratelimit-limit-requests": "100", "x-ratelimit-remaining-requests": "0", "x-ratelimit-reset-requests": "1s"}})
	resp, _, err := e.send(t, false)
	require.NoError(t, err)
	require.Equal(t, "p", resp.Header.Get("x-shepherd-provider"))
	first := e.p.Arrivals()[0]
	for time.Since(first) < 700*time.Millisecond {
		resp, _, err := e.send(t, false)
		require.NoError(t, err)
		require.Equal(t, http.StatusOK, resp.StatusCode)
		require.Equal(t, "b", resp.Header.Get("x-shepherd-provider"))
	}
	require.EqualValues(t, 1, e.p.Requests())
	until(t, 5*time.Second, "p serves again after its reset", func() bool {
		resp, _, err := e.send(t, false)
		require.NoError(t, err)
		return resp.Header.Get("x-shepherd-provider") == "p"
	})
	require.Zero(t, arrivalsWithin(e.p, first.Add(time.Nanosecond), first.Add(time.Second)), "nothing before the reset")
	e.noLeaks(t)
}

// TestMemoryUnlistedModelIsNotAnsweredByAnother: while p pauses, a request
// for a model the config does not list cannot go to the fallback entry (another
// model may not answer it): the filter answers it with p's Retry-After, and p
// is not asked.
func TestMemoryUnlistedModelIsNotAnsweredByAnother(t *testing.T) {
	e := newFaultEnv(t, memoryConfig)
	e.p.Script(fakeprovider.Fault{Status: http.StatusTooManyRequests, RetryAfter: "3"})
	resp, _, err := e.send(t, false)
	require.NoError(t, err)
	require.Equal(t, "b", resp.Header.Get("x-shepherd-provider"))

	req, err := http.NewRequest(http.MethodPost, e.url+"/v1/chat/completions",
		strings.NewReader(`{"model":"my-own-model","messages":[{"role":"user","content":"hi"}]}`))
	require.NoError(t, err)
	req.Header.Set("content-type", "application/json")
	resp, err = e.clients.Do(req)
	require.NoError(t, err)
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	require.Equal(t, http.StatusTooManyRequests, resp.StatusCode, "%s", body)
	require.Contains(t, string(body), "provider_cooling_down")
	require.NotEmpty(t, resp.Header.Get("retry-after"))
	require.EqualValues(t, 1, e.p.Requests())
	require.EqualValues(t, 1, e.b.Bodies(), "b got the first request's fallback only")
	e.noLeaks(t)
}

// perModelConfig is route chat on provider p for models m and m2, each with
// a chain of its own: the same model on b.
const perModelConfig = `{"providers":[
   {"name":"p","host":"p.example.com","cluster":"p"},
   {"name":"b","host":"b.example.com","cluster":"b"}],
 "models":{"m":{},"m2":{}},
 "routes":[{"name":"chat","match":{"pathPrefix":"/v1/"},"provider":"p",
   "fallback":{"models":[],"byModel":{"m":[{"model":"m","provider":"b"}],"m2":[{"model":"m2","provider":"b"}]},
     "maxAttempts":2,"baseBackoffMs":1,"maxBackoffMs":2,"retryAfterCapMs":5000,"timeoutMs":2000}}]}`

// TestMemoryPausesTheModelItsLimitIsFor: p refuses a request for m with 429,
// Retry-After: 2 and OpenAI's x-ratelimit-* headers saying m's request limit
// is exhausted. For the next seconds, on both VMs, requests for m2 still go
// to p, and requests for m go to m on b: p never gets a request for m (the
// model is read from the body, so the headers of such a request have gone to
// p already; its body never follows, and the request is reset), and once the
// pause is over p serves m again. A bare Retry-After pauses the whole
// provider (TestMemoryRetryAfterHoldsForEveryRequest).
func TestMemoryPausesTheModelItsLimitIsFor(t *testing.T) {
	e := newFaultEnv(t, perModelConfig)
	e.p.Script(fakeprovider.Fault{Status: http.StatusTooManyRequests, RetryAfter: "2", Header: map[string]string{
		"x-ratelimit-limit-requests": "60", "x-ratelimit-remaining-requests": "0", "x-ratelimit-reset-requests": "2s"}})
	send := func(model string) *http.Response { return chatModelOK(t, e, model) }
	resp := send("m")
	require.Equal(t, "b", resp.Header.Get("x-shepherd-provider"), "the refused request's chain")
	refused := e.p.Arrivals()[0]

	n := 0
	for ; n < 8 && time.Since(refused) < 1500*time.Millisecond; n++ {
		resp := send("m2")
		require.Equal(t, "p", resp.Header.Get("x-shepherd-provider"), "round %d: m2 is not paused", n)
		require.Equal(t, "m2", resp.Header.Get("x-shepherd-model"))
		resp = send("m")
		require.Equal(t, "b", resp.Header.Get("x-shepherd-provider"), "round %d: m pauses on p", n)
		require.Equal(t, "m", resp.Header.Get("x-shepherd-model"))
		require.Equal(t, "1", resp.Header.Get("x-shepherd-attempts"), "round %d: p was not tried for m", n)
		require.Equal(t, "m", e.b.Last().Model)
	}
	require.GreaterOrEqual(t, n, 2, "both VMs served both models inside the pause")
	require.EqualValues(t, 1+n, e.p.Bodies(), "p got the refused request and the m2 ones, no other for m")
	require.Equal(t, "m2", e.p.Last().Model)

	until(t, 5*time.Second, "p serves m again after its Retry-After", func() bool {
		return send("m").Header.Get("x-shepherd-provider") == "p"
	})
	require.GreaterOrEqual(t, time.Since(refused), 2*time.Second)
	e.noLeaks(t)
}

// chatModelOK sends a chat completion for model through e and requires a
// 200; the body is read and closed.
func chatModelOK(t *testing.T, e *faultEnv, model string) *http.Response {
	t.Helper()
	req, err := http.NewRequest(http.MethodPost, e.url+"/v1/chat/completions",
		strings.NewReader(`{"model":"`+model+`","messages":[{"role":"user","content":"hi"}]}`))
	require.NoError(t, err)
	req.Header.Set("content-type", "application/json")
	resp, err := e.clients.Do(req)
	require.NoError(t, err)
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	require.Equal(t, http.StatusOK, resp.StatusCode, "%s: %s", model, body)
	return resp
}

// TestMemoryProviderThatPausesWhole: the same refusal from a provider that
// says "pauses": "provider" (its x-ratelimit-* describe the account) pauses
// every model: requests for m2 go to b as well (to their own chain, m2 on b,
// which is known only at the body).
func TestMemoryProviderThatPausesWhole(t *testing.T) {
	e := newFaultEnv(t, strings.Replace(perModelConfig, `"cluster":"p"}`, `"cluster":"p","pauses":"provider"}`, 1))
	e.p.Script(fakeprovider.Fault{Status: http.StatusTooManyRequests, RetryAfter: "2", Header: map[string]string{
		"x-ratelimit-limit-requests": "60", "x-ratelimit-remaining-requests": "0", "x-ratelimit-reset-requests": "2s"}})
	for i, model := range []string{"m", "m2", "m2", "m", "m2"} {
		resp := chatModelOK(t, e, model)
		require.Equal(t, "b", resp.Header.Get("x-shepherd-provider"), "request %d (%s)", i, model)
		require.Equal(t, model, resp.Header.Get("x-shepherd-model"))
	}
	// Each model has its own chain, known at the body: the headers of the
	// later requests went to p, their bodies never did.
	require.EqualValues(t, 1, e.p.Bodies(), "p got no request after its refusal")
	e.noLeaks(t)
}
