// Command shepherd-soak runs shepherd's local mesh in-process (two pods of two
// worker VMs, the sidecar, two fake providers with random faults) under
// randomized clients for a bounded time, prints the invariant table, and exits
// non-zero when an invariant failed. See docs/RELIABILITY.md.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"time"

	"github.com/shepherd-mesh/shepherd/internal/soak"
	"github.com/shepherd-mesh/shepherd/internal/wasmbuild"
)

func main() {
	duration := flag.Duration("duration", 10*time.Minute, "how long clients send traffic")
	requests := flag.Int("requests", 0, "stop after this many requests (0: duration only)")
	clients := flag.Int("clients", 8, "concurrent clients")
	seed := flag.Uint64("seed", uint64(time.Now().UnixNano()), "seed of the clients' choices")
	module := flag.String("module", "bin/shepherd.wasm", "the filter's .wasm (built from ./filter when absent)")
	vmMem := flag.Uint64("max-vm-mib", 64, "bound of each VM's linear memory (MiB)")
	heap := flag.Uint64("max-heap-growth-mib", 256, "bound of the process's Go heap growth (MiB)")
	perReq := flag.Float64("max-heap-per-request", 16, "bound of the Go heap's growth per request through the run (bytes)")
	flag.Parse()

	wasm, err := os.ReadFile(*module)
	if os.IsNotExist(err) {
		wasm, err = wasmbuild.Build("./filter")
		defer wasmbuild.Cleanup()
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "shepherd-soak:", err)
		os.Exit(2)
	}
	fmt.Printf("shepherd-soak: %s, %d clients, seed %d\n", *duration, *clients, *seed)
	res, err := soak.Run(context.Background(), soak.Options{
		Module: wasm, Duration: *duration, Requests: *requests, Clients: *clients, Seed: *seed,
		MaxVMMemory: *vmMem << 20, MaxHeapGrowth: *heap << 20, MaxHeapPerRequest: *perReq,
		Progress: func(s string) { fmt.Println("  ", s) },
	})
	if err != nil {
		fmt.Fprintln(os.Stderr, "shepherd-soak:", err)
		os.Exit(2)
	}
	fmt.Println()
	res.Table(os.Stdout)
	if !res.OK() {
		fmt.Println("\nFAIL: an invariant did not hold")
		os.Exit(1)
	}
	fmt.Println("\nok: every invariant held")
}
