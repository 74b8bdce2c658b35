// Command fake-provider serves an OpenAI-compatible chat completions API on
// loopback for the local mesh and tests. See package fakeprovider for the faults it
// injects on demand.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/shepherd-mesh/shepherd/internal/fakeprovider"
)

func main() {
	listen := flag.String("listen", "127.0.0.1:9001", "address to serve on")
	name := flag.String("name", "fake", "provider name reported in responses")
	keyEnv := flag.String("api-key-env", "", "environment variable holding the API key to require (empty: no key)")
	words := flag.Int("words", 12, "words per completion before max_tokens")
	throttle := flag.Int("throttle-percent", 0, "percent of requests answered 429 with Retry-After: 1")
	errs := flag.Int("error-percent", 0, "percent of requests answered 503")
	flag.Parse()
	if *throttle < 0 || *errs < 0 || *throttle+*errs > 100 {
		fmt.Fprintln(os.Stderr, "fake-provider: --throttle-percent and --error-percent must be between 0 and 100 together")
		os.Exit(2)
	}

	opts := fakeprovider.Options{Name: *name, Words: *words, ThrottlePercent: *throttle, ErrorPercent: *errs}
	if *keyEnv != "" {
		opts.APIKey = os.Getenv(*keyEnv)
		if opts.APIKey == "" {
			fmt.Fprintf(os.Stderr, "fake-provider: --api-key-env: %s is not set\n", *keyEnv)
			os.Exit(2)
		}
	}
	lis, err := net.Listen("tcp", *listen)
	if err != nil {
		fmt.Fprintf(os.Stderr, "fake-provider: --listen: %v\n", err)
		os.Exit(1)
	}
	srv := &http.Server{Handler: fakeprovider.New(opts), ReadHeaderTimeout: 10 * time.Second}
	fmt.Fprintf(os.Stderr, "fake-provider %q listening on http://%s\n", *name, lis.Addr())

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	go func() {
		<-ctx.Done()
		shutdown, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = srv.Shutdown(shutdown)
	}()
	if err := srv.Serve(lis); err != nil && !errors.Is(err, http.ErrServerClosed) {
		fmt.Fprintf(os.Stderr, "fake-provider: %v\n", err)
		os.Exit(1)
	}
}
